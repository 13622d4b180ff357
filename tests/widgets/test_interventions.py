"""Interventions: the panel's "after" is the model run under the same probe.edit by hand, for every
mode, on the digits classifier and on tiny language models; the sample effect is a hand computation;
front-end edit requests are replayed; bad input changes nothing."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
import torch
import transformers
from frontend import FakeFrontend
from gate import Gate
from refuses import Refuses

import neurowidgets as nw
from neurowidgets.widgets import background, interventions
from neurowidgets.widgets.interventions import Interventions
from neurowidgets.widgets.wire import decode

CASES = [("ablate", 0.0), ("clamp", 3.5), ("scale", -1.5), ("steer", 6.0)]
UNITS = [39, 20, 46, 2]  # the most active relu3 units on test image 0


def hand_edit(mode: str, strength: float, units: list[int], width: int):
    if mode == "ablate":
        return nw.ablate(units)
    if mode == "clamp":
        return nw.clamp(units, strength)
    if mode == "scale":
        return nw.scale(units, strength)
    vector = torch.zeros(width)
    vector[units] = 1 / np.sqrt(len(units))
    return nw.steer(vector, strength)


def hand_probabilities(probe, inputs, layer, edit) -> np.ndarray:
    with probe.edit({layer: edit}):
        logits = probe.run(inputs).output
    return torch.softmax(logits, dim=1).numpy()


@pytest.fixture
def explorer(digits):
    return nw.explore(digits.model, digits.test_images[:4], layer="relu3", data=digits.test_images)


@pytest.fixture
def panel(explorer, digits):
    explorer.selected_units = UNITS
    return Interventions(explorer, labels=digits.test_labels, sample=256)


def request(frontend: FakeFrontend, mode: str, strength: float, request_id: int = 1) -> dict:
    frontend.custom({"type": "request", "id": request_id, "kind": "edit", "args": {"mode": mode, "strength": strength}})
    replies = [m["content"] for m, _ in frontend.sent if m.get("method") == "custom"]
    assert replies[-1]["type"] == "response" and replies[-1]["id"] == request_id
    return replies[-1]


@pytest.mark.parametrize(("mode", "strength"), CASES)
def test_after_equals_the_model_under_probe_edit_by_hand(panel, explorer, mode, strength):
    frontend = FakeFrontend(panel)
    assert request(frontend, mode, strength)["ok"], panel.error
    assert (panel.mode, panel.strength) == (mode, strength)
    probe, inputs = explorer.probe, explorer.inputs
    expected = hand_probabilities(probe, inputs, "relu3", hand_edit(mode, strength, UNITS, 64))
    np.testing.assert_allclose(panel.after, expected[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(panel.before, torch.softmax(probe.run(inputs).output, 1)[0].numpy(), rtol=1e-5)
    # The figure's source, here and as sent to the page, holds the same "after" for classes 0…9.
    np.testing.assert_allclose(panel.source.data["after"], expected[0], rtol=1e-5, atol=1e-7)
    sent = frontend.patches()[panel.source.id]["data"]
    np.testing.assert_allclose(decode(sent["after"]), expected[0], rtol=1e-5, atol=1e-7)
    assert sent["label"] == [str(c) for c in range(10)]
    assert panel.plot.title.text == panel.summary == panel.comparison.summary
    assert probe._edits == {}  # the edit applies only inside the panel's runs


def test_summary_names_the_top_class_and_its_change(panel):
    panel.mode, panel.strength = "scale", -1.0
    before, after = panel.before, panel.after
    top, now = int(before.argmax()), int(after.argmax())
    assert top == 0 and now != 0  # scaling the top units by -1 flips image 0
    assert panel.summary == f"p(0): {before[0]:.2f} → {after[0]:.2f}; now {now} ({after[now]:.2f})"


def test_another_example_and_layer_of_the_explorer(panel, explorer):
    panel.mode, panel.strength = "clamp", 8.0
    explorer.example = 2
    expected = hand_probabilities(explorer.probe, explorer.inputs, "relu3", nw.clamp(UNITS, 8.0))
    np.testing.assert_allclose(panel.after, expected[2], rtol=1e-5, atol=1e-7)
    explorer.layer = "relu2"  # 16 channels, units at every position; the selection is kept where it fits
    assert panel.layer == "relu2" and panel.selected_units == [2]
    expected = hand_probabilities(explorer.probe, explorer.inputs, "relu2", nw.clamp([2], 8.0))
    np.testing.assert_allclose(panel.after, expected[2], rtol=1e-5, atol=1e-7)
    values = explorer.values[2]
    low, high, _, default = panel.ranges["clamp"]
    assert default == pytest.approx(values.max()) and low < 0 < values.max() < high


def count_runs(probe, monkeypatch) -> list:
    """Every forward pass of ``probe`` from now on, edited or not, in the foreground or in the background
    (its twin), appends its inputs to the list."""
    runs = []
    for runner in (probe, background.twin(probe)):
        run = runner.run
        monkeypatch.setattr(
            runner, "run", lambda inputs, *a, run=run, **kw: runs.append(inputs) or run(inputs, *a, **kw)
        )
    return runs


def test_another_example_or_position_or_the_same_edit_runs_no_model(panel, explorer, monkeypatch):
    explorer.layer = "relu2"  # positions to click on
    panel.mode, panel.strength = "clamp", 8.0
    panel.wait()
    runs = count_runs(explorer.probe, monkeypatch)
    explorer.example = 2
    explorer.position = 5
    explorer.example = 3
    assert runs == []  # the batch's readouts before and after are kept, and the sample does not depend on them
    expected = hand_probabilities(explorer.probe, explorer.inputs, "relu2", nw.clamp([2], 8.0))
    np.testing.assert_allclose(panel.after, expected[3], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(panel.source.data["after"], expected[3], rtol=1e-5, atol=1e-7)
    assert panel.summary == panel.comparison.summary and panel.comparison.summary.startswith("p(")
    frontend = FakeFrontend(panel)
    runs.clear()
    assert request(frontend, "clamp", 8.0)["ok"]  # the same edit again
    panel.wait()
    assert runs == []
    assert request(frontend, "clamp", 4.0, request_id=2)["ok"]
    assert len(runs) == 1  # the batch, at once
    panel.wait()
    # Then the sample's 256 examples, once, in chunks sized by a timed forward pass (more of them on a
    # loaded machine); its "before" is kept.
    _, chunks = panel._sample_batches(explorer.examples)
    assert [len(inputs) for inputs in runs[1:]] == [len(inputs) for inputs in chunks] and len(runs) > 1
    runs.clear()
    panel.strength = 4.0
    assert request(frontend, "clamp", 4.0, request_id=3)["ok"]
    panel.wait()
    assert runs == []


def test_sample_effect_equals_a_hand_computation(panel, explorer, digits):
    panel.mode, panel.strength = "scale", -1.0
    indices = panel.sample_indices
    assert len(indices) == 256 and indices[0] == 0 and indices[-1] == len(digits.test_images) - 1
    images, labels = digits.test_images[indices], digits.test_labels[indices].numpy()
    before = torch.softmax(explorer.probe.run(images).output, 1).numpy()
    after = hand_probabilities(explorer.probe, images, "relu3", nw.scale(UNITS, -1.0))
    changed = int((before.argmax(1) != after.argmax(1)).sum())
    assert panel.effect == {
        "examples": 256,
        "changed": changed,
        "accuracy_before": pytest.approx(float((before.argmax(1) == labels).mean())),
        "accuracy_after": pytest.approx(float((after.argmax(1) == labels).mean())),
    }
    assert changed > 20
    acc = panel.effect
    assert panel.sample_effect == (
        f"over 256 examples of the data: accuracy {acc['accuracy_before']:.1%} → {acc['accuracy_after']:.1%}; "
        f"top class changed on {changed} ({changed / 256:.0%})"
    )
    unlabelled = Interventions(explorer, sample=10)
    assert len(unlabelled.sample_indices) == 10
    unlabelled.wait()
    assert unlabelled.sample_effect.startswith("over 10 examples of the data: top class changed on ")
    assert "accuracy" not in unlabelled.effect


def test_no_data_no_sample_line_and_no_units_no_edit(digits):
    explorer = nw.explore(digits.model, digits.test_images[:2], layer="relu3")
    explorer.selected_units = []
    panel = Interventions(explorer, mode="clamp", strength=5.0)
    assert panel.edit is None and panel.sample_effect == "" and panel.effect == {}
    np.testing.assert_array_equal(panel.after, panel.before)
    assert panel.summary == "select units to edit (nothing is edited)"
    with pytest.raises(ValueError, match="labels need the explorer's data"):
        Interventions(explorer, labels=digits.test_labels)


def test_custom_steering_vector(panel, explorer):
    vector = torch.linspace(-1, 1, 64)
    panel.steer_with(vector, alpha=3.0)
    assert (panel.mode, panel.strength, panel.direction) == ("steer", 3.0, "a custom vector (64 values)")
    expected = hand_probabilities(explorer.probe, explorer.inputs, "relu3", nw.steer(vector, 3.0))
    np.testing.assert_allclose(panel.after, expected[0], rtol=1e-5, atol=1e-7)
    panel.steer_with(None)
    assert panel.direction == "the selected units"
    expected = hand_probabilities(explorer.probe, explorer.inputs, "relu3", hand_edit("steer", 3.0, UNITS, 64))
    np.testing.assert_allclose(panel.after, expected[0], rtol=1e-5, atol=1e-7)
    panel.steer_with(vector)
    explorer.layer = "relu2"  # the vector was one value per unit of relu3
    assert panel.direction == "the selected units" and panel.error == ""


def test_steering_vector_of_the_wrong_length_changes_nothing(panel):
    panel.mode, panel.strength = "clamp", 2.0
    state = (panel.mode, panel.strength, panel.direction, panel.summary, panel.edit, panel.after.copy())
    with pytest.raises(ValueError, match="the steering vector has 5 values but layer 'relu3' has 64 units"):
        panel.steer_with(np.ones(5), alpha=4.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        panel.steer_with(np.full(64, np.nan))
    assert (panel.mode, panel.strength, panel.direction, panel.summary, panel.edit) == state[:5]
    np.testing.assert_array_equal(panel.after, state[5])
    assert panel.error == ""


def test_replayed_slider_moves_and_a_bad_mode(panel, explorer):
    frontend = FakeFrontend(panel)
    for i, strength in enumerate([0.5, 1.0, -0.75]):  # what a drag sends, each answered in turn
        assert request(frontend, "scale", strength, request_id=10 + i)["ok"]
    assert panel.strength == -0.75 and frontend.last("strength") == -0.75
    expected = hand_probabilities(explorer.probe, explorer.inputs, "relu3", nw.scale(UNITS, -0.75))
    np.testing.assert_allclose(panel.after, expected[0], rtol=1e-5, atol=1e-7)
    after = panel.after.copy()
    reply = request(frontend, "invert", 1.0, request_id=20)
    assert not reply["ok"] and "invert" in reply["error"] and "ablate" in reply["error"]
    assert (panel.mode, panel.strength) == ("scale", -0.75)
    np.testing.assert_array_equal(panel.after, after)


def test_a_model_error_is_shown_and_leaves_the_model_unedited():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3), Refuses())
    explorer = nw.explore(model, torch.randn(2, 4, generator=torch.Generator().manual_seed(0)), layer="1")
    explorer.selected_units = [0]
    panel = Interventions(explorer, mode="clamp", strength=1.0)
    good = panel.after.copy()
    frontend = FakeFrontend(panel)
    reply = request(frontend, "clamp", 1e6)
    assert not reply["ok"] and "activation too large" in panel.error
    np.testing.assert_array_equal(panel.after, good)
    assert explorer.probe._edits == {}
    np.testing.assert_array_equal(
        torch.softmax(model(explorer.inputs), 1)[0].detach().numpy(), panel.before
    )  # the model runs unedited
    with pytest.raises(nw.ModelCallError, match="activation too large"):  # raised to the caller, nothing set
        panel.steer_with(np.full(6, 1e6), alpha=1.0)
    assert (panel.mode, panel.strength, panel.direction) == ("clamp", 1.0, "the selected units")
    np.testing.assert_array_equal(panel.after, good)
    panel.strength = 1e6  # set from Python: reported in the widget
    assert "applying the edit" in panel.error and "activation too large" in panel.error
    explorer.example = 1  # the explorer moves on: still reported, not hidden by the follow-up
    assert "following the current input" in panel.error and "activation too large" in panel.error
    assert request(frontend, "clamp", 2.0, request_id=2)["ok"] and panel.error == ""
    expected = torch.softmax(
        model[3](model[2](torch.relu(model[0](explorer.inputs)).index_fill(1, torch.tensor([0]), 2.0))), 1
    )
    np.testing.assert_allclose(panel.after, expected[1].detach().numpy(), rtol=1e-5, atol=1e-7)


def test_a_failed_input_change_keeps_before_and_after_of_one_input():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3), Refuses(armed=False))
    inputs = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    explorer = nw.explore(model, inputs, layer="1")
    explorer.selected_units, explorer.example = [0], 2
    panel = Interventions(explorer, mode="clamp", strength=1e6)
    before, after = panel.before.copy(), panel.after.copy()
    model[3].armed = True  # the unedited model still runs; the edited one raises
    explorer.set_input(inputs[3:])
    assert "following the current input" in panel.error and "activation too large" in panel.error
    np.testing.assert_array_equal(panel.before, before)  # both still of example 2 of the first batch
    np.testing.assert_array_equal(panel.after, after)
    np.testing.assert_allclose(panel.source.data["before"], before, rtol=1e-6)
    np.testing.assert_allclose(panel.source.data["after"], after, rtol=1e-6)
    assert explorer.probe._edits == {}
    model[3].armed = False
    panel.strength = 2.0
    assert panel.error == ""
    np.testing.assert_allclose(panel.before, torch.softmax(model(inputs[3:]), 1)[0].detach().numpy(), rtol=1e-5)
    expected = hand_probabilities(explorer.probe, inputs[3:], "1", nw.clamp([0], 2.0))
    np.testing.assert_allclose(panel.after, expected[0], rtol=1e-5, atol=1e-7)


def test_output_override_and_bad_arguments(explorer):
    panel = Interventions(explorer, output="vector", sample=8)
    assert panel.kind == "vector" and panel.comparison.labels[0].startswith("[")
    assert panel.effect["cosine_similarity"] <= 1.0 + 1e-6
    named = Interventions(explorer, class_names=[f"digit {i}" for i in range(10)])
    assert named.comparison.labels[3] == "digit 3" and named.summary.startswith("p(digit 0): ")
    with pytest.raises(ValueError, match="3 class names for the model's 10 classes"):
        Interventions(explorer, class_names=["a", "b", "c"])
    followers = len(explorer._trait_notifiers["selected_units"]["change"])
    with pytest.raises(ValueError, match="class names"):
        Interventions(explorer, class_names=["a"])
    assert len(explorer._trait_notifiers["selected_units"]["change"]) == followers  # the failed one unlinked
    with pytest.raises(ValueError, match="output must be one of"):
        Interventions(explorer, output="pixels")
    with pytest.raises(ValueError, match="sample must be an int of at least 1"):
        Interventions(explorer, sample=0)
    with pytest.raises(ValueError, match="3 labels for 449 examples"):
        Interventions(explorer, labels=[0, 1, 2])
    with pytest.raises(TypeError, match="follows an explorer"):
        Interventions("relu3")


# -- language models -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(minilm):
    return minilm[1]


TEXTS = ["the cat sat on the [MASK] .", "a dog ran in the park ."]
DATA = ["the [MASK] is red", "python is a language", "it rains [MASK] today", "hello world"] * 3


def tiny_bert(tokenizer, masked: bool = True):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    return (transformers.BertForMaskedLM if masked else transformers.BertModel)(config).eval()


def tiny_gpt2(tokenizer):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=tokenizer.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=64,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def masked_lm(tokenizer):
    return tiny_bert(tokenizer)


def hand_log_probs(probe, inputs, layer, edit, position: int, row: int = 0) -> np.ndarray:
    with probe.edit({layer: edit}):
        logits = probe.run(inputs).output.logits
    return torch.log_softmax(logits[row, position], dim=-1).numpy()


@pytest.mark.parametrize(("mode", "strength"), CASES)
def test_masked_lm_after_is_the_log_prob_at_the_mask_by_hand(tokenizer, masked_lm, mode, strength):
    layer = "bert.encoder.layer.1.intermediate"
    explorer = nw.explore(masked_lm, TEXTS, tokenizer=tokenizer, layer=layer, data=DATA, k=2)
    explorer.selected_units = [1, 5, 9]
    panel = Interventions(explorer, sample=6)
    assert panel.kind == "tokens"
    frontend = FakeFrontend(panel)
    assert request(frontend, mode, strength)["ok"], panel.error
    ids = explorer.inputs["input_ids"][0].tolist()
    position = ids.index(tokenizer.mask_token_id)
    edit = hand_edit(mode, strength, [1, 5, 9], 64)
    expected = hand_log_probs(explorer.probe, explorer.inputs, layer, edit, position)
    np.testing.assert_allclose(panel.after, expected, rtol=1e-5, atol=1e-5)
    before = hand_log_probs(explorer.probe, explorer.inputs, layer, nw.scale([0], 1.0), position)
    top = set(np.argsort(-before)[:8].tolist()) | set(np.argsort(-expected)[:8].tolist())
    assert set(panel.comparison.index.tolist()) == top
    assert set(panel.comparison.labels) == set(tokenizer.convert_ids_to_tokens(sorted(top)))
    sent = frontend.patches()[panel.source.id]["data"]
    assert sent["label"] == panel.comparison.labels
    np.testing.assert_allclose(decode(sent["change"]), panel.comparison.change, rtol=1e-5, atol=1e-5)
    assert frontend.patches()[panel.plot.y_range.id]["factors"] == panel.comparison.labels[::-1]
    # The sample: the top token at each text's [MASK] (else its last token), with and without the edit.
    inputs = explorer.examples.batch(panel.sample_indices.tolist())
    positions = [
        row.index(tokenizer.mask_token_id) if tokenizer.mask_token_id in row else int(n) - 1
        for row, n in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].sum(1), strict=True)
    ]
    rows = range(len(positions))
    with explorer.probe.edit({layer: edit}):
        edited = explorer.probe.run(inputs).output.logits[rows, positions].argmax(-1)
    plain = explorer.probe.run(inputs).output.logits[rows, positions].argmax(-1)
    assert panel.effect == {"examples": 6, "changed": int((edited != plain).sum())}
    assert "top predicted token changed on" in panel.sample_effect


def test_causal_lm_reads_the_last_valid_token(tokenizer):
    layer = "transformer.h.0.mlp.act"
    texts = ["one two three four", "five six"]  # the second row is padded
    explorer = nw.explore(tiny_gpt2(tokenizer), texts[:1], tokenizer=tokenizer, layer=layer)
    explorer.selected_units = [3]
    panel = Interventions(explorer, mode="scale", strength=-3.0)
    last = int(explorer.inputs["attention_mask"][0].sum()) - 1
    expected = hand_log_probs(explorer.probe, explorer.inputs, layer, nw.scale([3], -3.0), last)
    np.testing.assert_allclose(panel.after, expected, rtol=1e-5, atol=1e-5)
    assert panel.summary.startswith("top token '")


def test_a_causal_lm_reports_next_token_accuracy_over_the_data(tokenizer):
    layer = "transformer.h.0.mlp.act"
    data = ["one two three four five", "the cat sat", "one two three", "a b c d e f"] * 2
    explorer = nw.explore(tiny_gpt2(tokenizer), data[:1], tokenizer=tokenizer, layer=layer, data=data, k=2)
    explorer.selected_units = [3, 7]
    panel = Interventions(explorer, sample=6, mode="scale", strength=-3.0)
    inputs = explorer.examples.batch(panel.sample_indices.tolist())  # padded on the right

    def hits(logits):
        ids, mask = inputs["input_ids"], inputs["attention_mask"].bool()
        scored = mask[:, :-1] & mask[:, 1:]
        return ((logits[:, :-1].argmax(-1) == ids[:, 1:]) & scored).sum().item() / scored.sum().item()

    plain = hits(explorer.probe.run(inputs).output.logits)
    with explorer.probe.edit({layer: nw.scale([3, 7], -3.0)}):
        edited = hits(explorer.probe.run(inputs).output.logits)
    assert panel.effect["accuracy_before"] == pytest.approx(plain)
    assert panel.effect["accuracy_after"] == pytest.approx(edited)
    expected = f"over 6 examples of the data: next-token accuracy {plain:.1%} → {edited:.1%}"
    assert panel.sample_effect.startswith(expected)


def test_an_encoder_output_is_compared_as_a_vector(tokenizer):
    layer = "encoder.layer.0.intermediate"
    explorer = nw.explore(tiny_bert(tokenizer, masked=False), TEXTS, tokenizer=tokenizer, layer=layer, data=DATA, k=2)
    explorer.selected_units = [0, 1]
    panel = Interventions(explorer, mode="clamp", strength=5.0)
    assert panel.kind == "vector"
    with explorer.probe.edit({layer: nw.clamp([0, 1], 5.0)}):
        hidden = explorer.probe.run(explorer.inputs).output.last_hidden_state[0]
    np.testing.assert_allclose(panel.after, hidden.mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)  # no padding
    assert panel.summary.startswith("cosine similarity ")
    inputs = explorer.examples.batch(panel.sample_indices.tolist())  # the sample: mean-pooled outputs
    mask = inputs["attention_mask"].unsqueeze(-1).float()

    def pooled(output) -> np.ndarray:
        return ((output.last_hidden_state * mask).sum(1) / mask.sum(1)).numpy()

    plain = pooled(explorer.probe.run(inputs).output)
    with explorer.probe.edit({layer: nw.clamp([0, 1], 5.0)}):
        edited = pooled(explorer.probe.run(inputs).output)
    cosines = (plain * edited).sum(1) / (np.linalg.norm(plain, axis=1) * np.linalg.norm(edited, axis=1))
    assert panel.effect == {"examples": len(DATA), "cosine_similarity": pytest.approx(float(cosines.mean()))}
    with pytest.raises(ValueError, match="labels are for classifiers"):
        Interventions(explorer, labels=[0] * len(DATA))


def test_a_labelled_dataset_gives_the_accuracy_without_labels(digits):
    data = digits
    pairs = torch.utils.data.TensorDataset(data.test_images, data.test_labels)  # (image, label) items
    explorer = nw.explore(data.model, data.test_images[:2], layer="relu3", data=pairs, selected_units=[39, 20])
    panel = Interventions(explorer, sample=64)
    panel.mode, panel.strength = "scale", -1.0
    indices = torch.as_tensor(panel.sample_indices)
    probe = explorer.probe
    labels = data.test_labels[indices]
    before = (probe.run(data.test_images[indices]).output.argmax(1) == labels).float().mean().item()
    with probe.edit({"relu3": nw.scale([39, 20], -1.0)}):
        after = (probe.run(data.test_images[indices]).output.argmax(1) == labels).float().mean().item()
    assert panel.effect["accuracy_before"] == pytest.approx(before)
    assert panel.effect["accuracy_after"] == pytest.approx(after)
    assert panel.sample_effect.startswith(f"over 64 examples of the data: accuracy {before:.1%} → {after:.1%}")


# -- the sample in the background ------------------------------------------------------------------


def gated_explorer(data_size: int = 40, seed: int = 0):
    """A small classifier whose last layer holds the background's forward passes (see gate.py)."""
    torch.manual_seed(seed)
    gate = Gate()
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3), gate)
    data = torch.randn(data_size, 4, generator=torch.Generator().manual_seed(seed))
    explorer = nw.explore(model, data[:2], layer="1", data=data, selected_units=[0, 1, 2, 3])
    return explorer, gate, data


