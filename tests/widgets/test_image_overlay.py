"""ImageOverlay without a browser: the messages the front-end sends, and what the widget sends back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from frontend import FakeFrontend
from gate import Gate

import neurowidgets as nw
from neurowidgets.core.images import ImageAdapter, occlude
from neurowidgets.widgets import background
from neurowidgets.widgets.image_overlay import ImageOverlay
from neurowidgets.widgets.wire import decode

TOL = {"rtol": 1e-3, "atol": 1e-3}  # float16 on the wire


@pytest.fixture
def images(digits):
    return digits.test_images[:4]


@pytest.fixture
def overlay(digits, images):
    return ImageOverlay(digits.model, "relu2", images, selected_units=[3])


def probe_run(digits, images, layer="relu2"):
    capture = nw.Probe(digits.model).run(images, [layer])
    return capture[layer].values.numpy(), torch.softmax(capture.output, dim=1).numpy()


def request(frontend, kind, request_id=1, **args):
    """Exactly what js/lib/requests.ts sends; returns the widget's response."""
    frontend.custom({"type": "request", "id": request_id, "kind": kind, "args": args})
    responses = [m["content"] for m, _ in frontend.sent if m.get("method") == "custom"]
    assert responses and responses[-1]["id"] == request_id
    return responses[-1]


def test_state_sent_pixels_values_baseline_prediction(overlay, digits, images):
    state = overlay.get_state()
    assert state["pixels"]["dtype"] == "uint8" and state["pixels"]["shape"] == [4, 8, 8, 4]
    assert isinstance(state["pixels"]["data"], bytes) and len(state["pixels"]["data"]) == 4 * 8 * 8 * 4
    np.testing.assert_array_equal(decode(state["pixels"]), ImageAdapter().to_pixels(images))
    values, probs = probe_run(digits, images)
    assert state["values"]["dtype"] == "float16"
    np.testing.assert_allclose(decode(state["values"]), values, **TOL)
    np.testing.assert_allclose(decode(state["baseline"]), values[0], **TOL)
    assert state["positions_shape"] == [8, 8] and state["selected_units"] == [3]
    assert state["patch"] == [] and state["show"] == "activation" and state["opacity"] == 0.6
    assert state["fill"] == 0.0 and state["fill_colour"] == [0, 0, 0, 255]
    prediction = state["prediction"]
    assert prediction["patched"] is False
    assert prediction["index"] == prediction["original_index"] == int(probs[0].argmax())
    assert prediction["label"] == str(int(probs[0].argmax()))
    assert prediction["probability"] == pytest.approx(float(probs[0].max()), abs=1e-6)
    assert [c["index"] for c in prediction["top"]] == list(np.argsort(-probs[0], kind="stable")[:5])


