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
# The same, always float32: values far below float16's smallest normal (gradients of 1e-6), or beyond
# its largest (a scan's max), and numbers shown exactly (tooltips, probabilities).
FLOAT32_ARRAY = {
    "to_json": lambda value, widget: None if value is None else encode(value, "float32"),
    "from_json": array_from_json,
}


# -- the messages ------------------------------------------------------------------------------------
#
# Page → kernel: ``{type: "request", id, kind, args}``; kernel → page: ``{type: "response", id, ok,
# error?, cancelled?, data?}``, preceded by parts ``{type: "progress", id, data}`` when a background job
# answers the request (widgets/base.py), and a BokehHost's ``{type: "patch", patches, buffer_paths}``. The
# request kinds and their arguments are the ``@handles(kind)`` methods of the widgets (their names and
# annotations): js/lib/schema.ts is generated from them (``python -m neurowidgets.widgets.wire``) and
# js/lib/requests.ts types every request by it; tests/widgets/test_wire_schema.py fails when the
# generated file and the handlers differ.

ENVELOPE = """\
export interface RequestMessage<K extends RequestKind = RequestKind> {
  type: "request";
  id: number | string;
  kind: K;
  args: RequestArgs[K];
}

export interface ResponseMessage {
  type: "response";
  id: number | string;
  ok: boolean;
  error?: string;
  cancelled?: boolean; // a background job's answer: a newer request of its kind (or shutdown) cancelled it
  data?: unknown;
}

/** A part of the answer to a request that a background job answers: its progress, before the response. */
export interface ProgressMessage {
  type: "progress";
  id: number | string;
  data: unknown;
}

export interface PatchMessage {
  type: "patch";
  patches: Record<string, Record<string, unknown>>;
  buffer_paths: (string | number)[][];
}
"""

_TYPESCRIPT = {int: "number", float: "number", str: "string", bool: "boolean"}


def _typescript(annotation: Any) -> str:
    """The TypeScript type of a handler argument's annotation (an int, a list of floats, ...)."""
    import typing

    origin, args = typing.get_origin(annotation) or annotation, typing.get_args(annotation)
    if annotation in _TYPESCRIPT:
        return _TYPESCRIPT[annotation]
    if origin is list:
        return f"{_typescript(args[0]) if args else 'unknown'}[]"
    if origin is dict:
        value = _typescript(args[1]) if args else "unknown"
        return f"Record<string, {value}>"
    return "unknown"


def requests() -> dict[str, dict[str, str]]:
    """Every request kind a widget of the package answers, with its arguments' TypeScript types, read
    from the ``@handles`` methods of every widget module; one kind means the same arguments everywhere."""
    import importlib
    import inspect
    import pkgutil
    import typing

    from . import __name__ as package
    from . import __path__ as path

    kinds: dict[str, tuple[dict[str, str], str]] = {}
    for module in sorted(info.name for info in pkgutil.iter_modules(path)):
        for cls in vars(importlib.import_module(f"{package}.{module}")).values():
            if not isinstance(cls, type):
                continue
            for member in vars(cls).values():
                kind = getattr(member, "_handles", None)
                if kind is None:
                    continue
                hints = typing.get_type_hints(member)
                parameters = list(inspect.signature(member).parameters)[1:]  # after self
                args = {name: _typescript(hints.get(name)) for name in parameters}
                where = f"{cls.__module__}.{cls.__qualname__}.{member.__name__}"
                if kind in kinds and kinds[kind][0] != args:
                    raise TypeError(
                        f"request {kind!r} takes {args} in {where} but {kinds[kind][0]} in {kinds[kind][1]}"
                    )
                kinds.setdefault(kind, (args, where))
    return {kind: kinds[kind][0] for kind in sorted(kinds)}


def typescript_schema() -> str:
    """The text of js/lib/schema.ts."""
    lines = [
        "// Generated from the widgets' @handles methods by `python -m neurowidgets.widgets.wire > js/lib/schema.ts`:",
        "// do not edit (tests/widgets/test_wire_schema.py checks it is current).",
        "",
        "/** The arguments of each request kind the kernel answers. */",
        "export interface RequestArgs {",
    ]
    for kind, args in requests().items():
        fields = "; ".join(f"{name}: {kind_type}" for name, kind_type in args.items())
        lines.append(f"  {kind}: {{ {fields} }};" if fields else f"  {kind}: Record<string, never>;")
    lines += ["}", "", "export type RequestKind = keyof RequestArgs;", "", ENVELOPE]
    return "\n".join(lines)


if __name__ == "__main__":
    print(typescript_schema(), end="")
