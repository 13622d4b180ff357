"""AttentionHeads in JupyterLab, linked to a text explorer: the heads drawn on one canvas with the kernel's
patterns (pixels read back), a click on a head enlarges it, hovering a token tints the keys its row
attends to, a click on a token or a cell selects that position (kernel and explorer), the block picker."""

from __future__ import annotations

import json
import math
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent

CELLS = [
    f"import sys, json; sys.path.insert(0, {str(TESTS)!r})\n"
    "import neurowidgets as nw\n"
    "from neurowidgets.widgets import AttentionHeads\n"
    "from language_models import build, tokenizer\n"
    "tok = tokenizer()\n"
    "model = build('gpt2', tok, size='tiny')",
    "explorer = nw.explore(model, ['The cat sat on the mat because it was warm', 'Dogs <b>bark</b> at night.'], "
    "tokenizer=tok)\n"
    "heads = AttentionHeads(model, 'unused', tok).link(explorer)\nheads",
    "long = AttentionHeads(model, ' '.join(['word'] * 600), tok)  # past the context of 512 tokens\nlong",
]

# Viridis, the stops of js/lib/colors.ts's sequential scale (attention weights on [0, 1]).
VIRIDIS = [
    (68, 1, 84), (72, 36, 117), (65, 68, 135), (53, 95, 141), (42, 120, 142), (33, 145, 140),
    (34, 168, 132), (68, 191, 112), (122, 209, 81), (189, 223, 38), (253, 231, 37),
]  # fmt: skip


def viridis(value: float, size: int = 257) -> tuple[int, ...]:
    i = max(0, min(size - 1, round(value * (size - 1))))
    s = i / (size - 1) * (len(VIRIDIS) - 1)
    lo = min(math.floor(s), len(VIRIDIS) - 2)
    f = s - lo
    return tuple(round(VIRIDIS[lo][c] * (1 - f) + VIRIDIS[lo + 1][c] * f) for c in range(3))


def close(a, b, tolerance: int = 6) -> bool:
    return all(abs(int(x) - int(y)) <= tolerance for x, y in zip(a, b, strict=True))


def kernel_json(lab, expr: str):
    return json.loads(lab.eval(f"print(json.dumps({expr}))"))


def geometry(canvas) -> dict:
    return json.loads(canvas.get_attribute("data-geometry"))


def origin(g: dict, head: int) -> tuple[float, float]:
    index = 0 if g["mode"] == "head" else head
    col, row = index % g["cols"], index // g["cols"]
    return col * (g["size"] + g["gap"]), row * (g["size"] + g["gap"] + g["label"]) + g["label"]


def cell_centre(g: dict, head: int, q: int, k: int) -> tuple[int, int]:
    x, y = origin(g, head)
    step = g["size"] / g["tokens"]
    return int(x + (k + 0.5) * step), int(y + (q + 0.5) * step)


