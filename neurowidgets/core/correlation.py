"""Which units of a layer fire together over a sample: each example's maximum per unit, their Pearson
correlations, and the units and pairs worth showing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .probe import Probe


def max_activations(probe: Probe, inputs: Any, layer: str) -> np.ndarray:
    """Each example's maximum over its (unpadded) positions of every unit of ``layer``: (N, units)."""
    values = probe.run(inputs, [layer])[layer].values.float()
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    if isinstance(mask, torch.Tensor) and mask.shape == values.shape[:2]:  # padded texts
        values = values.masked_fill(~mask.bool()[:, :, None], -torch.inf)
    return values.amax(dim=1).detach().cpu().numpy()


def correlation(values: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns of (examples, units); NaN for a constant column or one with
    NaN/inf values (and its diagonal), as ``np.corrcoef`` gives, without its warnings."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        centred = values.astype(np.float64) - values.mean(axis=0, dtype=np.float64)
        norms = np.sqrt((centred * centred).sum(axis=0))
        r = (centred.T @ centred) / np.outer(norms, norms)
    undefined = ~np.isfinite(norms) | (norms == 0)
    r[:, undefined] = np.nan
    r[undefined, :] = np.nan
    return np.clip(r, -1.0, 1.0)


def undefined_because(values: np.ndarray) -> str:
    """Why a correlation with these columns of (examples, units) is NaN, as a reader is told."""
    if not np.isfinite(values).all():
        return "n/a (NaN/inf values)"
    return "n/a (a constant unit)"


def matrix_units(values: np.ndarray, selected: Sequence[int], size: int) -> list[int]:
    """The units of a correlation matrix over (examples, units) ``values``, sorted: the first ``size`` of
    the ``selected`` units when two or more are, else the ``size`` units that vary most (ties: the lower
    index), the first selected unit among them."""
    if len(selected) >= 2:
        return sorted(selected[:size])
    variance = np.nan_to_num(values.var(axis=0), nan=-1.0)
    units = np.argsort(-variance, kind="stable")[:size].tolist()
    if selected and selected[0] not in units:
        units[-1] = selected[0]
    return sorted(units)


def strongest_pair(r: np.ndarray, units: Sequence[int], unit: int | None = None) -> tuple[int, int]:
    """The two of ``units`` whose correlation (``r``, the matrix over them) is strongest in magnitude,
    an undefined one counting as none; with ``unit`` (one of them), that unit and its strongest partner.
    A single unit pairs with itself."""
    units = list(units)
    if len(units) < 2:
        return units[0], units[0]
    strength = np.nan_to_num(np.abs(r), nan=-1.0)
    np.fill_diagonal(strength, -1.0)
    if unit is not None:
        i = units.index(unit)
        return units[i], units[int(np.argmax(strength[i]))]
    i, j = np.unravel_index(int(np.argmax(strength)), strength.shape)
    return units[i], units[j]
