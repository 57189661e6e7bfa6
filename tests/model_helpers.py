"""Shared helpers of the model tests (mvgviz.models.*): features held in memory."""

import torch


class ArrayFeatures:
    """A FeatureSource over in-memory arrays: {split: {layer: (N, C, h, w)}}."""

    def __init__(self, feats):
        self.feats = feats
        self.layers = tuple(next(iter(feats.values())))

    def n_images(self, split):
        return next(iter(self.feats[split].values())).shape[0]

    def feature_shape(self, layer):
        return tuple(self.feats["train"][layer].shape[1:])

    def batches(self, split, layers, *, batch_size, device="cpu"):
        n = self.n_images(split)
        for i in range(0, n, batch_size):
            yield {l: torch.from_numpy(self.feats[split][l][i:i + batch_size]).to(device) for l in layers}