def sent(frontend: FakeFrontend, name: str) -> list:
    return [state[name] for state in frontend.updates() if name in state]


def hand_effect(explorer, data, edit) -> dict:
    with explorer.probe.edit({"1": edit}):
        after = explorer.probe.run(data).output.argmax(1)
    before = explorer.probe.run(data).output.argmax(1)
    return {"examples": len(data), "changed": int((before != after).sum())}


def test_a_burst_of_edits_ends_on_the_last_and_never_publishes_a_stale_sample(monkeypatch):
    monkeypatch.setattr(interventions, "CHUNK_SECONDS", 0.0)  # one example per chunk: progress per example
    explorer, gate, data = gated_explorer()
    panel = Interventions(explorer, sample=40)  # returns while the sample is held: it runs in the background
    frontend = FakeFrontend(panel)
    gate.reached()
    assert panel.sample_effect == "" and panel.sample_status == "sample: 0/40 examples"
    for i, strength in enumerate([0.5, 3.0, -2.0]):  # a drag: each answered at once with the current input
        assert request(frontend, "scale", strength, request_id=i)["ok"], panel.error
        expected = hand_probabilities(explorer.probe, explorer.inputs, "1", nw.scale([0, 1, 2, 3], strength))
        np.testing.assert_allclose(panel.after, expected[0], rtol=1e-5, atol=1e-7)
        assert panel.sample_effect == ""  # the older edit's effect is never shown for this one
    assert background.running(panel)
    gate.open()
    panel.wait(timeout=30)
    assert panel.effect == hand_effect(explorer, data, nw.scale([0, 1, 2, 3], -2.0))
    published = [text for text in sent(frontend, "sample_effect") if text]
    assert published == [panel.sample_effect]  # one result: the last edit's
    assert panel.sample_effect.startswith("over 40 examples of the data: top class changed on ")
    statuses = sent(frontend, "sample_status")
    before = [s for s in statuses if s.startswith("sample: before")]
    after = [s for s in statuses if s.startswith("sample: after")]
    # The edit-free pass goes on from where the cancelled job left it (one chunk got through the gate).
    assert before[0].startswith("sample: before 2/40 examples, ") and before[-1].startswith("sample: before 40/40")
    assert len(after) == 40 and after[-1].startswith("sample: after 40/40 examples, ")
    assert re.fullmatch(r"40 of 40 examples, \d+\.\d s", panel.sample_status)
    assert statuses[-1] == panel.sample_status
    assert explorer.probe._edits == {} and panel.error == ""


