"""Probe captures equal hand-written hooks; edits equal manual computations; nothing is left behind."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import neurowidgets as nw


def manual_capture(model, module, run):
    """The reference: a hand-written forward hook."""
    seen = []
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    return seen[0]


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def flags(model):
    return [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]


# -- capture on real models ----------------------------------------------------------------------


def test_digits_cnn_conv_layer_is_positions_by_channels(digits):
    model, x = digits.model, digits.images[:5]
    probe = nw.Probe(model)
    capture = probe.run(x, ["conv2", "fc1"])
    reference = manual_capture(model, model.conv2, lambda: model(x))
    acts = capture["conv2"]
    assert torch.equal(acts.raw, reference)
    assert acts.positions_shape == (8, 8)
    assert acts.values.shape == (5, 64, 16)
    # position p = row * 8 + col, unit = channel
    assert torch.equal(acts.values[2, 3 * 8 + 5, 7], reference[2, 7, 3, 5])
    fc1 = capture["fc1"]
    assert fc1.positions_shape == () and fc1.values.shape == (5, 1, 64)
    assert torch.equal(capture.output, model(x).detach())
    assert hook_count(model) == 0


def test_minilm_mlp_layer_tokens_are_positions(minilm):
    model, tokenizer = minilm
    batch = tokenizer(["The cat sat on the mat.", "import numpy as np"], padding=True, return_tensors="pt")
    probe = nw.Probe(model)
    layer = "encoder.layer.3.intermediate"
    capture = probe.run(batch, [layer])
    reference = manual_capture(model, model.encoder.layer[3].intermediate, lambda: model(**batch))
    acts = capture[layer]
    assert torch.equal(acts.values, reference)
    assert acts.positions_shape == (batch["input_ids"].shape[1],)
    assert acts.num_units == 1536
    assert hook_count(model) == 0


def test_minilm_block_returning_a_tuple_uses_its_first_tensor(minilm):
    model, tokenizer = minilm
    batch = tokenizer(["hello world"], return_tensors="pt")
    probe = nw.Probe(model)
    capture = probe.run(batch, ["encoder.layer.0"])
    out = manual_capture(model, model.encoder.layer[0], lambda: model(**batch))
    first = out[0] if isinstance(out, tuple) else out
    assert torch.equal(capture["encoder.layer.0"].raw, first)


def test_lstm_output_tuple():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("lstm", nn.LSTM(4, 6, batch_first=True))
    x = torch.randn(3, 7, 4)
    probe = nw.Probe(model)
    acts = probe.run(x, ["lstm"])["lstm"]
    reference = manual_capture(model, model.lstm, lambda: model(x))
    assert torch.equal(acts.raw, reference[0])
    assert acts.positions_shape == (7,) and acts.num_units == 6


def test_batchnorm_in_eval_mode_keeps_running_stats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 1, 6, 6)
    acts = nw.Probe(model).run(x, ["1"])["1"]
    assert torch.equal(acts.raw, manual_capture(model, model[1], lambda: model(x)))
    assert acts.num_units == 3 and acts.positions_shape == (4, 4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_in_training_mode_runs_in_eval_and_is_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    model[3].eval()  # a mixed state must come back exactly
    before_flags = flags(model)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 4)
    a = nw.Probe(model).run(x, ["2"])["2"].raw
    b = nw.Probe(model).run(x, ["2"])["2"].raw
    assert torch.equal(a, b), "dropout must be off during a probe run"
    assert flags(model) == before_flags
    assert all(torch.equal(before_state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4)).to(dtype)
    x = torch.randn(5, 8, dtype=dtype)
    acts = nw.Probe(model).run(x, ["1"])["1"]
    assert acts.raw.dtype == dtype
    assert torch.equal(acts.raw, manual_capture(model, model[1], lambda: model(x)))


def test_captures_are_detached_without_grad():
    model = nn.Sequential(nn.Linear(3, 3))
    acts = nw.Probe(model).run(torch.randn(2, 3), ["0"])["0"]
    assert not acts.raw.requires_grad
    assert all(p.requires_grad for p in model.parameters())


def test_only_requested_layers_are_kept(digits):
    capture = nw.Probe(digits.model).run(digits.images[:2], ["relu1"])
    assert list(capture) == ["relu1"]
    with pytest.raises(nw.LayerError, match="not captured"):
        capture["conv1"]


def test_tuple_and_mapping_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 3)

        def forward(self, x, y=None):
            return self.a(x) + (0 if y is None else y)

    model, x, y = TwoInputs(), torch.randn(4, 2), torch.ones(4, 3)
    probe = nw.Probe(model)
    assert torch.equal(probe.run((x, y)).output, model(x, y).detach())
    assert torch.equal(probe.run({"x": x, "y": y}).output, model(x=x, y=y).detach())


def test_layers_describe_sizes_after_a_run(digits):
    probe = nw.Probe(digits.model)
    assert probe.layers["conv2"].units is None
    probe.describe(digits.images[:1])
    info = probe.layers["conv2"]
    described = (info.module_type, info.units, info.positions_shape, info.layout)
    assert described == ("Conv2d", 16, (8, 8), "channels")
    assert probe.layers["fc2"].units == 10


# -- edits ---------------------------------------------------------------------------------------


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


def downstream(model, hidden):
    """Output of the MLP's head given an edited hidden layer, by hand."""
    with torch.no_grad():
        return model[2](hidden)


