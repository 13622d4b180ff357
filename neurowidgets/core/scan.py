"""Scan a dataset once: streaming per-unit statistics of chosen layers, with the exact top-k examples.

``scan(probe, data, layers)`` runs the model over the data batch by batch, updates a
:class:`~neurowidgets.core.stats.LayerStats` per layer on the activations' device, and never keeps
more than one batch of activations. The result merges with the scans of other parts of the data
(shards scanned separately, with their ``start_index``), saves to a safe file and loads back, and is
cached on disk so that re-running a notebook does not recompute it.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from . import storage
from .inputs import batch_size as batch_size_of
from .inputs import describe
from .probe import LayerError, ModelCallError, Probe
from .stats import HISTOGRAM, QUANTILE_CELLS, LayerStats, Workspace, known_bounds
from .text import TextAdapter

#: Changes whenever a scan of the same inputs would give different statistics (part of the cache key).
STATS_VERSION = 3  # 2: kept activation rows (keep_activations); 3: bottom-k examples


class ScanResult(Mapping[str, LayerStats]):
    """The statistics of a scan: layer name → :class:`LayerStats`.

    ``num_examples`` examples were scanned, with global indices in ``ranges`` (half-open
    ``[start, stop)`` intervals); ``complete`` is ``False`` for a scan that was interrupted.
    """

    def __init__(
        self,
        stats: Mapping[str, LayerStats],
        num_examples: int,
        ranges: Iterable[tuple[int, int]],
        complete: bool = True,
        info: Mapping[str, Any] | None = None,
    ):
        self._stats = dict(stats)
        self.num_examples = int(num_examples)
        self.ranges = _coalesce(ranges)
        self.complete = bool(complete)
        self.info = dict(info or {})
        self.from_cache = False

    @property
    def layers(self) -> list[str]:
        return list(self._stats)

    @property
    def start_index(self) -> int:
        return self.ranges[0][0] if self.ranges else 0

    def __getitem__(self, layer: str) -> LayerStats:
        try:
            return self._stats[layer]
        except KeyError:
            raise LayerError(f"layer {layer!r} was not scanned; scanned: {self.layers}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._stats)

    def __len__(self) -> int:
        return len(self._stats)

    def to(self, device: torch.device | str) -> ScanResult:
        """Move every layer's statistics (in place) to ``device``; returns ``self``."""
        for stats in self._stats.values():
            stats.to(device)
        return self

    def merge(self, other: ScanResult) -> ScanResult:
        """The statistics of both scans, which must cover disjoint examples (e.g. two shards).

        Exact for the counts, min, max, histograms, top-k and quantile samples; the mean and
        variance agree with one scan over both parts up to float64 rounding.
        """
        if not isinstance(other, ScanResult):
            raise TypeError(f"merge takes another ScanResult, got {type(other).__name__}")
        if set(self.layers) != set(other.layers):
            raise ValueError(f"cannot merge scans of different layers: {self.layers} vs {other.layers}")
        for a_start, a_stop in self.ranges:
            for b_start, b_stop in other.ranges:
                if a_start < b_stop and b_start < a_stop:
                    raise ValueError(
                        f"cannot merge scans that share examples: both hold examples "
                        f"{max(a_start, b_start)}–{min(a_stop, b_stop) - 1}; scan shards with "
                        "start_index= set to the global index of their first example"
                    )
        stats = {layer: self[layer].merge(other[layer]) for layer in self.layers}
        info = {key: value for key, value in self.info.items() if other.info.get(key) == value}
        return ScanResult(
            stats,
            self.num_examples + other.num_examples,
            [*self.ranges, *other.ranges],
            self.complete and other.complete,
            info,
        )

    def save(self, path: str | Path) -> Path:
        """Write the result to ``path`` (an ``.npz`` archive of arrays and JSON; no pickle)."""
        meta = {
            "num_examples": self.num_examples,
            "ranges": [list(r) for r in self.ranges],
            "complete": self.complete,
            "info": self.info,
            "layers": [],
        }
        arrays = {}
        for i, layer in enumerate(self.layers):
            layer_meta, layer_arrays = self._stats[layer].state()
            meta["layers"].append(layer_meta)
            arrays.update({f"layer{i}.{name}": array for name, array in layer_arrays.items()})
        return storage.write_archive(path, meta, arrays)

    def __repr__(self) -> str:
        state = "" if self.complete else ", complete=False"
        return f"ScanResult({self.layers}, num_examples={self.num_examples}{state})"


