"""A standalone HTML report of a scan, to share a finding: it opens in a browser with no kernel and no network.

``report(scan, path)`` writes one file: the layer-health plot, and for each chosen unit its histogram,
statistics and top examples (images as inline PNGs with the firing position outlined, text as the tokens
around the firing token, each shaded by the unit's activation there when the scan kept its examples'
activations; nothing is computed again, and no model is needed). BokehJS is inlined from the installed
``bokeh`` package (no CDN), so the file is about 1.3 MB of BokehJS plus what is shown: O(units × (k +
histogram bins)), whatever the dataset size.
"""

from __future__ import annotations

import base64
import html
import math
import os
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bokeh.embed import file_html
from bokeh.plotting import figure
from bokeh.resources import INLINE

from .core.examples import Examples, unit_activations
from .core.health import health_table
from .core.images import ImageAdapter
from .core.scan import ScanResult, check_scan
from .core.stats import LayerStats
from .core.storage import atomic_file
from .core.text import TextAdapter, scanned_adapter
from .core.unit_stats import unit_summary
from .figures import (
    BINS,
    TOP,
    fit_ranges,
    health_figure,
    health_sources,
    histogram_columns,
    histogram_figure,
    histogram_sources,
)

#: Units shown per layer when ``units`` is not given: those with the highest maximum activation.
DEFAULT_UNITS_PER_LAYER = 3
#: Tokens shown before and after the firing token of a text example.
CONTEXT_BEFORE, CONTEXT_AFTER = 10, 5
#: Longest side of an image example on the page, in CSS pixels.
IMAGE_SIZE = 96

HEALTH_ROOT = "nw-report-health"


def histogram_root(layer: str, unit: int) -> str:
    """The name of the bokeh figure of one unit's histogram; its sources are this name + ``":"`` + the
    role (``figures.BINS``, ``TOP``)."""
    return f"nw-report-hist:{layer}:{unit}"


@dataclass(frozen=True)
class _Unit:
    layer: str
    unit: int
    stats: LayerStats


def report(
    scan: ScanResult,
    path: str | os.PathLike,
    units: Mapping[str, int | Iterable[int]] | Iterable[tuple[str, int]] | None = None,
    data: Any = None,
    *,
    title: str = "neurowidgets report",
    tokenizer: Any = None,
    text: TextAdapter | None = None,
    images: ImageAdapter | None = None,
    k: int = 8,
    layers: str | Iterable[str] | None = None,
    model: Any = None,
) -> Path:
    """Write a standalone HTML report of ``scan`` to ``path``; returns the absolute path.

    units: ``{layer: [unit, ...]}`` or ``[(layer, unit), ...]``; default: in each of ``layers``, the
        :data:`DEFAULT_UNITS_PER_LAYER` units with the highest maximum activation.
    data: the scanned data, indexed as the scan numbered it; with it each unit's top ``k`` examples are
        drawn (``tokenizer`` / ``text`` for text data, ``images`` for how image tensors map to pixels).
        Without it the top examples are listed by index and value.
    layers: the layers of the health plot and of the default units (default: every scanned layer).
    model: the scanned model (or its Probe); with it, each unit of a text scan shows its top logits (the
        tokens its output raises and lowers most along the direct path, ``nw.top_logits``).

    The file is rendered in memory and then written atomically (a temporary file in the same
    directory, renamed over ``path``): on any error nothing is left behind and an existing file at
    ``path`` is untouched. A path that cannot be written raises an ``OSError`` naming it and why.
    """
    check_scan(scan)
    if not isinstance(k, Integral) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    target = Path(path).expanduser().absolute()
    _check_writable(target)
    shown_layers = _layers(scan, layers)
    chosen = _units(scan, units, shown_layers)
    examples = None
    if data is not None:
        text = scanned_adapter(scan.info, text if text is not None else tokenizer)  # as the scan tokenized
        examples = Examples(data, text=text, images=images, start_index=scan.start_index)
    text_scan = "max_length" in scan.info or (examples is not None and examples.is_text)
    tokens = text.tokenizer if text is not None else tokenizer
    logits = _top_logit_sections(model, chosen, tokens) if model is not None and text_scan else {}
    page = _render(scan, shown_layers, chosen, examples, title, int(k), logits).encode("utf-8")
    try:
        with atomic_file(target) as file:
            file.write(page)
    except OSError as error:
        raise _unwritable(target, error) from error
    return target