def test_ablate_clamp_scale_steer_equal_manual(mlp):
    x = torch.randn(5, 4)
    with torch.no_grad():
        hidden = mlp[1](mlp[0](x))
    probe = nw.Probe(mlp)
    vector = torch.arange(6, dtype=torch.float32)
    cases = [
        (nw.ablate([1, 3]), lambda h: h.index_fill(1, torch.tensor([1, 3]), 0.0)),
        (nw.clamp([0], 2.5), lambda h: h.index_fill(1, torch.tensor([0]), 2.5)),
        (nw.scale([2, 5], -3.0), lambda h: h * torch.tensor([1, 1, -3.0, 1, 1, -3.0])),
        (nw.steer(vector, 0.5), lambda h: h + 0.5 * vector),
    ]
    for edit, manual in cases:
        with probe.edit({"1": edit}):
            capture = probe.run(x, ["1"])
        expected = manual(hidden.clone())
        assert torch.allclose(capture["1"].raw, expected), edit
        assert torch.allclose(capture.output, downstream(mlp, expected)), edit
    assert hook_count(mlp) == 0
    assert torch.equal(probe.run(x).output, downstream(mlp, hidden)), "edits end with the with block"


def test_edit_at_positions_of_a_conv_layer(digits):
    model, x = digits.model, digits.images[:3]
    probe = nw.Probe(model)
    with probe.edit({"relu2": nw.clamp([4, 9], 7.0, positions=[0, 10])}):
        acts = probe.run(x, ["relu2"])["relu2"]
    reference = manual_capture(model, model.relu2, lambda: model(x)).clone()
    for unit in (4, 9):
        reference[:, unit, 0, 0] = 7.0
        reference[:, unit, 1, 2] = 7.0  # position 10 = row 1, col 2 of the 8×8 grid
    assert torch.equal(acts.raw, reference)


def test_several_layers_and_edits_at_once(mlp):
    x = torch.randn(2, 4)
    probe = nw.Probe(mlp)
    with probe.edit({"0": [nw.scale([0], 2.0), nw.ablate([1])], "1": nw.clamp([5], 1.0)}):
        output = probe.run(x).output
    with torch.no_grad():
        h = mlp[0](x)
        h[:, 0] *= 2.0
        h[:, 1] = 0.0
        h = torch.relu(h)
        h[:, 5] = 1.0
        expected = mlp[2](h)
    assert torch.allclose(output, expected)


