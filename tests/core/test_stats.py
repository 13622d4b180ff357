"""Streaming statistics against brute-force numpy over the materialised activations."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import neurowidgets as nw
from neurowidgets.core.stats import HISTOGRAM, QUANTILE_CELLS, LayerStats, example_hash

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# -- the brute-force reference ----------------------------------------------------------------------


def brute_force(batches, k, samples, threshold=0.0, start=0):
    """Every statistic from materialised batches [(values (B, P, U), valid (B, P) or None)]."""
    values = np.concatenate([v for v, _ in batches]).astype(np.float64)
    valid = np.concatenate([np.ones(v.shape[:2], bool) if m is None else m for v, m in batches])
    examples, _, units = values.shape
    rows = values[valid]  # (n, units): the valid positions
    finite = np.isfinite(rows)
    ref = {
        "count": finite.sum(0),
        "nan_count": np.isnan(rows).sum(0),
        "inf_count": np.isinf(rows).sum(0),
        "mean": np.full(units, np.nan),
        "var": np.full(units, np.nan),
        "min": np.full(units, np.inf),
        "max": np.full(units, -np.inf),
        "density": np.zeros(units),
        "hist": np.zeros((units, HISTOGRAM.num_bins), np.int64),
    }
    for u in range(units):
        x = rows[finite[:, u], u]
        if x.size:
            ref["mean"][u], ref["var"][u] = x.mean(), x.var()
            ref["min"][u], ref["max"][u] = x.min(), x.max()
            ref["density"][u] = (x > threshold).mean()
            ref["hist"][u] = np.bincount(HISTOGRAM.index_numpy(x), minlength=HISTOGRAM.num_bins)
    # each example's maximum over its valid, finite positions (first position on ties)
    masked = np.where(valid[:, :, None] & np.isfinite(values), values, -np.inf)
    best, where = masked.max(1), masked.argmax(1)  # (examples, units)
    low = np.where(valid[:, :, None] & np.isfinite(values), values, np.inf)
    worst, low_where = low.min(1), low.argmin(1)  # each example's minimum (first position on ties)
    index = np.arange(start, start + examples)
    hashes = example_hash(torch.from_numpy(index)).numpy()
    ref["top"], ref["bottom"], ref["samples"] = [], [], []
    for u in range(units):
        ok = best[:, u] > -np.inf
        order = np.lexsort((index[ok], -best[ok, u]))[:k]
        ref["top"].append([(best[ok, u][i], index[ok][i], where[ok, u][i]) for i in order])
        order = np.lexsort((index[ok], worst[ok, u]))[:k]
        ref["bottom"].append([(worst[ok, u][i], index[ok][i], low_where[ok, u][i]) for i in order])
        cells = QUANTILE_CELLS.index_numpy(best[:, u])
        per_cell = {}
        for cell in np.unique(cells[ok]):
            chosen = np.flatnonzero(ok & (cells == cell))
            chosen = chosen[np.argsort(hashes[chosen])[:samples]]
            per_cell[int(cell)] = sorted((best[i, u], index[i], where[i, u]) for i in chosen)
        ref["samples"].append(per_cell)
    return ref


def assert_matches(stats: LayerStats, ref, moments_rtol=1e-6):
    np.testing.assert_array_equal(stats.count, ref["count"])
    np.testing.assert_array_equal(stats.nan_count, ref["nan_count"])
    np.testing.assert_array_equal(stats.inf_count, ref["inf_count"])
    np.testing.assert_allclose(stats.mean, ref["mean"], rtol=moments_rtol, atol=1e-9)
    np.testing.assert_allclose(stats.var, ref["var"], rtol=moments_rtol, atol=1e-9)
    np.testing.assert_array_equal(stats.min, ref["min"])
    np.testing.assert_array_equal(stats.max, ref["max"])
    np.testing.assert_array_equal(stats.density, ref["density"])
    np.testing.assert_array_equal(stats.histograms(), ref["hist"])
    edges = HISTOGRAM.edges()
    for u in range(stats.units):
        assert stats.top_k(u) == [(float(v), int(e), int(p)) for v, e, p in ref["top"][u]]
        assert stats.bottom_k(u) == [(float(v), int(e), int(p)) for v, e, p in ref["bottom"][u]]
        counts, span = stats.histogram(u)
        assert counts.sum() == ref["count"][u]
        if counts.size:
            first = int(np.flatnonzero(ref["hist"][u])[0])
            np.testing.assert_array_equal(span, edges[first : first + counts.size + 1])
        got = {}
        for low, high, entries in stats.samples(u):
            cell = int(np.searchsorted(QUANTILE_CELLS.edges(), low, side="right")) - 1
            assert (QUANTILE_CELLS.edges()[cell], QUANTILE_CELLS.edges()[cell + 1]) == (low, high)
            assert entries == sorted(entries, key=lambda e: (-e[0], e[1]))
            got[cell] = sorted(entries)
        want = {c: [(float(v), int(e), int(p)) for v, e, p in x] for c, x in ref["samples"][u].items()}
        assert got == want, f"unit {u}"


def materialise(probe, data, layer, batch_size):
    batches = []
    for i in range(0, len(data), batch_size):
        acts = probe.run(data[i : i + batch_size], [layer])[layer]
        batches.append((acts.values.double().cpu().numpy(), None))
    return batches


# -- bins and hashes --------------------------------------------------------------------------------


def test_bins_are_fixed_exact_and_match_a_search_of_the_edges():
    torch.manual_seed(0)
    scale = 10.0 ** torch.randint(-9, 9, (20000,)).float()
    edges = torch.from_numpy(HISTOGRAM.edges()[1:-1]).float()
    special = [0.0, -0.0, 2.0**-20, -(2.0**-20), 2.0**-21, -(2.0**-21), 2.0**20, -(2.0**20), 1e30, -1e30]
    values = torch.cat([torch.randn(20000) * scale, edges, -edges, torch.tensor(special)])
    for bins in (HISTOGRAM, QUANTILE_CELLS):
        index = bins.index(values)
        assert index.dtype == torch.int32
        np.testing.assert_array_equal(index.long().numpy(), bins.index_numpy(values.numpy()))
        e = bins.edges()
        assert e.size == bins.num_bins + 1 and np.all(np.diff(e) > 0)
        v = values.double().numpy()
        i = index.long().numpy()
        assert np.all((e[i] <= v) & (v < e[i + 1]))  # every bin is [low, high), like numpy's
    assert HISTOGRAM.num_bins == 643 and QUANTILE_CELLS.num_bins == 83
    zero = HISTOGRAM.index(torch.tensor([0.0, -0.0, 1e-7, -1e-7]))
    assert zero.tolist() == [HISTOGRAM.zero_bin] * 4


def test_example_hash_is_a_bijection_on_36_bits():
    index = torch.arange(200_000)
    hashed = example_hash(index)
    assert hashed.unique().numel() == index.numel()
    assert int(hashed.min()) >= 0 and int(hashed.max()) < 2**36
    assert example_hash(torch.tensor([2**36 - 1])).item() < 2**36


# -- against brute force ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_digits_scan_matches_brute_force(digits, device):
    model = digits.model.to(device)
    probe = nw.Probe(model)
    data = digits.images[:300]
    layers = ["conv1", "relu2", "fc1"]
    result = nw.scan(probe, data, layers, k=7, samples=3, batch_size=64, cache=False, progress=False)
    assert result.layers == layers and result.num_examples == 300 and result.complete
    assert result["conv1"].positions_shape == (8, 8)
    assert result["fc1"].positions_shape == ()
    for layer in layers:
        ref = brute_force(materialise(probe, data, layer, 64), k=7, samples=3)
        assert_matches(result[layer], ref)
    digits.model.to("cpu")


class Steps(nn.Module):
    """Values on a grid of 0.5: many exact ties, across examples and across positions."""

    def forward(self, x):
        return torch.round(x * 2) / 2


def tie_model():
    torch.manual_seed(1)
    return nn.Sequential(OrderedDict(lin=nn.Linear(3, 5), steps=Steps(), act=nn.ReLU()))


def test_top_k_ties_go_to_the_lower_example_and_position():
    model = tie_model()
    data = torch.randint(-2, 3, (90, 4, 3)).float()  # 4 positions per example
    data[50] = data[7]  # identical examples: exactly tied maxima everywhere
    data[80] = data[7]
    probe = nw.Probe(model)
    result = nw.scan(probe, data, ["steps", "act"], k=12, samples=2, batch_size=16, cache=False, progress=False)
    for layer in ("steps", "act"):
        ref = brute_force(materialise(probe, data, layer, 16), k=12, samples=2)
        assert_matches(result[layer], ref)
        stats = result[layer]
        for u in range(stats.units):
            top = stats.top_k(u)
            for (v1, e1, _), (v2, e2, _) in itertools.pairwise(top):
                assert v1 > v2 or (v1 == v2 and e1 < e2)
    # The copies of example 7 tie with it: within a tie, 7 comes before 50 and 80.
    top = result["steps"].top_k(0)
    tied = [e for v, e, _ in top if v == top[0][0]]
    assert tied == sorted(tied)


def test_random_weight_model_with_offset_matches_brute_force():
    torch.manual_seed(2)
    model = nn.Sequential(OrderedDict(fc=nn.Linear(6, 9), act=nn.GELU()))
    data = torch.randn(130, 6) * 3
    probe = nw.Probe(model)
    result = nw.scan(
        probe, data, "act", k=5, samples=4, threshold=0.25, batch_size=50, start_index=1000, cache=False, progress=False
    )
    ref = brute_force(materialise(probe, data, "act", 50), k=5, samples=4, threshold=0.25, start=1000)
    assert_matches(result["act"], ref)
    assert result.ranges == [(1000, 1130)] and result.start_index == 1000


class Inject(nn.Module):
    """Puts NaN, inf and -inf at fixed places; unit 4 is NaN everywhere."""

    def forward(self, x):
        y = x.clone()
        y[:, 0, 1] = math.nan
        y[::3, 2, 0] = math.inf
        y[1::4, 1, 2] = -math.inf
        y[5, :, 3] = math.nan  # the 6th example of each batch has no finite value for unit 3
        y[..., 4] = math.nan
        return y


@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf_are_counted_and_excluded_from_every_other_statistic(device):
    torch.manual_seed(3)
    model = nn.Sequential(OrderedDict(fc=nn.Linear(2, 5), inject=Inject())).to(device)
    data = torch.randn(40, 3, 2)
    probe = nw.Probe(model)
    result = nw.scan(probe, data, "inject", k=6, samples=2, batch_size=16, cache=False, progress=False)
    stats = result["inject"]
    ref = brute_force(materialise(probe, data, "inject", 16), k=6, samples=2)
    assert_matches(stats, ref)
    # batches of 16, 16 and 8: every 3rd and every 4th example of each batch
    assert stats.nan_count[1] == 40 and stats.inf_count[0] == 6 + 6 + 3 and stats.inf_count[2] == 10
    assert np.isfinite(stats.mean[:4]).all() and np.isfinite(stats.var[:4]).all()
    assert np.isfinite(stats.min[:4]).all() and np.isfinite(stats.max[:4]).all()
    assert stats.nan_count[3] == 9 and not {5, 21, 37} & {e for _, e, _ in stats.top_k(3)}
    # a unit without a single finite value
    assert stats.count[4] == 0 and stats.nan_count[4] == 120
    assert np.isnan(stats.mean[4]) and stats.min[4] == np.inf and stats.max[4] == -np.inf
    assert stats.top_k(4) == [] and stats.histogram(4)[0].size == 0 and stats.samples(4) == []
    assert 4 in stats.dead()


@pytest.mark.parametrize("device", DEVICES)
def test_masked_positions_count_in_no_statistic(device):
    torch.manual_seed(4)
    stats = LayerStats("x", 3, (5,), k=4, samples=2, device=device)
    batches = []
    first = 0
    for size in (4, 6, 3):
        values = torch.randn(size, 5, 3)
        valid = torch.rand(size, 5) > 0.4
        valid[0] = False  # an example without any valid position
        values[~valid] = 1e6  # would dominate max, mean and the top-k if it counted
        stats.update(values.to(device), valid.to(device), first)
        batches.append((values.double().numpy(), valid.numpy()))
        first += size
    assert_matches(stats, brute_force(batches, k=4, samples=2))
    assert stats.max.max() < 1e6
    assert 0 not in [e for u in range(3) for _, e, _ in stats.top_k(u)]


def test_float64_and_float16_activations():
    torch.manual_seed(5)
    for dtype in (torch.float64, torch.float16):
        values = (torch.randn(20, 7, 4) * 4).to(dtype)
        stats = LayerStats("x", 4, (7,), k=3, samples=2)
        stats.update(values[:11], None, 0)
        stats.update(values[11:], None, 11)
        ref = brute_force([(values.double().numpy(), None)], k=3, samples=2)
        assert_matches(stats, ref, moments_rtol=1e-6)


def test_moments_stay_accurate_far_from_zero():
    """A large mean and a tiny spread: the shifted, blocked sums keep the variance right."""
    torch.manual_seed(6)
    values = (1000.0 + 1e-3 * torch.randn(50, 100, 2)).float()
    stats = LayerStats("x", 2, (100,), k=1, samples=0)
    for i in range(0, 50, 10):
        stats.update(values[i : i + 10], None, i)
    x = values.double().reshape(-1, 2).numpy()
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.var, x.var(0), rtol=1e-5)


# -- dead and saturated units -----------------------------------------------------------------------


def test_dead_units_never_exceed_the_threshold():
    torch.manual_seed(7)
    fc = nn.Linear(4, 6)
    with torch.no_grad():
        fc.bias[[1, 4]] = -100.0  # these ReLUs never open
    model = nn.Sequential(OrderedDict(fc=fc, relu=nn.ReLU()))
    result = nw.scan(model, torch.randn(200, 4), "relu", k=3, cache=False, progress=False)
    assert result["relu"].dead().tolist() == [1, 4]
    assert result["relu"].density[1] == 0 and result["relu"].density[0] > 0
    assert result["relu"].top_k(1)[0][0] == 0.0  # dead units still have (zero-valued) examples
    high = nw.scan(model, torch.randn(200, 4), "relu", k=3, threshold=1e9, cache=False, progress=False)
    assert high["relu"].dead().tolist() == list(range(6))


class Branches(nn.Module):
    """One linear layer read by four bounded activations side by side."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.sigmoid, self.tanh = nn.Sigmoid(), nn.Tanh()
        self.hardtanh, self.relu6 = nn.Hardtanh(-2.0, 3.0), nn.ReLU6()

    def forward(self, x):
        h = self.fc(x)
        return self.sigmoid(h) + self.tanh(h) + self.hardtanh(h) + self.relu6(h)