def check_scan(scan: Any) -> ScanResult:
    """``scan`` if it is a :class:`ScanResult`, else a TypeError saying where one comes from."""
    if not isinstance(scan, ScanResult):
        raise TypeError(f"scan must be a ScanResult (nw.scan or nw.load_scan), got {type(scan).__name__}")
    return scan


def load_scan(path: str | Path) -> ScanResult:
    """Load a result written by :meth:`ScanResult.save` (read with ``allow_pickle=False``)."""
    meta, arrays = storage.read_archive(path)
    stats = {}
    for i, layer_meta in enumerate(meta["layers"]):
        prefix = f"layer{i}."
        layer_arrays = {name[len(prefix) :]: a for name, a in arrays.items() if name.startswith(prefix)}
        try:
            stats[layer_meta["layer"]] = LayerStats.from_state(layer_meta, layer_arrays)
        except KeyError as error:
            raise ValueError(f"{path}: layer {layer_meta['layer']!r} lacks the array {error}") from None
    return ScanResult(stats, meta["num_examples"], [tuple(r) for r in meta["ranges"]], meta["complete"], meta["info"])


def scan(
    probe: Probe | torch.nn.Module,
    data: Any,
    layers: str | Iterable[str] | None = None,
    *,
    k: int = 32,
    batch_size: int = 64,
    threshold: float = 0.0,
    samples: int = 4,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    tolerance: float = 0.01,
    tokenizer: Any = None,
    max_length: int = 128,
    adapter: Callable[[list[str]], Any] | None = None,
    inputs: Callable[[Any], Any] | None = None,
    start_index: int = 0,
    progress: bool = True,
    cache: bool = True,
    data_key: str | None = None,
    keep_activations: bool = True,
    client: Any = None,
    shards: int | Iterable[tuple[int, int]] | None = None,
) -> ScanResult:
    """Scan ``data`` through the model once and return per-unit statistics of ``layers``.

    Data
        A tensor or numpy array (examples along dim 0, cut into batches of ``batch_size``); a list
        of strings (text: give ``tokenizer=`` and ``max_length=``, or ``adapter=TextAdapter(...)``);
        a mapping of tensors (e.g. a tokenized batch of every text, cut along dim 0); a torch
        ``Dataset`` (read in order with a ``DataLoader`` of ``batch_size``); a ``DataLoader`` (its
        own batches, in its order); or any iterable of batches. A batch that is a tuple or list,
        such as ``(inputs, labels)`` from a labelled dataset, feeds its first element to the model;
        ``inputs=`` takes a function that picks the model input from a batch instead (e.g.
        ``inputs=tuple`` to call ``model(*batch)``). Inputs are fed as ``Probe.run`` feeds them.
        Examples are numbered from ``start_index`` in the order they come.

    Statistics (see :mod:`neurowidgets.core.stats`)
        Per unit: count, mean, var, min, max, density (fraction above ``threshold``), NaN and inf
        counts, a histogram over fixed symlog bins, the exact top ``k`` examples as (value, example
        index, position index), the exact bottom ``k`` (most negative, ``bottom_k``), and ``samples``
        examples per octave of activation below the top. On a GPU no statistic reads anything back
        to the host during the scan (see :mod:`neurowidgets.core.stats`).
        Units of bounded activations (sigmoid, tanh, hardtanh, ReLU6; or ``bounds={layer: (low,
        high)}``) count values within ``tolerance`` × the range of a bound, for ``saturated()``.
        When an input mapping has an ``attention_mask`` (batch, T), the padded positions of every
        layer whose positions are those T tokens count in no statistic.

    Kept activations (``keep_activations=True``)
        For each unit's top ``k`` and bottom ``k`` examples and the ``samples`` examples of each of its
        four highest intervals, the unit's activation at every position of that example (float16; NaN
        at the padding of a text), filled when the example enters and saved with the result, so that a
        feature card or a report draws them with no model run (``LayerStats.activations``). Memory:
        units × (2k + 4 × samples) × positions × 2 bytes a layer, whatever the size of the data:
        63 MB for a GPT-2-small MLP layer (3,072 units, 128 tokens, k=32, samples=4), 31 MB for a
        MiniLM one (1,536 units). ``False`` keeps none (cards then run the model on their examples).
        A scan whose rows pass 1 GiB after its first batch warns (e.g. many layers of long texts).

    k larger than the data
        Allowed: every unit's ``top_k`` then lists all examples (with a finite value), and a
        warning says so.

    Progress, cancelling, caching
        A progress bar shows while it runs (``progress=False`` hides it). Interrupting it
        (KeyboardInterrupt, the notebook's stop button) returns the statistics of the batches done so
        far, with ``complete == False`` and a warning; interrupting before the first batch is done
        re-raises. With ``cache=True``, a finished scan is stored under ``$NEUROWIDGETS_CACHE/scans``
        keyed by a hash of the model's weights (and active edits), the layers, the data and every
        setting, and the same call later loads it instead of running the model. Only data that
        can be fingerprinted before the scan is cached: tensors, numpy arrays, lists of strings,
        mappings of tensors and ``TensorDataset`` (hashed by content). Other datasets, data loaders
        and iterators are scanned every time, unless ``data_key=`` names the data (a string you
        change whenever the data changes). An ``inputs=`` function that closes over variables also
        disables the cache.

    On a Dask cluster (``client=``, ``shards=``)
        ``scan(model, data, layers, client=dask_client, shards=N)`` scans N shards of the data on the
        cluster's workers and merges them into this function's result (see
        :mod:`neurowidgets.core.distributed`): ``model`` may also be a function that builds the model
        on each worker; ``shards`` a list of ``(start, stop)`` ranges; ``data`` a list of per-shard
        loader functions. A sharded scan is not cached.
    """
    if client is not None or shards is not None:
        if client is None:
            raise TypeError("shards= needs client=, the Dask client whose workers scan the shards")
        from .distributed import scan_sharded

        return scan_sharded(
            probe, data, layers, client=client, shards=shards, k=k, batch_size=batch_size, threshold=threshold,
            samples=samples, bounds=bounds, tolerance=tolerance, tokenizer=tokenizer, max_length=max_length,
            adapter=adapter, inputs=inputs, start_index=start_index, progress=progress, cache=cache,
            data_key=data_key, keep_activations=keep_activations,
        )  # fmt: skip
    if not isinstance(probe, Probe):
        if not isinstance(probe, torch.nn.Module):
            raise TypeError(f"scan needs a Probe or a torch.nn.Module, got {type(probe).__name__}")
        probe = Probe(probe)
    layers = _layer_list(probe, layers)
    _check_settings(k=k, batch_size=batch_size, samples=samples, start_index=start_index, tolerance=tolerance)
    if adapter is not None and tokenizer is not None:
        raise TypeError("give either tokenizer= (and max_length=) or adapter=, not both")
    if tokenizer is not None:
        adapter = TextAdapter(tokenizer, max_length=max_length)
    layer_bounds = _resolve_bounds(probe, layers, bounds)
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, (str, bytes)):
        raise TypeError("scan takes a list of strings (one example each), not a single string")
    if storage.is_strings(data) and adapter is None:
        raise TypeError(
            "scanning text needs a tokenizer: scan(probe, texts, layers, tokenizer=tok, max_length=128) "
            "or adapter=TextAdapter(tok, max_length)"
        )
    total = _length(data)
    if total == 0:
        raise ValueError("scan got empty data: there is no example to scan")

    settings = {
        "k": int(k),
        "samples": int(samples),
        "threshold": float(threshold),
        "tolerance": float(tolerance),
        "bounds": {layer: list(b) if b else None for layer, b in layer_bounds.items()},
        "start_index": int(start_index),
        "batch_size": None if isinstance(data, DataLoader) else int(batch_size),
        "keep_activations": bool(keep_activations),
    }
    cache_path = None
    if cache:
        key = _cache_key(probe, layers, data, data_key, adapter, inputs, settings)
        if key is not None:
            cache_path = storage.scan_cache_dir() / f"scan-{key}.npz"
            cached = _load_cached(cache_path)
            if cached is not None:
                return cached

    batches, total = _batches(data, batch_size)
    pick = inputs if inputs is not None else _default_inputs
    stats: dict[str, LayerStats] = {}
    workspace = Workspace()  # scratch buffers shared by the layers, reused from batch to batch
    seen = done = 0  # examples and batches added
    first_input = None
    complete = True
    bar = _progress_bar(total, layers, progress)
    try:
        for batch_index, batch in enumerate(batches):
            model_inputs = pick(batch)
            if storage.is_strings(model_inputs):
                if adapter is None:
                    raise TypeError(f"batch {batch_index} holds strings: scanning text needs tokenizer= or adapter=")
                model_inputs = adapter(list(model_inputs))
            where = f"scan, batch {batch_index}"
            try:
                n = batch_size_of(model_inputs)
            except ValueError as error:
                raise ValueError(f"{where}: {error} ({describe(model_inputs)})") from None
            where = f"scan, batch {batch_index} (examples {start_index + seen}–{start_index + seen + n - 1})"
            if first_input is None:
                first_input = describe(model_inputs)
            try:
                capture = probe.run(model_inputs, layers, output=False)  # stops after the deepest layer
            except (ModelCallError, LayerError) as error:
                earlier = f"; the first batch was {first_input}" if batch_index else ""
                raise type(error)(f"{where}: {error}{earlier}") from error
            mask = _attention_mask(model_inputs, n)
            values, valid = {}, {}
            for layer in layers:
                acts = capture[layer]
                values[layer] = acts.values
                if values[layer].device.type == "mps":  # no float64 there
                    values[layer] = values[layer].cpu()
                valid[layer] = mask if mask is not None and acts.positions_shape == (mask.shape[1],) else None
                _check_batch(where, layer, acts, n, stats.get(layer))
            with _interrupts_deferred():
                for layer in layers:
                    if layer not in stats:
                        stats[layer] = LayerStats(
                            layer,
                            values[layer].shape[2],
                            capture[layer].positions_shape,
                            k=k,
                            samples=samples,
                            threshold=threshold,
                            bounds=layer_bounds[layer],
                            tolerance=tolerance,
                            module_type=probe.layers[layer].module_type,
                            device=values[layer].device,
                            keep_activations=keep_activations,
                        )
                    grid = capture[layer].positions_shape
                    stats[layer].update(values[layer], valid[layer], start_index + seen, workspace, grid)
                seen += n
                done += 1
                bar.update(n)
            if done == 1 and keep_activations:
                _warn_of_large_kept_rows(stats)
            del capture, values
    except KeyboardInterrupt:
        if not stats:
            raise
        complete = False
        warnings.warn(
            f"scan interrupted after {seen} examples ({done} batches): returning the partial "
            "result (result.complete is False); it is not cached",
            stacklevel=2,
        )
    finally:
        bar.close()
    if not stats:
        raise ValueError("scan got empty data: the data yielded no example")
    for layer_stats in stats.values():
        layer_stats.compact()
    info = {"model": type(probe.model).__name__, "settings": settings}
    if isinstance(adapter, TextAdapter):  # the views tokenize the examples again as the scan did
        info.update(adapter.settings())
    result = ScanResult(stats, seen, [(start_index, start_index + seen)], complete, info).to("cpu")
    if complete and seen < k:
        warnings.warn(
            f"k={k} is larger than the number of examples scanned ({seen}): each unit's top_k lists all of them",
            stacklevel=2,
        )
    if complete and cache_path is not None:
        try:
            result.save(cache_path)
        except OSError as error:
            warnings.warn(f"could not cache the scan in {cache_path}: {error}", stacklevel=2)
    return result