# -- choosing what to show -------------------------------------------------------------------------


def _layers(scan: ScanResult, layers: str | Iterable[str] | None) -> list[str]:
    if layers is None:
        return scan.layers
    layers = [layers] if isinstance(layers, str) else list(layers)
    for layer in layers:
        scan[layer]  # raises LayerError naming the scanned layers
    return list(dict.fromkeys(layers))


def _units(scan: ScanResult, units: Any, layers: list[str]) -> list[_Unit]:
    if units is None:
        pairs = [(layer, int(u)) for layer in layers for u in _strongest(scan[layer])]
    elif isinstance(units, Mapping):
        pairs = []
        for layer, chosen in units.items():
            chosen = [chosen] if isinstance(chosen, Integral) else list(chosen)
            pairs.extend((layer, u) for u in chosen)
    else:
        pairs = []
        for pair in units:
            if not (isinstance(pair, Sequence) and len(pair) == 2 and isinstance(pair[0], str)):
                raise TypeError(f"units must be {{layer: [unit, ...]}} or [(layer, unit), ...]; got the entry {pair!r}")
            pairs.append((pair[0], pair[1]))
    result: dict[tuple[str, int], _Unit] = {}
    for layer, unit in pairs:
        stats = scan[layer]  # raises LayerError naming the scanned layers
        if not isinstance(unit, Integral) or isinstance(unit, bool):
            raise TypeError(f"a unit is an integer index, got {unit!r} for layer {layer!r}")
        if not 0 <= unit < stats.num_units:
            raise IndexError(
                f"unit {unit} is out of range for layer {layer!r}, which has {stats.num_units} units "
                f"(0…{stats.num_units - 1})"
            )
        result.setdefault((layer, int(unit)), _Unit(layer, int(unit), stats))
    return list(result.values())


def _strongest(stats: LayerStats) -> np.ndarray:
    """The units with the highest maximum (ties: the lower index), strongest first."""
    return np.argsort(-stats.max, kind="stable")[:DEFAULT_UNITS_PER_LAYER]


# -- the page ----------------------------------------------------------------------------------------

STYLE = """
html, body { height: auto; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0;
  padding: 24px 32px; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 14px 0 6px; color: #444; }
.summary { color: #444; margin: 0 0 4px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 2px 12px 2px 0; vertical-align: top; }
th { font-weight: 600; color: #555; }
.unit-head { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.stats td:first-child { color: #555; }
.warn { color: #b00020; font-weight: 600; }
.examples { display: flex; flex-wrap: wrap; gap: 12px; }
.example { margin: 0; width: min-content; }
.text-example { width: 100%; }
.example figcaption, .caption { font-size: 12px; color: #555; }
.image { position: relative; display: inline-block; line-height: 0; border: 1px solid #ccc; }
.image img { image-rendering: pixelated; }
.patch { position: absolute; box-sizing: border-box; border: 2px solid #e15759; }
.text-example .context { font: 13px/1.9 ui-monospace, Menlo, Consolas, monospace; }
.token { padding: 1px 2px; margin-right: 3px; border-radius: 3px; background: #f3f3f3; white-space: pre; }
.token.fire { background: #ffd34d; outline: 1px solid #c99a00; }
.token.fire::after { content: attr(data-value); font-size: 10px; color: #7a5600; margin-left: 3px; }
.cut { color: #999; }
"""

TEMPLATE = """
{% block postamble %}<style>{{ style }}</style>{% endblock %}
{% block contents %}
{% from macros import embed %}
{% for html, root in parts %}{{ html }}{% if root %}{{ embed(roots[root]) }}{% endif %}{% endfor %}
{% endblock %}
"""


