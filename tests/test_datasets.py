"""The digits shipped with the package are scikit-learn's, value for value."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from neurowidgets.datasets import load_digit_images


def test_shipped_digits_equal_scikit_learns():
    images, labels = load_digit_images()
    reference = load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    np.testing.assert_array_equal(images.squeeze(1).numpy(), (reference.images / 16.0).astype(np.float32))
    np.testing.assert_array_equal(labels.numpy(), reference.target)
