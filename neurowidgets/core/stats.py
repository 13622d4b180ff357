"""Streaming, mergeable per-unit statistics of one layer.

:class:`LayerStats` is updated one batch of (batch, positions, units) activations at a time, on the
device the activations are on, and keeps O(units × (k + bins)) memory whatever the size of the data.
Two instances built over disjoint parts of a dataset :meth:`~LayerStats.merge` into what one scan over
both parts gives: exactly for the counts, min, max, histograms, top-k and quantile samples; to the
rounding of the activations' own dtype for the mean and variance (per batch, sums of the values less
a per-unit shift, in float32 within blocks of 64 rows and float64 beyond; across batches and parts,
float64 (count, mean, M2) accumulators merged with Chan's parallel update).

What is kept per unit, over every valid position of every example (padding excluded, see ``update``):

- ``count`` finite values; ``nan_count`` and ``inf_count`` values that were NaN or ±inf (those are
  left out of every other statistic);
- ``mean`` and ``var`` (population variance, ddof=0), ``min`` and ``max``;
- ``density``: the fraction of the finite values above ``threshold``;
- a histogram over fixed, data-independent bins (see :data:`HISTOGRAM`);
- the exact top-k examples: an example enters by its maximum over positions, at most once, as
  (value, example index, position index); ties go to the lower example index, and within one example
  to the lower position;
- the exact bottom-k examples (most negative first), the same by each example's minimum over positions
  (GELU, SiLU and gated units fire negative too);
- quantile samples (Neuronpedia's "examples from lower activation intervals"): per unit and per
  octave of activation (the example's maximum), the ``samples`` examples with the smallest
  :func:`example_hash` of their index, a deterministic pseudo-random choice that merges exactly;
- counts of values within a tolerance of the layer's bounds (sigmoid, tanh, ...) for ``saturated``;
- with ``keep_activations`` (the default), the unit's activation at every position of each example it
  keeps (its top-k, its bottom-k and the quantile samples of its :data:`ROW_INTERVALS` highest
  intervals), so that a feature card needs no model run; see :meth:`LayerStats.activations`.

Kept activations ("rows") cost ``units × (2k + ROW_INTERVALS × samples) × positions`` float16 values
(2 bytes each), whatever the size of the data: a GPT-2-small MLP layer (3,072 units, k=32, samples=4,
128 tokens) keeps 3,072 × 80 × 128 × 2 B = 63 MB; the digits CNN's conv layer (32 units, 8×8) 0.3 MB.
A row is filled once, when its example enters the kept set (so a batch costs a gather of the few
entries that entered, not a pass over the batch), and merged exactly: two partial scans merge into
the rows of one full scan. Positions an example does not have (text padding, a shorter sequence, a
smaller grid) are NaN; so is an activation that was NaN (which ``nan_count`` counts). Values beyond
float16's range (±65,504) are stored as ±inf.

Two ways to add a batch, with equal results (the mean and variance to float32 rounding of the block
sums): on a CPU, :meth:`LayerStats.update` reads a few values back to skip work (no padding, no NaN,
which units' top-k changed, which examples entered); on an accelerator (CUDA, ...) every step is a
fixed-shape tensor operation on the device, with no host sync or device→host copy in the batch loop
(the count of valid positions is read lazily, when :attr:`~LayerStats.num_positions` is). The
device's way runs on a CPU too (``stats.sync_free = True``), which the tests use to check it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

# -- fixed, data-independent bins ----------------------------------------------------------------


@dataclass(frozen=True)
class SymlogBins:
    """Symmetric log-spaced bins read off the bits of float32 values, exactly and without search.

    Positive edges are ``2**e * (1 + j / per_octave)`` for ``e`` in ``[low_exp, high_exp)`` and
    ``j < per_octave``, plus ``2**high_exp``; every edge is exactly a float32. The bins are
    ``[-inf, -2**high_exp)``, the mirrored negative bins, a zero bin ``[-2**low_exp, 2**low_exp)``,
    the positive bins and ``[2**high_exp, inf)``; every bin is closed on its left edge, like numpy's.
    Values are binned as float32 (float64 activations are rounded to float32 first).
    """

    per_octave_log2: int  # bins per octave = 2 ** per_octave_log2
    low_exp: int
    high_exp: int

    @property
    def per_octave(self) -> int:
        return 1 << self.per_octave_log2

    @property
    def levels(self) -> int:  # bins on each side, between 2**low_exp and 2**high_exp
        return (self.high_exp - self.low_exp) * self.per_octave

    @property
    def num_bins(self) -> int:
        return 2 * self.levels + 3

    @property
    def zero_bin(self) -> int:
        return self.levels + 1

    @property
    def _shift(self) -> int:
        return 23 - self.per_octave_log2

    @property
    def _first_level(self) -> int:  # the level (bits >> shift) of 2**low_exp
        return (127 + self.low_exp) << self.per_octave_log2

    def edges(self) -> np.ndarray:
        """The ``num_bins + 1`` edges as float64 (exact), from ``-inf`` to ``inf``."""
        positive = [
            math.ldexp(1.0 + j / self.per_octave, e)
            for e in range(self.low_exp, self.high_exp)
            for j in range(self.per_octave)
        ]
        positive.append(math.ldexp(1.0, self.high_exp))
        pos = np.array(positive)
        return np.concatenate([[-np.inf], -pos[::-1], pos, [np.inf]])

    def index(
        self,
        values: torch.Tensor,
        out: torch.Tensor | None = None,
        scratch: torch.Tensor | None = None,
        offsets: torch.Tensor | None = None,
        scale: int = 1,
    ) -> torch.Tensor:
        """The bin of every value as int32 in ``[0, num_bins)`` (NaN lands in an overflow bin).

        Integer operations on the float32 bits, in place in ``out`` (and ``scratch``) when given;
        with ``offsets`` (int32, broadcast against ``values``) the result is ``offsets + scale ×
        (bin - zero_bin)`` instead, e.g. ``zero_bin × units + unit`` and ``scale=units`` to get flat
        (bin, unit) indices in one pass less.
        """
        if values.dtype != torch.float32:
            values = values.float()
        bits = values.view(torch.int32)
        magnitude = torch.bitwise_and(bits, 0x7FFFFFFF, out=out)
        sign = torch.bitwise_right_shift(bits, 31, out=scratch)  # -1 for negatives (and -0.0), else 0
        # [-b, -a) for negatives means |x| in (a, b]: one float step down makes it [a, b);
        # -0.0 becomes -1 and joins the zero bin.
        magnitude += sign
        magnitude >>= self._shift
        magnitude -= self._first_level - 1  # 1 + the rank of the level above 2**low_exp; <= 0: zero bin
        magnitude.clamp_(0, self.levels + 1)
        magnitude ^= sign  # negate the negatives: (m ^ -1) - (-1) == -m
        magnitude -= sign
        if offsets is None:
            magnitude += self.zero_bin
        else:
            torch.add(offsets, magnitude, alpha=scale, out=magnitude)
        return magnitude

    def index_numpy(self, values: np.ndarray) -> np.ndarray:
        """The same bins by searching the edges (a slow reference, used by the tests)."""
        edges = self.edges()
        values = np.asarray(values, dtype=np.float32).astype(np.float64)
        inner = edges[1:-1]
        result = np.searchsorted(inner, values, side="right")
        # The zero bin spans [-2**low_exp, 2**low_exp): searchsorted already puts it at zero_bin.
        return result.astype(np.int64)


#: Histogram bins: 8 per octave (about 26.6 per decade) over ±2**-20 … ±2**20 (±9.5e-7 … ±1.05e6),
#: 643 bins in all: per unit 5 KiB of int64 counts.
HISTOGRAM = SymlogBins(per_octave_log2=3, low_exp=-20, high_exp=20)
#: Cells of the quantile samples: one per octave of the example's maximum, same range (83 cells).
QUANTILE_CELLS = SymlogBins(per_octave_log2=0, low_exp=-20, high_exp=20)
#: The highest intervals (non-empty cells) of each unit whose samples keep their activation rows: the
#: top one and the three below it, which a feature card shows. A cell, once below the highest four,
#: never rises again (cells only fill), so rows are never needed for a cell that did not keep them.
ROW_INTERVALS = 4

# -- a deterministic hash of example indices ------------------------------------------------------

HASH_BITS = 36  # indices are hashed modulo 2**36 (68.7 billion examples)
_HASH_MASK = (1 << HASH_BITS) - 1
_EMPTY = 1 << HASH_BITS  # larger than every hash: an empty sample slot
_MUL1, _MUL2 = 0x5BD1E95, 0x2C1B3C7  # odd and < 2**27, so that products stay below 2**63


def example_hash(index: torch.Tensor) -> torch.Tensor:
    """A bijection of ``[0, 2**36)`` that scatters example indices (int64 in, int64 out)."""
    x = index.to(torch.int64) & _HASH_MASK
    x = (x * _MUL1) & _HASH_MASK
    x = x ^ (x >> 17)
    x = (x * _MUL2) & _HASH_MASK
    x = x ^ (x >> 19)
    x = (x * _MUL1) & _HASH_MASK
    return x ^ (x >> 15)


def _hash_or_empty(index: torch.Tensor) -> torch.Tensor:
    return torch.where(index >= 0, example_hash(index.clamp(min=0)), _EMPTY)


# -- bounds of bounded activations --------------------------------------------------------------


def known_bounds(module: torch.nn.Module | None) -> tuple[float | None, float | None] | None:
    """The range of a bounded activation module (sigmoid, tanh, hardtanh, ReLU6, ...), else ``None``."""
    nn = torch.nn
    if isinstance(module, nn.Hardtanh):  # ReLU6 is a Hardtanh(0, 6)
        return (float(module.min_val), float(module.max_val))
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return (0.0, 1.0)
    if isinstance(module, (nn.Tanh, nn.Softsign)):
        return (-1.0, 1.0)
    return None


def bound_tolerance(bounds: tuple[float | None, float | None], tolerance: float) -> float:
    """``tolerance`` relative to the width of the range (or to ``max(1, |bound|)`` for a half-open one)."""
    low, high = bounds
    if low is not None and high is not None:
        return tolerance * (high - low)
    bound = low if low is not None else high
    return tolerance * max(1.0, abs(bound))


# -- scratch memory and sums ---------------------------------------------------------------------


class Workspace:
    """Scratch buffers reused from batch to batch (and between layers), grown when a batch is larger.

    Re-using them avoids allocating (and page-faulting) a batch-sized array per operation. A name
    is one buffer of bytes, viewed as whatever dtype asks for it: uses of a name must not overlap.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, dtype: torch.dtype, shape: tuple[int, ...], device) -> torch.Tensor:
        itemsize = torch.empty((), dtype=dtype).element_size()
        nbytes = math.prod(shape) * itemsize
        key = (name, torch.device(device))
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < nbytes:
            buffer = torch.empty(nbytes + (-nbytes) % 8, dtype=torch.uint8, device=device)
            self._buffers[key] = buffer
        return buffer[:nbytes].view(dtype).view(shape)


