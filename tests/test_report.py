"""nw.report: a standalone HTML file whose numbers are the scan's, whose dataset text is escaped, which
names no remote URL of its own, is written atomically, and whose size follows what is shown."""

from __future__ import annotations

import base64
import errno
import gzip
import html
import json
import os
import re
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import bokeh
import numpy as np
import pytest
import torch

import neurowidgets as nw
from neurowidgets.core.images import ImageAdapter
from neurowidgets.figures import BINS, DEAD, TOP
from neurowidgets.reporting import DEFAULT_UNITS_PER_LAYER, histogram_root, png, report

LAYERS = ["relu1", "relu2", "fc1", "relu3"]
BOKEHJS = Path(bokeh.__file__).parent / "server" / "static" / "js" / "bokeh.min.js"

# Every URL-like string in the inlined BokehJS (bokeh 3.9's bokeh.min.js, byte for byte the installed
# package's file), and why none of them is fetched by a report. The report's own markup, styles and
# plot JSON hold no URL at all (test_no_remote_reference_outside_bokehjs).
BOKEHJS_URLS = {
    # XML namespace names given to createElementNS / xmlns: identifiers, never fetched.
    "http://www.w3.org/2000/svg": "SVG namespace",
    "http://www.w3.org/1999/xhtml": "XHTML namespace",
    "http://www.w3.org/1998/Math/MathML": "MathML namespace",
    # Licence headers of bundled libraries (comments and a CSS comment string).
    "http://www.foretagsplatsen.se": "numbro licence header",
    "http://jquery.org/license": "jQuery licence header",
    "https://tabler.io": "Tabler Icons licence header",
    "https://github.com/tabler/tabler-icons/blob/master/LICENSE": "Tabler Icons licence header",
    # Code of models a report never contains (test_no_model_that_loads_a_remote_resource):
    "https://bokeh.org/": "the toolbar logo's link (report figures have no toolbar)",
    "https://docs.bokeh.org/en/latest/docs/user_guide/interaction/tools.html": "HelpTool's link",
    "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js": "MathJax loader, for TeX / MathML text",
    "https://cdn.jsdelivr.net/npm/@tabler/icons-webfont@latest": "TablerIcon's web font",
    "https://maps.googleapis.com/maps/api/js?v=": "GMapPlot's loader",
    "https://developers.google.com/maps/documentation/javascript/get-api-key": "GMapPlot's error message",
}
# The models whose BokehJS code uses the URLs above (besides namespaces and licences).
REMOTE_MODELS = {"GMapPlot", "GMap", "TeX", "MathML", "Ascii", "TablerIcon", "HelpTool"}
URL = re.compile(r"https?://[^\s\"'`<>()\\$]+")


@pytest.fixture(scope="module")
def digits_scan(digits):
    return nw.scan(digits.model, digits.test_images, LAYERS, k=8, progress=False, cache=False)


@pytest.fixture(scope="module")
def digits_report(digits, digits_scan, tmp_path_factory):
    units = {"relu1": [2, 5], "relu3": [0, 18]}
    path = report(digits_scan, tmp_path_factory.mktemp("report") / "digits.html", units, data=digits.test_images)
    return path, path.read_text(encoding="utf-8")


# -- reading a report ------------------------------------------------------------------------------


def docs_json(page: str) -> dict:
    """The bokeh document JSON embedded in the page (what BokehJS draws)."""
    blocks = re.findall(r'<script type="application/json" id="[^"]+">\s*(.*?)\s*</script>', page, re.S)
    assert len(blocks) == 1
    return json.loads(html.unescape(blocks[0]))


def models(node, name=None):
    """Every serialized bokeh model (of type ``name``) anywhere in the JSON."""
    if isinstance(node, dict):
        if node.get("type") == "object" and name in (None, node.get("name")):
            yield node
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return
    for child in children:
        yield from models(child, name)


def source(page_json: dict, name: str) -> dict[str, list]:
    found = [m for m in models(page_json, "ColumnDataSource") if m["attributes"].get("name") == name]
    assert len(found) == 1, name
    return {key: _plain(value) for key, value in found[0]["attributes"]["data"]["entries"]}


def _plain(value):
    """A serialized column as a list (bokeh sends numpy arrays as base64 ``ndarray`` objects, gzipped
    when that is smaller)."""
    if isinstance(value, dict) and value.get("type") == "ndarray":
        raw = base64.b64decode(value["array"]["data"])
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        return np.frombuffer(raw, dtype=value["dtype"]).reshape(value["shape"]).tolist()
    return value


def bokehjs_block(page: str) -> tuple[int, int]:
    """(start, end) of the inline <script> that carries BokehJS."""
    start = page.index("/* BEGIN bokeh.min.js */")
    start = page.rindex("<script", 0, start)
    return start, page.index("</script>", start) + len("</script>")


