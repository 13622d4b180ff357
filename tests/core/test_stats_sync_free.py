"""The statistics' sync-free way (the one used on a GPU), run on the CPU under a guard that fails on
anything that would make a CUDA device wait for the host: it must give what the CPU way gives."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from test_stats import assert_matches, brute_force, text_like_batches
from torch.utils._python_dispatch import TorchDispatchMode

from neurowidgets.core.stats import LayerStats, Workspace

aten = torch.ops.aten

#: Operators that read a device tensor back to the host, or whose output shape depends on the data
#: (so a CUDA device must finish and report it before the host can go on).
SYNCING = {
    aten._local_scalar_dense.default,  # .item(), bool(t), int(t), float(t)
    aten.nonzero.default,
    aten.nonzero_static.default,
    aten.masked_select.default,
    aten.bincount.default,  # CUDA's reads the largest value back
    aten.repeat_interleave.Tensor,
    aten._unique.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.is_nonzero.default,
    aten.equal.default,
    aten.lift_fresh.default,  # torch.tensor(x, device=...): a host-to-device copy, which waits on CUDA
}


class NoSyncs(TorchDispatchMode):
    """Fails on every operator in :data:`SYNCING`, on boolean-mask indexing (an implicit nonzero) and
    on copies to another device; records every operator it saw."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.seen.add(func)
        if func in SYNCING:
            raise AssertionError(f"host sync: {func}")
        if func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default):
            indices = args[1]
            if any(i is not None and i.dtype == torch.bool for i in indices):
                raise AssertionError(f"boolean-mask indexing (a hidden nonzero): {func}")
        if func in (aten._to_copy.default, aten.copy_.default) and "device" in kwargs:
            raise AssertionError(f"copy to {kwargs['device']}: {func}")
        return func(*args, **kwargs)


@contextlib.contextmanager
def no_syncs():
    """Also fails on the Python-level conversions of a tensor to host values."""
    patched = {}

    def forbid(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"host conversion: Tensor.{name}")

        return method

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"):
        patched[name] = getattr(torch.Tensor, name)
        setattr(torch.Tensor, name, forbid(name))
    try:
        with NoSyncs() as mode:
            yield mode
    finally:
        for name, method in patched.items():
            setattr(torch.Tensor, name, method)


def test_the_guard_catches_syncs():
    x = torch.randn(5)
    for sync in (
        lambda: x.sum().item(),
        lambda: bool((x > 0).any()),
        lambda: x[x > 0],
        lambda: (x > 0).nonzero(),
        lambda: torch.bincount((x > 0).long()),
        lambda: x.tolist(),
        lambda: torch.unique(x),
    ):
        with pytest.raises(AssertionError), no_syncs():
            sync()
    with no_syncs() as mode:
        torch.sort(x)[0].cumsum(0)
    assert aten.sort.default in mode.seen or aten.sort.stable in mode.seen


def twins(units, grid=(), k=4, samples=2, **kwargs):
    cpu = LayerStats("x", units, grid, k=k, samples=samples, **kwargs)
    free = LayerStats("x", units, grid, k=k, samples=samples, **kwargs)
    free.sync_free = True
    return cpu, free