def test_occlude_request_reruns_the_model_on_the_occluded_image(overlay, digits, images):
    frontend = FakeFrontend(overlay)
    before = overlay.values.copy()
    rect = [1, 2, 6, 7]
    response = request(frontend, "occlude", rect=rect)
    assert response == {"type": "response", "id": 1, "ok": True, "data": {"patch": rect}}

    occluded = occlude(images[:1], rect)
    expected, probs = probe_run(digits, occluded)
    assert overlay.patch == rect and frontend.last("patch") == rect
    np.testing.assert_allclose(frontend.last_array("values")[0], expected[0], **TOL)
    np.testing.assert_allclose(overlay.values[0], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(overlay.values[1:], before[1:])  # other examples: unedited
    np.testing.assert_array_equal(overlay.baseline, before[0])  # the baseline stays the original
    assert not np.allclose(overlay.values[0], before[0]), "the patch changes the activations"

    prediction = frontend.last("prediction")
    assert prediction["patched"] is True
    assert prediction["index"] == int(probs[0].argmax())
    assert prediction["probability"] == pytest.approx(float(probs[0].max()), abs=1e-6)
    _, original = probe_run(digits, images[:1])
    assert prediction["original_index"] == int(original[0].argmax())
    assert prediction["original_probability"] == pytest.approx(float(original[0].max()), abs=1e-6)
    assert prediction["original_now"] == pytest.approx(float(probs[0, original[0].argmax()]), abs=1e-6)
    for entry in prediction["top"]:
        assert entry["probability"] == pytest.approx(float(probs[0, entry["index"]]), abs=1e-6)
        assert entry["original_probability"] == pytest.approx(float(original[0, entry["index"]]), abs=1e-6)


def test_one_update_per_move_binary_and_the_response_after_it(overlay):
    frontend = FakeFrontend(overlay)
    request(frontend, "occlude", rect=[0, 0, 3, 3])
    kinds = [(m.get("method"), sorted(m.get("state", {}))) for m, _ in frontend.sent]
    assert kinds == [("update", ["patch", "prediction", "values"]), ("custom", [])], kinds
    msg, buffers = frontend.sent[0]
    assert len(buffers) == 1 and memoryview(buffers[0]).nbytes == 4 * 64 * 16 * 2  # float16
    assert len(json.dumps(msg)) < 2000, "no array values inside the JSON part"


def test_a_patch_partly_outside_the_image_is_clipped(overlay, digits, images):
    frontend = FakeFrontend(overlay)
    original = overlay.values.copy()
    request(frontend, "occlude", rect=[-3, 5, 4, 12])
    assert overlay.patch == [0, 5, 4, 8] and frontend.last("patch") == [0, 5, 4, 8]
    expected, _ = probe_run(digits, occlude(images[:1], [0, 5, 4, 8]))
    np.testing.assert_allclose(overlay.values[0], expected[0], rtol=1e-5, atol=1e-5)
    request(frontend, "occlude", 2, rect=[9, 9, 12, 12])  # wholly outside: no patch
    assert overlay.patch == []
    np.testing.assert_array_equal(overlay.values, original)
    assert overlay.prediction["patched"] is False


def test_clearing_the_patch_restores_the_original_values(overlay, digits, images):
    frontend = FakeFrontend(overlay)
    original = overlay.values.copy()
    request(frontend, "occlude", rect=[0, 0, 8, 4])
    assert not np.allclose(overlay.values[0], original[0])
    response = request(frontend, "clear", 2)
    assert response["ok"] is True
    assert overlay.patch == [] and frontend.last("patch") == []
    np.testing.assert_array_equal(overlay.values, original)
    np.testing.assert_allclose(frontend.last_array("values"), original, **TOL)
    assert overlay.prediction["patched"] is False
    assert overlay.prediction["probability"] == overlay.prediction["original_probability"]


def test_wrong_image_size_or_channels_is_a_clear_error_and_changes_nothing(overlay):
    frontend = FakeFrontend(overlay)
    overlay.patch = [1, 1, 3, 3]
    before = {name: np.copy(getattr(overlay, name)) for name in ("values", "pixels", "baseline")}
    state = (overlay.patch, overlay.prediction, overlay.layer, overlay.example)
    sent = len(frontend.sent)
    with pytest.raises(
        nw.ModelCallError,
        match=r"expects input of shape \(batch, 1, H, W\).*= \(1, 8, 8\); "
        r"the new images are \(1, 16, 16\)",
    ):
        overlay.set_input(torch.zeros(2, 1, 16, 16))
    with pytest.raises(nw.ModelCallError, match=r"to have 1 channels, but got 3.*the new images are \(3, 8, 8\)"):
        overlay.set_input(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"1, 3 or 4 channels"):
        overlay.set_input(torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\) tensor, got \(8, 8\)"):
        overlay.set_input(torch.zeros(8, 8))
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(overlay, name), value)
    assert (overlay.patch, overlay.prediction, overlay.layer, overlay.example) == state
    assert len(frontend.sent) == sent, "nothing was sent"