def _render(
    scan: ScanResult,
    layers: list[str],
    units: list[_Unit],
    examples: Examples | None,
    title: str,
    k: int,
    logits: Mapping[tuple[str, int], str] | None = None,
) -> str:
    """The whole page as a string (nothing is written here)."""
    table = health_table(_subset(scan, layers))
    health = health_figure(health_sources(table), title="Dead and saturated units")
    health.name = HEALTH_ROOT
    roots = [health]
    parts: list[tuple[str, str | None]] = [(_header(scan, layers, units, title, k), None)]
    parts.append(("<h2>Layer health</h2>" + _layer_table(scan, table), HEALTH_ROOT))
    for chosen in units:
        hist = _histogram_figure(chosen, k)
        roots.append(hist)
        head = f'<section class="unit"><h2>{_e(chosen.layer)} · unit {chosen.unit}</h2><div class="unit-head"><div>'
        extra = (logits or {}).get((chosen.layer, chosen.unit), "")
        tail = f"</div>{_stats_table(chosen.stats, chosen.unit)}</div>{extra}{_examples(chosen, examples, k)}</section>"
        parts.append((head, hist.name))
        parts.append((tail, None))
    variables = {"parts": parts, "style": STYLE}
    return file_html(roots, INLINE, title=title, template=TEMPLATE, template_variables=variables)


def _subset(scan: ScanResult, layers: list[str]) -> ScanResult:
    if layers == scan.layers:
        return scan
    return ScanResult(
        {layer: scan[layer] for layer in layers}, scan.num_examples, scan.ranges, scan.complete, scan.info
    )


def _header(scan: ScanResult, layers: list[str], units: list[_Unit], title: str, k: int) -> str:
    from . import __version__  # here: the package's __init__ may import this module

    ranges = ", ".join(f"{start}–{stop - 1}" for start, stop in scan.ranges)
    model = scan.info.get("model")
    settings = scan.info.get("settings", {})
    about = [f"{scan.num_examples} examples (indices {ranges})"]
    if model:
        about.insert(0, f"model <b>{_e(model)}</b>")
    if "threshold" in settings:
        about.append(f"firing threshold {_f(settings['threshold'])}")
    incomplete = "" if scan.complete else ' <span class="warn">The scan was interrupted: partial statistics.</span>'
    shown = ", ".join(f"{_e(u.layer)}:{u.unit}" for u in units) or "none"
    return (
        f"<header><h1>{_e(title)}</h1>"
        f'<p class="summary">Scan of {" · ".join(about)}; layers {_e(", ".join(layers))}.{incomplete}</p>'
        f'<p class="summary">Units shown (top {k} examples each): {shown}.</p>'
        f'<p class="summary">Written by neurowidgets {_e(__version__)}; opens offline.</p></header>'
    )


def _layer_table(scan: ScanResult, table: dict[str, list]) -> str:
    """The layers of the health ``table`` (see core/health.py), with their module and position grid."""
    rows = []
    for layer, units, dead, saturated, tracked in zip(
        table["layer"], table["units"], table["dead_count"], table["saturated_count"], table["saturation_tracked"],
        strict=True,
    ):  # fmt: skip
        stats = scan[layer]
        grid = "×".join(map(str, stats.positions_shape)) or "1"
        rows.append(
            f"<tr><td>{_e(layer)}</td><td>{_e(stats.module_type or '')}</td><td>{units}</td>"
            f"<td>{grid}</td><td>{dead}</td><td>{saturated if tracked else 'not tracked'}</td></tr>"
        )
    return (
        '<table class="layers"><tr><th>layer</th><th>module</th><th>units</th><th>positions</th>'
        f"<th>dead</th><th>saturated</th></tr>{''.join(rows)}</table>"
    )


def _stats_table(stats: LayerStats, unit: int) -> str:
    summary = unit_summary(stats, unit)
    warnings = {name: summary.pop(name) for name in ("NaN values", "±inf values")}
    cells = [f"<tr><td>{name}</td><td>{_f(v) if isinstance(v, float) else v}</td></tr>" for name, v in summary.items()]
    cells += [f'<tr class="warn"><td>{name}</td><td>{count}</td></tr>' for name, count in warnings.items() if count]
    return f'<table class="stats">{"".join(cells)}</table>'


# -- histogram ---------------------------------------------------------------------------------------