def test_an_error_in_the_background_is_shown_once_and_the_panel_stays_usable(caplog):
    torch.manual_seed(0)
    refuses = Refuses()
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3), refuses)
    data = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    data[7] = 1e4  # only the sample meets it: the current input's answer is fine
    explorer = nw.explore(model, data[:2], layer="1", data=data, selected_units=[0])
    panel = Interventions(explorer, sample=30)
    frontend = FakeFrontend(panel)
    assert request(frontend, "clamp", 2.0)["ok"]
    panel.wait(timeout=30)
    assert "computing the effect over the sample" in panel.error and "activation too large" in panel.error
    assert [e for e in sent(frontend, "error") if e] == [panel.error]  # shown once
    logged = [r.levelname for r in caplog.records if "computing the effect over the sample" in r.getMessage()]
    assert logged == ["ERROR"]
    assert panel.sample_effect == "" and panel.effect == {}
    expected = hand_probabilities(explorer.probe, explorer.inputs, "1", nw.clamp([0], 2.0))
    np.testing.assert_allclose(panel.after, expected[0], rtol=1e-5, atol=1e-7)  # the current input's is shown
    refuses.armed = False  # a flag of a module: the background's twin sees it once made again
    background.forget(explorer.probe)
    assert request(frontend, "clamp", 3.0, request_id=2)["ok"] and panel.error == ""
    panel.wait(timeout=30)
    assert panel.error == "" and panel.effect == hand_effect(explorer, data, nw.clamp([0], 3.0))


