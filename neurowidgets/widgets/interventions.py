"""Interventions: ablate, clamp, scale or steer the selected units and see the model's output change."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import traitlets

from ..core import Probe
from ..core.edits import Edit, ablate, clamp, scale, steer, unit_direction
from ..core.effects import Readouts, batch_readouts, edited_output, is_causal_lm, sample_effect
from ..core.outputs import KINDS, Comparison, compare, logits_of, output_kind, readout
from ..figures import comparison_figure
from . import background
from .base import bundle, handles
from .companion import Companion
from .layer_view import LayerView

MODES = ("ablate", "clamp", "scale", "steer")
SAMPLE_BATCH = 64  # at most this many examples per forward pass of the sample
SAMPLE_SECONDS = 3.0  # the default sample: about this long for its first edit (before and after)
CHUNK_SECONDS = 0.5  # about this long per forward pass of the sample: progress, and a pause point
MIN_SAMPLE, MAX_DEFAULT_SAMPLE = 8, 1024
NOTED = 0.005  # the smallest probability written next to its bar


class _Same:
    """A part of a cache key that matches only this very object (batches and tensors have no usable ``==``);
    holding it keeps its id from being reused."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj


class Interventions(Companion):
    """Edit the selected units of the followed explorer's layer and compare the model's output on the
    current input before and after.

    - ``mode``: ``"ablate"`` (set to 0), ``"clamp"`` (hold at ``strength``), ``"scale"`` (multiply by
      ``strength``) or ``"steer"`` (add ``strength`` × a direction: the selected units' normalised basis
      vectors, or the vector given to :meth:`steer_with`).
    - The output is read as class probabilities (a (batch, classes) output), as log-probabilities of the
      next or masked token (a language model's logits, with a text explorer's tokenizer), or as a vector
      whose most changed components are shown (anything else); ``output=`` overrides the choice.
    - With the explorer's data (``explore(..., data=...)``): the effect over ``sample`` examples of it
      (``Examples.sample``, the sample CoActivation uses): how many examples' top prediction changes
      (mean cosine similarity for vectors), and the accuracy before and after when there are labels:
      ``labels`` (one per example of the data), or those of a labelled dataset's (inputs, label) items;
      for a causal language model, the next-token accuracy on the sampled texts themselves.
      ``sample=None`` (the default) sizes it from a timed forward pass of one example of the data, so
      that a new edit's sample takes about ``SAMPLE_SECONDS`` on the model at hand (at least
      ``MIN_SAMPLE`` examples); the page's "more examples" button doubles it.
    - The current input's before and after are computed at once (in the message handler); the sample
      effect in the background (see background.py), in chunks with progress in ``sample_status``,
      cancelled by a newer edit. :meth:`wait` waits for it; :attr:`effect` waits too.

    Synced: ``mode``, ``strength``, ``ranges`` (per mode ``[min, max, step, default]`` for the slider;
    clamp values follow the layer's activations on the current input), ``kind``, ``summary``,
    ``sample_effect``, ``sample_status``, ``sample_size``, ``data_size``, ``direction``. The front-end
    sends ``edit`` requests (latest wins while dragging) and ``sample`` requests (a bigger sample),
    answered in parts: the sample's progress, then its effect (or cancelled, by a newer edit).
    """

    _esm = bundle("interventions")

    mode = traitlets.Enum(MODES, "ablate").tag(sync=True)
    strength = traitlets.Float(0.0).tag(sync=True)
    ranges = traitlets.Dict(read_only=True).tag(sync=True)
    kind = traitlets.Unicode("", read_only=True).tag(sync=True)
    summary = traitlets.Unicode("", read_only=True).tag(sync=True)
    sample_effect = traitlets.Unicode("", read_only=True).tag(sync=True)
    sample_status = traitlets.Unicode("", read_only=True).tag(sync=True)
    sample_size = traitlets.Int(0, read_only=True).tag(sync=True)
    data_size = traitlets.Int(0, read_only=True).tag(sync=True)
    direction = traitlets.Unicode("the selected units", read_only=True).tag(sync=True)

    def __init__(
        self,
        view: LayerView,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        sample: int | None = None,
        class_names: Sequence[str] | None = None,
        output: str | None = None,
        k: int = 8,
        **kwargs: Any,
    ):
        if not isinstance(view, LayerView):
            raise TypeError(f"Interventions follows an explorer (nw.explore), got {type(view).__name__}")
        if output is not None and output not in KINDS:
            raise ValueError(f"output must be one of {KINDS} (or None to choose from the output), got {output!r}")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            raise ValueError(f"sample must be an int of at least 1 (or None to size it by time), got {sample!r}")
        self._labels = None if labels is None else np.asarray(torch.as_tensor(labels).cpu()).reshape(-1)
        self._sample = sample
        self._data_seconds: tuple[Any, float] = (None, 0.0)  # (examples, a forward pass of one of them)
        self._class_names = None if class_names is None else [str(n) for n in class_names]
        self._output = output
        self._k = int(k)
        self._vector: torch.Tensor | None = None
        self._vector_layer = ""
        self._before: np.ndarray | None = None  # the shown example's readouts
        self._after: np.ndarray | None = None
        self._memos: dict[str, tuple[tuple, Any]] = {}
        self._sample_key: tuple | None = None  # the edit whose sample was submitted last
        self._sample_job: background.Job | None = None  # and its job
        self._quiet = False
        self.comparison: Comparison | None = None
        self._effect: dict[str, Any] = {}
        if self._labels is not None:
            examples = view.examples
            if examples is None:
                raise ValueError("labels need the explorer's data: nw.explore(model, inputs, data=...)")
            if len(self._labels) != len(examples):
                raise ValueError(f"{len(self._labels)} labels for {len(examples)} examples of the explorer's data")
        super().__init__(follow=view, **kwargs)  # a failure from here on releases the explorer (Companion)
        if self._labels is not None and self.kind != "classes":
            raise ValueError(f"labels are for classifiers; this model's output reads as {self.kind!r}")

    # -- public --------------------------------------------------------------------------------

    @property
    def probe(self) -> Probe:
        return self.view.probe

    @property
    def edit(self) -> Edit | None:
        """The edit now applied to the layer (None when there is nothing to edit: no unit selected)."""
        return self._edit_for(self.mode, self.strength, self._vector)

    def _edit_for(self, mode: str, strength: float, vector: torch.Tensor | None) -> Edit | None:
        units = list(self.selected_units)
        if mode == "steer":
            vector = vector if vector is not None else unit_direction(units, self.view.num_units)
            return None if vector is None else steer(vector, strength)
        if not units:
            return None
        if mode == "ablate":
            return ablate(units)
        return (clamp if mode == "clamp" else scale)(units, strength)

    @property
    def before(self) -> np.ndarray:
        """The readout of the shown example without the edit (probabilities, log-probabilities or values)."""
        return self._before

    @property
    def after(self) -> np.ndarray:
        """The readout of the shown example with the edit."""
        return self._after

    @property
    def effect(self) -> dict[str, Any]:
        """The effect of the current edit over the sample (see the class); waits for the background."""
        self.wait()
        return self._effect

    @property
    def sample_indices(self) -> np.ndarray:
        """The examples of the explorer's data the sample effect is computed on (global indices)."""
        return self.view.examples.sample(self._sample_size(self.view.examples))

    def steer_with(
        self, vector: Sequence[float] | np.ndarray | torch.Tensor | None, alpha: float | None = None
    ) -> None:
        """Steer along ``vector`` (one value per unit of the layer), by ``alpha`` when given; ``None`` goes
        back to the selected units' directions. A vector of the wrong length raises and changes nothing."""
        if vector is not None:
            vector = torch.as_tensor(np.asarray(vector, dtype=np.float32)).flatten()
            width = self.view.num_units
            if vector.numel() != width:
                raise ValueError(
                    f"the steering vector has {vector.numel()} values but layer {self.view.layer!r} has {width} "
                    f"units: give one value per unit"
                )
            steer(vector)  # rejects NaN and infinite values
        self._apply("steer", self.strength if alpha is None else float(alpha), vector)

    # -- following the explorer ----------------------------------------------------------------

    def _input_changed(self) -> None:
        if self._vector is not None and self._vector_layer != self.view.layer:
            self._set_vector(None)  # it was one value per unit of another layer
        with self.hold_sync():
            self._apply(self.mode, self.strength, self._vector)  # errors go to the caller (Companion reports them)
            self._set_ranges()

    def _before_readouts(self, inputs: Any) -> tuple[str, np.ndarray]:
        """The kind of output and the unedited readouts of the whole batch."""
        output = self.probe.run(inputs, []).output
        kind = self._output or output_kind(logits_of(output), self._vocab_size())
        before = self._readout(output, kind, inputs)
        names = self._class_names or self.view.class_names
        if kind == "classes" and names and len(names) != before.shape[1]:
            raise ValueError(f"{len(names)} class names for the model's {before.shape[1]} classes")
        return kind, before

    def _vocab_size(self) -> int | None:
        tokenizer = self._tokenizer()
        return None if tokenizer is None else int(tokenizer.vocab_size)

    def _tokenizer(self) -> Any:
        return self.view.tokenizer

    def _mask_token_id(self) -> int | None:
        return getattr(self._tokenizer(), "mask_token_id", None)

    def _readout(self, output: Any, kind: str, inputs: Any) -> np.ndarray:
        return readout(output, kind, inputs, self._mask_token_id())

    def _name(self, kind: str, index: int) -> str:
        if kind == "tokens":
            return self._tokenizer().convert_ids_to_tokens(index)
        if kind == "classes":
            names = self._class_names or self.view.class_names
            return str(names[index]) if names else str(index)
        return f"[{index}]"

    def _set_ranges(self) -> None:
        values = np.asarray(self.view.values[self.view.example], dtype=np.float64)
        finite = values[np.isfinite(values)]
        low = min(0.0, float(finite.min())) if finite.size else 0.0
        high = max(float(finite.max()), low + 1.0) if finite.size else 1.0
        span = high - low
        reach = float(np.ceil(max(10.0, 2 * max(abs(low), abs(high)))))
        self.set_trait(
            "ranges",
            {
                "ablate": [0.0, 0.0, 0.0, 0.0],
                # Clamping to a few times a unit's largest value is a usual probe: the range goes there.
                "clamp": [low - 0.5 * span, high + 2 * span, span / 200, high],
                "scale": [-2.0, 4.0, 0.05, 2.0],
                "steer": [-reach, reach, reach / 100, reach / 2],
            },
        )

    def _set_vector(self, vector: torch.Tensor | None) -> None:
        self._vector, self._vector_layer = vector, self.view.layer
        text = "the selected units" if vector is None else f"a custom vector ({vector.numel()} values)"
        self.set_trait("direction", text)

    # -- edits ---------------------------------------------------------------------------------

    @traitlets.observe("mode", "strength", "selected_units")
    def _edit_changed(self, change: dict) -> None:
        self._refresh()

    def _refresh(self) -> None:
        if self.view is None or self.comparison is None or self._quiet:
            return
        with self.reporting_errors("applying the edit"):
            self._apply(self.mode, self.strength, self._vector)

    @handles("edit")
    def _on_edit(self, mode: str, strength: float) -> None:
        """A slider move or mode choice: one computation, then both traits at once."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self._apply(mode, float(strength), self._vector)

    @handles("sample")
    def _on_sample(self, size: int) -> background.Job | dict[str, Any]:
        """A bigger (or smaller) sample: the current edit's effect over ``size`` examples of the data,
        answered by its job (progress, then the effect), or at once when it is remembered."""
        examples = self.view.examples
        if examples is None:
            raise ValueError("there is no sample without the explorer's data: nw.explore(..., data=...)")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"the sample size must be an int of at least 1, got {size!r}")
        self._sample = min(size, len(examples))
        job = self._apply(self.mode, self.strength, self._vector)
        return job if job is not None else self._effect_answer()

    def _memo(self, name: str, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()``, or what it gave for the same key the last time ``name`` was asked for."""
        held = self._memos.get(name)
        if held is None or held[0] != key:
            held = self._memos[name] = (key, compute())
        return held[1]

    def _held(self, name: str, key: tuple) -> Any:
        """What ``name`` holds for ``key`` (None if it holds another key's or nothing)."""
        held = self._memos.get(name)
        return held[1] if held is not None and held[0] == key else None

    def _apply(self, mode: str, strength: float, vector: torch.Tensor | None) -> background.Job | None:
        """Compute the current input's before and after first, then publish them: an error (in the model,
        say) leaves the panel as it was. The sample's effect follows from the background (the job
        computing it is returned; None when it is remembered or there is no data). Batch and
        sample readouts are remembered per input, layer and edit: another example or position of the
        explorer, or the same edit again, runs no model."""
        view = self.view
        inputs, examples, example = view.inputs, view.examples, view.example
        with background.foreground():
            kind, before = self._memo("before", (_Same(inputs),), lambda: self._before_readouts(inputs))
            edit = self._edit_for(mode, strength, vector)
            edited = (kind, view.layer, mode, strength, tuple(self.selected_units), _Same(vector))
            after = before
            if edit is not None:
                after = self._memo(
                    "after", (_Same(inputs), *edited),
                    lambda: self._readout(edited_output(self.probe, inputs, view.layer, edit), kind, inputs),
                )  # fmt: skip
            batches = None if examples is None else self._sample_batches(examples)
        comparison = compare(kind, before[example], after[example], partial(self._name, kind), self._k)
        summary = comparison.summary if edit is not None else "select units to edit (nothing is edited)"
        job = None
        with background.lock:  # no sample result of an older edit is published from here on
            self._before, self._after = before[example], after[example]
            self.comparison = comparison
            self._quiet = True
            try:
                with self.hold_sync():
                    if kind != self.kind:
                        self.set_trait("kind", kind)
                        self.plot, self.source = comparison_figure(kind, 10 if kind == "classes" else 2 * self._k)
                        self.show(self.plot)
                    self.mode, self.strength = mode, strength
                    if vector is not self._vector:
                        self._set_vector(vector)
                    self.set_trait("summary", summary)
                    self._draw(comparison, summary)
                    if batches is not None:
                        key = (_Same(examples), *edited, len(batches[0]))
                        job = self._start_sample(examples, batches, kind, edit, key)
            finally:
                self._quiet = False
        return job

    # -- the sample ----------------------------------------------------------------------------

    def _sample_size(self, examples: Any) -> int:
        """``sample=``, or one sized by a timed forward pass of an example of the data (see the class)."""
        if self._sample is None:
            per_example = self._seconds_per_data_example(examples)
            # A new edit runs the sample twice (before and after, the first time); later edits once.
            fits = int(SAMPLE_SECONDS / (2 * per_example)) if per_example > 0 else MAX_DEFAULT_SAMPLE
            self._sample = min(max(fits, MIN_SAMPLE), MAX_DEFAULT_SAMPLE)
        return min(self._sample, len(examples))

    def _seconds_per_data_example(self, examples: Any) -> float:
        """The time of one forward pass of one example of the data, timed once per data (it sizes the
        sample and its chunks; the current input's would not do: a sentence costs less than a long text)."""
        if self._data_seconds[0] is not examples:
            inputs = examples.batch(examples.sample(1).tolist())
            start = time.perf_counter()
            self.probe.run(inputs, [])
            self._data_seconds = (examples, time.perf_counter() - start)
        return self._data_seconds[1]

    def _sample_batches(self, examples: Any) -> tuple[np.ndarray, list[Any]]:
        """The sample's indices and its model inputs in chunks of about ``CHUNK_SECONDS`` each, made
        once per data and size."""
        size = self._sample_size(examples)

        def make() -> tuple[np.ndarray, list[Any]]:
            indices = examples.sample(size)
            per_example = self._seconds_per_data_example(examples)
            step = min(max(int(CHUNK_SECONDS / per_example), 1), SAMPLE_BATCH) if per_example > 0 else SAMPLE_BATCH
            return indices, background.chunks(examples, indices, step)

        return self._memo("sample batches", (_Same(examples), size), make)

    def _start_sample(
        self, examples: Any, batches: tuple, kind: str, edit: Edit | None, key: tuple
    ) -> background.Job | None:
        """Show the effect of this edit over the sample: remembered (None), or computed in the background
        (its job)."""
        indices, _ = batches
        self.set_trait("data_size", len(examples))
        self.set_trait("sample_size", len(indices))
        held = self._held("effect", key)
        if held is not None:
            background.cancel(self, "sample")
            self._show_effect(*held)
            return None
        if key == self._sample_key and background.running(self):
            return self._sample_job  # the same edit again (a replayed request): its sample is on its way
        self._sample_key = key
        self._effect = {}
        self.set_trait("sample_effect", "")
        self.set_trait("sample_status", f"sample: 0/{len(indices)} examples")

        def publish(result: tuple[dict[str, Any], str], seconds: float) -> dict[str, Any]:
            self._memos["effect"] = (key, (*result, seconds))
            self._show_effect(*result, seconds)
            return self._effect_answer()

        def progress(step: dict[str, Any], seconds: float) -> None:
            status = f"sample: {step['phase']} {step['done']}/{step['total']} examples, {seconds:.1f} s"
            self.set_trait("sample_status", status)

        self._sample_job = background.submit(
            self, "sample", self.probe, partial(self._sample_work, examples, batches, kind, edit, self.view.layer),
            publish, progress, action="computing the effect over the sample",
        )  # fmt: skip
        return self._sample_job

    def _effect_answer(self) -> dict[str, Any]:
        """What a sample request is answered with: the effect shown and its sentence."""
        return {"effect": self._effect, "text": self.sample_effect}

    def _show_effect(self, effect: dict[str, Any], text: str, seconds: float) -> None:
        self._effect = effect
        with self.hold_sync():
            self.set_trait("sample_effect", text)
            self.set_trait("sample_status", f"{effect['examples']} of {self.data_size} examples, {seconds:.1f} s")

    def _sample_work(
        self, examples: Any, batches: tuple, kind: str, edit: Edit | None, layer: str, probe: Probe
    ) -> Generator[dict[str, Any], None, tuple[dict[str, Any], str]]:
        """In the background: the sample's readouts before (once per data set and size) and after the
        edit of ``layer`` (the one it was made for: the explorer may show another one by now), one chunk
        per step, yielding ``{phase, done, total}`` (also the parts of a sample request's answer); then
        the effect."""
        indices, chunks = batches
        mask_token_id, causal = self._mask_token_id(), is_causal_lm(probe.model, kind)

        def readouts(phase: str, edit: Edit | None, rows: list[Readouts]) -> Generator:
            """Run the chunks not in ``rows`` yet, appending each one's readouts."""
            for inputs in chunks[len(rows) :]:
                rows.append(batch_readouts(probe, inputs, kind, layer, edit, mask_token_id, causal))
                yield {"phase": phase, "done": sum(len(row) for row in rows), "total": len(indices)}
            return Readouts.concat(rows)

        key = (_Same(examples), kind, len(indices))  # once per data set and size, not per edit
        plain = self._held("sample before", key)
        if plain is None:
            # The chunks done so far are kept when a newer edit cancels this job: the next job goes on
            # from there (clicking through units must not restart the edit-free pass every time).
            rows = self._memo("sample before rows", key, list)
            plain = yield from readouts("before", None, rows)
            with background.lock:
                self._memos["sample before"] = (key, plain)
        edited = plain if edit is None else (yield from readouts("after", edit, []))
        labels = self._sample_labels(examples, indices) if kind == "classes" else None
        return sample_effect(kind, plain, edited, labels)

    def _sample_labels(self, examples: Any, indices: np.ndarray) -> np.ndarray | None:
        """The labels of the sampled examples: ``labels=``, else a labelled dataset's own, else None."""
        if self._labels is not None:
            return self._labels[indices - examples.start_index]
        if examples.labelled:
            return examples.labels(indices)
        return None

    # -- the plot ------------------------------------------------------------------------------

    def _draw(self, comparison: Comparison, title: str) -> None:
        before, after = comparison.before, comparison.after
        if self.kind == "classes":
            start, end = 0.0, 1.35
            # Only the classes worth reading: ten "0.00 → 0.00" would hide the ones that moved.
            notes = [f"{b:.2f} → {a:.2f}" if max(b, a) >= NOTED else "" for b, a in zip(before, after, strict=True)]
        else:
            low = min(float(before.min()), float(after.min()))
            high = max(float(before.max()), float(after.max()))
            span = (high - low) or 1.0
            start, end = low - 0.08 * span, high + 0.45 * span
            notes = [f"Δ {c:+.3g}" for c in comparison.change]
        data = {
            "label": list(comparison.labels),
            "before": before.astype(np.float32),
            "after": after.astype(np.float32),
            "change": comparison.change.astype(np.float32),
            "note": notes,
            "note_x": np.maximum(before, after).astype(np.float32),
        }
        self.update(self.plot.y_range, factors=list(reversed(comparison.labels)))  # first entry on top
        self.update(self.plot.x_range, start=start, end=end)
        self.update(self.source, data=data)
        self.update(self.plot.title, text=title)