def _histogram_figure(chosen: _Unit, k: int) -> figure:
    """The unit's histogram drawn as the live Distributions view draws it, with its top ``k`` examples."""
    sources = histogram_sources(prefix=histogram_root(chosen.layer, chosen.unit) + ":")
    bins, top, notes = histogram_columns(chosen.stats, [chosen.unit], k)
    sources[BINS].data, sources[TOP].data = bins, top
    plot, current = histogram_figure(sources, caption="▲ the top examples below", width=560, height=260)
    plot.name = histogram_root(chosen.layer, chosen.unit)
    plot.title.text = " · ".join(["Activations over the scanned examples", *notes])
    fit_ranges(lambda model, **properties: model.update(**properties), plot, current, sources, 1)
    return plot


# -- examples ----------------------------------------------------------------------------------------


def _examples(chosen: _Unit, examples: Examples | None, k: int) -> str:
    top = chosen.stats.top_k(chosen.unit)[:k]
    if not top:
        return "<p class='caption'>No example had a finite value for this unit.</p>"
    heading = f"<h3>Top {len(top)} examples</h3>"
    if examples is None:
        rows = "".join(f"<tr><td>{i}</td><td>{p}</td><td>{_f(v)}</td></tr>" for v, i, p in top)
        return (
            f"{heading}<p class='caption'>Pass data= to draw them.</p>"
            f"<table><tr><th>example</th><th>position</th><th>value</th></tr>{rows}</table>"
        )
    indices = [i for _, i, _ in top]
    inputs = examples.batch(indices)
    modality = examples.modality
    if modality == "image":
        pixels = examples.pixels(torch.as_tensor(inputs))
        cards = [_image_card(pixels[n], entry, chosen.stats.positions_shape) for n, entry in enumerate(top)]
        return f'{heading}<div class="examples">{"".join(cards)}</div>'
    if modality == "text":
        tokens = examples.tokens(inputs)
        rows = unit_activations(chosen.stats, chosen.unit, indices, inputs, probe=None)  # None: not kept
        shades = [None] * len(top) if rows is None else _shades(rows)
        cards = [_text_card(tokens[n], entry, chosen.layer, shades[n]) for n, entry in enumerate(top)]
        return f'{heading}<div class="examples">{"".join(cards)}</div>'
    rows = "".join(f"<tr><td>{i}</td><td>{p}</td><td>{_f(v)}</td></tr>" for v, i, p in top)
    return f"{heading}<table><tr><th>example</th><th>position</th><th>value</th></tr>{rows}</table>"


def _image_card(pixels: np.ndarray, entry: tuple[float, int, int], grid: tuple[int, ...]) -> str:
    value, index, position = entry
    height, width = pixels.shape[:2]
    scale = IMAGE_SIZE / max(height, width)
    size = f'width="{round(width * scale)}" height="{round(height * scale)}"'
    patch = where = ""
    if len(grid) == 2:  # a spatial layer: outline the firing position's cell of its grid over the image
        rows, cols = grid
        row, col = divmod(int(position), cols)
        patch = (
            f'<span class="patch" style="left:{100 * col / cols:.4g}%;top:{100 * row / rows:.4g}%;'
            f'width:{100 / cols:.4g}%;height:{100 / rows:.4g}%"></span>'
        )
        where = f" at ({row}, {col})"
    return (
        f'<figure class="example"><div class="image"><img alt="example {index}" {size} '
        f'src="data:image/png;base64,{base64.b64encode(png(pixels)).decode()}">{patch}</div>'
        f"<figcaption>#{index} · {_f(value)}{where}</figcaption></figure>"
    )