def test_the_default_sample_is_sized_by_a_timed_forward_and_can_grow():
    class Slow(torch.nn.Module):  # about 5 ms per example, in the foreground and the background alike
        def forward(self, x):
            time.sleep(0.005 * len(x))
            return x

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3), Slow())
    data = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    explorer = nw.explore(model, data[:2], layer="1", data=data, selected_units=[0])
    panel = Interventions(explorer)
    # A new edit's sample runs twice (before and after): about SAMPLE_SECONDS in all at ≥ 5 ms an example.
    limit = interventions.SAMPLE_SECONDS / (2 * 0.005)
    assert interventions.MIN_SAMPLE <= panel.sample_size <= limit and panel.data_size == 2000
    assert len(panel.sample_indices) == panel.sample_size
    size = panel.sample_size
    frontend = FakeFrontend(panel)
    frontend.custom({"type": "request", "id": 1, "kind": "sample", "args": {"size": 0}})
    assert "the sample size must be an int of at least 1" in panel.error and panel.sample_size == size
    frontend.custom({"type": "request", "id": 2, "kind": "sample", "args": {"size": 2 * size}})
    assert panel.error == "" and panel.sample_size == 2 * size  # the button: a sample twice as big
    panel.wait(timeout=60)
    assert panel.effect["examples"] == 2 * size
    assert panel.sample_effect.startswith(f"over {2 * size} examples of the data")
    explicit = Interventions(explorer, sample=24)
    assert explicit.sample_size == 24
    explicit.close()
    panel.close()