def test_saturated_units_of_bounded_activations():
    torch.manual_seed(8)
    model = Branches()
    with torch.no_grad():
        model.fc.bias[2] = 50.0  # stuck at the top
        model.fc.bias[5] = -50.0  # stuck at the bottom
    probe = nw.Probe(model)
    names = ["fc", "sigmoid", "tanh", "hardtanh", "relu6"]
    result = nw.scan(probe, torch.randn(300, 4), names, k=2, cache=False, progress=False)
    bounds = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hardtanh": (-2.0, 3.0), "relu6": (0.0, 6.0)}
    for name, expected in bounds.items():
        stats = result[name]
        assert stats.bounds == expected
        assert stats.saturated().tolist() == [2, 5], name
        assert stats.saturated(bound="high").tolist() == [2]
        assert stats.saturated(bound=expected[0]).tolist() == [5]
        assert stats.saturation()["high"][2] == 1.0
    sig = result["sigmoid"]
    assert sig.module_type == "Sigmoid"
    # a ReLU6 unit that opens only sometimes is not saturated at 0 for 99% of its values
    assert result["relu6"].saturation()["low"][0] < 0.99
    with pytest.raises(ValueError, match="no known bounds"):
        result["fc"].saturated()
    with pytest.raises(ValueError, match="tracked bounds"):
        sig.saturated(bound=0.5)
    # a bound given by the user, on a layer of any type
    given = nw.scan(
        probe, torch.randn(300, 4), "fc", bounds={"fc": (None, 40.0)}, tolerance=0.5, k=2, cache=False, progress=False
    )
    assert given["fc"].bounds == (None, 40.0)
    assert given["fc"].saturated().tolist() == [2]
    assert given["fc"].saturated(fraction=0.0).tolist() == list(range(6))


