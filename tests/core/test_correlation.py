"""Correlations over a sample equal numpy's; maxima leave padding out; the units and pairs chosen are
the ones brute force finds."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

import neurowidgets as nw
from neurowidgets.core.correlation import (
    correlation,
    matrix_units,
    max_activations,
    strongest_pair,
    undefined_because,
)


def corrcoef(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns: NaN, as expected
        return np.corrcoef(values, rowvar=False)


class Embed(torch.nn.Module):
    """A text model's first layer: token ids (with an attention mask) → (batch, tokens, 3)."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(5, 3)
        with torch.no_grad():
            self.emb.weight.copy_(torch.arange(15.0).view(5, 3))

    def forward(self, input_ids, attention_mask):
        return self.emb(input_ids)


def test_padding_is_left_out_of_the_maxima():
    ids = torch.tensor([[1, 2, 4], [0, 1, 4]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])  # row 1's last token (the largest embedding) is padding
    maxima = max_activations(nw.Probe(Embed()), {"input_ids": ids, "attention_mask": mask}, "emb")
    assert maxima.tolist() == [[12.0, 13.0, 14.0], [3.0, 4.0, 5.0]]


def test_maxima_of_a_conv_layer_are_over_its_grid(digits):
    maxima = max_activations(nw.Probe(digits.model), digits.images[:6], "relu2")
    with torch.no_grad():
        by_hand = digits.model[:4](digits.images[:6]).amax(dim=(2, 3)).numpy()
    np.testing.assert_array_equal(maxima, by_hand)


def test_correlation_equals_numpy_and_names_what_has_none():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 6)).astype(np.float32)
    values[:, 3] = 2.0  # constant
    values[5, 4] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out
        r = correlation(values)
    expected = corrcoef(values.astype(np.float64))
    expected[:, 4] = expected[4, :] = np.nan  # numpy gives NaN (and warns) for the column with inf
    np.testing.assert_allclose(r, expected, atol=1e-12, equal_nan=True)
    assert undefined_because(values[:, [0, 3]]) == "n/a (a constant unit)"
    assert undefined_because(values[:, [0, 4]]) == "n/a (NaN/inf values)"


def test_matrix_units_are_the_selected_or_the_most_varying():
    values = np.random.default_rng(1).normal(size=(30, 10)) * np.arange(1, 11)  # unit 9 varies most
    assert matrix_units(values, [7, 2, 5], 2) == [2, 7]
    assert matrix_units(values, [], 4) == [6, 7, 8, 9]
    assert matrix_units(values, [0], 4) == [0, 7, 8, 9]  # the selected unit replaces the last one
    assert matrix_units(values, [8], 4) == [6, 7, 8, 9]


def test_strongest_pair_is_the_brute_force_one():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(50, 5))
    values[:, 4] = -values[:, 1] + 0.1 * rng.normal(size=50)  # 1 and 4: strongly anti-correlated
    values[:, 2] = 7.0  # no correlation at all
    units = [10, 11, 12, 13, 14]
    r = correlation(values)
    pairs = [(i, j) for i, j in itertools.permutations(range(5), 2) if not np.isnan(r[i, j])]
    i, j = max(pairs, key=lambda p: abs(r[p]))
    assert strongest_pair(r, units) == (units[i], units[j]) == (11, 14)
    for unit in (10, 13):
        k = units.index(unit)
        partner = max((j for j in range(5) if j != k and not np.isnan(r[k, j])), key=lambda j: abs(r[k, j]))
        assert strongest_pair(r, units, unit) == (unit, units[partner])
    assert strongest_pair(np.ones((1, 1)), [3]) == (3, 3)


@pytest.mark.parametrize("rows", [2, 3])
def test_two_or_three_examples_still_give_a_symmetric_matrix(rows):
    values = np.arange(rows * 3, dtype=np.float64).reshape(rows, 3) ** 2
    r = correlation(values)
    np.testing.assert_allclose(r, r.T)
    np.testing.assert_allclose(np.diag(r), 1.0)