def test_a_model_that_cannot_be_copied_gets_its_sample_at_once(caplog):
    class Locked(torch.nn.Module):  # holds a lock: no copy of the model for the background
        def __init__(self):
            super().__init__()
            self.lock = threading.Lock()

        def forward(self, x):
            with self.lock:
                return x

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3), Locked())
    data = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    explorer = nw.explore(model, data[:2], layer="1", data=data, selected_units=[0, 1])
    panel = Interventions(explorer, sample=20, mode="scale", strength=-2.0)
    assert not background.running(panel) and panel.error == ""  # computed in the caller, as before
    assert panel.effect == hand_effect(explorer, data, nw.scale([0, 1], -2.0))
    assert any("cannot be copied" in r.getMessage() for r in caplog.records)
    frontend = FakeFrontend(panel)
    ask_sample(frontend, 10, request_id=1)  # its job runs in the handler: answered all the same
    ask_sample(frontend, 10, request_id=2)  # the same sample again: remembered, answered at once
    effect = hand_effect(explorer, data[panel.sample_indices], nw.scale([0, 1], -2.0))
    for request_id in (1, 2):
        assert answers(frontend, request_id) == [
            {"type": "response", "id": request_id, "ok": True, "data": {"effect": effect, "text": panel.sample_effect}}
        ]


