"""Default layers and the picker's groups, found from the module tree of each family's shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neurowidgets as nw
from neurowidgets.core.layers import ATTENTION, MLP, OTHER, RESIDUAL, default_layer, map_layers

EXPECTED = {  # family → (MLP neurons of block 1, attention output of block 0, a residual-stream block)
    "gpt2": ("transformer.h.1.mlp.act", "transformer.h.0.attn", "transformer.h.0"),
    "neox": ("gpt_neox.layers.1.mlp.act", "gpt_neox.layers.0.attention", "gpt_neox.layers.0"),
    "llama": ("model.layers.1.mlp.down_proj:input", "model.layers.0.self_attn", "model.layers.0"),
    "bert": ("encoder.layer.1.intermediate", "encoder.layer.0.attention", "encoder.layer.0"),
}


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_the_default_text_layer_is_a_middle_blocks_mlp_neurons(tiny_lm, lm_tokenizer, arch):
    model = tiny_lm(arch)
    batch = lm_tokenizer(["The cat sat on the mat."], return_tensors="pt")
    probe = nw.Probe(model)
    layer, layers = default_layer(probe, batch, "text")
    neurons, attention, block = EXPECTED[arch]
    assert layer == neurons  # block 1 of 2: the middle one
    assert len(layers.neurons) == 2
    groups = dict(layers.groups)
    assert list(groups) == [MLP, ATTENTION, RESIDUAL, OTHER]
    assert groups[MLP] == layers.neurons and attention in groups[ATTENTION] and block in groups[RESIDUAL]
    # the neurons are what the MLP's down projection reads, and have the MLP's width
    width = probe.run(batch, [layer], output=False)[layer].num_units
    assert width == (getattr(model.config, "n_inner", None) or model.config.intermediate_size)
    assert not any("lm_head" in name or "embed_out" in name for name in groups[MLP])


def test_images_default_to_the_last_spatial_layer(digits):
    probe = nw.Probe(digits.model)
    layer, layers = default_layer(probe, digits.images[:2], "image")
    assert layer == "pool"  # the last layer whose positions are an H×W grid
    assert layers.groups == []  # no repeated blocks: the picker lists the layers as they are


def test_a_model_without_blocks_or_mlp_falls_back_to_a_sized_layer():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    layer, _ = default_layer(nw.Probe(model), torch.randn(3, 4), "tensor")
    assert layer in {"0", "1", "2"}


def test_explore_picks_the_neurons_and_groups_the_picker(tiny_lm, lm_tokenizer):
    model = tiny_lm("llama")
    view = nw.explore(model, ["The cat sat on the mat.", "A dog."], tokenizer=lm_tokenizer)
    assert view.layer == "model.layers.1.mlp.down_proj:input"
    assert view.values.shape[2] == model.config.intermediate_size
    assert view.layer in view.layers
    assert [g["label"] for g in view.layer_groups] == [MLP, ATTENTION, RESIDUAL, OTHER]
    view.layer = "model.layers.0.self_attn"  # switching layer from the picker
    assert view.values.shape[2] == model.config.hidden_size


def test_trace_keeps_the_model_as_it_was(tiny_lm, lm_tokenizer):
    model = tiny_lm("gpt2").train()
    probe = nw.Probe(model)
    map_layers(probe, lm_tokenizer(["x y"], return_tensors="pt"))
    assert model.training and all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    model.eval()
