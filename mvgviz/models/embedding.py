"""Multi-layer patch embeddings on the finest layer's grid (PaDiM's and SPADE's).

Each position (i, j) of the first (finest) layer's grid gets the concatenation of every layer's
feature vector at the cell covering it: the deeper maps are brought to the first layer's grid by
nearest-neighbour upsampling (for integer factors, PaDiM's block repetition: each stride-2s cell
covers 2x2 stride-s cells), then concatenated along the channels, finest layer first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch


def embed(feats: dict, layers: Sequence[str], idx: "torch.Tensor | None" = None) -> "torch.Tensor":
    """{layer: (n, C_l, h_l, w_l)} -> (n, C, h, w) embeddings on ``layers[0]``'s grid.

    ``C`` = the sum of the layers' channels, in the order of ``layers``; ``idx`` (d,): the
    embedding channels kept (then ``C`` = d), in its order.
    """
    import torch
    import torch.nn.functional as F
    first = feats[layers[0]]
    h, w = first.shape[-2:]
    parts = [first] + [F.interpolate(feats[l], size=(h, w), mode="nearest") for l in layers[1:]]
    emb = torch.cat(parts, dim=1)  # (n, C, h, w)
    return emb if idx is None else emb.index_select(1, idx)


__all__ = ["embed"]