# -- the "sample" request, answered in parts ------------------------------------------------------


def ask_sample(frontend: FakeFrontend, size: int, request_id: int) -> None:
    """What the "more examples" button sends."""
    frontend.custom({"type": "request", "id": request_id, "kind": "sample", "args": {"size": size}})


def answers(frontend: FakeFrontend, request_id: int) -> list[dict]:
    """The messages that answer request ``request_id``: its parts, then its response."""
    custom = [m["content"] for m, _ in frontend.sent if m.get("method") == "custom"]
    return [content for content in custom if content.get("id") == request_id]


def test_a_sample_request_gets_its_progress_in_parts_then_the_effect(monkeypatch):
    monkeypatch.setattr(interventions, "CHUNK_SECONDS", 0.0)  # one example per chunk: a part per example
    explorer, gate, data = gated_explorer()
    panel = Interventions(explorer, sample=10)
    frontend = FakeFrontend(panel)
    gate.reached()  # the first sample's job holds the worker
    ask_sample(frontend, 20, request_id=1)
    assert answers(frontend, 1) == []  # answered by the job, not by the handler
    gate.open()
    panel.wait(timeout=30)
    *parts, answer = answers(frontend, 1)
    assert all(part["type"] == "progress" for part in parts)
    steps = [(p["data"]["phase"], p["data"]["done"], p["data"]["total"]) for p in parts]
    assert steps == [("before", i, 20) for i in range(1, 21)] + [("after", i, 20) for i in range(1, 21)]
    effect = hand_effect(explorer, data[panel.sample_indices], nw.ablate([0, 1, 2, 3]))
    assert answer == {"type": "response", "id": 1, "ok": True, "data": {"effect": effect, "text": panel.sample_effect}}
    assert panel.effect == effect and panel.sample_effect.startswith("over 20 examples of the data")


