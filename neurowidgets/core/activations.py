"""One layer's output seen as (batch, positions, units), whatever the module's native layout.

Layouts:
- ``"last"``: units are the last dimension, every dimension between batch and units is a position
  (Linear on (B, D): one position; a transformer block on (B, T, D): T positions).
- ``"channels"``: units are dimension 1, the trailing dimensions are the position grid
  (Conv2d on (B, C, H, W): C units, H×W positions in row-major order).

4-D and 5-D outputs are channels-first in PyTorch, so they default to ``"channels"``; so do the
outputs of convolution, batch-norm and pooling modules of any rank. Everything else is ``"last"``.
A Probe accepts a per-layer override for the rare module that breaks these conventions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LAYOUTS = ("last", "channels")

_CHANNEL_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


def infer_layout(module: nn.Module, ndim: int) -> str:
    if isinstance(module, _CHANNEL_MODULES) and ndim >= 3:
        return "channels"
    return "channels" if ndim >= 4 else "last"


def as_bpu(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    """A (batch, positions, units) view of ``tensor`` (a view whenever the memory layout allows)."""
    if tensor.ndim == 0:
        raise ValueError("a layer output must have a batch dimension; got a scalar")
    if tensor.ndim == 1:
        return tensor.reshape(tensor.shape[0], 1, 1)
    if layout == "channels" and tensor.ndim >= 3:
        return tensor.flatten(2).transpose(1, 2)
    return tensor.reshape(tensor.shape[0], -1, tensor.shape[-1])


def positions_shape_of(shape: torch.Size | tuple[int, ...], layout: str) -> tuple[int, ...]:
    """The grid of positions: ``()`` for one position, ``(T,)`` for a sequence, ``(H, W)`` for an image."""
    shape = tuple(shape)
    if len(shape) <= 2:
        return ()
    if layout == "channels":
        return shape[2:]
    return shape[1:-1]


def units_of(shape: torch.Size | tuple[int, ...], layout: str) -> int:
    shape = tuple(shape)
    if len(shape) <= 1:
        return 1
    return shape[1] if layout == "channels" and len(shape) >= 3 else shape[-1]


@dataclass(frozen=True)
class Activations:
    """A captured layer output.

    ``raw`` is the module's output as it came (the first tensor of a tuple or model-output object),
    detached. ``values`` is the same data as (batch, positions, units).
    """

    layer: str
    raw: torch.Tensor
    layout: str

    @property
    def values(self) -> torch.Tensor:
        return as_bpu(self.raw, self.layout)

    @property
    def positions_shape(self) -> tuple[int, ...]:
        return positions_shape_of(self.raw.shape, self.layout)

    @property
    def num_units(self) -> int:
        return units_of(self.raw.shape, self.layout)

    @property
    def num_positions(self) -> int:
        n = 1
        for size in self.positions_shape:
            n *= size
        return n

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.raw.shape[0]), self.num_positions, self.num_units)

    def __repr__(self) -> str:
        return (
            f"Activations({self.layer!r}, batch={self.shape[0]}, positions={self.positions_shape}, "
            f"units={self.num_units}, dtype={str(self.raw.dtype).removeprefix('torch.')})"
        )
