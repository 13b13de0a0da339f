"""The classifier's plain network: a timm backbone, importable without Lightning."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def build_backbone(backbone: str, num_classes: int, in_chans: int = 3, drop_rate: float = 0.0) -> nn.Module:
    """A timm model by name (or Hydra's own ``plotnet``), from scratch: nothing is downloaded."""
    if backbone in LOCAL_BACKBONES:
        return LOCAL_BACKBONES[backbone](in_chans=in_chans, num_classes=num_classes, drop_rate=drop_rate)
    import timm

    if not timm.is_model(backbone):
        close = timm.list_models(f"*{backbone.split('_')[0]}*")[:10]
        raise ValueError(f"timm has no model {backbone!r}; similar names: {', '.join(close) or 'none'}")
    return timm.create_model(
        backbone, pretrained=False, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate
    )


def load_init_weights(model: nn.Module, weights_file: str | Path) -> list[str]:
    """Initialise from a user's weights file (safetensors or a tensors-only state dict).

    Tensors whose shape does not fit (e.g. an ImageNet classifier layer) are
    skipped, so a pretrained backbone can start a plot classifier. Returns the
    names that were not loaded.
    """
    path = Path(weights_file)
    if not path.is_file():
        raise FileNotFoundError(f"weights_file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, never code
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def cam_layer(model: nn.Module) -> nn.Module:
    """The last feature stage of a timm model (its last ``feature_info`` entry)."""
    if isinstance(model, PlotNet):
        return model.last_stage
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1] if isinstance(info, list) else info.get_dicts()[-1]
        name = last.get("module")
        if name:
            return model.get_submodule(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no conv layer for Grad-CAM")
    return convs[-1]


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class PlotNet(nn.Module):
    """A small dense CNN for plots: stride 8 (a 120x160 input keeps a 15x20 map), avg+max pooling.

    Max pooling keeps a fault that fills one cell of the last map (a hot or
    dead channel) as strong as one that fills the plot; average pooling alone
    dilutes it. About 0.1 M parameters at ``width`` 16: fast to train on a CPU.
    """

    def __init__(
        self, in_chans: int = 3, num_classes: int = 2, width: int = 16, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(in_chans, w, 2),
            _conv(w, 2 * w, 2),
            _conv(2 * w, 2 * w, 1),
            _conv(2 * w, 4 * w, 2),
            _conv(4 * w, 4 * w, 1),
        )
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(8 * w, num_classes)

    @property
    def last_stage(self) -> nn.Module:
        return self.features[-1]

    @property
    def fine_stage(self) -> nn.Module:
        """The last stage at stride 4 (a 30x40 map at 120x160): where Grad-CAM finds one bin."""
        return self.features[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.fc(self.drop(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)))


LOCAL_BACKBONES = {"plotnet": PlotNet}
