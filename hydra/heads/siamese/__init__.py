"""The ``siamese`` head (anomaly scoring by distance to Good references).

The embedding network and scoring are in ``torch_model``; the synthetic
faults that stand in for missing problem labels are in ``faults``.
"""

from hydra.heads.siamese.lightning_model import SiameseHead

__all__ = ["SiameseHead"]