def assert_same(cpu: LayerStats, free: LayerStats) -> None:
    """Every array equal (the moments to float32 rounding of the block sums), kept rows included."""
    cpu.compact()
    free.compact()
    assert cpu.num_positions == free.num_positions and cpu.positions_shape == free.positions_shape
    for name in cpu._arrays():
        if name in ("mean_", "m2"):
            continue
        torch.testing.assert_close(getattr(free, name), getattr(cpu, name), rtol=0, atol=0, equal_nan=True, msg=name)
    np.testing.assert_allclose(free.mean, cpu.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(free.var, cpu.var, rtol=1e-5, atol=1e-6)


def test_padded_text_batches_of_different_widths_without_a_sync():
    lengths = [3, 9, 1, 5, 7, 2, 9, 4, 6, 8, 3, 5, 2, 9, 7, 1, 4, 6, 8, 2, 5, 5, 3, 1, 6]
    batches = text_like_batches(21, [6, 8, 6, 5], lengths, units=7)
    batches[1][0][2, 3, 1] = math.nan  # NaN, inf and -inf at valid positions
    batches[2][0][0, 0, 4] = math.inf
    batches[2][0][3, 1, 4] = -math.inf
    cpu, free = twins(7, k=4, samples=2)
    first, ws = 0, Workspace()
    for values, valid in batches:
        cpu.update(values, valid, first, grid=(values.shape[1],))
        with no_syncs() as mode:
            free.update(values, valid, first, ws, grid=(values.shape[1],))
        first += len(values)
    assert aten.index_add_.default in mode.seen  # the histogram was counted the device's way
    assert_same(cpu, free)
    width = max(v.shape[1] for v, _ in batches)
    pad = [(0, width - v.shape[1]) for v, _ in batches]
    reference = [
        (np.pad(v.double().numpy(), ((0, 0), p, (0, 0))), np.pad(m.numpy(), ((0, 0), p)))
        for (v, m), p in zip(batches, pad, strict=True)
    ]
    assert_matches(free, brute_force(reference, k=4, samples=2))
    assert free.nan_count[1] == 1 and free.inf_count[4] == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_ties_grids_bounds_and_dtypes_without_a_sync(dtype):
    generator = torch.Generator().manual_seed(22)
    cpu, free = twins(5, (2, 3), k=6, samples=3, bounds=(-1.0, 1.0))
    ws = Workspace()
    for i in range(6):  # values on a grid of 0.25 within the bounds: ties everywhere, many near the bounds
        values = (torch.randint(-4, 5, (7, 6, 5), generator=generator) / 4).to(dtype)
        values = values.transpose(1, 2).contiguous().transpose(1, 2) if i % 2 else values  # non-contiguous
        cpu.update(values, None, 7 * i)
        with no_syncs():
            free.update(values, None, 7 * i, ws)
    assert_same(cpu, free)
    assert (free.near_low > 0).all() and (free.near_high > 0).all()


def test_merge_save_and_load_of_sync_free_statistics():
    generator = torch.Generator().manual_seed(23)
    values = torch.randn(40, 4, 6, generator=generator)
    valid = torch.rand(40, 4, generator=generator) > 0.3
    whole, free = twins(6, (4,), k=5, samples=2)
    halves = [LayerStats("x", 6, (4,), k=5, samples=2) for _ in range(2)]
    for stats in halves:
        stats.sync_free = True
    whole.update(values[:20], valid[:20], 0)
    whole.update(values[20:], valid[20:], 20)
    with no_syncs():
        for stats, part in ((free, slice(0, 20)), (free, slice(20, 40)), (halves[0], slice(0, 20))):
            stats.update(values[part], valid[part], part.start)
        halves[1].update(values[20:], valid[20:], 20)
    assert_same(whole, free)
    assert_same(whole, halves[0].merge(halves[1]))
    assert_same(whole, LayerStats.from_state(*free.state()))
    assert free.num_positions == int(valid.sum())


def test_an_all_padding_batch_and_a_unit_without_finite_values():
    cpu, free = twins(3, k=2, samples=1)
    values = torch.randn(4, 5, 3)
    values[..., 2] = math.nan
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[1] = False
    for stats in (cpu, free):
        with no_syncs() if stats is free else contextlib.nullcontext():
            stats.update(values, valid, 0)
            stats.update(values, torch.zeros(4, 5, dtype=torch.bool), 4)
    assert_same(cpu, free)
    assert free.bottom_k(2) == [] and free.top_k(2) == [] and free.nan_count[2] == 15


def test_a_text_scan_the_device_way_equals_the_cpu_way(tiny_lm, lm_tokenizer, monkeypatch):
    import neurowidgets as nw

    texts = [" ".join(["word"] * (1 + i % 7) + [str(i)]) for i in range(40)]  # padded batches
    layers = ["transformer.h.0.mlp.act", "transformer.h.1"]
    kwargs = dict(tokenizer=lm_tokenizer, max_length=16, k=3, batch_size=8, cache=False, progress=False)
    cpu = nw.scan(tiny_lm("gpt2"), texts, layers, **kwargs)
    monkeypatch.setattr(LayerStats, "sync_free", True)
    free = nw.scan(tiny_lm("gpt2"), texts, layers, **kwargs)
    for layer in layers:
        assert_same(cpu[layer], free[layer])
        unit = 5
        bottom = free[layer].bottom_k(unit)
        assert len(bottom) == 3 and bottom[0][0] <= bottom[-1][0] < free[layer].top_k(unit)[-1][0]
        rows = free[layer].activations(unit, [e for _, e, _ in bottom])
        for (value, _, position), row in zip(bottom, rows, strict=True):
            assert row[position] == np.float16(value) and np.nanmin(row) == row[position]