def _shades(rows: np.ndarray) -> list[list[tuple[float, str] | None]]:
    """Per row and position, (activation, CSS colour on a scale symmetric about 0 up to the largest
    magnitude shown: red above, blue below), or None where the example has no such position."""
    finite = np.abs(rows[np.isfinite(rows)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    result = []
    for row in rows:
        shades = []
        for value in row.tolist():
            if not math.isfinite(value):
                shades.append(None)
                continue
            alpha = min(1.0, abs(value) / limit)
            colour = "225, 87, 89" if value > 0 else "78, 121, 167"
            shades.append((value, f"rgba({colour}, {alpha:.3f})"))
        result.append(shades)
    return result


def _text_card(
    tokens: list[str], entry: tuple[float, int, int], layer: str, shades: list[tuple[float, str] | None] | None
) -> str:
    value, index, position = entry
    if not 0 <= position < len(tokens):
        raise ValueError(
            f"layer {layer!r}: example {index} fired at token {position}, but it has {len(tokens)} tokens here; "
            "pass the data and the tokenizer (or TextAdapter) the scan used"
        )
    start, stop = max(0, position - CONTEXT_BEFORE), min(len(tokens), position + CONTEXT_AFTER + 1)
    spans = []
    for p in range(start, stop):
        shade = shades[p] if shades is not None and p < len(shades) else None
        style = "" if shade is None else f' title="{_f(shade[0])}" style="background: {shade[1]}"'
        if p == position:
            spans.append(f'<span class="token fire" data-value="{_f(value)}"{style}>{_e(tokens[p])}</span>')
        else:
            spans.append(f'<span class="token"{style}>{_e(tokens[p])}</span>')
    before = '<span class="cut">…</span>' if start > 0 else ""
    after = '<span class="cut">…</span>' if stop < len(tokens) else ""
    return (
        f'<div class="example text-example"><div class="caption">#{index} · {_f(value)} at token {position}</div>'
        f'<div class="context">{before}{"".join(spans)}{after}</div></div>'
    )


def png(rgba: np.ndarray) -> bytes:
    """A (H, W, 4) uint8 array as PNG bytes (8-bit RGBA, no filter): enough for small thumbnails,
    without depending on Pillow."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    height, width = rgba.shape[:2]
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"png takes (height, width, 4) uint8 pixels, got shape {rgba.shape}")
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rgba.reshape(height, width * 4)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _f(value: float) -> str:
    value = float(value)
    return str(value) if not math.isfinite(value) else f"{value:.4g}"


# -- writing -----------------------------------------------------------------------------------------


def _check_writable(path: Path) -> None:
    """Fail before rendering on a path that can never be written."""
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the report to {path}: it is a directory")
    parent = path.parent
    if not parent.exists():
        raise FileNotFoundError(f"cannot write the report to {path}: the directory {parent} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write the report to {path}: {parent} is not a directory")


def _unwritable(path: Path, error: OSError) -> OSError:
    """The same kind of OSError, saying which report could not be written and why."""
    message = f"cannot write the report to {path}: {error.strerror or error}"
    return type(error)(message) if error.errno is None else type(error)(error.errno, message)


# -- top logits of text units (issue 12, item 1) -------------------------------------------------------

TOP_LOGITS = 8


def _top_logit_sections(model: Any, units: list[_Unit], tokenizer: Any) -> dict[tuple[str, int], str]:
    """Per unit, the tokens its output raises and lowers most (escaped), or why the model has none."""
    from .core.lm import top_logits
    from .core.probe import Probe

    probe = model if isinstance(model, Probe) else Probe(model)
    by_layer: dict[str, list[_Unit]] = {}
    for chosen in units:
        by_layer.setdefault(chosen.layer, []).append(chosen)
    result = {}
    for layer, chosen in by_layer.items():
        ids = [c.unit for c in chosen]
        try:
            found = top_logits(probe, layer, ids, k=TOP_LOGITS, tokenizer=tokenizer, width=chosen[0].stats.num_units)
        except (ValueError, LookupError) as error:
            note = f"<p class='caption logits'>Top logits: {_e(error)}</p>"
            result.update({(layer, unit): note for unit in ids})
            continue
        for unit in ids:
            raised, lowered = found[unit]
            rows = "".join(
                f"<tr><th>{label}</th><td>"
                + " ".join(f"<span class='token'>{_e(text)}</span> {_f(value)}" for _, text, value in entries)
                + "</td></tr>"
                for label, entries in (("raises", raised), ("lowers", lowered))
            )
            result[(layer, unit)] = f"<div class='logits'><h3>Top logits</h3><table>{rows}</table></div>"
    return result