def test_edit_on_a_transformer_layer_changes_the_output(minilm):
    model, tokenizer = minilm
    batch = tokenizer(["a b c"], return_tensors="pt")
    probe = nw.Probe(model)
    layer = "encoder.layer.2.intermediate"
    base = probe.run(batch, [layer])
    with probe.edit({layer: nw.ablate(list(range(100)), positions=[1])}):
        edited = probe.run(batch, [layer])
    values = edited[layer].values
    assert torch.all(values[0, 1, :100] == 0)
    assert torch.equal(values[0, 2], base[layer].values[0, 2])
    assert not torch.allclose(edited.output[0], base.output[0])


# -- derived layers (features as units) ------------------------------------------------------------


class TinySAE(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.enc = nn.Linear(d, f)
        self.dec = nn.Linear(f, d)

    def forward(self, x):
        return torch.relu(self.enc(x))

    def decode(self, features):
        return self.dec(features)


def test_attached_encoder_is_a_layer(digits):
    torch.manual_seed(0)
    sae = TinySAE(16, 32)
    probe = nw.Probe(digits.model)
    name = probe.attach("relu2", sae, name="sae")
    x = digits.images[:2]
    capture = probe.run(x, ["relu2", "sae"])
    with torch.no_grad():
        expected = sae(capture["relu2"].values)
    assert torch.allclose(capture["sae"].values, expected)
    assert capture["sae"].positions_shape == (8, 8) and capture["sae"].num_units == 32
    assert name == "sae" and "sae" in probe.layers


def test_editing_features_adds_the_decoded_difference(mlp):
    torch.manual_seed(1)
    sae = TinySAE(6, 10)
    probe = nw.Probe(mlp)
    probe.attach("1", sae, name="feat")
    x = torch.randn(3, 4)
    with probe.edit({"feat": nw.ablate([2, 7])}):
        capture = probe.run(x, ["1", "feat"])
    with torch.no_grad():
        h = mlp[1](mlp[0](x))
        f = sae(h)
        f2 = f.clone()
        f2[:, [2, 7]] = 0
        h2 = h + sae.decode(f2) - sae.decode(f)
    assert torch.allclose(capture["feat"].raw, f2)
    assert torch.allclose(capture["1"].raw, h2, atol=1e-6)
    assert torch.allclose(capture.output, mlp[2](h2).detach(), atol=1e-6)


def test_a_saelens_sae_attaches_as_its_features(tiny_lm, lm_tokenizer):
    """A SAELens SAE's call is its reconstruction (d_in values); attached, its units are its d_sae features."""
    from sae_lens import StandardSAE, StandardSAEConfig

    model = tiny_lm("gpt2")
    d_in, d_sae = model.config.n_embd, 4 * model.config.n_embd
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae)).eval()
    probe = nw.Probe(model)
    name = probe.attach("transformer.h.0", sae, name="sae")
    batch = lm_tokenizer(["The cat sat on the mat."], return_tensors="pt")
    capture = probe.run(batch, ["transformer.h.0", "sae"])
    assert capture["sae"].num_units == d_sae != d_in
    with torch.no_grad():
        torch.testing.assert_close(capture["sae"].values, sae.encode(capture["transformer.h.0"].values))
    # Edits go through its decode: ablating every active feature removes their decoded part.
    features = capture["sae"].values
    active = sorted({int(u) for u in torch.nonzero(features[0].amax(0) > 0).flatten()})
    with probe.edit({name: nw.ablate(active)}):
        edited = probe.run(batch, ["transformer.h.0"])["transformer.h.0"].values
    with torch.no_grad():
        expected = capture["transformer.h.0"].values - sae.decode(features) + sae.decode(torch.zeros_like(features))
    torch.testing.assert_close(edited, expected, atol=1e-5, rtol=1e-5)
    assert hook_count(model) == 0


