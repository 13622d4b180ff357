"""One unit's statistics from a scan, as the views and the report show them."""

from __future__ import annotations

import numpy as np

from .stats import LayerStats


def finite_histogram(stats: LayerStats, unit: int) -> tuple[np.ndarray, np.ndarray]:
    """The unit's histogram (counts, edges), an infinite first / last edge replaced by the unit's
    smallest / largest value (the outer bins hold values beyond ±2**20: their finite extent is the data's)."""
    counts, edges = stats.histogram(unit)
    edges = np.array(edges, dtype=np.float64)
    if edges.size:
        edges[0] = float(stats.min[unit]) if np.isinf(edges[0]) else edges[0]
        edges[-1] = float(stats.max[unit]) if np.isinf(edges[-1]) else edges[-1]
    return counts, edges


def non_finite(stats: LayerStats, unit: int) -> str:
    """Like "3 NaN, 1 inf" for a unit that had non-finite values in the scan, else ""."""
    counts = [(int(stats.nan_count[unit]), "NaN"), (int(stats.inf_count[unit]), "inf")]
    return ", ".join(f"{n} {what}" for n, what in counts if n)


def unit_summary(stats: LayerStats, unit: int) -> dict[str, float]:
    """The unit's finite values, firing density, mean, std, min and max, and its NaN and ±inf values."""
    return {
        "finite values": int(stats.count[unit]),
        "firing density": float(stats.density[unit]),
        "mean": float(stats.mean[unit]),
        "std": float(stats.std[unit]),
        "min": float(stats.min[unit]),
        "max": float(stats.max[unit]),
        "NaN values": int(stats.nan_count[unit]),
        "±inf values": int(stats.inf_count[unit]),
    }
