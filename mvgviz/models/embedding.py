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
    embedding channels kept (then ``C`` = d), in its order. The channels are picked from each
    layer before it is upsampled (the same values as picking them from the whole embedding, and
    only the kept channels are upsampled and copied).
    """
    import torch
    import torch.nn.functional as F
    first = feats[layers[0]]
    h, w = first.shape[-2:]
    if idx is None:
        parts = [first] + [F.interpolate(feats[l], size=(h, w), mode="nearest") for l in layers[1:]]
        return torch.cat(parts, dim=1)  # (n, C, h, w)
    order = torch.argsort(idx)
    sorted_idx = idx[order]
    parts, start = [], 0
    for i, l in enumerate(layers):
        f = feats[l]
        c = f.shape[1]
        mine = sorted_idx[(sorted_idx >= start) & (sorted_idx < start + c)] - start
        start += c
        if mine.numel():
            f = f.index_select(1, mine)
            parts.append(f if i == 0 else F.interpolate(f, size=(h, w), mode="nearest"))
    if start <= int(sorted_idx[-1]) if sorted_idx.numel() else False:
        raise IndexError(f"embedding channel {int(sorted_idx[-1])} is out of range: the layers have {start}")
    emb = torch.cat(parts, dim=1)  # kept channels in ascending order
    if bool((order == torch.arange(len(order), device=order.device)).all()):
        return emb
    return emb.index_select(1, torch.argsort(order))  # back to idx's order


__all__ = ["embed"]
