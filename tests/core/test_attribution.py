"""Attributions equal Captum's on the same forward function; the model is left exactly as it was."""

from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency
from torch import nn

import neurowidgets as nw
from neurowidgets.core.attribution import METHODS, attribute, occlusion_sweep

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def captum_reference(method, forward, x, window=None, **kwargs):
    """Captum's attributions of ``forward`` at ``x``; ``window``: the occlusion patch over x's dims."""
    if method == "gradient":
        return Saliency(forward).attribute(x, abs=False, **kwargs)
    if method == "gradient_x_input":
        return InputXGradient(forward).attribute(x, **kwargs)
    if method == "integrated_gradients":
        return IntegratedGradients(forward).attribute(x, n_steps=32, **kwargs)
    return Occlusion(forward).attribute(x, sliding_window_shapes=window, strides=window[:1] + (1,) * (len(window) - 1),
                                        baselines=0, **kwargs)  # fmt: skip


def check_close(ours, reference):
    assert reference.abs().max() > 1e-3, "a reference this small would let any answer pass"
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def state_of(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
    )


# -- equal to Captum ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("position", [(2, 1), None])
def test_digits_unit_equals_captum(digits, method, position):
    model, x = digits.model, digits.test_images[:6]
    features = model[:4]  # conv1 … relu2

    def forward(images):
        maps = features(images)[:, 3]
        return maps.sum((1, 2)) if position is None else maps[:, position[0], position[1]]

    ours = attribute(nw.Probe(model), x, "relu2", 3, method, position=position)
    check_close(ours, captum_reference(method, forward, x, window=(1, 2, 2)))


@pytest.mark.parametrize("method", METHODS)
def test_digits_class_logit_equals_captum(digits, method):
    model, x = digits.model, digits.test_images[:6]
    options = {"size": 3} if method == "occlusion" else {}
    ours = attribute(nw.Probe(model), x, None, 7, method, **options)
    check_close(ours, captum_reference(method, model, x, window=(1, 3, 3), target=7))


@pytest.mark.parametrize("arch, layer", [("gpt2", "transformer.h.0.mlp.act"), ("gpt2", None),
                                         ("bert", "encoder.layer.0.intermediate"),
                                         ("llama", "model.layers.0.mlp.down_proj:input")])  # fmt: skip
@pytest.mark.parametrize("method", METHODS)
def test_text_per_token_on_embeddings_equals_captum(tiny_lm, lm_tokenizer, arch, layer, method):
    """Token ids → attributions on the embedding output, one value per token; the reference feeds the same
    embeddings through ``inputs_embeds``."""
    model = tiny_lm(arch)
    batch = {k: v for k, v in lm_tokenizer(["the cat sat on the mat", "a dog"], padding=True,
                                           return_tensors="pt").items() if k != "token_type_ids"}  # fmt: skip
    embeddings = model.get_input_embeddings()(batch["input_ids"]).detach()
    probe = nw.Probe(model)

    def forward(embeds, mask):
        seen = []
        module = probe.module_of(layer) if layer else None
        if layer is None:
            return model(inputs_embeds=embeds, attention_mask=mask)[0][:, 2, 5]
        if layer.endswith(":input"):
            handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        else:
            handle = module.register_forward_hook(lambda m, args, out: seen.append(out))
        try:
            model(inputs_embeds=embeds, attention_mask=mask)
        finally:
            handle.remove()
        return seen[0][:, 2, 5]

    ours = attribute(probe, batch, layer, 5, method, position=2, **({"size": 1} if method == "occlusion" else {}))
    reference = captum_reference(method, forward, embeddings, window=(1, embeddings.shape[-1]),
                                 additional_forward_args=(batch["attention_mask"],))  # fmt: skip
    if method == "gradient":
        reference = reference.norm(dim=-1)
    elif method == "occlusion":
        reference = reference[..., 0]  # the same value over the embedding's width
    else:
        reference = reference.sum(-1)
    assert ours.shape == batch["input_ids"].shape
    check_close(ours, reference)


# -- integrated gradients: completeness ----------------------------------------------------------------