# -- bad input -------------------------------------------------------------------------------------


def test_unknown_layer_names_the_closest(digits):
    probe = nw.Probe(digits.model)
    with pytest.raises(nw.LayerError, match=r"no layer 'conv3'.*Closest: .*'conv2'"):
        probe.run(digits.images[:1], ["conv3"])
    with pytest.raises(nw.LayerError, match="intermediate"):
        nw.Probe(nn.ModuleDict({"encoder": nn.ModuleDict({"intermediate": nn.Linear(1, 1)})})).run(
            torch.zeros(1), ["intermediat"]
        )


def test_wrong_input_shape_says_what_the_model_expects(digits):
    probe = nw.Probe(digits.model)
    expected = r"tensor\(2, 3, 8, 8\).*expects input of shape \(batch, 1, H, W\)"
    with pytest.raises(nw.ModelCallError, match=expected):
        probe.run(torch.zeros(2, 3, 8, 8), ["conv2"])
    assert hook_count(digits.model) == 0


def test_exception_inside_the_model_leaves_no_hook_and_the_model_as_it_was():
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)

        def forward(self, x):
            x = self.b(self.a(x))
            raise RuntimeError("boom")

    model = Exploding().train()
    before = flags(model)
    probe = nw.Probe(model)
    with pytest.raises(nw.ModelCallError, match=r"boom.*captured before the error: \['a'\]") as info:
        with probe.edit({"b": nw.ablate([0])}):
            probe.run(torch.randn(1, 2), ["a"])
    assert isinstance(info.value.__cause__, RuntimeError)
    assert hook_count(model) == 0 and flags(model) == before


def test_layer_that_never_ran():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(2, 2)
            self.unused = nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    model = Skips()
    with pytest.raises(nw.LayerError, match=r"\['unused'\] never ran"):
        nw.Probe(model).run(torch.randn(1, 2), ["used", "unused"])
    assert hook_count(model) == 0


def test_bad_edits(mlp):
    probe = nw.Probe(mlp)
    x = torch.randn(1, 4)
    with pytest.raises(IndexError, match="unit 6 is out of range for layer '1', which has 6 units"):
        with probe.edit({"1": nw.ablate([6])}):
            probe.run(x)
    with pytest.raises(ValueError, match="has 3 values; the layer has 6 units"):
        with probe.edit({"1": nw.steer([1.0, 2.0, 3.0])}):
            probe.run(x)
    with pytest.raises(ValueError, match="NaN"):
        nw.steer([float("nan")] * 6)
    with pytest.raises(nw.LayerError, match=r"no layer '3'. Layers: 0, 1, 2"):
        with probe.edit({"3": nw.ablate([0])}):
            pass
    with pytest.raises(TypeError, match=r"nw\.ablate"):
        with probe.edit({"1": "zero"}):
            pass
    assert hook_count(mlp) == 0
    assert probe._edits == {}


def test_nan_activations_are_captured_as_they_are():
    model = nn.Sequential(nn.Linear(2, 3))
    with torch.no_grad():
        model[0].bias[1] = float("nan")
    acts = nw.Probe(model).run(torch.zeros(1, 2), ["0"])["0"]
    assert torch.isnan(acts.values[0, 0, 1]) and torch.isfinite(acts.values[0, 0, [0, 2]]).all()


# -- module inputs, early stops, no key-value cache ---------------------------------------------


def test_module_input_is_a_layer_the_gated_mlp_neurons(tiny_lm, lm_tokenizer):
    model = tiny_lm("llama")
    batch = lm_tokenizer(["The cat sat on the mat.", "import numpy"], padding=True, return_tensors="pt")
    mlp = model.model.layers[1].mlp
    probe = nw.Probe(model)
    layer = "model.layers.1.mlp.down_proj:input"
    acts = probe.run(batch, [layer])[layer]
    seen = []
    handle = mlp.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        model(**batch, use_cache=False)
    handle.remove()
    x = seen[0]
    neurons = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)  # what the down projection reads
    assert acts.values.shape == (2, batch["input_ids"].shape[1], mlp.down_proj.in_features)
    torch.testing.assert_close(acts.values, neurons.detach())
    assert probe.info(layer).units == mlp.down_proj.in_features
    assert hook_count(model) == 0