# -- merge at the level of one layer ------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_layer_merge_is_exact_and_symmetric(device):
    torch.manual_seed(9)
    values = (torch.round(torch.randn(60, 3, 4) * 4) / 4).to(device)  # ties across the two halves
    whole = LayerStats("x", 4, (3,), k=9, samples=3, device=device)
    whole.update(values[:30], None, 0)
    whole.update(values[30:], None, 30)
    a = LayerStats("x", 4, (3,), k=9, samples=3, device=device)
    a.update(values[:30], None, 0)
    b = LayerStats("x", 4, (3,), k=9, samples=3, device=device)
    b.update(values[30:], None, 30)
    for merged in (a.merge(b), b.merge(a), a.merge(b.copy().to("cpu"))):  # any device: a's
        for name in (
            "count_",
            "hist",
            "min_",
            "max_",
            "above",
            "top_values",
            "top_examples",
            "top_positions",
            "bottom_values",
            "bottom_examples",
            "bottom_positions",
            "sample_examples",
            "sample_values",
            "sample_positions",
            "sample_threshold",
        ):
            torch.testing.assert_close(getattr(merged, name), getattr(whole, name), rtol=0, atol=0)
        # float32 sums of the float32 activations within a batch: agreement to float32 rounding
        np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(merged.var, whole.var, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="different settings"):
        a.merge(LayerStats("x", 4, (3,), k=8, samples=3))