# -- helpers ----------------------------------------------------------------------------------------

#: A scan whose kept activation rows take more than this (after its first batch) says so.
KEPT_ROWS_WARNING_BYTES = 1 << 30


def _warn_of_large_kept_rows(stats: Mapping[str, LayerStats]) -> None:
    size = sum(s.kept_rows.numel() * s.kept_rows.element_size() for s in stats.values())
    if size > KEPT_ROWS_WARNING_BYTES:
        warnings.warn(
            f"the scan keeps {size / 2**30:.1f} GiB of activation rows (units × (2k + 4 × samples) × positions "
            "float16 values a layer, for feature cards without a model run); pass keep_activations=False, a "
            "smaller k or samples, or fewer layers to keep less",
            stacklevel=3,
        )


def _layer_list(probe: Probe, layers: str | Iterable[str] | None) -> list[str]:
    if layers is None:
        layers = probe.default_layers
    elif isinstance(layers, str):
        layers = [layers]
    result = []
    for name in layers:
        probe._check_name(name)
        if name not in result:
            result.append(name)
    if not result:
        raise ValueError("scan needs at least one layer: scan(probe, data, layers=[...])")
    return result


def _check_settings(**settings: Any) -> None:
    for name in ("k", "samples", "start_index"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    size = settings["batch_size"]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {size!r}")
    if not settings["tolerance"] >= 0:
        raise ValueError(f"tolerance must be >= 0, got {settings['tolerance']!r}")


def _resolve_bounds(probe: Probe, layers: list[str], bounds: Mapping | None) -> dict:
    bounds = dict(bounds or {})
    for name in bounds:
        if name not in layers:
            probe._check_name(name)
            raise ValueError(f"bounds given for {name!r}, which is not among the scanned layers {layers}")
    result = {}
    for layer in layers:
        if layer in bounds:
            given = bounds[layer]
            if given is None:
                result[layer] = None
                continue
            low, high = given
            if low is None and high is None:
                result[layer] = None
                continue
            if low is not None and high is not None and not float(low) < float(high):
                raise ValueError(f"bounds for {layer!r} must be (low, high) with low < high, got {given}")
            result[layer] = (None if low is None else float(low), None if high is None else float(high))
        else:
            result[layer] = known_bounds(probe._modules.get(layer))
    return result


def _length(data: Any) -> int | None:
    """The number of examples when it is known before reading the data."""
    if isinstance(data, torch.Tensor):
        if data.ndim == 0:
            raise ValueError("scan needs examples along dim 0; got a 0-dimensional tensor")
        return int(data.shape[0])
    if isinstance(data, (list, tuple)) and (not data or storage.is_strings(data)):
        return len(data)
    if isinstance(data, Mapping):
        return _mapping_length(data)
    if isinstance(data, DataLoader):
        dataset = data.dataset
        if isinstance(dataset, IterableDataset):
            return None
        try:
            return len(dataset)
        except TypeError:
            return None
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        try:
            return len(data)
        except TypeError:
            return None
    return None


def _mapping_length(data: Mapping) -> int:
    sizes = {k: v.shape[0] for k, v in data.items() if isinstance(v, torch.Tensor) and v.ndim}
    if not sizes:
        raise ValueError("a mapping given as data must hold tensors with examples along dim 0")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the tensors of a mapping given as data must share dim 0; sizes: {sizes}")
    return int(next(iter(sizes.values())))


def _batches(data: Any, batch_size: int) -> tuple[Iterator[Any], int | None]:
    total = _length(data)
    if isinstance(data, torch.Tensor) or storage.is_strings(data):
        return (data[i : i + batch_size] for i in range(0, total, batch_size)), total
    if isinstance(data, Mapping):
        return (
            ({k: v[i : i + batch_size] if isinstance(v, torch.Tensor) else v for k, v in data.items()})
            for i in range(0, total, batch_size)
        ), total
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            warnings.warn(
                "the DataLoader shuffles: example indices follow this pass's random order",
                stacklevel=3,
            )
        return iter(data), total
    if isinstance(data, Dataset):
        return iter(DataLoader(data, batch_size=batch_size, shuffle=False)), total
    try:
        return iter(data), None
    except TypeError:
        raise TypeError(
            f"scan cannot read data of type {type(data).__name__}: give a tensor, a list of strings, "
            "a Dataset, a DataLoader or an iterable of batches"
        ) from None


def _default_inputs(batch: Any) -> Any:
    """``(inputs, labels, ...)`` → ``inputs``; anything else as it is."""
    if (
        isinstance(batch, (list, tuple))
        and not hasattr(batch, "_fields")
        and len(batch) > 0
        and not storage.is_strings(batch)
    ):
        return batch[0]
    return batch


def _attention_mask(inputs: Any, n: int) -> torch.Tensor | None:
    if not isinstance(inputs, Mapping):
        return None
    mask = inputs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.ndim == 2 and mask.shape[0] == n:
        return mask != 0
    return None


def _check_batch(where: str, layer: str, acts, n: int, stats: LayerStats | None) -> None:
    batch, _, units = acts.shape
    if batch != n:
        raise ValueError(
            f"{where}: layer {layer!r} gave {tuple(acts.raw.shape)}, whose first dimension is not the "
            f"batch of {n} examples; scan needs batch-first layer outputs"
        )
    if stats is not None:
        if units != stats.units:
            raise ValueError(
                f"{where}: layer {layer!r} has {units} units in this batch, {stats.units} in the batches "
                f"before (output {tuple(acts.raw.shape)})"
            )
        if len(acts.positions_shape) != len(stats.positions_shape):
            raise ValueError(
                f"{where}: layer {layer!r} has positions {acts.positions_shape} in this batch, "
                f"{stats.positions_shape} in the batches before"
            )


def _coalesce(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    result: list[tuple[int, int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], stop))
        else:
            result.append((start, stop))
    return result


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, so that a batch is added to every layer or to none."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[Any] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(frame))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            if callable(previous):
                previous(signal.SIGINT, pending[0])
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int | None, layers: list[str], show: bool):
    if not show:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    what = layers[0] if len(layers) == 1 else f"{len(layers)} layers"
    return tqdm(total=total, unit="ex", desc=f"scan {what}", dynamic_ncols=True)