def test_editing_a_module_input_equals_the_manual_edit(tiny_lm, lm_tokenizer):
    model = tiny_lm("llama")
    batch = lm_tokenizer(["The cat sat on the mat."], return_tensors="pt")
    down = model.model.layers[0].mlp.down_proj
    probe = nw.Probe(model)
    with probe.edit({"model.layers.0.mlp.down_proj:input": nw.ablate([3, 7])}):
        edited = probe.run(batch, []).output.logits

    def zero(module, args):
        x = args[0].clone()
        x[..., [3, 7]] = 0
        return (x,)

    handle = down.register_forward_pre_hook(zero)
    with torch.no_grad():
        manual = model(**batch, use_cache=False).logits
    handle.remove()
    torch.testing.assert_close(edited, manual)
    assert hook_count(model) == 0


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox", "bert"])
def test_an_early_stopped_forward_captures_what_a_full_one_does(tiny_lm, lm_tokenizer, arch):
    model = tiny_lm(arch)
    batch = lm_tokenizer(["The cat sat on the mat.", "import numpy as np"], padding=True, return_tensors="pt")
    probe = nw.Probe(model)
    names = [n for n, _ in model.named_modules() if n]
    layers = [names[len(names) // 3], names[len(names) // 2]]
    last = model.get_submodule(names[-1])  # runs after the layers: must not run when stopping early
    calls = []
    handle = last.register_forward_hook(lambda *a: calls.append(1))
    try:
        full = probe.run(batch, layers)
        assert full.output is not None and calls
        calls.clear()
        early = probe.run(batch, layers, output=False)
    finally:
        handle.remove()
    assert early.output is None and not calls
    for layer in layers:
        assert torch.equal(early[layer].raw, full[layer].raw)
    assert hook_count(model) == 0


def test_captures_keep_no_key_value_cache(tiny_lm, lm_tokenizer):
    model = tiny_lm("gpt2")
    batch = lm_tokenizer(["The cat sat on the mat."], return_tensors="pt")
    output = nw.Probe(model).run(batch, ["transformer.h.0.mlp.act"]).output
    assert output.past_key_values is None
    with torch.no_grad():
        assert model(**batch).past_key_values is not None  # the model's own default keeps one


class Swallowing(nn.Module):
    """A model whose forward catches every exception of its first stage (some wrappers do)."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 6)
        self.second = nn.Linear(6, 3)

    def forward(self, x):
        try:
            h = self.first(x)
        except BaseException:  # the point of this model
            h = torch.zeros(x.shape[0], 6)
        return self.second(h)


def test_a_model_that_swallows_the_early_stop_still_works_and_says_so_once():
    model = Swallowing()
    x = torch.randn(2, 4)
    probe = nw.Probe(model)
    with pytest.warns(UserWarning, match="caught the exception"):
        first = probe.run(x, ["first"], output=False)
    torch.testing.assert_close(first["first"].raw, model.first(x).detach())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = probe.run(x, ["first"], output=False)  # no second warning, the full forward runs
    torch.testing.assert_close(again["first"].raw, first["first"].raw)
    assert hook_count(model) == 0


def test_a_wrong_input_layer_name_says_which_exist(tiny_lm):
    probe = nw.Probe(tiny_lm("llama"))
    with pytest.raises(nw.LayerError, match=r"'model\.layers\.1\.mlp\.down_proj:input'"):
        probe.run(torch.tensor([[1, 2, 3]]), ["model.layers.1.mlp.down_prj:input"])