# -- kept activations ----------------------------------------------------------------------------------


def text_like_batches(seed, sizes, lengths, units):
    """Batches of 'texts' of different lengths: (values (B, T, U), valid (B, T)), each batch padded to its
    longest example (T differs from batch to batch)."""
    generator = torch.Generator().manual_seed(seed)
    batches, index = [], 0
    for size in sizes:
        length = lengths[index : index + size]
        values = torch.round(torch.randn(size, max(length), units, generator=generator) * 4) / 4  # ties
        valid = torch.arange(max(length)).unsqueeze(0) < torch.tensor(length).unsqueeze(1)
        values[~valid] = 1e6  # padding: never kept, never counted
        batches.append((values, valid))
        index += size
    return batches


def expected_row(batches, example, unit, width):
    """The unit's activation over one example, float16, NaN past its end (at most ``width`` positions)."""
    for values, valid in batches:
        if example < len(values):
            row = values[example, :, unit].masked_fill(~valid[example], math.nan).half()
            return torch.nn.functional.pad(row, (0, width - len(row)), value=math.nan)
        example -= len(values)
    raise IndexError(example)


def kept_of(stats, unit):
    """Every example whose row the card or the report may ask for: the top-k, the bottom-k and the
    samples of the highest intervals."""
    top = [e for _, e, _ in stats.top_k(unit)]
    bottom = [e for _, e, _ in stats.bottom_k(unit) if e not in top]
    samples = [e for _, _, entries in stats.samples(unit)[:4] for _, e, _ in entries]
    return top + bottom + [e for e in samples if e not in top + bottom]