_BLOCK = 64
_HELPER: ThreadPoolExecutor | None = None


def _helper() -> ThreadPoolExecutor:
    """One background thread for the single-threaded bincount (torch ops release the GIL)."""
    global _HELPER
    if _HELPER is None:
        _HELPER = ThreadPoolExecutor(1, thread_name_prefix="neurowidgets-stats")
    return _HELPER


def _bin_major(hist: torch.Tensor) -> torch.Tensor:
    """A (units, bins) histogram stored bin by bin: the values of a row of activations (one per unit)
    mostly fall in a few bins, so counting them bin-major touches nearby memory (4× faster on a CPU)."""
    return hist.T.contiguous().T


def _blocked_sum(rows: torch.Tensor) -> torch.Tensor:
    """Column sums of (n, units) as float64: in the rows' dtype within blocks of 64 rows, in float64
    across blocks (float32 rounding of 64 terms at most, at about the cost of a float32 sum). The few
    block sums are widened before they are added: ``sum(dtype=float64)`` is many times slower."""
    if rows.dtype == torch.float64:
        return rows.sum(0)
    n = rows.shape[0]
    whole = n - n % _BLOCK
    total = rows[:whole].view(whole // _BLOCK, _BLOCK, rows.shape[1]).sum(1).double().sum(0)
    if whole < n:
        total += rows[whole:].double().sum(0)
    return total


# -- the statistics of one layer ------------------------------------------------------------------

_COUNTERS = ("count_", "nan_", "inf_", "above", "near_low", "near_high")
_ARRAYS = (
    *_COUNTERS,
    "mean_",
    "m2",
    "min_",
    "max_",
    "hist",
    "top_values",
    "top_examples",
    "top_positions",
    "bottom_values",
    "bottom_examples",
    "bottom_positions",
    "sample_values",
    "sample_examples",
    "sample_positions",
    "sample_threshold",
)
_ROW_ARRAYS = ("kept_examples", "kept_rows")  # with keep_activations
_SIDES = {
    "top": ("top_values", "top_examples", "top_positions"),
    "bottom": ("bottom_values", "bottom_examples", "bottom_positions"),
}


class LayerStats:
    """Per-unit statistics of one layer, updated batch by batch; see the module docstring.

    Built by :func:`neurowidgets.scan`; read with the accessors (numpy arrays, one value per unit).
    ``sync_free``: add batches without host syncs (``None``, the default: on any device but a CPU).
    """

    sync_free: bool | None = None

    def __init__(
        self,
        layer: str,
        units: int,
        positions_shape: tuple[int, ...] = (),
        *,
        k: int = 32,
        samples: int = 4,
        threshold: float = 0.0,
        bounds: tuple[float | None, float | None] | None = None,
        tolerance: float = 0.01,
        module_type: str | None = None,
        device: torch.device | str = "cpu",
        keep_activations: bool = True,
    ):
        if k < 0 or samples < 0:
            raise ValueError(f"k and samples must be >= 0, got k={k}, samples={samples}")
        self.layer = layer
        self.units = int(units)
        self.positions_shape = tuple(int(p) for p in positions_shape)
        self.k = int(k)
        self.samples_per_cell = int(samples)
        self.threshold = float(threshold)
        self.bounds = None if bounds is None else tuple(None if b is None else float(b) for b in bounds)
        self.tolerance = float(tolerance)
        self.module_type = module_type
        self.num_positions = 0  # valid (unpadded) positions seen, per unit: count + nan + inf
        self.bottom_kept = True  # False for statistics saved before scans kept the bottom-k
        self._shift: torch.Tensor | None = None  # per-unit shift for the batch moments (stability)
        self._next_example = 0
        device = torch.device(device)
        u = self.units
        i64, f64 = dict(dtype=torch.int64, device=device), dict(dtype=torch.float64, device=device)
        for name in _COUNTERS:
            setattr(self, name, torch.zeros(u, **i64))
        self.mean_ = torch.zeros(u, **f64)
        self.m2 = torch.zeros(u, **f64)
        self.min_ = torch.full((u,), math.inf, **f64)
        self.max_ = torch.full((u,), -math.inf, **f64)
        self.hist = _bin_major(torch.zeros(u, HISTOGRAM.num_bins, **i64))
        self.top_values = torch.full((u, self.k), -math.inf, **f64)
        self.top_examples = torch.full((u, self.k), -1, **i64)
        self.top_positions = torch.full((u, self.k), -1, **i64)
        self.bottom_values = torch.full((u, self.k), math.inf, **f64)
        self.bottom_examples = torch.full((u, self.k), -1, **i64)
        self.bottom_positions = torch.full((u, self.k), -1, **i64)
        cells = (u, QUANTILE_CELLS.num_bins, self.samples_per_cell)
        self.sample_values = torch.full(cells, -math.inf, **f64)
        self.sample_examples = torch.full(cells, -1, **i64)
        self.sample_positions = torch.full(cells, -1, **i64)
        self.sample_threshold = torch.full(cells[:2], _EMPTY, **i64)
        self.keep_activations = bool(keep_activations)
        if self.keep_activations:
            kept = 2 * self.k + ROW_INTERVALS * self.samples_per_cell
            self.kept_examples = torch.full((u, kept), -1, **i64)  # see _kept_examples for the order
            self.kept_rows = torch.full(
                (u, kept, math.prod(self.positions_shape)), math.nan, dtype=torch.float16, device=device
            )
        self._hist_offsets = None

    # -- settings that two mergeable instances must share ------------------------------------------

    def settings(self) -> dict:
        return {
            "units": self.units,
            "k": self.k,
            "samples": self.samples_per_cell,
            "threshold": self.threshold,
            "bounds": None if self.bounds is None else list(self.bounds),
            "tolerance": self.tolerance,
            "keep_activations": self.keep_activations,
        }

    @property
    def device(self) -> torch.device:
        return self.count_.device

    @property
    def num_positions(self) -> int:
        """Valid (unpadded) positions seen, per unit: count + nan + inf."""
        if self._pending_positions is not None:  # counted on the device by sync-free batches
            self._num_positions += int(self._pending_positions)
            self._pending_positions = None
        return self._num_positions

    @num_positions.setter
    def num_positions(self, value: int) -> None:
        self._num_positions = int(value)
        self._pending_positions = None

    def _add_positions(self, count: int | torch.Tensor) -> None:
        if isinstance(count, int):
            self._num_positions += count
        else:
            self._pending_positions = count if self._pending_positions is None else self._pending_positions + count

    def _is_sync_free(self, device: torch.device) -> bool:
        return device.type != "cpu" if self.sync_free is None else bool(self.sync_free)

    def _arrays(self) -> tuple[str, ...]:
        return _ARRAYS + _ROW_ARRAYS if self.keep_activations else _ARRAYS

    def to(self, device: torch.device | str) -> LayerStats:
        """Move the statistics (in place) to ``device``; returns ``self``."""
        for name in self._arrays():
            setattr(self, name, getattr(self, name).to(device))
        if self._shift is not None:
            self._shift = self._shift.to(device)
        if self._pending_positions is not None:
            self._pending_positions = self._pending_positions.to(device)
        self._hist_offsets = None
        return self

    # -- one batch ---------------------------------------------------------------------------------

    def update(
        self,
        values: torch.Tensor,
        valid: torch.Tensor | None = None,
        first_example: int = 0,
        workspace: Workspace | None = None,
        grid: tuple[int, ...] | None = None,
    ) -> None:
        """Add one batch: ``values`` is (batch, positions, units); ``valid`` an optional (batch, positions)
        boolean mask of the positions that count (padding is ``False``); examples are numbered from
        ``first_example``, which must not go back below the examples already added. ``workspace``
        holds scratch buffers reused from batch to batch (share one between the layers of a scan).
        ``grid`` is the batch's position grid (default :attr:`positions_shape` when it has as many
        positions, else a sequence); the layer's grid widens to hold it (longer texts).
        """
        if values.ndim != 3 or values.shape[2] != self.units:
            raise ValueError(
                f"layer {self.layer!r}: expected (batch, positions, {self.units}) activations, "
                f"got {tuple(values.shape)}"
            )
        if first_example < self._next_example:
            raise ValueError(
                f"examples must come in increasing order: got {first_example} after "
                f"{self._next_example - 1} (use merge for separately scanned parts)"
            )
        batch, positions, units = values.shape
        grid = self._batch_grid(positions, grid)
        if batch == 0:
            return
        sync_free = self._is_sync_free(values.device)
        if valid is not None:
            valid = valid.to(device=values.device, dtype=torch.bool)
            if tuple(valid.shape) != (batch, positions):
                raise ValueError(
                    f"layer {self.layer!r}: the mask has shape {tuple(valid.shape)}, "
                    f"the activations have (batch, positions) = {(batch, positions)}"
                )
            if not sync_free and bool(valid.all()):
                valid = None
        self._widen(grid)
        ws = workspace if workspace is not None else Workspace()
        self._next_example = first_example + batch
        if values.dtype not in (torch.float32, torch.float64):
            values = values.float()
        if sync_free:
            self._update_sync_free(values, valid, first_example, ws, grid)
            return
        if valid is not None:
            keep = valid.reshape(-1).nonzero().squeeze(1)
            rows = ws.get("rows", values.dtype, (keep.shape[0], units), values.device)
            torch.index_select(values.reshape(batch * positions, units), 0, keep, out=rows)
        else:
            rows = self._rows(values, ws)
        # Each example's maximum and minimum over its valid positions (NaN propagates), for the top-k,
        # the bottom-k and the samples; their extremes are the batch's, which saves passes over the rows.
        # Where they are (positions) is looked up later, only for the entries that are kept.
        drop = None if valid is None else ~valid.unsqueeze(2)
        lengths = None if valid is None else _prefix_lengths(valid)
        if lengths is not None:  # right padding: each example's valid positions, with no masking pass
            best, worst = _prefix_extremes(values, lengths)
        else:
            best, worst = (
                self._example_extremes(values, drop, ws, True),
                self._example_extremes(values, drop, ws, False),
            )
        if rows.shape[0]:
            low, high = worst.amin(0), best.amax(0)  # NaN propagates: one check finds any
            self.num_positions += rows.shape[0]
            if bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
                self._add_values(rows, None, torch.full_like(self.count_, rows.shape[0]), low, high, ws)
            else:
                bad = ~torch.isfinite(rows)
                nans, n_bad = torch.isnan(rows).sum(0), bad.sum(0)
                self.nan_ += nans
                self.inf_ += n_bad - nans
                low = rows.masked_fill(bad, math.inf).amin(0)
                high = rows.masked_fill(bad, -math.inf).amax(0)
                self._add_values(rows, bad, rows.shape[0] - n_bad, low, high, ws)
                drop = ~torch.isfinite(values) if drop is None else drop | ~torch.isfinite(values)
                best, worst = (
                    self._example_extremes(values, drop, ws, True),
                    self._example_extremes(values, drop, ws, False),
                )
        self._update_examples(best, None, worst, None, first_example, _Locator(values, valid, first_example))
        if self.keep_activations:
            self._update_kept_rows(values, valid, first_example, grid)

    def _update_sync_free(self, values, valid, first_example: int, ws: Workspace, grid) -> None:
        """:meth:`update` with fixed-shape operations only: nothing is read back to the host (no
        ``.item()``, no boolean indexing, no ``nonzero``); padding and non-finite values are masked
        instead of skipped, and every unit's top-k, bottom-k, samples and kept rows are merged."""
        batch, positions, units = values.shape
        finite = torch.isfinite(values)
        nan = torch.isnan(values)
        if valid is None:
            counted, n_valid = finite, batch * positions
            self._add_positions(n_valid)
        else:
            inside = valid.unsqueeze(2)
            counted = finite & inside
            nan &= inside
            n_valid = valid.sum()
            self._add_positions(n_valid)
        drop = ~counted
        best, position = self._example_extremes(values, drop, ws, largest=True, positions=True)
        worst, worst_position = self._example_extremes(values, drop, ws, largest=False, positions=True)
        low, high = worst.amin(0), best.amax(0)
        n = counted.sum((0, 1))
        nans = nan.sum((0, 1))
        self.nan_ += nans
        self.inf_ += n_valid - n - nans
        if self._shift is None:  # a value within the data (the first batch's mid-range), else 0
            both = torch.isfinite(low) & torch.isfinite(high)
            self._shift = torch.where(both, low / 2 + high / 2, 0.0)
        rows = self._rows(values, ws)
        self._add_values(rows, drop.reshape(batch * positions, units), n, low, high, ws, sync_free=True)
        self._update_examples(best, position, worst, worst_position, first_example)
        if self.keep_activations:
            self._update_kept_rows_sync_free(values, valid, first_example, grid)

    @staticmethod
    def _rows(values: torch.Tensor, ws: Workspace) -> torch.Tensor:
        """(batch × positions, units): a view, or a copy into the workspace for non-contiguous values
        (e.g. the channels of a conv layer, seen as (batch, positions, units))."""
        batch, positions, units = values.shape
        if values.is_contiguous():
            return values.view(batch * positions, units)
        rows = ws.get("rows", values.dtype, (batch * positions, units), values.device)
        rows.view(batch, positions, units).copy_(values)
        return rows

    def _add_values(self, rows, bad, n, low, high, ws: Workspace, sync_free: bool = False) -> None:
        """Min, max, histogram, counts above the threshold and near the bounds, and moments of the
        (n_rows, units) values, leaving out the ``bad`` ones (where given); ``n`` counts the others."""
        self.min_ = torch.minimum(self.min_, low.to(torch.float64))
        self.max_ = torch.maximum(self.max_, high.to(torch.float64))
        finish_histogram = self._start_histogram(rows, bad, ws, sync_free)
        self.above += self._count_where(torch.gt, rows, self.threshold, bad, ws)
        if self.bounds is not None:
            low_bound, high_bound = self.bounds
            tol = bound_tolerance(self.bounds, self.tolerance)
            if low_bound is not None:
                self.near_low += self._count_where(torch.le, rows, low_bound + tol, bad, ws)
            if high_bound is not None:
                self.near_high += self._count_where(torch.ge, rows, high_bound - tol, bad, ws)
        self._add_moments(n, rows, bad, ws)
        finish_histogram()

    @staticmethod
    def _count_where(compare, rows, value, bad, ws: Workspace) -> torch.Tensor:
        """Per-unit count of ``compare(rows, value)``: the hits as 0/1 floats, summed in blocks (exact;
        several times faster than a boolean sum on a CPU)."""
        hits = ws.get("scratch", torch.float32, rows.shape, rows.device)
        compare(rows, value, out=hits)
        if bad is not None:
            hits.masked_fill_(bad, 0.0)
        return _blocked_sum(hits).round_().to(torch.int64)

    def _add_moments(self, n: torch.Tensor, rows: torch.Tensor, bad, ws: Workspace) -> None:
        """Sums of the values less a per-unit shift (the running mean): float32 within blocks of
        64 rows, float64 across blocks; merged into the float64 (count, mean, M2) with Chan's update."""
        if self._shift is None:  # any value near the data keeps the sums well conditioned
            self._shift = torch.nan_to_num(rows[0], nan=0.0, posinf=0.0, neginf=0.0).clone()
        shift = self._shift.to(rows.dtype)
        shifted = ws.get("scratch", rows.dtype, rows.shape, rows.device)
        torch.sub(rows, shift, out=shifted)
        if bad is not None:
            shifted.masked_fill_(bad, 0.0)
        s1 = _blocked_sum(shifted)
        shifted.mul_(shifted)
        s2 = _blocked_sum(shifted)
        nf = n.to(torch.float64)
        safe = nf.clamp(min=1.0)
        mean_b = torch.where(n > 0, shift.to(torch.float64) + s1 / safe, 0.0)
        m2_b = torch.where(n > 0, (s2 - s1 * s1 / safe).clamp(min=0.0), 0.0)
        self._merge_moments(n, mean_b, m2_b)
        self._shift = torch.where(self.count_ > 0, self.mean_, self._shift.to(torch.float64)).to(rows.dtype)

    def _merge_moments(self, n_b: torch.Tensor, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        n_a = self.count_.to(torch.float64)
        nb = n_b.to(torch.float64)
        total = (n_a + nb).clamp(min=1.0)
        delta = mean_b - self.mean_
        self.mean_ = self.mean_ + delta * (nb / total)
        self.m2 = self.m2 + m2_b + delta * delta * (n_a * nb / total)
        self.count_ += n_b

    def _start_histogram(self, rows: torch.Tensor, bad: torch.Tensor | None, ws: Workspace, sync_free: bool = False):
        """Bin the values, and count them: on a CPU, in a helper thread (torch's bincount runs on one
        core) while the caller computes the other statistics; ``sync_free``, with ``index_add_`` (a
        CUDA bincount reads the largest bin back to the host). Returns a function that finishes."""
        num_bins = HISTOGRAM.num_bins
        if self._hist_offsets is None or self._hist_offsets.device != rows.device:
            units = torch.arange(self.units, dtype=torch.int32, device=rows.device)
            self._hist_offsets = units + HISTOGRAM.zero_bin * self.units
        if rows.dtype != torch.float32:
            rows32 = ws.get("rows32", torch.float32, rows.shape, rows.device)
            rows32.copy_(rows)
            rows = rows32
        flat = HISTOGRAM.index(
            rows,
            out=ws.get("bins", torch.int32, rows.shape, rows.device),
            scratch=ws.get("scratch", torch.int32, rows.shape, rows.device),
            offsets=self._hist_offsets,
            scale=self.units,
        )
        size = self.units * num_bins
        if bad is not None:
            flat.masked_fill_(bad, size)  # one extra bin, dropped
        if sync_free:
            ones = torch.ones(1, dtype=torch.int64, device=rows.device).expand(flat.numel())
            counts = torch.zeros(size + 1, dtype=torch.int64, device=rows.device).index_add_(0, flat.view(-1), ones)
        elif rows.device.type == "cpu" and torch.get_num_threads() > 1:
            counts = _helper().submit(torch.bincount, flat.view(-1), None, size + 1)
        else:
            counts = torch.bincount(flat.view(-1), minlength=size + 1)

        def finish() -> None:
            done = counts.result() if isinstance(counts, Future) else counts
            self.hist += done[:size].view(num_bins, self.units).T

        return finish

    @staticmethod
    def _example_extremes(values, drop, ws: Workspace, largest: bool, positions: bool = False):
        """The max over the positions of each example, (batch, units), or the min with ``largest=False``;
        with ``positions``, (values, first position of each); positions where ``drop`` (broadcast
        against ``values``) is true are left out (-inf for the max, inf for the min)."""
        if drop is not None:
            masked = ws.get("scratch", values.dtype, values.shape, values.device)
            fill = values.new_full((), -math.inf if largest else math.inf)  # no host-to-device copy
            torch.where(drop, fill, values, out=masked)
            values = masked
        if positions:
            return values.max(dim=1) if largest else values.min(dim=1)
        return values.amax(dim=1) if largest else values.amin(dim=1)

    def _update_examples(self, best, position, worst, worst_position, first_example, locate=None) -> None:
        """Offer each example's max (and min) to the top-k (bottom-k) and the samples; ``position``
        (``worst_position``) says where each is, or ``locate`` finds it for the entries kept (the
        CPU way: no sync-free batch has ``locate``)."""
        if self.k == 0 and self.samples_per_cell == 0:
            return
        batch = best.shape[0]
        best = best.T.to(torch.float64)
        examples = torch.arange(first_example, first_example + batch, device=best.device)
        if locate is not None:  # placeholders (units, batch), filled in for the entries that are kept
            position = worst_position = torch.zeros(1, 1, dtype=torch.int64, device=best.device).expand(best.shape)
        else:
            position, worst_position = position.T, worst_position.T
        if self.k:
            self._offer("top", best, examples, position, locate)
            self._offer("bottom", -worst.T.to(torch.float64), examples, worst_position, locate)
        if self.samples_per_cell:
            if locate is None:
                self._add_samples_sync_free(best, examples, position)
            else:
                self._add_samples(best, examples, locate)

    # -- top-k and bottom-k ------------------------------------------------------------------------------

    def _side(self, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values, examples, positions) of the top-k, or of the bottom-k with the values negated (so
        that both keep the k highest)."""
        values, examples, positions = (getattr(self, name) for name in _SIDES[side])
        return (values if side == "top" else -values), examples, positions

    def _offer(self, side: str, values, examples, positions, locate=None) -> None:
        """Candidates (units, batch) of examples later than every kept one (values negated for the
        bottom-k). The CPU way (with ``locate``) re-sorts only the units where one beats the k-th kept
        value (a tie with it loses: its example index is higher), then locates the entries that
        entered; the sync-free way re-sorts every unit."""
        kept_values, kept_examples, kept_positions = self._side(side)
        units = None
        sync_free = locate is None
        if not sync_free:
            units = (values > kept_values[:, -1:]).any(1).nonzero().squeeze(1)
            if units.numel() == 0:
                return
            if units.numel() == self.units:
                units = None
        pick = (lambda t: t) if units is None else (lambda t: t.index_select(0, units))
        n = values.shape[1]
        count = self.units if units is None else units.numel()
        merged = list(
            self._top_of(
                pick(kept_values),
                pick(kept_examples),
                pick(kept_positions),
                pick(values),
                examples.unsqueeze(0).expand(count, n),
                pick(positions),
                presorted=True,
            )
        )
        if side == "bottom":
            merged[0] = merged[0].neg_()
        if locate is not None:
            row, column = (merged[1] >= examples[0]).nonzero(as_tuple=True)  # this batch's entries
            unit = row if units is None else units[row]
            merged[2][row, column] = locate(unit, merged[1][row, column], merged[0][row, column])
        if units is None:
            for name, rows in zip(_SIDES[side], merged, strict=True):
                setattr(self, name, rows)
        else:
            for name, rows in zip(_SIDES[side], merged, strict=True):
                getattr(self, name)[units] = rows

    def _top_of(self, kept_values, kept_examples, kept_positions, values, examples, positions, presorted):
        """The top-k of kept entries and candidates, per row. With ``presorted``, every candidate's
        example index exceeds those kept and rises along dim 1, so one stable sort breaks ties right."""
        values = torch.cat([kept_values, values], dim=1)
        examples = torch.cat([kept_examples, examples], dim=1)
        positions = torch.cat([kept_positions, positions], dim=1)
        if not presorted:  # order by example index first; unfilled slots (-1, -inf) sort last anyway
            order = torch.sort(examples, dim=1, stable=True).indices
            values, examples, positions = (t.gather(1, order) for t in (values, examples, positions))
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, : self.k]
        values = values.gather(1, order)
        empty = values == -math.inf
        examples = examples.gather(1, order).masked_fill_(empty, -1)
        positions = positions.gather(1, order).masked_fill_(empty, -1)
        return values, examples, positions

    # -- quantile samples ------------------------------------------------------------------------

    def _add_samples(self, values, examples, locate) -> None:
        """Offer candidates (units, n) of examples (n,): each (unit, cell) keeps the ``samples``
        smallest example hashes; a candidate above its cell's largest kept hash is dropped at once
        (the others are located: ``locate(units, examples, values)`` gives their positions)."""
        cells = QUANTILE_CELLS.index(values.float()).to(torch.int64)
        cells += torch.arange(self.units, device=values.device).unsqueeze(1) * QUANTILE_CELLS.num_bins
        hashes = example_hash(examples).unsqueeze(0).expand_as(cells)
        keep = (hashes < self.sample_threshold.view(-1)[cells]) & (values > -math.inf)
        if not bool(keep.any()):
            return
        unit, column = keep.nonzero(as_tuple=True)
        examples, values = examples[column], values[unit, column]
        self._insert_samples(
            cells[unit, column], hashes[unit, column], values, examples, locate(unit, examples, values)
        )

    def _insert_samples(self, cells, hashes, values, examples, positions) -> None:
        """Merge entries (flat cell index, hash, value, example, position) into their cells."""
        s = self.samples_per_cell
        flat_examples = self.sample_examples.view(-1, s)
        flat_values = self.sample_values.view(-1, s)
        flat_positions = self.sample_positions.view(-1, s)
        touched = torch.unique(cells)
        old_examples = flat_examples[touched]
        filled = old_examples >= 0
        old_examples = old_examples[filled]
        all_cells = torch.cat([touched.unsqueeze(1).expand(-1, s)[filled], cells])
        all_hashes = torch.cat([example_hash(old_examples), hashes])
        all_values = torch.cat([flat_values[touched][filled], values])
        all_examples = torch.cat([old_examples, examples])
        all_positions = torch.cat([flat_positions[touched][filled], positions])
        order = torch.argsort(all_cells * _EMPTY + all_hashes)  # by cell, then hash (all distinct)
        sorted_cells = all_cells[order]
        index = torch.arange(order.shape[0], device=cells.device)
        first = torch.ones_like(sorted_cells, dtype=torch.bool)
        first[1:] = sorted_cells[1:] != sorted_cells[:-1]
        slot = index - torch.where(first, index, 0).cummax(0).values  # rank within the cell
        take = slot < s
        order, sorted_cells, slot = order[take], sorted_cells[take], slot[take]
        flat_examples[touched] = -1
        flat_values[touched] = -math.inf
        flat_positions[touched] = -1
        flat_examples[sorted_cells, slot] = all_examples[order]
        flat_values[sorted_cells, slot] = all_values[order]
        flat_positions[sorted_cells, slot] = all_positions[order]
        self.sample_threshold.view(-1)[touched] = _hash_or_empty(flat_examples[touched]).amax(1)

    def _add_samples_sync_free(self, values, examples, positions) -> None:
        """:meth:`_add_samples` with fixed shapes: each candidate (unit, example) computes the new content
        of its cell, the ``samples`` smallest hashes among the cell's kept entries and the batch's
        candidates in that cell, and writes it there; the candidates of one cell write the same content."""
        s = self.samples_per_cell
        units, n = values.shape
        device = values.device
        cell = QUANTILE_CELLS.index(values.float()).to(torch.int64)
        hashes = torch.where(values > -math.inf, example_hash(examples).unsqueeze(0), _EMPTY)
        order = (cell * (_EMPTY + 1) + hashes).argsort(1)  # by cell, then hash (empty candidates last)
        cell, hashes = cell.gather(1, order), hashes.gather(1, order)
        index = torch.arange(n, device=device).expand(units, n)
        first = torch.ones_like(cell, dtype=torch.bool)
        first[:, 1:] = cell[:, 1:] != cell[:, :-1]
        start = torch.where(first, index, 0).cummax(1).values  # where each candidate's cell begins
        # the first s candidates of each candidate's cell (the only ones that can enter it)
        take = start.unsqueeze(2) + torch.arange(s, device=device)
        inside = take < n
        take = take.clamp_(max=n - 1).view(units, n * s)
        peer_cell = cell.gather(1, take).view(units, n, s)
        peer_hash = hashes.gather(1, take).view(units, n, s)
        peer_hash = peer_hash.masked_fill_(~inside | (peer_cell != cell.unsqueeze(2)), _EMPTY)
        source = order.gather(1, take)  # the candidates' columns in the batch
        flat_cell = cell + torch.arange(units, device=device).unsqueeze(1) * QUANTILE_CELLS.num_bins
        flat_examples = self.sample_examples.view(-1, s)
        flat_values = self.sample_values.view(-1, s)
        flat_positions = self.sample_positions.view(-1, s)
        old_examples = flat_examples[flat_cell]  # (units, n, s)
        pool_hash = torch.cat([_hash_or_empty(old_examples), peer_hash], 2)
        pick = pool_hash.argsort(2)[:, :, :s]  # hashes are distinct, but for empty slots
        empty = pool_hash.gather(2, pick) >= _EMPTY

        def merged(old, new, fill):
            pool = torch.cat([old, new.view(units, n, s)], 2)
            return pool.gather(2, pick).masked_fill_(empty, fill)

        new_examples = merged(old_examples, examples[source], -1)
        flat_examples[flat_cell] = new_examples
        flat_values[flat_cell] = merged(flat_values[flat_cell], values.gather(1, source), -math.inf)
        flat_positions[flat_cell] = merged(flat_positions[flat_cell], positions.gather(1, source), -1)
        self.sample_threshold.view(-1)[flat_cell] = _hash_or_empty(new_examples).amax(2)

    # -- kept activations ----------------------------------------------------------------------------

    def _batch_grid(self, positions: int, grid: tuple[int, ...] | None) -> tuple[int, ...]:
        if grid is None:
            if math.prod(self.positions_shape) == positions:
                return self.positions_shape
            if len(self.positions_shape) > 1:
                raise ValueError(
                    f"layer {self.layer!r}: a batch of {positions} positions does not fill the grid "
                    f"{self.positions_shape}; pass its grid= to update"
                )
            return (positions,)
        grid = tuple(int(g) for g in grid)
        if math.prod(grid) != positions:
            raise ValueError(f"layer {self.layer!r}: grid {grid} does not hold the batch's {positions} positions")
        return grid

    def _widen(self, grid: tuple[int, ...]) -> None:
        """Make the layer's position grid hold ``grid`` too, moving the kept rows onto the wider grid."""
        # (the count is not read from the device: a sync-free batch that is all padding counts as seen)
        if adopt := (not self.positions_shape and self._num_positions == 0 and self._pending_positions is None):
            wider = grid  # a layer built without its grid takes the first batch's (nothing kept yet)
        else:
            wider = wider_grid(self.positions_shape, grid, self.layer)
        if wider != self.positions_shape and self.keep_activations:
            if adopt:
                self.kept_rows = self.kept_rows.new_full((*self.kept_rows.shape[:2], math.prod(wider)), math.nan)
            else:
                self.kept_rows = pad_grid(self.kept_rows, self.positions_shape, wider)
        self.positions_shape = wider

    def _kept_examples(self) -> torch.Tensor:
        """(units, 2k + ROW_INTERVALS × samples): the examples whose rows are kept, -1 for none. The top-k
        slots come first, then the bottom-k, then the samples of the unit's ROW_INTERVALS highest
        non-empty cells (highest first, each cell's slots in order); an example already kept in an
        earlier part is -1 in a later one."""
        kept = [self.top_examples]
        if self.k:
            bottom = self.bottom_examples
            in_top = (bottom.unsqueeze(2) == self.top_examples.unsqueeze(1)).any(2)
            kept.append(bottom.masked_fill(in_top & (bottom >= 0), -1))
        s = self.samples_per_cell
        if s:
            filled = self.sample_examples[:, :, 0] >= 0  # slots fill in order
            cells = torch.arange(QUANTILE_CELLS.num_bins, device=filled.device)
            highest = torch.where(filled, cells, -1).topk(ROW_INTERVALS, dim=1).values
            samples = self.sample_examples.gather(1, highest.clamp(min=0).unsqueeze(2).expand(-1, -1, s))
            samples = samples.masked_fill((highest < 0).unsqueeze(2), -1).flatten(1)
            if self.k:
                extremes = torch.cat([self.top_examples, self.bottom_examples], 1)
                in_top = (samples.unsqueeze(2) == extremes.unsqueeze(1)).any(2)
                samples = samples.masked_fill(in_top & (samples >= 0), -1)
            kept.append(samples)
        return torch.cat(kept, 1)

    def _update_kept_rows(self, values, valid, first_example: int, grid: tuple[int, ...]) -> None:
        """Write the rows of this batch's examples that entered a unit's kept set into slots whose
        example left it (or that were never used). Rows stay in their slot until then, so a batch
        costs a gather of the entries that entered, not a rewrite of the kept rows; :meth:`compact`
        puts them in the canonical order. An example that left never comes back (the top-k only
        rises, and a cell below the highest ROW_INTERVALS stays below), so entries from this batch
        are the only ones missing (the bottom-k only falls, like the top-k only rises)."""
        kept = self._kept_examples()
        entered = kept >= first_example
        units = entered.any(1).nonzero().squeeze(1)
        if units.numel() == 0:
            return
        kept, entered = kept[units], entered[units]
        slots = self.kept_examples[units]
        ordered = kept.sort(1).values
        found = ordered.gather(1, torch.searchsorted(ordered, slots).clamp_(max=ordered.shape[1] - 1))
        free = (slots < 0) | (found != slots)  # never used, or its example left the set
        # a unit's i-th entry takes its i-th free slot (there are enough: the set has at most R)
        wanted = entered.sum(1, keepdim=True)
        unit, slot = (free & (free.cumsum(1) <= wanted)).nonzero(as_tuple=True)
        example = kept[entered]  # row-major, like the slots: unit by unit
        units = units[unit]
        self.kept_examples[units, slot] = example
        # Example by example, a gather along the contiguous units (3-4x faster than one gather of
        # (example, position, unit) triples, which reads a cache line per value).
        order = torch.argsort((example - first_example) * self.units + units)
        example, units, slot = example[order] - first_example, units[order], slot[order]
        bounds = torch.searchsorted(example, torch.arange(values.shape[0] + 1, device=example.device)).tolist()
        new = torch.empty(example.shape[0], values.shape[1], dtype=torch.float16, device=values.device)
        for b, (start, stop) in enumerate(itertools.pairwise(bounds)):
            if stop > start:
                new[start:stop] = values[b].index_select(1, units[start:stop]).T
        if valid is not None:
            new.masked_fill_(~valid[example], math.nan)
        self.kept_rows[units, slot] = pad_grid(new, grid, self.positions_shape)

    def _update_kept_rows_sync_free(self, values, valid, first_example: int, grid: tuple[int, ...]) -> None:
        """:meth:`_update_kept_rows` with fixed shapes: the kept rows in canonical order after every batch,
        each from this batch (a gather of the kept examples' rows) or from the rows kept before."""
        kept = self._kept_examples()
        batch = values.shape[0]
        entered = kept >= first_example
        example = (kept - first_example).clamp_(0, batch - 1)
        units = torch.arange(self.units, device=kept.device).unsqueeze(1)
        new = values[example, :, units].to(torch.float16)  # (units, kept, positions)
        if valid is not None:
            new.masked_fill_(~valid[example], math.nan)
        new = pad_grid(new, grid, self.positions_shape)
        old = _rows_of(kept, self.kept_examples, self.kept_rows)
        self.kept_rows = torch.where(entered.unsqueeze(2), new, old)
        self.kept_examples = kept

    def compact(self) -> None:
        """Put the kept rows in their canonical order (that of the kept examples: the top-k, then the
        samples of the highest intervals) and drop those of examples no longer kept. Scans, merges
        and saved files are compact, so that equal statistics have equal arrays."""
        if self.keep_activations:
            self.kept_examples, self.kept_rows = self._compact_rows()

    def _compact_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        kept = self._kept_examples()
        return kept, _rows_of(kept, self.kept_examples, self.kept_rows)

    def activations(self, unit: int, examples: Sequence[int]) -> np.ndarray:
        """The unit's activation at every position of each of these examples, from the scan's kept rows:
        (len(examples), positions) float32 (positions flat over :attr:`positions_shape`, row-major), NaN
        where an example has no such position (padding). Each example must be among the unit's top-k,
        its bottom-k or the samples of its :data:`ROW_INTERVALS` highest intervals (see :meth:`top_k`,
        :meth:`bottom_k`, :meth:`samples`).
        """
        if not self.keep_activations:
            raise ValueError(
                f"layer {self.layer!r} was scanned without keeping activations (keep_activations=False, or "
                "saved before scans kept them): run the model on the examples instead"
            )
        unit = self._unit(unit)
        wanted = torch.as_tensor([int(e) for e in examples], dtype=torch.int64)
        held = self.kept_examples[unit].cpu()
        missing = sorted(set(wanted.tolist()) - set(held.tolist()))
        if missing:
            raise KeyError(
                f"layer {self.layer!r}, unit {unit}: no activations kept for examples {missing}; the scan keeps "
                f"them for the unit's top-k, bottom-k and the samples of its {ROW_INTERVALS} highest intervals"
            )
        slot = (wanted.unsqueeze(1) == held.unsqueeze(0)).to(torch.int8).argmax(1)
        return self.kept_rows[unit].cpu()[slot].float().numpy()

    # -- merge -------------------------------------------------------------------------------------

    def merge(self, other: LayerStats) -> LayerStats:
        """A new instance: the statistics of both parts (which must hold disjoint examples)."""
        if self.keep_activations != other.keep_activations:
            raise ValueError(
                f"cannot merge statistics of layer {self.layer!r}: one part kept its examples' activations "
                "and the other did not (scan both with the same keep_activations=)"
            )
        if self.settings() != other.settings():
            raise ValueError(
                f"cannot merge statistics of layer {self.layer!r} taken with different settings: "
                f"{self.settings()} vs {other.settings()}"
            )
        result = self.copy()
        other = other.copy().to(result.device)
        result._widen(other.positions_shape)
        other._widen(result.positions_shape)
        result.num_positions += other.num_positions
        for name in ("nan_", "inf_", "above", "near_low", "near_high"):
            setattr(result, name, getattr(result, name) + getattr(other, name))
        result._merge_moments(other.count_, other.mean_, other.m2)
        result.min_ = torch.minimum(result.min_, other.min_)
        result.max_ = torch.maximum(result.max_, other.max_)
        result.hist = _bin_major(result.hist + other.hist)
        for side in _SIDES if result.k else ():
            merged = list(result._top_of(*result._side(side), *other._side(side), presorted=False))
            if side == "bottom":
                merged[0] = merged[0].neg_()
            for name, array in zip(_SIDES[side], merged, strict=True):
                setattr(result, name, array)
        result.bottom_kept = self.bottom_kept and other.bottom_kept
        if result.samples_per_cell:
            filled = other.sample_examples >= 0
            cells = torch.arange(filled[..., 0].numel(), device=result.device).view(filled.shape[:2])
            cells = cells.unsqueeze(2).expand_as(filled)
            result._insert_samples(
                cells[filled],
                example_hash(other.sample_examples[filled]),
                other.sample_values[filled],
                other.sample_examples[filled],
                other.sample_positions[filled],
            )
        if result.keep_activations:  # both parts hold the rows of every example the merged sets keep
            kept = result._kept_examples()
            result.kept_rows = _rows_of(
                kept,
                torch.cat([result.kept_examples, other.kept_examples], 1),
                torch.cat([result.kept_rows, other.kept_rows], 1),
            )
            result.kept_examples = kept
        result._next_example = max(self._next_example, other._next_example)
        return result

    def copy(self) -> LayerStats:
        result = LayerStats.__new__(LayerStats)
        result.__dict__.update(self.__dict__)
        for name in self._arrays():
            setattr(result, name, getattr(self, name).clone())
        return result

    # -- state for saving --------------------------------------------------------------------------

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able metadata, arrays) that :meth:`from_state` turns back into an equal instance."""
        meta = {
            "layer": self.layer,
            "positions_shape": list(self.positions_shape),
            "module_type": self.module_type,
            "num_positions": self.num_positions,
            "next_example": self._next_example,
            **self.settings(),
        }
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        if self.keep_activations:
            arrays["kept_examples"], arrays["kept_rows"] = self._compact_rows()
        return meta, {name: array.detach().cpu().numpy() for name, array in arrays.items()}

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LayerStats:
        """The inverse of :meth:`state`. Statistics saved before scans kept activations load without
        them (their cards run the model); those saved before scans kept the bottom-k, without it."""
        bounds = meta["bounds"]
        result = cls(
            meta["layer"],
            meta["units"],
            tuple(meta["positions_shape"]),
            k=meta["k"],
            samples=meta["samples"],
            threshold=meta["threshold"],
            bounds=None if bounds is None else tuple(bounds),
            tolerance=meta["tolerance"],
            module_type=meta["module_type"],
            keep_activations=meta.get("keep_activations", False),
        )
        if "bottom_values" not in arrays:  # saved before the bottom-k (STATS_VERSION 2): none kept
            result.bottom_kept = False
            arrays = {name: getattr(result, name).numpy() for name in _SIDES["bottom"]} | dict(arrays)
            if result.keep_activations:  # make room for the bottom-k's rows after the top-k's
                k = result.k
                examples, rows = arrays["kept_examples"], arrays["kept_rows"]
                gap = np.full((examples.shape[0], k), -1, examples.dtype)
                arrays["kept_examples"] = np.concatenate([examples[:, :k], gap, examples[:, k:]], 1)
                gap = np.full((rows.shape[0], k, rows.shape[2]), np.nan, rows.dtype)
                arrays["kept_rows"] = np.concatenate([rows[:, :k], gap, rows[:, k:]], 1)
        for name in result._arrays():
            expected = getattr(result, name)
            array = torch.from_numpy(np.ascontiguousarray(arrays[name]))
            if array.shape != expected.shape or array.dtype != expected.dtype:
                raise ValueError(
                    f"saved statistics of layer {meta['layer']!r}: {name} has shape {tuple(array.shape)} "
                    f"{array.dtype}, expected {tuple(expected.shape)} {expected.dtype}"
                )
            setattr(result, name, array)
        result.hist = _bin_major(result.hist)
        result.num_positions = int(meta["num_positions"])
        result._next_example = int(meta["next_example"])
        return result

    # -- accessors ---------------------------------------------------------------------------------

    @property
    def mean(self) -> np.ndarray:
        """Mean of the finite values per unit (NaN for a unit without any)."""
        return np.where(self.count > 0, self.mean_.cpu().numpy(), np.nan)

    @property
    def var(self) -> np.ndarray:
        """Population variance (ddof=0) of the finite values per unit (NaN for a unit without any)."""
        count = self.count
        return np.where(count > 0, self.m2.cpu().numpy() / np.maximum(count, 1), np.nan)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    @property
    def min(self) -> np.ndarray:
        """Smallest finite value per unit (``inf`` for a unit without any)."""
        return self.min_.cpu().numpy()

    @property
    def max(self) -> np.ndarray:
        """Largest finite value per unit (``-inf`` for a unit without any)."""
        return self.max_.cpu().numpy()

    @property
    def count(self) -> np.ndarray:
        """Finite values per unit, over the valid (unpadded) positions of every example."""
        return self.count_.cpu().numpy()

    @property
    def nan_count(self) -> np.ndarray:
        """NaN values per unit (left out of every other statistic)."""
        return self.nan_.cpu().numpy()

    @property
    def inf_count(self) -> np.ndarray:
        """+inf and -inf values per unit (left out of every other statistic)."""
        return self.inf_.cpu().numpy()

    @property
    def density(self) -> np.ndarray:
        """Firing density: the fraction of a unit's finite values above the threshold."""
        count = self.count
        return np.where(count > 0, self.above.cpu().numpy() / np.maximum(count, 1), 0.0)

    @property
    def num_units(self) -> int:
        return self.units

    @property
    def edges(self) -> np.ndarray:
        """The edges of every unit's histogram (fixed; see :data:`HISTOGRAM`)."""
        return HISTOGRAM.edges()

    def histograms(self) -> np.ndarray:
        """Every unit's counts over all the bins: (units, bins) int64 (edges in :attr:`edges`)."""
        return self.hist.cpu().numpy()

    def histogram(self, unit: int) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of one unit's histogram over its non-empty span of the fixed bins.

        ``edges`` has one more entry than ``counts``; the outer bins may reach ``-inf`` / ``inf``
        (values beyond ±2**20). A unit without finite values gives two empty arrays.
        """
        counts = self.hist[self._unit(unit)].cpu().numpy()
        nonzero = np.flatnonzero(counts)
        if not nonzero.size:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        first, last = nonzero[0], nonzero[-1] + 1
        return counts[first:last], HISTOGRAM.edges()[first : last + 1]

    def top_k(self, unit: int) -> list[tuple[float, int, int]]:
        """(value, example index, position index) of the unit's top examples, highest first.

        The position is a flat index into :attr:`positions_shape` (row-major). Fewer than ``k``
        entries when fewer examples had a finite value at a valid position.
        """
        unit = self._unit(unit)
        examples = self.top_examples[unit].cpu().tolist()
        values = self.top_values[unit].cpu().tolist()
        positions = self.top_positions[unit].cpu().tolist()
        return [(v, e, p) for v, e, p in zip(values, examples, positions, strict=True) if e >= 0]

    def bottom_k(self, unit: int) -> list[tuple[float, int, int]]:
        """(value, example index, position index) of the unit's bottom examples, most negative first:
        each example by its minimum over positions, like :meth:`top_k` by its maximum (ties go to the
        lower example index, then position). Their activation rows are kept like the top-k's."""
        if not self.bottom_kept:
            raise ValueError(
                f"layer {self.layer!r}: these statistics were saved before scans kept the bottom-k "
                "(most negative) examples; scan again to get them"
            )
        unit = self._unit(unit)
        examples = self.bottom_examples[unit].cpu().tolist()
        values = self.bottom_values[unit].cpu().tolist()
        positions = self.bottom_positions[unit].cpu().tolist()
        return [(v, e, p) for v, e, p in zip(values, examples, positions, strict=True) if e >= 0]

    def samples(self, unit: int) -> list[tuple[float, float, list[tuple[float, int, int]]]]:
        """Examples from every activation interval (octave) a unit reached, highest interval first.

        Each entry is (low edge, high edge, [(value, example index, position index), ...]), the
        examples sorted by value, highest first; an example is placed by its maximum over positions.
        Within an interval the examples are a deterministic pseudo-random choice (the smallest
        :func:`example_hash` of their index), the same whether the data was scanned whole or in parts.
        """
        unit = self._unit(unit)
        examples = self.sample_examples[unit].cpu().numpy()
        values = self.sample_values[unit].cpu().numpy()
        positions = self.sample_positions[unit].cpu().numpy()
        edges = QUANTILE_CELLS.edges()
        result = []
        for cell in range(QUANTILE_CELLS.num_bins - 1, -1, -1):
            filled = examples[cell] >= 0
            if not filled.any():
                continue
            entries = sorted(
                zip(
                    values[cell][filled].tolist(),
                    examples[cell][filled].tolist(),
                    positions[cell][filled].tolist(),
                    strict=True,
                ),
                key=lambda entry: (-entry[0], entry[1]),
            )
            result.append((float(edges[cell]), float(edges[cell + 1]), entries))
        return result

    def dead(self) -> np.ndarray:
        """Units that never exceeded the threshold on the scanned data (indices, ascending)."""
        return np.flatnonzero(self.above.cpu().numpy() == 0)

    def saturated(self, fraction: float = 0.99, bound: str | float | None = None) -> np.ndarray:
        """Units within the tolerance of a bound for at least ``fraction`` of their finite values.

        The bounds are those of the layer's module (sigmoid (0, 1), tanh (-1, 1), hardtanh, ReLU6)
        or the ones given to ``scan(bounds=...)``; they are tracked during the scan. ``bound`` picks
        ``"low"``, ``"high"`` or one of the bounds by value; ``None``: either.
        """
        if self.bounds is None:
            raise ValueError(
                f"layer {self.layer!r} ({self.module_type}) has no known bounds, so saturation was not "
                "tracked; scan again with bounds={layer: (low, high)} (None for an open side)"
            )
        low, high = self.bounds
        if bound is None:
            sides = [s for s, b in (("low", low), ("high", high)) if b is not None]
        elif bound in ("low", "high"):
            sides = [bound]
        elif isinstance(bound, (int, float)) and float(bound) in (low, high):
            sides = ["low" if float(bound) == low else "high"]
        else:
            raise ValueError(
                f"layer {self.layer!r}: bound must be 'low', 'high', or one of the tracked bounds "
                f"{self.bounds}, got {bound!r}; other bounds need a new scan with bounds=..."
            )
        count = np.maximum(self.count, 1)
        stuck = np.zeros(self.units, dtype=bool)
        for side in sides:
            value = low if side == "low" else high
            if value is None:
                raise ValueError(f"layer {self.layer!r} has no {side} bound (bounds {self.bounds})")
            near = (self.near_low if side == "low" else self.near_high).cpu().numpy()
            stuck |= (near / count >= fraction) & (self.count > 0)
        return np.flatnonzero(stuck)

    def saturation(self) -> dict[str, np.ndarray]:
        """Per-unit fraction of finite values near each tracked bound: ``{"low": ..., "high": ...}``."""
        if self.bounds is None:
            return {}
        count = np.maximum(self.count, 1)
        result = {}
        low, high = self.bounds
        for side, bound, near in (("low", low, self.near_low), ("high", high, self.near_high)):
            if bound is not None:
                result[side] = near.cpu().numpy() / count
        return result

    def _unit(self, unit: int) -> int:
        unit = int(unit)
        if not -self.units <= unit < self.units:
            raise IndexError(f"unit {unit} is out of range for layer {self.layer!r}, which has {self.units} units")
        return unit % self.units

    def __repr__(self) -> str:
        return (
            f"LayerStats({self.layer!r}, units={self.units}, positions={self.positions_shape}, "
            f"values={int(self.count_.sum())}, k={self.k})"
        )


def _prefix_lengths(valid: torch.Tensor) -> list[int] | None:
    """Each example's number of valid positions when they come first (right padding), else ``None``."""
    lengths = valid.sum(1)
    if not torch.equal(valid, torch.arange(valid.shape[1], device=valid.device) < lengths.unsqueeze(1)):
        return None
    return lengths.tolist()


def _prefix_extremes(values: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(max, min) of each example over its first ``lengths`` positions, (batch, units) each; an example
    without any: -inf and inf."""
    batch, _, units = values.shape
    best = values.new_full((batch, units), -math.inf)
    worst = values.new_full((batch, units), math.inf)
    for b, length in enumerate(lengths):
        if length:
            torch.aminmax(values[b, :length], dim=0, out=(worst[b], best[b]))
    return best, worst


class _Locator:
    """Where each kept (unit, example)'s max or min is: the first valid position holding that value (the
    CPU way finds the positions of the few entries that enter, not of every candidate)."""

    def __init__(self, values: torch.Tensor, valid: torch.Tensor | None, first_example: int):
        self.values, self.valid, self.first = values, valid, first_example

    def __call__(self, units: torch.Tensor, examples: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        result = torch.zeros(units.shape[0], dtype=torch.int64, device=units.device)
        if units.numel() == 0:
            return result
        # example by example, a gather along the contiguous units (as for the kept rows)
        example = examples - self.first
        order = torch.argsort(example, stable=True)
        example, units, targets = example[order], units[order], targets[order].to(self.values.dtype)
        bounds = torch.searchsorted(example, torch.arange(self.values.shape[0] + 1, device=example.device)).tolist()
        found = torch.empty_like(result)
        for b, (start, stop) in enumerate(itertools.pairwise(bounds)):
            if stop > start:
                rows = self.values[b].index_select(1, units[start:stop])  # (positions, n)
                hit = rows == targets[start:stop]  # NaN and inf never equal a kept value
                if self.valid is not None:
                    hit &= self.valid[b].unsqueeze(1)
                found[start:stop] = hit.to(torch.int8).argmax(0)
        result[order] = found
        return result


def _rows_of(wanted: torch.Tensor, examples: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per unit, the rows (units, n, P) of the ``wanted`` examples (units, n) found among ``examples``
    (units, m) with ``rows`` (units, m, P); NaN for -1 and for an example not found."""
    match = (wanted.unsqueeze(2) == examples.unsqueeze(1)) & (wanted >= 0).unsqueeze(2)
    source = match.to(torch.int8).argmax(2)
    units = torch.arange(wanted.shape[0], device=wanted.device).unsqueeze(1)
    return rows[units, source].masked_fill_(~match.any(2).unsqueeze(2), math.nan)


def pad_grid(rows: torch.Tensor, grid: tuple[int, ...], wider: tuple[int, ...]) -> torch.Tensor:
    """Rows (..., prod(grid)) flat over ``grid``, placed at the start of every axis of the ``wider``
    grid (same rank, no axis smaller) and flat over it; NaN elsewhere."""
    if grid == wider:
        return rows
    lead = rows.shape[:-1]
    pad = [p for g, w in zip(reversed(grid), reversed(wider), strict=True) for p in (0, w - g)]
    spread = torch.nn.functional.pad(rows.reshape(*lead, *grid), pad, value=math.nan)
    return spread.reshape(*lead, math.prod(wider))


def wider_grid(a: tuple[int, ...], b: tuple[int, ...], layer: str) -> tuple[int, ...]:
    """The larger of two position grids (sequences of different lengths); ranks must agree."""
    if a == b:
        return a
    if len(a) != len(b):
        raise ValueError(f"layer {layer!r}: position grids {a} and {b} have different ranks")
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))
