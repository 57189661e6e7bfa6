"""Feature extraction: a backbone cut after its deepest requested layer, prepared for inference."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .backbones import LayerSpec, build_backbone, get_spec

# (convolution, batch norm) attribute pairs that run back to back in the supported backbones:
# EfficientNet-Lite (stem, head, expansion, depthwise, projection) and torchvision's ResNets (blocks and
# the downsample Sequential). A pair is folded only when both attributes have these types.
_CONV_BN = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"), ("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
            ("_project_conv", "_bn2"), ("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("0", "1"))


def prepare_for_inference(net: nn.Module) -> nn.Module:
    """The same function, cheaper to run (in place; ``net`` must be in eval mode).

    - every batch norm is folded into the convolution before it (``fuse_conv_bn_eval``);
    - EfficientNet-Lite's explicit zero padding (TensorFlow "SAME" padding as a separate
      ``ZeroPad2d`` copy of the input) becomes the convolution's own padding; where it is
      asymmetric (stride-2 layers: one more pixel right and bottom) the kernel gets a leading row
      and column of zeros and symmetric padding, which computes the same sums (see
      ``_absorb_padding``);
    - activations run in place (they only ever see a fresh convolution output there).

    The outputs equal the original network's up to float32 rounding (~5e-6 relative on
    EfficientNet-Lite0; the tests allow 1e-4); see BENCHMARKS.md for the speed-up (with
    channels-last memory, :class:`FeatureExtractor`).
    """
    if net.training:
        raise ValueError("prepare_for_inference needs a network in eval mode (batch norm statistics are frozen)")
    for module in list(net.modules()):
        for conv_name, bn_name in _CONV_BN:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))  # a copy of conv, same class
                setattr(module, bn_name, nn.Identity())
    for module in net.modules():
        pad = getattr(module, "static_padding", None)
        if (isinstance(module, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d) and module.padding == (0, 0)
                and module.dilation == (1, 1) and module.padding_mode == "zeros"):
            _absorb_padding(module, pad.padding)
        if isinstance(module, (nn.ReLU, nn.ReLU6, nn.Hardtanh)):
            module.inplace = True
    return net


def _absorb_padding(conv: nn.Conv2d, pad: tuple[int, int, int, int]) -> None:
    """Replace an explicit zero padding (left, right, top, bottom) before ``conv`` by its own padding.

    Along one axis with padding (l, r), kernel w and stride s the output is
    ``o[i] = sum_k w[k] x[s*i + k - l]``. Symmetric padding P = max(l, r) with the kernel
    extended to ``w' = (P - l) zeros, w, (P - r) zeros`` gives ``sum_k w[k] x[s*i + k + (P - l) - P]``,
    the same sum over the same inputs, and the same output size ``(H + l + r - k) // s + 1``.
    """
    left, right, top, bottom = pad
    ph, pw = max(top, bottom), max(left, right)
    if (left, right, top, bottom) != (pw, pw, ph, ph):
        weight = nn.functional.pad(conv.weight.data, [pw - left, pw - right, ph - top, ph - bottom])
        conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
        conv.kernel_size = tuple(weight.shape[-2:])
    conv.padding = (ph, pw)
    conv.static_padding = nn.Identity()


class FeatureExtractor(nn.Module):
    """Runs a backbone up to its deepest requested layer and returns those feature maps.

    ``forward(x: (N, 3, H, W)) -> dict[layer name, (N, C, H/stride, W/stride)]``.

    With ``optimize=True`` (default) the network is prepared with :func:`prepare_for_inference`, and
    on the CPU it runs in channels-last memory format (oneDNN's fast convolutions); the returned
    maps are then channels-last tensors of the usual (N, C, h, w) shape. ``optimize=False`` runs
    the network exactly as published.
    """

    def __init__(self, name: str, layers: tuple[LayerSpec, ...], weights: str | None = None, *,
                 optimize: bool = True):
        super().__init__()
        self.spec = get_spec(name)
        self.layers = layers
        self.optimize = optimize
        self.net = build_backbone(name, weights)
        if optimize:
            prepare_for_inference(self.net)
        self._wanted = {l.module: l.name for l in layers}
        self._out: dict[str, torch.Tensor] = {}
        for module, lname in self._wanted.items():
            self.net.get_submodule(module).register_forward_hook(self._hook(lname))
        self._last = max(self.spec.layers.index(l) for l in layers)
        self._channels_last = False

    def _hook(self, lname: str):
        def hook(_mod, _inp, out):
            self._out[lname] = out
            if len(self._out) == len(self._wanted):
                raise _Done
        return hook

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.optimize and x.device.type == "cpu":
            if not self._channels_last:
                self.net.to(memory_format=torch.channels_last)
                self._channels_last = True
            x = x.contiguous(memory_format=torch.channels_last)
        self._out = {}
        try:
            self.net(x)
        except _Done:
            pass  # stop after the deepest wanted layer: the rest of the network is not needed
        out, self._out = self._out, {}
        return {l.name: out[l.name] for l in self.layers}


class _Done(Exception):
    pass