def pixels(canvas, points: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    return [
        tuple(p)
        for p in canvas.evaluate(
            """(c, points) => points.map(
                ([x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)))""",
            points,
        )
    ]


def check_drawn(lab, canvas, heads: list[int], sample: int | None = None, name: str = "heads") -> None:
    """Every cell of the drawn heads (or ``sample`` of them) is the viridis colour of the kernel's weight."""
    patterns = kernel_json(lab, f"{name}.patterns.astype(float).tolist()")
    g = geometry(canvas)
    n = g["tokens"]
    assert n == len(patterns[0])
    cells = [(h, q, k) for h in heads for q in range(n) for k in range(n)]
    if sample is not None:
        cells = cells[:: max(1, len(cells) // sample)]
    drawn = pixels(canvas, [cell_centre(g, h, q, k) for h, q, k in cells])
    for (h, q, k), colour in zip(cells, drawn, strict=True):
        assert close(colour, viridis(patterns[h][q][k])), (h, q, k, patterns[h][q][k], colour)


def test_heads_on_one_canvas_click_hover_and_block(lab):
    page = lab.page
    lab.run_notebook("attention.ipynb", CELLS)
    widget = page.locator(".nw-attention").first
    canvas = widget.locator("canvas.nw-attn-canvas")
    canvas.wait_for()
    widget.scroll_into_view_if_needed()
    page.wait_for_function(
        "c => c.dataset.geometry && JSON.parse(c.dataset.geometry).heads > 0", arg=canvas.element_handle()
    )
    n_heads = int(lab.eval("print(heads.heads)"))
    assert geometry(canvas)["mode"] == "grid" and geometry(canvas)["heads"] == n_heads
    check_drawn(lab, canvas, list(range(n_heads)))
    assert widget.locator(".nw-lm-token").all_inner_texts() == kernel_json(lab, "heads.tokens")
    assert widget.evaluate("w => w.querySelector('b, script') === null")  # tokens never became HTML
    lab.screenshot(widget, "attention/grid.png")

    # A click on head 2 enlarges it.
    g = geometry(canvas)
    x, y = cell_centre(g, 2, 4, 1)
    canvas.click(position={"x": x, "y": y})
    lab.poll("heads.head", "2")
    page.wait_for_function("c => JSON.parse(c.dataset.geometry).mode === 'head'", arg=canvas.element_handle())
    check_drawn(lab, canvas, [2])

    # Hovering token 5 tints the keys its row attends to in head 2, as much as it attends to them.
    widget.locator(".nw-lm-token").nth(5).hover()
    row = kernel_json(lab, "heads.patterns[2, 5].astype(float).tolist()")
    tints = widget.evaluate("w => Array.from(w.querySelectorAll('.nw-lm-token')).map(t => t.style.background)")
    for k, value in enumerate(row):
        if value > 0.02:
            alpha = float(tints[k].rstrip(")").split(",")[-1])
            assert abs(alpha - min(1.0, value)) < 6e-3, (k, value, tints[k])  # CSS keeps alpha in 1/255 steps
        else:
            assert tints[k] == "", (k, value, tints[k])
    assert row[6:] == [0.0] * (len(row) - 6)  # causal: nothing after the query
    lab.screenshot(widget, "attention/head2_hover5.png")

    # A click on a cell of the enlarged head selects its query's position, in the kernel and the explorer.
    g = geometry(canvas)
    x, y = cell_centre(g, 2, 7, 3)
    canvas.click(position={"x": x, "y": y})
    lab.poll("(heads.position, explorer.position)", "(7, 7)")
    # The row is outlined: the first pixel column of row 7 is the outline's orange.
    page.mouse.move(0, 0)
    ox, oy = origin(g, 2)
    step = g["size"] / g["tokens"]
    (outline,) = pixels(canvas, [(int(ox), int(oy + 7.5 * step))])
    assert close(outline, (230, 85, 13), 40), outline

    # A click on a token selects it too; the explorer's position moves the view's.
    widget.locator(".nw-lm-token").nth(2).click()
    lab.poll("(heads.position, explorer.position)", "(2, 2)")
    lab.eval("explorer.position = 4")
    lab.poll("heads.position", "4")

    # Back to all heads, then another block from the picker: its patterns are drawn.
    widget.get_by_role("button", name="all heads").click()
    lab.poll("heads.head", "-1")
    widget.get_by_role("combobox", name="block").select_option("1")
    lab.poll("heads.block", "1")
    widget.locator(".nw-lm-note", has_text=f"{n_heads} heads of block 1").wait_for()
    check_drawn(lab, canvas, list(range(n_heads)))
    lab.screenshot(widget, "attention/block1.png")
    assert kernel_json(lab, "heads.error") == ""

    # A text past the model's context, 512 tokens drawn: one canvas, one pixel a cell for an enlarged head.
    long = page.locator(".nw-attention").nth(1)
    long.scroll_into_view_if_needed()
    assert "truncated to its first 512 (the model's context)" in long.locator(".nw-lm-notice").inner_text()
    canvas = long.locator("canvas.nw-attn-canvas")
    page.wait_for_function(
        "c => c.dataset.geometry && JSON.parse(c.dataset.geometry).tokens === 512", arg=canvas.element_handle()
    )
    g = geometry(canvas)
    canvas.click(position={"x": 10, "y": g["label"] + 10})
    lab.poll("long.head", "0")
    page.wait_for_function("c => JSON.parse(c.dataset.geometry).size === 512", arg=canvas.element_handle())
    page.mouse.move(0, 0)  # no hovered row outlined
    check_drawn(lab, canvas, [0], sample=2000, name="long")
    assert long.locator("canvas").count() == 1 and long.locator(".nw-lm-token").count() == 512
    lab.screenshot(long, "attention/512_tokens.png")
