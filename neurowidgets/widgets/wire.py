"""The one codec for arrays on the wire: numpy/torch → {dtype, shape, data: bytes} and back.

Its twin is js/lib/codec.ts. Activation values travel as float16 (2 bytes a value) whenever every
finite value fits in float16's range, else float32; pixels as uint8. Never JSON lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

FLOAT16_MAX = float(np.finfo(np.float16).max)
DTYPES = ("float16", "float32", "uint8", "int32")


def to_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach()
        if array.dtype == torch.bfloat16:  # numpy has no bfloat16
            array = array.float()
        array = array.cpu().numpy()
    return np.asarray(array)


def encode(array: Any, dtype: str = "auto") -> dict[str, Any]:
    """Pack an array for a synced trait.

    ``dtype="auto"``: uint8 stays uint8 (pixels), other integers become int32, and floats become
    float16 when every finite value fits, else float32.
    """
    values = to_numpy(array)
    if dtype == "auto":
        if values.dtype == np.uint8:
            dtype = "uint8"
        elif values.dtype.kind in "iub":
            dtype = "int32"
        else:
            finite = values[np.isfinite(values)]
            fits = finite.size == 0 or float(np.abs(finite).max()) <= FLOAT16_MAX
            dtype = "float16" if fits else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"wire dtype must be one of {DTYPES}, got {dtype!r}")
    values = np.ascontiguousarray(values, dtype=dtype)
    return {"dtype": dtype, "shape": list(values.shape), "data": values.tobytes()}


def decode(message: dict[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode` (``data`` may be bytes or the memoryview the front-end sends)."""
    dtype = message["dtype"]
    if dtype not in DTYPES:
        raise ValueError(f"wire dtype must be one of {DTYPES}, got {dtype!r}")
    values = np.frombuffer(bytes(message["data"]), dtype=dtype)
    return values.reshape(message["shape"])


def array_to_json(value: Any, widget: Any) -> dict[str, Any] | None:
    return None if value is None else encode(value)


def array_from_json(value: dict[str, Any] | None, widget: Any) -> np.ndarray | None:
    return None if value is None else decode(value)


# Tag metadata for a synced array trait: ``Any(None, allow_none=True).tag(sync=True, **ARRAY)``.
ARRAY = {"to_json": array_to_json, "from_json": array_from_json}
