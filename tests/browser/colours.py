"""The test's own reference for js/lib/colors.ts: what colour a value must be drawn in."""

from __future__ import annotations

import math

# ColorBrewer RdBu reversed (negative blue, positive red), the stops of js/lib/colors.ts.
STOPS = [
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
]
NAN = (255, 0, 255)


def diverging(value: float, limit: float, size: int = 257) -> tuple[int, int, int]:
    if math.isnan(value):
        return NAN
    t = (value / limit + 1) / 2 if limit > 0 else 0.5
    i = max(0, min(size - 1, round(t * (size - 1))))
    s = i / (size - 1) * (len(STOPS) - 1)
    lo = min(math.floor(s), len(STOPS) - 2)
    f = s - lo
    return tuple(round(STOPS[lo][c] * (1 - f) + STOPS[lo + 1][c] * f) for c in range(3))


def close(a, b, tolerance: int = 6) -> bool:
    """Colours equal up to the rounding of float16 values on the wire (a LUT step or two)."""
    return all(abs(int(x) - int(y)) <= tolerance for x, y in zip(a, b, strict=True))
