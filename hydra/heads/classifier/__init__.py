"""The ``classifier`` head (any timm backbone); the network itself is in ``torch_model``."""

from hydra.heads.classifier.lightning_model import ClassifierHead

__all__ = ["ClassifierHead"]
