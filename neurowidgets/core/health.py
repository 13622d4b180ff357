"""The health of every scanned layer: its dead and saturated units and the spread of its firing density."""

from __future__ import annotations

import numpy as np

from .scan import ScanResult

DENSITY_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def health_table(scan: ScanResult) -> dict[str, list]:
    """Per scanned layer: the fractions of dead and of saturated units, and the 10/25/50/75/90th
    percentiles of the units' firing densities (``q10`` … ``q90``).

    ``saturated`` is NaN (not drawn; "not tracked" in ``saturated_text``) for layers whose bounds the
    scan did not track (``saturation_tracked`` False). ``threshold``: the firing threshold of the density.
    """
    table: dict[str, list] = {
        "layer": [], "units": [], "dead": [], "dead_count": [], "saturated": [],
        "saturated_count": [], "saturation_tracked": [], "saturated_text": [], "threshold": [],
        **{f"q{round(q * 100)}": [] for q in DENSITY_QUANTILES},
    }  # fmt: skip
    for layer in scan.layers:
        stats = scan[layer]
        units = stats.num_units
        dead = len(stats.dead())
        tracked = stats.bounds is not None
        saturated = len(stats.saturated()) if tracked else 0
        table["layer"].append(layer)
        table["units"].append(units)
        table["dead"].append(dead / units)
        table["dead_count"].append(dead)
        table["saturated"].append(saturated / units if tracked else float("nan"))
        table["saturated_count"].append(saturated)
        table["saturation_tracked"].append(tracked)
        table["saturated_text"].append(f"{saturated} ({saturated / units:.1%})" if tracked else "not tracked")
        table["threshold"].append(stats.threshold)
        for q, value in zip(DENSITY_QUANTILES, np.quantile(stats.density, DENSITY_QUANTILES), strict=True):
            table[f"q{round(q * 100)}"].append(float(value))
    return table
