"""Interventions on a layer's units during a forward pass: ablate, clamp, scale, steer.

An edit acts on the (batch, positions, units) view of the layer's output, on the chosen units at every
position or only at the chosen positions (flat indices into the layer's position grid).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

Indices = int | Sequence[int] | torch.Tensor | None


def _as_indices(indices: Indices, what: str) -> tuple[int, ...] | None:
    if indices is None:
        return None
    if isinstance(indices, torch.Tensor):
        indices = indices.flatten().tolist()
    elif isinstance(indices, int):
        indices = [indices]
    result = tuple(int(i) for i in indices)
    if not result:
        raise ValueError(f"an edit needs at least one {what} index (use None for all)")
    return result


def _check_range(indices: tuple[int, ...] | None, size: int, what: str, layer: str) -> None:
    if indices is None:
        return
    bad = [i for i in indices if not -size <= i < size]
    if bad:
        raise IndexError(f"{what} {bad[0]} is out of range for layer {layer!r}, which has {size} {what}s")


@dataclass(frozen=True)
class Edit:
    """One intervention. Build it with :func:`ablate`, :func:`clamp`, :func:`scale` or :func:`steer`."""

    kind: str
    units: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    value: float = 0.0
    vector: torch.Tensor | None = None

    def apply_(self, view: torch.Tensor, layer: str) -> None:
        """Apply in place to ``view``, a (batch, positions, units) view of a copy of the output."""
        _, num_positions, num_units = view.shape
        _check_range(self.units, num_units, "unit", layer)
        _check_range(self.positions, num_positions, "position", layer)
        if self.kind == "steer":
            vector = self.vector
            if vector.numel() != num_units:
                raise ValueError(
                    f"steering vector for layer {layer!r} has {vector.numel()} values; the layer has {num_units} units"
                )
            delta = (self.value * vector).to(dtype=view.dtype, device=view.device)
            if self.positions is None:
                view += delta
            else:
                view[:, list(self.positions)] += delta
            return
        index = self._index(view.device)
        if self.kind == "scale":
            view[index] = view[index] * self.value
        else:  # ablate and clamp set a value
            view[index] = self.value

    def _index(self, device: torch.device) -> tuple:
        units = slice(None) if self.units is None else torch.tensor(self.units, device=device)
        if self.positions is None:
            return (slice(None), slice(None), units)
        positions = torch.tensor(self.positions, device=device)
        if self.units is None:
            return (slice(None), positions)
        return (slice(None), positions[:, None], units[None, :])


def ablate(units: Indices = None, positions: Indices = None) -> Edit:
    """Set the units to zero (all units when ``units`` is None)."""
    return Edit("ablate", _as_indices(units, "unit"), _as_indices(positions, "position"), 0.0)


def clamp(units: Indices, value: float, positions: Indices = None) -> Edit:
    """Hold the units at ``value``."""
    return Edit("clamp", _as_indices(units, "unit"), _as_indices(positions, "position"), float(value))


def scale(units: Indices, factor: float, positions: Indices = None) -> Edit:
    """Multiply the units by ``factor``."""
    return Edit("scale", _as_indices(units, "unit"), _as_indices(positions, "position"), float(factor))


def steer(vector: Sequence[float] | torch.Tensor, alpha: float = 1.0, positions: Indices = None) -> Edit:
    """Add ``alpha * vector`` (one value per unit of the layer) to the layer's output."""
    vector = torch.as_tensor(vector).detach().flatten()
    if not torch.is_floating_point(vector):
        vector = vector.float()
    if not torch.isfinite(vector).all():
        raise ValueError("steering vector contains NaN or infinite values")
    return Edit("steer", None, _as_indices(positions, "position"), float(alpha), vector)


def unit_direction(units: Sequence[int], width: int) -> torch.Tensor | None:
    """The normalised sum of the basis vectors of ``units`` among ``width``: steering along it raises
    them all alike (``None`` without units)."""
    if not units:
        return None
    vector = torch.zeros(width)
    vector[list(units)] = len(units) ** -0.5
    return vector


def as_edit_list(edits: Edit | Iterable[Edit]) -> list[Edit]:
    if isinstance(edits, Edit):
        return [edits]
    result = list(edits)
    for edit in result:
        if not isinstance(edit, Edit):
            raise TypeError(f"expected an edit made by nw.ablate/clamp/scale/steer, got {type(edit).__name__}")
    return result