def unit_section(page: str, layer: str, unit: int) -> str:
    head = f'<section class="unit"><h2>{html.escape(layer)} · unit {unit}</h2>'
    start = page.index(head)
    return page[start : page.index("</section>", start)]


class TextOf(HTMLParser):
    """The text content of the elements with class ``cls`` (entities decoded, as a browser shows it)."""

    def __init__(self, cls: str):
        super().__init__()
        self.cls, self.depth, self.texts = cls, 0, []

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
        elif self.cls in (dict(attrs).get("class") or "").split():
            self.depth = 1
            self.texts.append("")

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.texts[-1] += data


def texts_of(page: str, cls: str) -> list[str]:
    parser = TextOf(cls)
    parser.feed(page)
    return parser.texts


def read_png(data: bytes) -> np.ndarray:
    """Decode the PNGs :func:`png` writes (8-bit RGBA, filter 0) back to (H, W, 4) uint8."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        assert struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 6)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + width * 4)
    assert not rows[:, 0].any()
    return rows[:, 1:].reshape(height, width, 4)


# -- contents ----------------------------------------------------------------------------------------


def test_the_plots_carry_the_scans_histograms_and_top_values(digits_scan, digits_report):
    _, page = digits_report
    page_json = docs_json(page)
    health = source(page_json, DEAD)
    assert health["layer"] == LAYERS
    assert health["dead_count"] == [len(digits_scan[layer].dead()) for layer in LAYERS]
    for layer, unit in [("relu1", 2), ("relu1", 5), ("relu3", 0), ("relu3", 18)]:
        stats = digits_scan[layer]
        counts, edges = stats.histogram(unit)
        bars = source(page_json, f"{histogram_root(layer, unit)}:{BINS}")
        shown = counts > 0
        assert bars["count"] == counts[shown].tolist()
        assert bars["left"] == edges[:-1][shown].tolist()  # the digits CNN stays within ±2**20: no inf edge
        assert bars["right"] == edges[1:][shown].tolist()
        assert sum(bars["count"]) == stats.count[unit]
        assert bars["top"] == bars["count"]  # drawn on the value axis, as the live Distributions view draws it
        marks = source(page_json, f"{histogram_root(layer, unit)}:{TOP}")
        assert marks["x"] == pytest.approx([value for value, _, _ in stats.top_k(unit)])
        assert marks["example"] == [index for _, index, _ in stats.top_k(unit)]
        section = unit_section(page, layer, unit)
        for name, value in [("firing density", stats.density), ("mean", stats.mean), ("max", stats.max)]:
            assert f"<td>{name}</td><td>{value[unit]:.4g}</td>" in section
        assert "NaN values" not in section and "inf values" not in section


def test_nan_and_inf_values_are_counted_and_the_outer_edges_clipped(tmp_path):
    model = torch.nn.Sequential(torch.nn.Identity())
    nan, inf = float("nan"), float("inf")
    data = torch.tensor([[-3e6, 1.0, nan], [5e6, 2.0, nan], [nan, inf, nan], [0.5, 4.0, nan]])
    scan = nw.scan(model, data, ["0"], k=2, progress=False, cache=False)
    page = report(scan, tmp_path / "r.html", {"0": [0, 1, 2]}).read_text()
    bars = source(docs_json(page), f"{histogram_root('0', 0)}:{BINS}")
    assert bars["left"][0] == -3e6 and bars["right"][-1] == 5e6  # the ±inf outer bins end at min / max
    assert "<td>NaN values</td><td>1</td>" in unit_section(page, "0", 0)
    assert "<td>±inf values</td><td>1</td>" in unit_section(page, "0", 1)
    assert "NaN values" not in unit_section(page, "0", 1)
    assert "<td>NaN values</td><td>4</td>" in unit_section(page, "0", 2)  # no finite value at all
    assert "No example had a finite value" in unit_section(page, "0", 2)
    assert source(docs_json(page), f"{histogram_root('0', 2)}:{BINS}")["count"] == []


def test_image_examples_are_inline_pngs_with_the_firing_cell_outlined(digits, digits_scan, digits_report):
    _, page = digits_report
    section = unit_section(page, "relu1", 2)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', section)
    patches = re.findall(r'<span class="patch" style="left:([\d.]+)%;top:([\d.]+)%;width:12.5%;height:12.5%"', section)
    top = digits_scan["relu1"].top_k(2)
    assert len(images) == len(patches) == len(top) == 8
    for data, (left, up), (_, index, position) in zip(images, patches, top, strict=True):
        expected = ImageAdapter().to_pixels(digits.test_images[index : index + 1])[0]
        assert np.array_equal(read_png(base64.b64decode(data)), expected)
        row, col = divmod(position, 8)  # relu1 is an 8×8 grid over the 8×8 image
        assert (float(left), float(up)) == (12.5 * col, 12.5 * row)
    assert 'class="patch"' not in unit_section(page, "relu3", 18)  # one position: the whole image


def test_png_round_trips_any_size():
    rgba = np.random.default_rng(0).integers(0, 256, (5, 11, 4), dtype=np.uint8)
    assert np.array_equal(read_png(png(rgba)), rgba)
    with pytest.raises(ValueError, match=r"\(height, width, 4\)"):
        png(rgba[..., :3])


def test_default_units_are_each_layers_strongest(digits_scan, tmp_path):
    page = report(digits_scan, tmp_path / "r.html", layers=["relu2", "fc1"]).read_text()
    (document,) = docs_json(page).values()
    roots = {root["attributes"].get("name") for root in document["roots"]}
    for layer in ("relu2", "fc1"):
        expected = np.argsort(-digits_scan[layer].max, kind="stable")[:DEFAULT_UNITS_PER_LAYER]
        assert {histogram_root(layer, int(u)) for u in expected} <= roots
    assert len(roots) == 1 + 2 * DEFAULT_UNITS_PER_LAYER  # the health plot and the histograms
    assert source(docs_json(page), DEAD)["layer"] == ["relu2", "fc1"]
    assert "Pass data= to draw them." in page  # no data: the top examples are listed by index


def test_text_from_the_dataset_is_escaped(minilm, tmp_path):
    model, tokenizer = minilm
    hostile = "<script>alert(1)</script>"
    texts = [hostile, "a plain sentence about lists", f"{hostile} again & <b>more</b>"]
    layer = "encoder.layer.0.intermediate"
    scan = nw.scan(model, texts, [layer], tokenizer=tokenizer, k=3, progress=False, cache=False)
    units = [u for u in range(scan[layer].num_units) if scan[layer].top_k(u)[0][1:] in [(0, p) for p in range(6, 12)]]
    assert units, "no unit fires most on the hostile text within the shown window of its tokens"
    title = "<img src=x onerror=alert(2)> report"
    page = report(scan, tmp_path / "r.html", {layer: units[:2]}, data=texts, tokenizer=tokenizer, title=title)
    page = page.read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>more" not in page
    assert f"<h1>{html.escape(title)}</h1>" in page
    contexts = texts_of(unit_section(page, layer, units[0]), "context")
    assert hostile in contexts[0]  # the tokens side by side read as the dataset's text
    start, end = bokehjs_block(page)
    assert len(re.findall(r"<script\b", page[:start] + page[end:])) == 3  # log level, plot JSON, embed


def test_text_tokens_are_shaded_by_the_activations_the_scan_kept(tiny_lm, lm_tokenizer, tmp_path):
    from neurowidgets.reporting import CONTEXT_AFTER, CONTEXT_BEFORE, _f

    model, layer = tiny_lm("gpt2"), "transformer.h.0.mlp.act"
    words = "the scan keeps what a feature card needs so that no model runs again to draw it".split()
    texts = [" ".join(words[: 3 + 2 * i]) for i in range(8)]  # texts of different lengths
    settings = dict(tokenizer=lm_tokenizer, max_length=24, k=3, progress=False, cache=False)
    kept = nw.scan(model, texts, layer, **settings)
    plain = nw.scan(model, texts, layer, keep_activations=False, **settings)
    adapter = nw.TextAdapter(lm_tokenizer, max_length=24)
    for unit in (1, 40, 200):
        page = report(kept, tmp_path / "kept.html", {layer: [unit]}, data=texts, text=adapter).read_text()
        context = re.search(r'<div class="context">(.*?)</div>', unit_section(page, layer, unit)).group(1)
        value, index, position = kept[layer].top_k(unit)[0]
        row = kept[layer].activations(unit, [index])[0]
        tokens = adapter.tokens(texts[index])
        start, stop = max(0, position - CONTEXT_BEFORE), min(len(tokens), position + CONTEXT_AFTER + 1)
        assert re.findall(r'title="([^"]*)"', context) == [_f(x) for x in row[start:stop]]
        assert _f(row[position]) == _f(np.float16(value))  # the firing token's own value, kept as float16
        page = report(plain, tmp_path / "plain.html", {layer: [unit]}, data=texts, text=adapter).read_text()
        assert "title=" not in unit_section(page, layer, unit)  # nothing kept: tokens as before, no model run


# -- nothing remote ------------------------------------------------------------------------------------


def test_bokehjs_is_the_installed_packages_own(digits_report):
    _, page = digits_report
    start, end = bokehjs_block(page)
    assert BOKEHJS.read_text(encoding="utf-8").strip() in page[start:end]
    assert page.count("/* BEGIN ") == 1  # BokehJS's core alone: no widgets, GL or MathJax bundle


def test_no_remote_reference_outside_bokehjs(digits_report):
    _, page = digits_report
    start, end = bokehjs_block(page)
    rest = page[:start] + page[end:]
    assert not re.search(r"[a-z][a-z0-9+.-]*://", rest, re.I)  # no scheme:// at all
    assert not re.search(r"@import|url\(", rest, re.I)
    attributes = re.findall(r"\b(?:src|href|srcset|action|poster|data)\s*=\s*[\"']?([^\"'\s>]*)", rest, re.I)
    assert attributes and all(value.startswith("data:image/png;base64,") for value in attributes)


def test_the_urls_inside_bokehjs_are_the_pinned_inert_ones(digits_report):
    _, page = digits_report
    start, end = bokehjs_block(page)
    found = set(URL.findall(page[start:end]))
    assert found <= set(BOKEHJS_URLS), f"new URL strings in BokehJS: {found - set(BOKEHJS_URLS)}"
    assert "http://www.w3.org/2000/svg" in found  # the pattern does find them


def test_no_model_that_loads_a_remote_resource(digits_report):
    _, page = digits_report
    names = {m["name"] for m in models(docs_json(page))}
    assert {"Figure", "Quad", "HoverTool"} <= names
    assert not names & REMOTE_MODELS
    figures = list(models(docs_json(page), "Figure"))
    assert figures and all(f["attributes"]["toolbar_location"] is None for f in figures)  # no logo link


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "error", "reason"),
    [
        ("missing/r.html", FileNotFoundError, "does not exist"),
        (".", IsADirectoryError, "is a directory"),
        ("file.txt/r.html", NotADirectoryError, "is not a directory"),
    ],
)
def test_a_path_that_cannot_be_written(digits_scan, tmp_path, where, error, reason):
    (tmp_path / "file.txt").write_text("x")
    path = tmp_path / where
    with pytest.raises(error, match=reason) as raised:
        report(digits_scan, path, {"relu1": [0]})
    assert str(path.absolute()) in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.parametrize("fails", ["open", "replace"])
def test_a_failed_write_leaves_nothing_and_keeps_the_old_report(digits_scan, tmp_path, monkeypatch, fails):
    path = tmp_path / "r.html"
    path.write_text("the previous report")
    real = getattr(os, fails)

    def refuse(target, *args, **kwargs):
        if str(tmp_path) in str(target):  # a read-only directory (as root, chmod would not stop us)
            raise OSError(errno.EROFS, "Read-only file system")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(os, fails, refuse)
    with pytest.raises(OSError, match=r"cannot write the report to .*r\.html: Read-only file system"):
        report(digits_scan, path, {"relu1": [0]})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left behind
    assert path.read_text() == "the previous report"


def test_a_layer_the_scan_lacks(digits_scan, tmp_path):
    for kwargs in ({"units": {"conv9": [0]}}, {"units": [("conv9", 0)]}, {"layers": ["relu1", "conv9"]}):
        with pytest.raises(nw.LayerError, match=r"'conv9' was not scanned; scanned: \['relu1', 'relu2', 'fc1'"):
            report(digits_scan, tmp_path / "r.html", **kwargs)
    assert not list(tmp_path.iterdir())


def test_a_unit_the_layer_lacks(digits_scan, tmp_path):
    with pytest.raises(IndexError, match=r"unit 8 is out of range for layer 'relu1', which has 8 units \(0…7\)"):
        report(digits_scan, tmp_path / "r.html", {"relu1": [0, 8]})
    with pytest.raises(IndexError, match="unit -1 is out of range"):
        report(digits_scan, tmp_path / "r.html", [("relu1", -1)])
    with pytest.raises(TypeError, match="a unit is an integer index, got '3'"):
        report(digits_scan, tmp_path / "r.html", {"relu1": ["3"]})
    with pytest.raises(TypeError, match=r"units must be \{layer: \[unit, ...\]\}"):
        report(digits_scan, tmp_path / "r.html", ["relu1"])
    assert not list(tmp_path.iterdir())


# -- size --------------------------------------------------------------------------------------------


def test_the_size_follows_what_is_shown_not_the_dataset(digits, tmp_path):
    units = {"relu1": [2, 5], "relu2": [9], "relu3": [18]}
    sizes = {}
    for n in (100, 449):
        images = digits.test_images[:n]
        scan = nw.scan(digits.model, images, ["relu1", "relu2", "relu3"], k=8, progress=False, cache=False)
        sizes[n] = report(scan, tmp_path / f"{n}.html", units, data=images).stat().st_size
    assert abs(sizes[449] - sizes[100]) < 0.01 * sizes[100]
    bokehjs = BOKEHJS.stat().st_size
    assert bokehjs < sizes[100] < bokehjs + 4 * 30_000  # BokehJS, then about 12 kB per unit shown
