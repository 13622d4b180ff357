"""CoActivation: which units of a layer fire together, over a sample of the explorer's data."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

from ..core import Probe
from ..core.correlation import correlation, matrix_units, max_activations, strongest_pair, undefined_because
from ..figures import MATRIX, PAIR, SCATTER, coactivation_figure, coactivation_sources, padded_extent
from . import background
from .companion import Companion
from .layer_view import LayerView

CHUNK_POSITIONS = 512  # positions (tokens, or examples without positions) per forward pass of the sample


class CoActivation(Companion):
    """Correlations between units of the followed explorer's layer, over a sample of its data.

    Each sampled example counts by its maximum over positions. Left: the correlation matrix of the
    selected units (when two or more are selected) or else of the ``max_units`` units that vary most;
    right: unit a against unit b across the sample, for the current pair (the clicked cell, else the
    first two selected units, else the strongest correlation of the selected unit or of the matrix).

    Clicking a cell selects its two units in the explorer; the matrix keeps its units while the
    selection stays among them. Tapping a point of the scatter shows that example in the explorer.

    ``sample``: how many examples of the explorer's data (a seeded random choice when it has more);
    without data, the explorer's current input batch. The data's sample runs in the background, in
    chunks, with its progress in the matrix's title; another layer cancels it (see background.py).
    """

    def __init__(self, view: LayerView, sample: int = 256, max_units: int = 12, seed: int = 0, **kwargs: Any):
        if not isinstance(view, LayerView):
            raise TypeError(f"CoActivation follows an explorer (nw.explore), got {type(view).__name__}")
        for name, value in (("sample", sample), ("max_units", max_units)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an int ≥ 2, got {value!r}")
        self.sample, self.max_units, self.seed = sample, max_units, seed
        self._cache: dict[str, np.ndarray] = {}  # layer → (sampled examples, units) maxima
        self._cached_of: Any = None  # what the cache was sampled from: the explorer's examples, or its batch
        self._sample: tuple[Any, np.ndarray | None] = (None, None)  # (the explorer's examples, the sample)
        self._chunks: tuple[Any, list[Any]] = (None, [])  # (the explorer's examples, the sample's inputs)
        self._sampling: tuple[Any, str] | None = None  # (examples, layer) of the last background job
        self.matrix_units: list[int] = []
        self.correlation = np.zeros((0, 0))
        self.pair: tuple[int, int] | None = None
        self._clicked: tuple[int, int] | None = None
        self._ready = False
        self.sources = coactivation_sources()
        layout, self._matrix, self._scatter = coactivation_figure(self.sources)
        super().__init__(layout, follow=view, selectable={MATRIX: "cell", SCATTER: "example"}, **kwargs)
        self._ready = True
        self._refresh(new_matrix=True)

    # -- the sample ----------------------------------------------------------------------------

    @property
    def sample_indices(self) -> np.ndarray | None:
        """The global indices of the sampled examples of the explorer's data (None without data)."""
        examples = self.view.examples
        if examples is None:
            return None
        if self._sample[0] is not examples:
            self._sample = (examples, examples.sample(self.sample, self.seed))
        return self._sample[1]

    def activations(self, layer: str | None = None) -> np.ndarray:
        """(sampled examples, units): each sampled example's maximum over positions, per unit of
        ``layer`` (default: the current one). One forward pass of the sample per layer, kept: the
        current layer's from the background (waited for, except inside a message handler), another
        one's computed now."""
        layer = layer or self.layer
        if self._held(layer) is None and self.sample_indices is not None and background.can_wait():
            self.wait()
        acts = self._held(layer)
        if acts is None:
            acts = self._cache[layer] = self._maxima(self.view.probe, layer)
        return acts

    def _sampled_from(self) -> Any:
        return self.view.inputs if self.sample_indices is None else self.view.examples

    def _held(self, layer: str) -> np.ndarray | None:
        """The layer's maxima if they are of the current sample (None if not computed yet)."""
        sampled_from = self._sampled_from()
        if sampled_from is not self._cached_of:  # other data or another batch: the cache is stale
            self._cache.clear()
            self._cached_of = sampled_from
        return self._cache.get(layer)

    def _maxima(self, probe: Probe, layer: str) -> np.ndarray:
        """The sample's maxima of ``layer`` now, in the calling thread."""
        if self.sample_indices is None:
            return max_activations(probe, self.view.inputs, layer)
        return np.concatenate([max_activations(probe, inputs, layer) for inputs in self._sample_chunks()])

    def _sample_chunks(self) -> list[Any]:
        """The sampled examples as model inputs, about ``CHUNK_POSITIONS`` positions per chunk; made once
        per data, in the foreground (see background.chunks)."""
        examples = self.view.examples
        if self._chunks[0] is not examples:
            indices = self.sample_indices
            step = max(1, int(CHUNK_POSITIONS / background.positions(examples.batch(indices[:8].tolist()))))
            self._chunks = (examples, background.chunks(examples, indices, step))
        return self._chunks[1]

    def _start_sampling(self, layer: str) -> None:
        """Compute the layer's maxima over the data's sample in the background; draw them when done."""
        examples = self.view.examples
        if self._sampling == (examples, layer) and background.running(self):
            return  # already on its way
        self._sampling = (examples, layer)
        chunks, total = self._sample_chunks(), len(self.sample_indices)

        def work(probe: Probe):
            rows = []
            for inputs in chunks:
                rows.append(max_activations(probe, inputs, layer))
                yield sum(len(r) for r in rows)
            return np.concatenate(rows)

        def publish(acts: np.ndarray, seconds: float) -> None:
            if self.view is None or self._sampled_from() is not examples:
                return  # other data since
            self._cache[layer] = acts
            if layer == self.layer:
                self._refresh(new_matrix=True)

        def progress(done: int, seconds: float) -> None:
            self.update(self._matrix.title, text=f"{layer}: sampling {done}/{total} examples, {seconds:.1f} s")

        self._clear(f"{layer}: sampling 0/{total} examples")
        background.submit(
            self, "sample", self.view.probe, work, publish, progress, action=f"correlating the units of {layer!r}"
        )

    def _clear(self, title: str) -> None:
        """Nothing drawn (the previous layer's correlations would be misread as this one's)."""
        self.matrix_units, self.correlation, self.pair = [], np.zeros((0, 0)), None
        self.update(self.sources[MATRIX], data={k: [] for k in self.sources[MATRIX].data})
        self.update(self.sources[PAIR], data={"x": [], "y": []})
        self.update(self.sources[SCATTER], data={"x": [], "y": [], "example": []})
        self.update(self._matrix.title, text=title)
        self.update(self._scatter.title, text=" ")

    # -- choosing the pair ----------------------------------------------------------------------

    def _pair(self, selected: list[int]) -> tuple[int, int]:
        if self._clicked is not None and set(self._clicked) == set(selected):
            return self._clicked
        if len(selected) >= 2:
            return selected[0], selected[1]
        return strongest_pair(self.correlation, self.matrix_units, selected[0] if selected else None)

    # -- drawing -------------------------------------------------------------------------------

    def _refresh(self, new_matrix: bool = False) -> None:
        if self.view is None:  # unfollowed: nothing to sample
            return
        with background.lock, self.hold_sync():  # the background publishes through here too
            acts = self._held(self.layer)
            if acts is None and self.sample_indices is None:  # the current batch: one forward pass, now
                acts = self._cache[self.layer] = self._maxima(self.view.probe, self.layer)
            if acts is None:
                self._start_sampling(self.layer)
                return
            selected = [u for u in self.selected_units if u < acts.shape[1]]
            if new_matrix or not set(selected) <= set(self.matrix_units):
                self.matrix_units = matrix_units(acts, selected, self.max_units)
                self.correlation = correlation(acts[:, self.matrix_units])
                self._draw_matrix(acts)
            self.pair = self._pair(selected)
            self._draw_pair(acts)
            self._mark_current()

    def _draw_matrix(self, acts: np.ndarray) -> None:
        labels = [str(u) for u in self.matrix_units]
        k = len(labels)
        r = self.correlation.ravel()
        data = {
            "x": [a for a in labels for _ in labels], "y": labels * k,
            "a": np.repeat(self.matrix_units, k), "b": np.tile(self.matrix_units, k), "r": r,
            "cell": [f"{a} {b}" for a in self.matrix_units for b in self.matrix_units],  # what a tap sends
            "r_text": [
                undefined_because(acts[:, [a, b]]) if np.isnan(v) else f"{v:.3f}"
                for a, b, v in zip(np.repeat(self.matrix_units, k), np.tile(self.matrix_units, k), r, strict=True)
            ],
        }  # fmt: skip
        self.update(self.sources[MATRIX], data=data)
        self.update(self._matrix.x_range, factors=labels)
        self.update(self._matrix.y_range, factors=labels[::-1])
        self.update(self._matrix.title, text=f"{self.layer}: correlation of unit maxima over {acts.shape[0]} examples")

    def _draw_pair(self, acts: np.ndarray) -> None:
        a, b = self.pair
        x, y = acts[:, a], acts[:, b]
        indices = self.sample_indices
        examples = np.arange(len(x)) if indices is None else indices
        r = correlation(np.stack([x, y], axis=1))[0, 1]
        shown = [(str(a), str(b)), (str(b), str(a))] if a != b else [(str(a), str(b))]
        self.update(self.sources[PAIR], data={"x": [s[0] for s in shown], "y": [s[1] for s in shown]})
        self.update(self.sources[SCATTER], data={"x": x, "y": y, "example": examples})
        for axis_range, values in ((self._scatter.x_range, x), (self._scatter.y_range, y)):
            start, end = padded_extent(values)
            self.update(axis_range, start=start, end=end)
        self.update(self._scatter.xaxis[0], axis_label=f"unit {a} (max over positions)")
        self.update(self._scatter.yaxis[0], axis_label=f"unit {b} (max over positions)")
        text = undefined_because(np.stack([x, y], axis=1)) if np.isnan(r) else f"{r:.3f}"
        self.update(self._scatter.title, text=f"unit {a} vs unit {b}: r = {text}")

    def _mark_current(self) -> None:
        """Select the explorer's current example in the scatter, if it is one of the sample."""
        indices, view = self.sample_indices, self.view
        if indices is None:
            rows = [view.example]
        else:
            rows = np.flatnonzero(indices == view.current_index).tolist()
        self.select(SCATTER, rows)

    def _input_changed(self) -> None:
        if not self._ready or self.view is None:
            return
        if self.sample_indices is None and self.view.inputs is not self._cached_of:
            self._refresh(new_matrix=True)  # the sample is the batch: it changed
        else:
            self._mark_current()

    @traitlets.observe("layer")
    def _layer_changed(self, change: dict) -> None:
        if self._ready:
            self._clicked = None
            with self.reporting_errors(f"correlating the units of {change['new']!r}"):
                self._refresh(new_matrix=True)

    @traitlets.observe("selected_units")
    def _units_changed(self, change: dict) -> None:
        if self._ready:
            with self.reporting_errors("correlating the selected units"):
                self._refresh()

    def _on_tap(self, chosen: dict[str, list]) -> None:
        """A cell selects its two units (one on the diagonal); a point opens its example. The same tap
        again changes nothing more."""
        cells, points = chosen.get(MATRIX) or [], chosen.get(SCATTER) or []
        if cells:
            a, b = _cell(cells[0])
            if a not in self.matrix_units or b not in self.matrix_units:
                raise ValueError(f"cell {cells[0]!r} is not in the matrix of units {self.matrix_units}")
            self._clicked = (a, b)
            before = self.selected_units
            self.selected_units = list(dict.fromkeys(self._clicked))  # a diagonal cell: one unit
            if self.selected_units == before:  # the same units: no trait change, maybe another cell
                self._refresh()
        elif points:
            example = points[0]
            if isinstance(example, bool) or not isinstance(example, (int, float)) or example != int(example):
                raise TypeError(f"a tap on a point carries its example's index, got {example!r}")
            if int(example) not in np.asarray(self.sources[SCATTER].data["example"]).tolist():
                raise ValueError(f"example {int(example)} is not a point of the scatter")
            if self.sample_indices is None:
                self.view.example = int(example)
            elif self.view.current_index != int(example):
                self.view.show_example(int(example))


def _cell(value: Any) -> tuple[int, int]:
    """The two units of a matrix cell as a tap sends them ("a b")."""
    parts = str(value).split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"a tap on the matrix carries its cell as 'unit unit', got {value!r}")
    return int(parts[0]), int(parts[1])
