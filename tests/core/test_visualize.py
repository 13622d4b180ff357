"""Feature visualizations drive their unit past the dataset's best example; seeded; the model left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neurowidgets as nw
from neurowidgets.core.images import ImageAdapter
from neurowidgets.core.visualize import visualize

CENTRE = 4 * 8 + 4  # the flat index of (4, 4) in relu2's 8 × 8 grid


@pytest.fixture(scope="module")
def top_scanned(digits):
    """Each unit's top activation over every digit and position, as the scan behind a feature card finds it."""
    result = nw.scan(nw.Probe(digits.model), digits.images, ["relu2", "relu3"], k=1, progress=False, cache=False)
    return lambda layer, unit: result[layer].top_k(unit)[0][0]


@pytest.mark.parametrize(
    "layer, unit, position",
    [("relu2", 0, "center"), ("relu2", 1, "center"), ("relu2", 2, "center"), ("relu3", 0, None), ("relu3", 1, None)],
)
def test_visualization_beats_the_units_top_scanned_example(digits, top_scanned, layer, unit, position):
    """The first units of a conv layer (at the channel's centre, against the best example at any position)
    and of the dense layer; not picked."""
    probe = nw.Probe(digits.model)
    image = visualize(probe, layer, unit, size=8, position=position, steps=256)
    assert image.shape == (1, 1, 8, 8) and 0 <= image.min() and image.max() <= 1
    values = probe.run(image, [layer])[layer].values[0, :, unit]
    reached = values[CENTRE] if position == "center" else values[0]
    assert reached > top_scanned(layer, unit)


def test_negative_direction_goes_below_every_example(digits):
    probe = nw.Probe(digits.model)
    image = visualize(probe, "fc1", 0, size=8, negative=True, steps=128)
    lowest = probe.run(digits.images, ["fc1"])["fc1"].values[:, 0, 0].min()
    assert probe.run(image, ["fc1"])["fc1"].values[0, 0, 0] < lowest


def test_seeded_repeatable_and_the_global_random_state_untouched(digits):
    probe = nw.Probe(digits.model)
    state = torch.random.get_rng_state()
    first = visualize(probe, "relu3", 5, size=8, steps=16, jitter=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, visualize(probe, "relu3", 5, size=8, steps=16, jitter=1))
    assert not torch.equal(first, visualize(probe, "relu3", 5, size=8, steps=16, jitter=1, seed=1))


def state_of(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
    )


def test_progress_every_step_cancel_by_raising_and_the_model_left_as_it_was(digits):
    model = digits.model
    model.train()
    model.conv1.weight.requires_grad_(False)
    before = state_of(model)
    seen = []

    def stop_at_five(step, steps, value):
        seen.append((step, steps))
        if step == 5:
            raise KeyboardInterrupt

    try:
        visualize(nw.Probe(model), "relu2", 3, size=8, steps=8, progress=lambda *a: seen.append(a[:2]))
        assert seen == [(i, 8) for i in range(1, 9)] and state_of(model) == before
        seen.clear()
        with pytest.raises(KeyboardInterrupt):
            visualize(nw.Probe(model), "relu2", 3, size=8, steps=8, progress=stop_at_five)
        assert len(seen) == 5 and state_of(model) == before
    finally:
        model.conv1.weight.requires_grad_(True)
        model.eval()


@pytest.mark.parametrize(
    "switches",
    [{}, {"fft": False}, {"decorrelate": False}, {"jitter": 0, "scale": 0, "rotate": 0}],
    ids=["all", "pixels", "correlated", "no-transforms"],
)
def test_each_regularizer_switches_off_on_a_colour_model(switches):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    adapter = ImageAdapter(mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    probe = nw.Probe(model)
    image = visualize(probe, "2", 1, size=(40, 36), steps=24, adapter=adapter, **switches)
    assert image.shape == (1, 3, 40, 36)
    pixels = image * 0.2 + torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)  # back to [0, 1]
    assert pixels.min() >= 0 and pixels.max() <= 1
    start = visualize(probe, "2", 1, size=(40, 36), steps=1, adapter=adapter, **switches)
    assert probe.run(image, ["2"])["2"].values[0, :, 1].sum() > probe.run(start, ["2"])["2"].values[0, :, 1].sum()


def test_bad_input_is_explained(digits):
    probe = nw.Probe(digits.model)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        visualize(probe, "relu2", 0, size=8, steps=0)
    with pytest.raises(nw.LayerError, match="Closest: 'relu2'"):
        visualize(probe, "relu_2", 0, size=8)
    with pytest.raises(IndexError, match=r"unit 16 is out of range: layer 'relu2' has 16 units"):
        visualize(probe, "relu2", 16, size=8, steps=1)
