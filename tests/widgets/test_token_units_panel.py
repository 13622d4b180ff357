"""The text explorer's 'token_units' panel: clicking a token lists the units firing most there, each with
its one-line card, equal to nw.units_at_token; a click on a row selects the unit (the card follows);
without a scan the list still has units and values and says that cards need a scan."""

from __future__ import annotations

import time

import numpy as np
import pytest
from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.widgets.token_units import SHOWN

TEXTS = ["The cat sat on the mat.", "Dogs <b>bark</b> at night, and cats sleep."]


@pytest.fixture(scope="module")
def corpus():
    from pydoc_data.topics import topics

    return [topics[k][:300] for k in sorted(topics)[:24]]


@pytest.fixture(scope="module")
def lm_scan(tiny_lm, lm_tokenizer, corpus):
    text = nw.TextAdapter(lm_tokenizer)
    return nw.scan(tiny_lm("gpt2"), corpus, ["transformer.h.1.mlp.act"], k=8, adapter=text, progress=False, cache=False)


def click(frontend: FakeFrontend, **state) -> float:
    """What a click on a token sends (js/token_heatmap.ts `choose`), and the kernel time it took."""
    start = time.perf_counter()
    frontend.set_state(**state)
    return time.perf_counter() - start


def test_the_list_is_units_at_token_with_cards_and_a_row_click_selects(tiny_lm, lm_tokenizer, corpus, lm_scan):
    model = tiny_lm("gpt2")
    explorer = nw.explore(model, TEXTS, data=corpus, scan=lm_scan, tokenizer=lm_tokenizer)
    assert explorer.panels == ["grid", "heatmap", "token_units", "trace", "card"]
    assert explorer.token_units["position"] == -1  # no token chosen yet
    frontend = FakeFrontend(explorer)
    first = click(frontend, example=1, position=3)
    found = frontend.last("token_units")
    layer = explorer.layer
    expected = nw.units_at_token(
        explorer.probe, explorer.inputs, layer, 3, k=SHOWN, example=1, stats=lm_scan[layer],
        examples=explorer.examples, tokenizer=lm_tokenizer,
    )  # fmt: skip
    assert (found["layer"], found["example"], found["position"]) == (layer, 1, 3)
    assert found["token"] == explorer.tokens[1][3]
    assert found["units"] == expected.units.tolist()
    np.testing.assert_allclose(found["values"], expected.values, rtol=1e-5, atol=1e-6)
    assert found["note"] == ""
    for row, card in zip(found["rows"], expected.cards, strict=True):
        assert row["unit"] == card.unit
        assert row["density"] == pytest.approx(card.density)
        tokens = [f"⟦{t}⟧" if i == row["focus"] else t for i, t in enumerate(row["tokens"])]
        assert " ".join(tokens) == card.snippet and card.focus >= 0
        assert row["top_logit"][0] == card.top_logit[1]
        assert row["top_logit"][1] == pytest.approx(card.top_logit[2], rel=1e-5)

    # Another token: the cards seen before are kept, so a click costs a top-k and the new cards.
    second = click(frontend, example=0, position=2)
    assert frontend.last("token_units")["units"] == explorer.values[0, 2].argsort()[::-1][:SHOWN].tolist()
    print(f"\nkernel time per click: {1000 * first:.1f} ms (cards new), {1000 * second:.1f} ms (tiny GPT-2)")

    # A click on a row selects that unit: the card follows.
    unit = found["units"][4]
    frontend.set_state(selected_units=[unit])
    assert explorer.selected_units == [unit]
    assert explorer.card["unit"] == unit and explorer.card["layer"] == layer

    # The same token again clears the position: the list says to click one.
    click(frontend, position=-1)
    assert frontend.last("token_units") == {"layer": layer, "example": 0, "position": -1}


def test_without_a_scan_units_and_values_and_a_note(tiny_lm, lm_tokenizer):
    explorer = nw.explore(tiny_lm("gpt2"), TEXTS, tokenizer=lm_tokenizer)
    frontend = FakeFrontend(explorer)
    click(frontend, example=0, position=1)
    found = frontend.last("token_units")
    expected = nw.units_at_token(explorer.probe, explorer.inputs, explorer.layer, 1, k=SHOWN)
    assert found["units"] == expected.units.tolist()
    np.testing.assert_allclose(found["values"], expected.values, rtol=1e-5, atol=1e-6)
    assert [set(row) for row in found["rows"]] == [{"unit", "value"}] * SHOWN
    assert found["note"].startswith("Cards need a scan")


def test_not_computed_when_the_panel_is_not_shown(tiny_lm, lm_tokenizer):
    explorer = nw.explore(tiny_lm("gpt2"), TEXTS, tokenizer=lm_tokenizer, panels=["grid", "heatmap"])
    FakeFrontend(explorer).set_state(position=2)
    assert explorer.token_units == {}
    explorer.panels = ["grid", "heatmap", "token_units"]  # shown later: computed then
    assert explorer.token_units["position"] == 2