def test_constructor_rejects_images_the_model_does_not_take(digits):
    with pytest.raises(nw.ModelCallError, match=r"expects input of shape \(batch, 1, H, W\)"):
        ImageOverlay(digits.model, "relu2", torch.zeros(1, 3, 8, 8))
    with pytest.raises(TypeError, match="unknown argument"):
        ImageOverlay(digits.model, "relu2", torch.zeros(1, 1, 8, 8), colour="red")
    with pytest.raises(ValueError, match="class_names has 3 names but the model's output has 10 classes"):
        ImageOverlay(digits.model, "relu2", torch.zeros(1, 1, 8, 8), class_names=["a", "b", "c"])


def test_kernel_error_during_occlusion_is_shown_and_the_widget_stays_usable(overlay, monkeypatch):
    frontend = FakeFrontend(overlay)
    overlay.patch = [0, 0, 2, 2]
    values, prediction = overlay.values.copy(), overlay.prediction
    real_run = overlay.probe.run

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(overlay.probe, "run", broken)
    response = request(frontend, "occlude", rect=[0, 0, 4, 4])
    assert response["ok"] is False and "out of memory (simulated)" in response["error"]
    assert "occlude: RuntimeError: out of memory (simulated)" == overlay.error
    assert overlay.patch == [0, 0, 2, 2] and overlay.prediction == prediction
    np.testing.assert_array_equal(overlay.values, values)
    assert frontend.last("patch") == [0, 0, 2, 2]
    monkeypatch.setattr(overlay.probe, "run", real_run)
    assert request(frontend, "occlude", 2, rect=[0, 0, 4, 4])["ok"] is True
    assert overlay.error == "" and overlay.patch == [0, 0, 4, 4]


def test_bad_patch_from_the_frontend_is_reported(overlay):
    frontend = FakeFrontend(overlay)
    response = request(frontend, "occlude", rect=[1, 2, 3])
    assert response["ok"] is False and "[top, left, bottom, right]" in overlay.error
    assert overlay.patch == []