def test_integrated_gradients_reports_its_completeness_error(digits):
    model, x = digits.model, digits.test_images[:4]
    probe = nw.Probe(model)
    baseline = torch.full_like(x, 0.1)
    values, delta = attribute(probe, x, "fc1", 9, "integrated_gradients", baseline=baseline, return_delta=True)
    with torch.no_grad():
        gap = model[:7](x)[:, 9] - model[:7](baseline)[:, 9]
    torch.testing.assert_close(delta, values.flatten(1).sum(1) - gap)


def test_integrated_gradients_is_complete_on_a_smooth_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(5, 6)
    _, delta = attribute(nw.Probe(model), x, None, 1, "integrated_gradients", steps=32, return_delta=True)
    assert delta.abs().max() < 1e-5


def test_integrated_gradients_in_chunks_equals_one_pass(digits):
    probe, x = nw.Probe(digits.model), digits.test_images[:3]
    whole = attribute(probe, x, "relu2", 2, "integrated_gradients", position=5)
    parts = attribute(probe, x, "relu2", 2, "integrated_gradients", position=5, batch_size=5)
    torch.testing.assert_close(whole, parts)


# -- batching, layers, edits ---------------------------------------------------------------------------


def forward_count(model, run):
    calls = []
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        run()
    finally:
        handle.remove()
    return calls


def test_occlusion_sweep_and_integrated_gradients_are_batched(digits):
    probe, x = nw.Probe(digits.model), digits.test_images[:1]
    # 7 × 7 positions of a 2 × 2 patch: one pass for them all, one for the unoccluded reference.
    assert forward_count(digits.model, lambda: attribute(probe, x, None, 3, "occlusion")) == [1, 49]
    assert forward_count(digits.model, lambda: attribute(probe, x, None, 3, "integrated_gradients")) == [32]


