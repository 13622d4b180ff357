"""Image adapter: tensors → display pixels (normalisation undone), and patch occlusion with clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurowidgets.core.images import ImageAdapter, clip_rect, occlude


def test_grey_images_become_opaque_rgba_bytes(digits):
    images = digits.images[:4]
    pixels = ImageAdapter().to_pixels(images)
    assert pixels.shape == (4, 8, 8, 4) and pixels.dtype == np.uint8
    expected = np.round(images[:, 0].numpy() * 255).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)
    assert (pixels[..., 3] == 255).all()
    assert pixels.max() == 255 and pixels.min() == 0, "the digits use the whole range"


def test_rgb_and_rgba_channels_land_in_place():
    rgb = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(2, 3, 2, 3)
    pixels = ImageAdapter().to_pixels(rgb)
    assert pixels.shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(pixels[0, 0, 0], [0, 128, 255, 255])
    rgba = torch.tensor([1.0, 0.0, 0.0, 0.25]).view(1, 4, 1, 1)
    np.testing.assert_array_equal(ImageAdapter().to_pixels(rgba)[0, 0, 0], [255, 0, 0, 64])


def test_normalisation_is_undone_before_the_value_range_is_mapped():
    torch.manual_seed(0)
    raw = torch.rand(2, 3, 5, 4)  # what a camera gives, in [0, 1]
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's
    normalised = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    pixels = ImageAdapter(mean=mean, std=std).to_pixels(normalised)
    expected = np.round(raw.permute(0, 2, 3, 1).numpy() * 255)
    assert np.abs(pixels[..., :3].astype(int) - expected).max() <= 1  # float32 round trip
    assert (pixels[..., 3] == 255).all()


def test_value_range_and_out_of_range_values_are_clamped_and_nan_is_black():
    x = torch.tensor([0.0, 127.5, 255.0, 300.0, -5.0, float("nan")]).view(1, 1, 1, 6)
    pixels = ImageAdapter(value_range=(0, 255)).to_pixels(x)
    np.testing.assert_array_equal(pixels[0, 0, :, 0], [0, 128, 255, 255, 0, 0])


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(8, 8), r"\(batch, channels, height, width\) tensor, got \(8, 8\)"),
        (torch.zeros(1, 2, 8, 8), r"1, 3 or 4 channels.*\(1, 2, 8, 8\)"),
        (np.zeros((1, 1, 8, 8)), "got ndarray"),
    ],
)
def test_wrong_image_shapes_say_what_is_expected(bad, message):
    with pytest.raises(ValueError, match=message):
        ImageAdapter().to_pixels(bad)


def test_clip_rect_clips_orders_and_rejects_empty():
    assert clip_rect([2, 3, 5, 6], 8, 8) == (2, 3, 5, 6)
    assert clip_rect([-3, -1, 2, 20], 8, 8) == (0, 0, 2, 8)  # partly outside: what is inside
    assert clip_rect([5, 6, 2, 3], 8, 8) == (2, 3, 5, 6)  # corners in either order
    assert clip_rect([8, 0, 12, 4], 8, 8) is None  # wholly outside
    assert clip_rect([3, 3, 3, 6], 8, 8) is None  # empty
    assert clip_rect([1.2, 0.6, 3.7, 2.4], 8, 8) == (1, 1, 4, 2)  # fractional: rounded
    with pytest.raises(ValueError, match=r"\(top, left, bottom, right\)"):
        clip_rect([1, 2, 3], 8, 8)


def test_occlude_sets_only_the_patch_of_every_image_and_leaves_the_input_alone(digits):
    images = digits.images[:3].clone()
    before = images.clone()
    result = occlude(images, (2, 1, 5, 4), fill=0.5)
    torch.testing.assert_close(images, before)  # a copy, not in place
    assert (result[:, :, 2:5, 1:4] == 0.5).all()
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[2:5, 1:4] = False
    torch.testing.assert_close(result[:, :, mask], before[:, :, mask])


def test_occlusion_partly_outside_is_clipped_and_wholly_outside_changes_nothing(digits):
    images = digits.images[:1]
    result = occlude(images, (-4, 6, 3, 12))
    expected = images.clone()
    expected[..., 0:3, 6:8] = 0
    torch.testing.assert_close(result, expected)
    torch.testing.assert_close(occlude(images, (9, 9, 12, 12)), images)


def test_occlusion_fill_per_channel():
    images = torch.ones(2, 3, 4, 4)
    result = occlude(images, (0, 0, 2, 2), fill=[0.1, 0.2, 0.3])
    torch.testing.assert_close(result[1, :, 1, 1], torch.tensor([0.1, 0.2, 0.3]))
    assert (result[:, :, 2:, :] == 1).all() and (result[:, :, :, 2:] == 1).all()