def test_kept_rows_are_each_examples_activations_over_its_positions():
    lengths = [3, 9, 1, 5, 7, 2, 9, 4, 6, 8, 3, 5, 2, 9, 7, 1, 4, 6, 8, 2]
    batches = text_like_batches(11, [6, 8, 6], lengths, units=5)
    stats = LayerStats("x", 5, (), k=4, samples=2)
    first = 0
    for values, valid in batches:
        stats.update(values, valid, first, grid=(values.shape[1],))
        first += len(values)
    assert stats.positions_shape == (9,) and stats.kept_rows.shape == (5, 2 * 4 + 4 * 2, 9)
    checked = 0
    for unit in range(5):
        examples = kept_of(stats, unit)
        rows = stats.activations(unit, examples)
        assert rows.dtype == np.float32 and rows.shape == (len(examples), 9)
        for row, example in zip(rows, examples, strict=True):
            np.testing.assert_array_equal(row, expected_row(batches, example, unit, 9).float().numpy())
            assert np.isnan(row[lengths[example] :]).all() and not np.isnan(row[: lengths[example]]).any()
            checked += 1
    assert checked > 5 * 4
    with pytest.raises(KeyError, match="no activations kept for examples"):
        stats.activations(0, [e for e in range(20) if e not in kept_of(stats, 0)][:1])