def test_a_newer_edit_cancels_a_running_sample_request_without_an_error():
    explorer, gate, data = gated_explorer()
    panel = Interventions(explorer, sample=10)
    gate.open()
    panel.wait(timeout=30)
    gate.close()
    frontend = FakeFrontend(panel)
    ask_sample(frontend, 20, request_id=1)
    gate.reached()  # its job is running
    assert request(frontend, "scale", 2.0, request_id=2)["ok"]
    gate.open()
    panel.wait(timeout=30)
    assert answers(frontend, 1) == [{"type": "response", "id": 1, "ok": False, "cancelled": True}]
    assert panel.error == "" and not [e for e in sent(frontend, "error") if e]
    assert panel.effect == hand_effect(explorer, data[panel.sample_indices], nw.scale([0, 1, 2, 3], 2.0))


def test_a_sample_request_cancelled_while_its_job_waits_is_answered_at_once():
    explorer, gate, _ = gated_explorer()
    panel = Interventions(explorer, sample=10)
    frontend = FakeFrontend(panel)
    gate.reached()  # the first sample's job holds the worker: the request's job waits behind it
    ask_sample(frontend, 20, request_id=1)
    assert answers(frontend, 1) == []
    assert request(frontend, "scale", 2.0, request_id=2)["ok"]  # a newer job of the kind replaces it
    assert answers(frontend, 1) == [{"type": "response", "id": 1, "ok": False, "cancelled": True}]  # never ran
    gate.open()
    panel.wait(timeout=30)
    assert panel.error == "" and len(answers(frontend, 1)) == 1


def test_a_failing_sample_request_answers_with_its_error_shown_once():
    torch.manual_seed(0)
    refuses = Refuses(armed=False)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3), refuses)
    data = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    data[7] = 1e4  # in the sample of all 30
    explorer = nw.explore(model, data[:2], layer="1", data=data, selected_units=[0])
    panel = Interventions(explorer, sample=10)
    panel.wait(timeout=30)
    refuses.armed = True
    background.forget(explorer.probe)  # the background's twin sees the flag
    frontend = FakeFrontend(panel)
    ask_sample(frontend, 30, request_id=1)
    panel.wait(timeout=30)
    assert "computing the effect over the sample" in panel.error and "activation too large" in panel.error
    assert answers(frontend, 1) == [{"type": "response", "id": 1, "ok": False, "error": panel.error}]
    assert [e for e in sent(frontend, "error") if e] == [panel.error]  # shown once
