"""Feature extraction: a backbone cut after its deepest requested layer."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import LayerSpec, build_backbone, get_spec


class FeatureExtractor(nn.Module):
    """Runs a backbone up to its deepest requested layer and returns those feature maps.

    ``forward(x: (N, 3, H, W)) -> dict[layer name, (N, C, H/stride, W/stride)]``.
    """

    def __init__(self, name: str, layers: tuple[LayerSpec, ...], weights: str | None = None):
        super().__init__()
        self.spec = get_spec(name)
        self.layers = layers
        self.net = build_backbone(name, weights)
        self._wanted = {l.module: l.name for l in layers}
        self._out: dict[str, torch.Tensor] = {}
        for module, lname in self._wanted.items():
            self.net.get_submodule(module).register_forward_hook(self._hook(lname))
        self._last = max(self.spec.layers.index(l) for l in layers)

    def _hook(self, lname: str):
        def hook(_mod, _inp, out):
            self._out[lname] = out
            if len(self._out) == len(self._wanted):
                raise _Done
        return hook

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._out = {}
        try:
            self.net(x)
        except _Done:
            pass  # stop after the deepest wanted layer: the rest of the network is not needed
        out, self._out = self._out, {}
        return {l.name: out[l.name] for l in self.layers}


class _Done(Exception):
    pass