def test_kept_rows_merge_exactly_across_parts_of_different_widths():
    lengths = [2, 3, 2, 1, 3, 2, 1, 3, 3, 2, 3, 5, 2, 9, 7, 1, 4, 6, 8, 2, 5, 5, 3]
    batches = text_like_batches(12, [5, 5, 6, 7], lengths, units=4)
    whole = LayerStats("x", 4, (), k=5, samples=2)
    parts = [LayerStats("x", 4, (), k=5, samples=2) for _ in range(2)]
    first = 0
    for i, (values, valid) in enumerate(batches):
        for stats in (whole, parts[i >= 2]):
            stats.update(values, valid, first, grid=(values.shape[1],))
        first += len(values)
    assert parts[0].positions_shape == (3,) and whole.positions_shape == (9,)  # the first part is narrower
    whole.compact()  # rows in their canonical order, as a merge leaves them
    for merged in (parts[0].merge(parts[1]), parts[1].merge(parts[0])):
        assert merged.positions_shape == (9,)
        torch.testing.assert_close(merged.kept_examples, whole.kept_examples, rtol=0, atol=0)
        torch.testing.assert_close(merged.kept_rows, whole.kept_rows, rtol=0, atol=0, equal_nan=True)
    assert (whole.kept_examples >= 0).sum() > 4 * 5  # the samples keep rows too, not only the top-k


def test_kept_rows_of_an_image_grid_and_of_a_grid_that_grows():
    torch.manual_seed(13)
    values = torch.randn(12, 6, 3)  # (batch, 2×3 positions, units)
    stats = LayerStats("x", 3, (2, 3), k=3, samples=1)
    stats.update(values[:7], None, 0)
    stats.update(values[7:], None, 7)
    for unit in range(3):
        examples = kept_of(stats, unit)
        np.testing.assert_array_equal(stats.activations(unit, examples), values[examples, :, unit].half().float())
    wider = stats.copy()
    wider.update(torch.randn(2, 12, 3) + 100, None, 12, grid=(3, 4))  # new top examples on a 3×4 grid
    assert wider.positions_shape == (3, 4)
    old = [e for e in kept_of(wider, 0) if e < 12]
    grown = wider.activations(0, old).reshape(-1, 3, 4)
    np.testing.assert_array_equal(grown[:, :2, :3], stats.activations(0, old).reshape(-1, 2, 3))
    assert np.isnan(grown[:, 2, :]).all() and np.isnan(grown[:, :, 3]).all()
    with pytest.raises(ValueError, match="does not fill the grid"):
        wider.update(torch.randn(1, 5, 3), None, 14)


def test_keep_activations_off_keeps_none_and_says_so():
    values = torch.randn(10, 4, 3)
    stats = LayerStats("x", 3, (4,), k=2, samples=1, keep_activations=False)
    stats.update(values, None, 0)
    assert not hasattr(stats, "kept_rows") and "kept_rows" not in stats.state()[1]
    with pytest.raises(ValueError, match="without keeping activations"):
        stats.activations(0, [stats.top_k(0)[0][1]])
    keeping = LayerStats("x", 3, (4,), k=2, samples=1)
    keeping.update(values, None, 10)
    with pytest.raises(ValueError, match="one part kept its examples' activations"):
        stats.merge(keeping)


def test_kept_rows_cost_a_gather_of_the_entries_that_entered():
    """After the first batches few units change their kept sets: the rows of the others stay put."""
    torch.manual_seed(14)
    stats = LayerStats("x", 64, (8,), k=4, samples=1)
    for i in range(20):
        stats.update(torch.randn(16, 8, 64), None, 16 * i)
    before = stats.kept_examples.clone()
    stats.update(torch.randn(16, 8, 64) * 1e-3, None, 320)  # nothing enters the top-k or bottom-k; samples may
    changed = (stats.kept_examples != before).any(1)
    assert changed.sum() < 64 and torch.equal(stats.kept_examples[~changed], before[~changed])
