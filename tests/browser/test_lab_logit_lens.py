"""LogitLens in JupyterLab, linked to a text explorer: the lens table and the top 5 drawn as the kernel
computed them (tokens as text), a click on a token, a typed target token, a click on an attribution bar
(which opens that layer in the explorer)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import wait_until

TESTS = Path(__file__).resolve().parent.parent

CELLS = [
    f"import sys, json; sys.path.insert(0, {str(TESTS)!r})\n"
    "import neurowidgets as nw\n"
    "from neurowidgets.widgets import LogitLens\n"
    "from language_models import build, tokenizer\n"
    "tok = tokenizer()\n"
    "model = build('gpt2', tok, size='tiny')",
    "explorer = nw.explore(model, ['The cat sat on the mat because it was warm', 'Dogs <b>bark</b> at night.'], "
    "tokenizer=tok)\n"
    "lens = LogitLens(model, 'unused', tok).link(explorer)\nlens",
]


def kernel_json(lab, expr: str):
    return json.loads(lab.eval(f"print(json.dumps({expr}))"))


def drawn_table(widget) -> list[list[tuple[str, float]]]:
    return widget.evaluate(
        """w => Array.from(w.querySelectorAll('.nw-lens-table tr')).slice(1).map(
            tr => Array.from(tr.querySelectorAll('td')).map(td => [td.textContent, Number(td.dataset.prob)]))"""
    )


def drawn_bars(widget) -> list[tuple[str, float, float]]:
    """Each attribution bar: its label, the value it carries and its fill's width in % of the track."""
    return widget.evaluate(
        """w => Array.from(w.querySelectorAll('.nw-dla-bar')).map(bar => [
            bar.firstChild.textContent, Number(bar.dataset.value),
            bar.querySelector('.nw-dla-fill').getBoundingClientRect().width /
            bar.querySelector('.nw-dla-track').getBoundingClientRect().width * 100])"""
    )


def check_bars(lab, widget) -> None:
    values = kernel_json(lab, "lens.dla.tolist()")
    labels = kernel_json(lab, "lens.dla_labels")
    bars = drawn_bars(widget)
    assert [b[0] for b in bars] == labels
    limit = max(abs(v) for v in values)
    for (_, shown, width), value in zip(bars, values, strict=True):
        assert abs(shown - value) <= 1e-5 * max(1, abs(value))
        assert abs(width - 50 * abs(value) / limit) < 1.0, (width, value, limit)


def test_logit_lens_table_token_click_target_and_bar(lab):
    page = lab.page
    lab.run_notebook("logit_lens.ipynb", CELLS)
    widget = page.locator(".nw-logit-lens").first
    widget.locator(".nw-lens-table td").first.wait_for()
    widget.scroll_into_view_if_needed()
    # The lens was made on 'unused' and then linked: wait for the linked text's state to be drawn (in
    # one run at load 12 the first check below ran while the page still showed the first text).
    strip = widget.locator(".nw-lm-token")
    text_tokens = kernel_json(lab, "lens.tokens")
    wait_until(lambda: strip.all_inner_texts() == text_tokens, "the token strip shows the linked text's tokens")
    tokens = kernel_json(lab, "lens.lens_tokens")
    wait_until(lambda: len(drawn_table(widget)) == len(tokens), "the lens table has a row per block")

    # The table: every cell is the kernel's top token (text) and probability; the last row the model's own.
    probs = kernel_json(lab, "lens.lens_probs.tolist()")
    table = drawn_table(widget)
    assert [[c[0] for c in row] for row in table] == tokens
    assert all(
        abs(c[1] - p) < 1e-6 for row, prow in zip(table, probs, strict=True) for c, p in zip(row, prow, strict=True)
    )
    assert widget.evaluate("w => w.querySelector('b, script') === null")  # tokens never became HTML

    # A click on a token: kernel, linked explorer and the drawn top 5 and bars follow.
    strip.nth(3).click()
    lab.poll("(lens.position, explorer.position, lens.shown_position)", "(3, 3, 3)")
    widget.locator(".nw-lm-note", has_text="Top 5 at position 3").wait_for()
    top = kernel_json(lab, "lens.top_tokens")
    top_probs = kernel_json(lab, "lens.top_probs.tolist()")
    cells = widget.evaluate(
        """w => Array.from(w.querySelectorAll('.nw-lens-top tr')).map(
            tr => Array.from(tr.querySelectorAll('td')).slice(1).map(
                td => [td.textContent, Number(td.dataset.prob)]))"""
    )
    for row, tokens_row, probs_row in zip(cells, top, top_probs, strict=True):
        for (text, shown), token, p in zip(row, tokens_row, probs_row, strict=True):
            assert text.rsplit(" ", 1)[0] == token and abs(shown - p) <= 1e-6 * max(1, p)
    assert kernel_json(lab, "lens.target") == kernel_json(lab, "int(explorer.inputs['input_ids'][0, 4])")
    check_bars(lab, widget)
    assert widget.locator(".nw-lens-table td.nw-lm-selected").count() == len(tokens)  # the column
    lab.screenshot(widget, "logit_lens/position3.png")

    # A typed target token.
    box = widget.get_by_role("textbox", name="target token")
    box.fill("dog")
    box.press("Enter")
    lab.poll("(lens.target_text, lens.target == tok.convert_tokens_to_ids('dog'))", "('dog', True)")
    widget.locator(".nw-dla-target", has_text="dog (the typed token)").wait_for()
    page.wait_for_function(
        "([w, v]) => Number(w.querySelector('.nw-dla-bar').dataset.value) === v",
        arg=[widget.element_handle(), kernel_json(lab, "float(lens.dla[0])")],
    )
    check_bars(lab, widget)
    info = kernel_json(lab, "lens.dla_info")
    assert abs(sum(kernel_json(lab, "lens.dla.tolist()")) + info["constant"] - info["logit"]) < 1e-4
    lab.screenshot(widget, "logit_lens/target_dog.png")

    # A click on block 1's MLP bar opens its neurons in the explorer.
    labels = kernel_json(lab, "lens.dla_labels")
    widget.locator(".nw-dla-bar").nth(labels.index("1 mlp")).click()
    lab.poll("(explorer.layer, lens.block)", "('transformer.h.1.mlp.act', 1)")
    # And a head's cell opens its block's attention.
    widget.locator('.nw-dla-heads td[data-block="0"][data-head="2"]').click()
    lab.poll("(explorer.layer, lens.block)", "('transformer.h.0.attn', 0)")
    assert kernel_json(lab, "lens.error") == ""