# -- caching ---------------------------------------------------------------------------------------


def _cache_key(probe, layers, data, data_key, adapter, inputs, settings) -> str | None:
    data_id = f"key:{data_key}" if data_key is not None else storage.data_fingerprint(data)
    if data_id is None:
        return None
    inputs_id = None
    if inputs is not None:
        inputs_id = storage.function_fingerprint(inputs)
        if inputs_id is None:
            return None
    adapter_id = None
    if adapter is not None:
        fingerprint = getattr(adapter, "fingerprint", None)
        if fingerprint is None:
            return None
        adapter_id = fingerprint()
    modules = [probe.model]
    for layer in layers:
        attached = probe._attached.get(layer)
        if attached is not None:
            modules += [attached.encoder, *([attached.decoder] if attached.decoder is not None else [])]
    parts = {
        "stats": STATS_VERSION,
        "format": storage.FORMAT_VERSION,
        "bins": [HISTOGRAM.__dict__, QUANTILE_CELLS.__dict__],
        "model": storage.module_fingerprint(modules),
        "edits": _edits_fingerprint(probe),
        "layouts": {layer: probe._layouts.get(layer) for layer in layers},
        "layers": layers,
        "data": data_id,
        "adapter": adapter_id,
        "inputs": inputs_id,
        "settings": settings,
    }
    return storage.key_of(parts)


def _edits_fingerprint(probe: Probe) -> str | None:
    if not probe._edits:
        return None
    digest = hashlib.sha256()
    for layer in sorted(probe._edits):
        for edit in probe._edits[layer]:
            digest.update(repr((layer, edit.kind, edit.units, edit.positions, edit.value)).encode())
            if edit.vector is not None:
                storage.update_with_tensor(digest, edit.vector)
    return digest.hexdigest()


def _load_cached(path: Path) -> ScanResult | None:
    if not path.exists():
        return None
    try:
        result = load_scan(path)
    except (ValueError, KeyError, OSError) as error:
        warnings.warn(f"ignoring an unreadable cached scan {path}: {error}", stacklevel=3)
        return None
    result.from_cache = True
    return result