def test_another_example_carries_the_patch_and_restores_the_old_one(overlay, digits, images):
    frontend = FakeFrontend(overlay)
    original = overlay.values.copy()
    request(frontend, "occlude", rect=[2, 2, 6, 6])
    frontend.set_state(example=2)
    expected, probs = probe_run(digits, occlude(images[2:3], [2, 2, 6, 6]))
    np.testing.assert_array_equal(overlay.values[0], original[0])
    np.testing.assert_allclose(overlay.values[2], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(overlay.baseline, original[2])
    np.testing.assert_allclose(frontend.last_array("baseline"), original[2], **TOL)
    assert overlay.prediction["index"] == int(probs[0].argmax())


def test_python_side_patch_fill_and_layer(overlay, digits, images):
    frontend = FakeFrontend(overlay)
    overlay.patch = [0.4, 1.6, 3.2, 5]  # fractional: rounded to whole pixels
    assert overlay.patch == [0, 2, 3, 5]
    overlay.fill = 1.0
    assert frontend.last("fill_colour") == [255, 255, 255, 255]
    expected, _ = probe_run(digits, occlude(images[:1], [0, 2, 3, 5], 1.0))
    np.testing.assert_allclose(overlay.values[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(overlay.occluded_image(), occlude(images[:1], [0, 2, 3, 5], 1.0))

    frontend.set_state(layer="pool")  # another layer: still occluded, on the pool's 4×4 grid
    expected, _ = probe_run(digits, occlude(images[:1], [0, 2, 3, 5], 1.0), "pool")
    assert overlay.positions_shape == [4, 4] and overlay.values.shape == (4, 16, 16)
    np.testing.assert_allclose(overlay.values[0], expected[0], rtol=1e-5, atol=1e-5)
    unedited, _ = probe_run(digits, images, "pool")
    np.testing.assert_allclose(overlay.baseline, unedited[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="patch is"):
        overlay.patch = [1, 2]


def test_linear_layer_has_one_position_and_still_probes_the_prediction(digits, images):
    overlay = ImageOverlay(
        digits.model, "fc1", images[:1], class_names=list("zero one two three four five six seven eight nine".split())
    )
    frontend = FakeFrontend(overlay)
    assert overlay.positions_shape == [] and overlay.values.shape == (1, 1, 64)
    assert overlay.prediction["label"] in overlay.class_names
    request(frontend, "occlude", rect=[0, 0, 8, 8])
    expected, probs = probe_run(digits, occlude(images[:1], [0, 0, 8, 8]), "fc1")
    np.testing.assert_allclose(overlay.values[0], expected[0], rtol=1e-5, atol=1e-5)
    assert overlay.prediction["label"] == overlay.class_names[int(probs[0].argmax())]


def test_normalised_colour_images_with_a_per_channel_fill():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)
    ).eval()
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    raw = torch.rand(2, 3, 6, 6)
    images = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    adapter = ImageAdapter(mean=mean, std=std)
    overlay = ImageOverlay(model, "1", images, adapter=adapter, fill=[-2.5, -1.6, -1.0])
    assert np.abs(overlay.pixels[..., :3].astype(int) - np.round(raw.permute(0, 2, 3, 1).numpy() * 255)).max() <= 1
    assert overlay.fill_colour == [0, 0, 0, 255]  # the normalised fill is black once shown
    overlay.patch = [1, 1, 3, 3]
    capture = nw.Probe(model).run(occlude(images[:1], [1, 1, 3, 3], [-2.5, -1.6, -1.0]), ["1"])
    np.testing.assert_allclose(overlay.values[0], capture["1"].values[0].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="one per channel"):
        overlay.fill = [0.0, 1.0]


def test_moves_run_with_the_chosen_torch_threads_and_restore_the_setting(digits, images, monkeypatch):
    overlay = ImageOverlay(digits.model, "relu2", images[:1], move_threads=1)
    seen = []
    real_run = overlay.probe.run

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_run(*args, **kwargs)

    monkeypatch.setattr(overlay.probe, "run", spy)
    before = torch.get_num_threads()
    overlay.patch = [0, 0, 3, 3]
    assert seen == [1] and torch.get_num_threads() == before
    overlay.move_threads = None  # decide by timing: both settings are tried once, then one is kept
    seen.clear()
    overlay.patch = [0, 0, 4, 4]
    overlay.patch = [0, 0, 5, 5]
    if before > 1:
        assert seen[:2] == [before, 1] and seen[2] in (1, before)
    assert torch.get_num_threads() == before


# -- attribution mode ---------------------------------------------------------------------------------


def kernel_attribution(model, image, layer, unit, method, position=None, **options):
    """The reference: nw.attribute on the image the overlay shows, summed over the channels."""
    values = nw.attribute(nw.Probe(model), image, layer, unit, method, position=position, **options)
    return values[0].sum(0).numpy()


def test_attribution_mode_follows_unit_position_patch_and_method(overlay, digits, images):
    frontend = FakeFrontend(overlay)
    assert overlay.attribution is None  # nothing computed outside the mode
    frontend.set_state(show="attribution")
    expected = kernel_attribution(digits.model, images[:1], "relu2", 3, "integrated_gradients")
    sent = frontend.last("attribution")
    assert sent["dtype"] == "float32" and sent["shape"] == [8, 8]
    np.testing.assert_array_equal(decode(sent), expected)
    info = overlay.attribution_info
    assert info["method"] == "integrated_gradients" and info["unit"] == 3 and info["seconds"] > 0
    assert info["nan"] == 0

    frontend.set_state(position=27)  # one position of the layer's grid
    np.testing.assert_array_equal(
        overlay.attribution, kernel_attribution(digits.model, images[:1], "relu2", 3, "integrated_gradients", 27)
    )
    request(frontend, "occlude", rect=[0, 0, 4, 4])  # the patch: attributions of the occluded image
    occluded = occlude(images[:1], [0, 0, 4, 4])
    np.testing.assert_array_equal(
        overlay.attribution, kernel_attribution(digits.model, occluded, "relu2", 3, "integrated_gradients", 27)
    )
    frontend.set_state(attribution_method="gradient", selected_units=[5])
    np.testing.assert_array_equal(
        overlay.attribution, kernel_attribution(digits.model, occluded, "relu2", 5, "gradient", 27)
    )
    frontend.set_state(example=2)  # another example: unoccluded? the patch stays on the shown example
    np.testing.assert_array_equal(
        overlay.attribution,
        kernel_attribution(digits.model, occlude(images[2:3], [0, 0, 4, 4]), "relu2", 5, "gradient", 27),
    )
    frontend.set_state(selected_units=[])
    assert overlay.attribution is None and overlay.attribution_info == {}
    frontend.set_state(selected_units=[1], show="activation")
    assert overlay.attribution is None


def test_occlusion_sweeps_in_the_background_with_progress(overlay, digits, images):
    frontend = FakeFrontend(overlay)
    frontend.set_state(attribution_method="occlusion", show="attribution")
    background.wait(overlay, timeout=60)
    expected = kernel_attribution(digits.model, images[:1], "relu2", 3, "occlusion", size=2, stride=1)
    np.testing.assert_allclose(overlay.attribution, expected, rtol=1e-6, atol=1e-6)
    info = overlay.attribution_info
    assert info["done"] == info["total"] == 49 and info["seconds"] > 0 and info["method"] == "occlusion"


def test_an_occlusion_sweep_is_cancelled_by_request_and_by_a_newer_one(digits, images):
    gate = Gate()
    model = torch.nn.Sequential(gate, digits.model)
    overlay = ImageOverlay(model, "1.relu2", images, selected_units=[3])
    frontend = FakeFrontend(overlay)
    frontend.set_state(attribution_method="occlusion", show="attribution")
    gate.reached()  # the sweep's first forward pass waits in the background
    assert overlay.attribution is None and overlay.attribution_info["done"] == 0
    response = request(frontend, "cancel_sweep")
    assert response["ok"] is True and overlay.attribution_info["cancelled"] is True
    gate.open()
    background.wait(overlay, timeout=60)
    assert overlay.attribution is None  # the cancelled sweep published nothing
    frontend.set_state(attribution_method="gradient")  # a newer request starts afresh
    assert overlay.attribution is not None and "cancelled" not in overlay.attribution_info


def test_attribution_leaves_the_model_as_it_was(digits, images):
    model = digits.model
    flags = [p.requires_grad for p in model.parameters()]
    overlay = ImageOverlay(model, "relu2", images, selected_units=[3], show="attribution")
    assert overlay.attribution is not None
    assert [p.requires_grad for p in model.parameters()] == flags and not model.training
    assert all(p.grad is None for p in model.parameters())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0


def test_attribution_of_the_prediction_with_its_occlusion_sweep(overlay, digits, images):
    """The map for the class the model predicts (no unit needed): its logit's attributions."""
    frontend = FakeFrontend(overlay)
    frontend.set_state(show="attribution", attribution_target="prediction", selected_units=[])
    predicted = int(probe_run(digits, images[:1])[1][0].argmax())
    expected = kernel_attribution(digits.model, images[:1], None, predicted, "integrated_gradients")
    np.testing.assert_array_equal(overlay.attribution, expected)
    info = overlay.attribution_info
    assert (info["target"], info["layer"], info["unit"]) == ("prediction", None, predicted)
    frontend.set_state(attribution_method="occlusion")
    background.wait(overlay, timeout=60)
    expected = kernel_attribution(digits.model, images[:1], None, predicted, "occlusion", size=2, stride=1)
    np.testing.assert_allclose(overlay.attribution, expected, rtol=1e-6, atol=1e-6)
    assert overlay.attribution_info["done"] == 49