def test_occlusion_covers_the_far_edge_and_reports_progress(digits):
    probe, x = nw.Probe(digits.model), digits.test_images[:2]
    seen = []
    values = attribute(probe, x, "relu2", 1, "occlusion", size=3, stride=3, batch_size=4,
                       progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert seen == [(4, 9), (8, 9), (9, 9)]  # patches at 0, 3, 5 on each axis
    assert values.shape == x.shape and torch.isfinite(values).all()


def test_occlusion_sweep_one_pass_at_a_time_and_a_cancel_leaves_the_model_as_it_was(digits):
    model, x = digits.model, digits.test_images[:2]
    probe = nw.Probe(model)
    sweep = occlusion_sweep(probe, x, "relu2", 1, batch_size=20)
    steps = []
    while True:
        try:
            steps.append(next(sweep))
        except StopIteration as finished:
            result = finished.value
            break
    assert steps == [(20, 49), (40, 49), (49, 49)]
    torch.testing.assert_close(result, attribute(probe, x, "relu2", 1, "occlusion"))

    model.train()
    before = state_of(model)
    try:
        sweep = occlusion_sweep(probe, x, "relu2", 1, batch_size=20)
        next(sweep)
        assert not any(m.training for m in model.modules())  # eval while it runs
        sweep.close()
        assert state_of(model) == before

        def cancel(done, total):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            attribute(probe, x, "relu2", 1, "occlusion", batch_size=20, progress=cancel)
        assert state_of(model) == before
    finally:
        model.eval()


def test_module_input_layer_equals_the_output_it_is(digits):
    probe, x = nw.Probe(digits.model), digits.test_images[:3]
    for method in ("gradient", "occlusion"):
        torch.testing.assert_close(
            attribute(probe, x, "fc2:input", 11, method), attribute(probe, x, "relu3", 11, method)
        )


def test_the_probes_active_edits_apply(digits):
    probe, x = nw.Probe(digits.model), digits.test_images[:3]
    assert attribute(probe, x, "relu2", 4, position=(1, 1)).abs().sum() > 0
    with probe.edit({"relu1": nw.ablate()}):  # relu2 then sees only conv2's bias: no path from the input
        assert (attribute(probe, x, "relu2", 4, position=(1, 1)) == 0).all()


def test_nan_gradients_come_back_as_nan():
    class Root(nn.Module):
        def forward(self, x):
            return x.sqrt()

    x = torch.tensor([[4.0, -1.0, 9.0]])
    values = attribute(nw.Probe(Root()), x, None, 1, "gradient")
    assert values[0, 1].isnan() and values[0, 0] == 0


# -- the model is left as it was ---------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_model_state_is_restored_after_success_and_error(digits, method):
    model = digits.model
    model.train()
    model.fc1.weight.requires_grad_(False)
    before = state_of(model)
    try:
        attribute(nw.Probe(model), digits.test_images[:2], "relu2", 3, method)
        assert state_of(model) == before
        with pytest.raises(IndexError):
            attribute(nw.Probe(model), digits.test_images[:2], "relu2", 99, method)  # raised inside the forward
        assert state_of(model) == before
    finally:
        model.fc1.weight.requires_grad_(True)
        model.eval()


# -- bad input -----------------------------------------------------------------------------------------


def test_bad_input_is_explained(digits, tiny_lm, lm_tokenizer):
    probe, x = nw.Probe(digits.model), digits.test_images[:2]
    with pytest.raises(ValueError, match="methods: gradient, gradient_x_input, integrated_gradients, occlusion"):
        attribute(probe, x, "relu2", 0, "lime")
    with pytest.raises(IndexError, match=r"unit 16 is out of range: layer 'relu2' has 16 units \(0–15\)"):
        attribute(probe, x, "relu2", 16)
    with pytest.raises(IndexError, match=r"position 64 is out of range: layer 'relu2' has 64 positions \(0–63\)"):
        attribute(probe, x, "relu2", 0, position=64)
    with pytest.raises(IndexError, match=r"position \(8, 0\) is out of range: .* grid of \(8, 8\)"):
        attribute(probe, x, "relu2", 0, position=(8, 0))
    with pytest.raises(IndexError, match=r"unit 10 is out of range: the model's output has 10 units"):
        attribute(probe, x, None, 10)
    with pytest.raises(nw.LayerError, match="Closest: 'relu2'"):
        attribute(probe, x, "relu_2", 0)
    with pytest.raises(TypeError, match="its options: baseline, batch_size, steps"):
        attribute(probe, x, "relu2", 0, "integrated_gradients", step=8)
    with pytest.raises(ValueError, match="integrated_gradients' only"):
        attribute(probe, x, "relu2", 0, "gradient", return_delta=True)
    with pytest.raises(ValueError, match="larger than the input's grid"):
        attribute(probe, x, "relu2", 0, "occlusion", size=9)

    model = tiny_lm("gpt2")
    ids = lm_tokenizer(["a cat"], return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match=r"taken on the output of the input embedding 'transformer.wte' \(Embedding\)"):
        attribute(
            nw.Probe(model), ids, None, 0, "integrated_gradients", baseline=torch.zeros_like(ids)[..., None, None]
        )


def test_integer_inputs_without_an_embedding_say_where_attributions_are_taken():
    class Table(nn.Module):
        def forward(self, ids):
            return torch.nn.functional.one_hot(ids, 5).float()

    with pytest.raises(TypeError, match="attributions are taken on the input embeddings"):
        attribute(nw.Probe(Table()), torch.tensor([[1, 2]]), None, 0)


def test_integer_inputs_find_the_first_embedding_fed_the_ids():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))  # no get_input_embeddings
    ids = torch.tensor([[1, 5, 7]])
    values = attribute(nw.Probe(model), ids, None, 2, "gradient_x_input", position=1)
    embedded = model[0](ids).detach()
    expected = torch.zeros(1, 3)
    expected[0, 1] = (model[1].weight[2] * embedded[0, 1]).sum()
    torch.testing.assert_close(values, expected)


def test_overlapping_freezes_of_shared_parameters_restore_every_flag():
    """A background twin shares its parameters: blocks that overlap out of order still restore them."""
    from neurowidgets.core.attribution import frozen

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    model[1].weight.requires_grad_(False)  # a flag of the user's own, kept
    first, second = frozen(model), frozen(model)
    first.__enter__()
    second.__enter__()
    assert not any(p.requires_grad for p in model.parameters())
    first.__exit__(None, None, None)  # the first to enter leaves first: still frozen for the second
    assert not any(p.requires_grad for p in model.parameters())
    second.__exit__(None, None, None)
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, True]
