"""Scans in shards on a Dask cluster, merged exactly into what one process would have scanned.

``scan_sharded(model, data, layers, client=client, shards=N)`` (what ``nw.scan(..., client=, shards=)``
calls) cuts the data by example index into shards, ships the model and the scan's settings to each
worker once, scans each shard on a worker with the public :func:`~neurowidgets.core.scan.scan` (its
``start_index`` set to the shard's first global index), and merges the partial results pairwise in a
tree on the workers, so that the client receives one result. That result equals a one-process scan of
the same data (see :meth:`ScanResult.merge`: exact but for the mean and variance, which agree to
float64 rounding).

What travels where:

- the model (or the function that builds it), the layers, the settings and a dataset object are
  pickled once on the client and broadcast; each worker unpickles them (and calls the builder) once per
  scan and keeps them until the scan ends;
- a tensor, numpy array, mapping of tensors or list of strings is cut on the client and each shard's
  slice goes to one worker;
- a dataset object (a torch map-style ``Dataset``, or anything with ``len`` and integer indexing) is
  read by each shard on its worker; per-shard loader functions are called on the workers, so files on
  shared storage are read there and never gathered on the client.
- a shard's result (the size of the statistics, not of the data) goes to the worker that merges it;
  neighbouring shards prefer one worker, so that most merges find both parts where they are, and only
  the merged result comes back to the client.

Faults: a shard whose worker dies is scanned again on another worker (Dask reruns a task whose worker
was lost); its result counts once because a shard's result is one value that exists or not. A shard
whose scan raises stops the whole scan: the other shards are cancelled and :class:`ShardError` names
the shard and its examples.
"""

from __future__ import annotations

import inspect
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from . import storage
from .probe import Probe
from .scan import ScanResult, _check_settings, _layer_list, _NoBar, scan

#: Shards per worker thread when ``shards=`` is not given: enough to balance uneven shards and to lose
#: little work with a worker, few enough that each shard's fixed cost stays small.
SHARDS_PER_THREAD = 4

_KEY_PREFIX = "nw-scan"


class ShardError(RuntimeError):
    """A shard of a sharded scan failed; the message names the shard and its examples."""


@dataclass(frozen=True)
class Shard:
    """Examples ``[start, stop)`` of the data (global index ``start_index + i``), and the function that
    loads them on a worker when the data is a list of per-shard loaders."""

    index: int
    start: int
    stop: int
    loader: Callable[[], Any] | None = None

    def describe(self, start_index: int = 0) -> str:
        return f"shard {self.index} (examples {start_index + self.start}–{start_index + self.stop - 1})"


@dataclass(frozen=True)
class _Job:
    """What every shard of one scan shares: pickled once on the client, unpickled once per worker."""

    model: Any  # a Probe, a torch.nn.Module, or a function that builds either
    layers: list[str] | None
    options: dict[str, Any]  # keyword arguments of scan()
    dataset: Any  # an indexable dataset read on the workers, else None
    start_index: int


def scan_sharded(
    model: Probe | torch.nn.Module | Callable[[], Probe | torch.nn.Module],
    data: Any,
    layers: str | Sequence[str] | None = None,
    *,
    client: Any,
    shards: int | Sequence[tuple[int, int]] | None = None,
    start_index: int = 0,
    progress: bool = True,
    **options: Any,
) -> ScanResult:
    """Scan ``data`` in shards on the workers of the Dask ``client``; see :func:`neurowidgets.scan`.

    ``model`` is a Probe, a module, or a function of no arguments that builds one on each worker (for
    a model that cannot be pickled, or one to load on each worker's GPU). ``shards`` is a number of
    shards of about equal size, cut at whole batches where it can (default: 4 per worker thread), or a
    list of ``(start, stop)`` example ranges that cover the data exactly once. ``data`` is anything
    :func:`scan` takes that can be indexed by example (tensor, array, list of strings, mapping of
    tensors, map-style dataset), or a list of functions, one per shard, each returning that shard's
    data (anything :func:`scan` takes), with ``shards=`` giving each one's range. ``options`` are
    :func:`scan`'s other keywords; ``cache`` and ``data_key`` are accepted and unused: a sharded scan
    is never cached (save its result).
    """
    Client, as_completed = _dask()
    threads = _check_client(client, Client)
    options = _check_options(start_index, options)
    if isinstance(model, Probe | torch.nn.Module):
        probe = model if isinstance(model, Probe) else Probe(model)
        layers = _layer_list(probe, layers)
    elif callable(model):
        layers = [layers] if isinstance(layers, str) else (list(layers) if layers is not None else None)
    else:
        raise TypeError(
            f"a sharded scan needs a Probe, a torch.nn.Module or a function that builds one, got {type(model).__name__}"
        )
    kind, total = _data_kind(data)
    loaders = data if kind == "loaders" else None
    plan = plan_shards(total, shards, threads, options["batch_size"], loaders)
    job = _Job(model, layers, options, data if kind == "dataset" else None, int(start_index))
    payload = _pickled(job)

    token = uuid.uuid4().hex
    futures: dict[int, Any] = {}  # tree node → future; shards are nodes 0..n-1
    try:
        shared = client.scatter(payload, broadcast=True, hash=False)
        homes = _homes(plan, client.nthreads())
        pieces: dict[int, Any] = {}
        if kind == "sliced":  # each slice goes straight to the worker that will scan it
            for home in set(homes.values()):
                mine = [s for s in plan if homes[s.index] == home]
                sent = client.scatter([_slice(data, s.start, s.stop) for s in mine], workers=[home], hash=False)
                pieces.update(zip((s.index for s in mine), sent, strict=True))
        for shard in plan:
            futures[shard.index] = client.submit(
                _scan_shard,
                shared,
                token,
                shard,
                pieces.get(shard.index),
                key=f"{_KEY_PREFIX}-{token}-shard-{shard.index}",
                workers=[homes[shard.index]],
                allow_other_workers=True,  # a preference: an idle or surviving worker may take it
                pure=False,
            )
        children, ranges = _merge_tree(client, token, plan, futures)
        del shared, pieces
        return _collect(client, as_completed, plan, futures, children, ranges, int(start_index), options, progress)
    finally:
        if futures:
            client.cancel(list(futures.values()))
        futures.clear()
        client.run(_forget, token, on_error="ignore")


# -- planning (on the client, before any work) -----------------------------------------------------


def plan_shards(
    total: int | None,
    shards: int | Sequence[tuple[int, int]] | None,
    threads: int,
    batch_size: int,
    loaders: Sequence[Callable[[], Any]] | None = None,
) -> list[Shard]:
    """The shards of ``total`` examples (or of one range per loader), checked to cover ``[0, total)``
    exactly once; a list of ranges that overlap or leave a gap is refused. A number of shards cuts at
    multiples of ``batch_size`` where it can, so that the shards' batches are a single scan's batches
    (bit for bit the same activations where padding or batch shape would change the rounding)."""
    if loaders is not None:
        if isinstance(shards, int | np.integer) or shards is None:
            raise TypeError(
                "per-shard loaders need shards=[(start, stop), ...], one example range per loader, so that "
                "each shard's examples get their global index before any of them is read"
            )
        if len(shards) != len(loaders):
            raise ValueError(f"{len(loaders)} loaders but {len(shards)} shard ranges: give one range per loader")
    if shards is None:
        shards = min(total, SHARDS_PER_THREAD * threads)
    if isinstance(shards, int | np.integer) and not isinstance(shards, bool):
        if not 1 <= shards <= total:
            raise ValueError(f"shards must be between 1 and the number of examples ({total}), got {shards}")
        batches = -(-total // batch_size)
        if shards <= batches:  # whole batches: each batch (its padding) is the one a single scan reads
            bounds = [min(total, i * batches // shards * batch_size) for i in range(int(shards) + 1)]
        else:
            bounds = [i * total // shards for i in range(int(shards) + 1)]
        return [Shard(i, bounds[i], bounds[i + 1]) for i in range(int(shards))]
    if isinstance(shards, str | bytes) or not isinstance(shards, Sequence) or not shards:
        raise TypeError(f"shards must be a number of shards or a list of (start, stop) ranges, got {shards!r}")
    plan = []
    for index, pair in enumerate(shards):
        try:
            start, stop = (int(v) for v in pair if not isinstance(v, bool) and float(v) == int(v))
        except (TypeError, ValueError):
            raise ValueError(f"shard {index}: a range is (start, stop) with integer ends, got {pair!r}") from None
        if not 0 <= start < stop:
            raise ValueError(f"shard {index}: the range {pair!r} needs 0 <= start < stop")
        plan.append(Shard(index, start, stop, loaders[index] if loaders is not None else None))
    covered = 0
    for shard in sorted(plan, key=lambda s: s.start):
        if shard.start < covered:
            raise ValueError(f"shards overlap: {shard.describe()} holds examples before {covered}, in another shard")
        if shard.start > covered:
            raise ValueError(f"the shards leave a gap: examples {covered}–{shard.start - 1} are in no shard")
        covered = shard.stop
    if total is not None and covered != total:
        raise ValueError(
            f"the shards cover examples 0–{covered - 1} of {total}: examples {covered}–{total - 1} are in no shard"
        )
    return plan


def _data_kind(data: Any) -> tuple[str, int | None]:
    """How the shards get their data: ``sliced`` on the client, a ``dataset`` read on the workers, or
    per-shard ``loaders``; and the number of examples where it is known."""
    if isinstance(data, np.ndarray | torch.Tensor):
        if data.ndim == 0:
            raise ValueError("scan needs examples along dim 0; got a 0-dimensional array")
        return "sliced", int(data.shape[0])
    if storage.is_strings(data):
        return "sliced", len(data)
    if isinstance(data, Mapping):
        sizes = {k: v.shape[0] for k, v in data.items() if isinstance(v, torch.Tensor) and v.ndim}
        if not sizes or len(set(sizes.values())) > 1:
            raise ValueError(f"a mapping given as data must hold tensors sharing dim 0; sizes: {sizes}")
        return "sliced", int(next(iter(sizes.values())))
    if isinstance(data, list | tuple) and data and all(callable(d) for d in data):
        return "loaders", None
    if isinstance(data, DataLoader | IterableDataset) or isinstance(data, list | tuple | str | bytes):
        raise TypeError(
            f"a sharded scan cannot cut {type(data).__name__} data by example index: give a tensor, an array, "
            "a list of strings, a mapping of tensors, a map-style Dataset (e.g. a DataLoader's .dataset) or a "
            "list of per-shard loader functions with shards=[(start, stop), ...]"
        )
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        total = len(data)
        if total == 0:
            raise ValueError("scan got empty data: there is no example to scan")
        return "dataset", total
    raise TypeError(f"a sharded scan cannot read data of type {type(data).__name__}: it has no len() and indexing")


def _slice(data: Any, start: int, stop: int) -> Any:
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data[start:stop]))
    if isinstance(data, Mapping):
        return {k: v[start:stop] if isinstance(v, torch.Tensor) and v.ndim else v for k, v in data.items()}
    if isinstance(data, torch.Tensor):
        return data[start:stop].clone()  # only the slice's bytes travel, not the whole storage
    return list(data[start:stop])


def _dask():
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ImportError(
            "a sharded scan runs on Dask: pip install 'neurowidgets[dask]' (or 'dask[distributed]')"
        ) from None
    return Client, as_completed


def _check_client(client: Any, Client: type) -> int:
    """The number of worker threads of a running client with workers; else a clear error."""
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    if client.asynchronous:
        raise ValueError("a sharded scan needs a synchronous Dask client (Client(..., asynchronous=False))")
    if client.status != "running":
        raise ValueError(f"the Dask client is {client.status}: connect a new one, e.g. Client(LocalCluster())")
    threads = client.nthreads()
    if not threads:
        raise ValueError(
            "the Dask cluster has no workers: start some, or wait for them with client.wait_for_workers(n)"
        )
    return sum(threads.values())


def _check_options(start_index: int, options: dict[str, Any]) -> dict[str, Any]:
    """scan()'s keywords with their defaults, checked as scan checks them; unknown ones refused."""
    try:
        bound = inspect.signature(scan).bind(None, None, **options)
    except TypeError as error:
        raise TypeError(f"sharded scan: {error}") from None
    bound.apply_defaults()
    values = {k: v for k, v in bound.arguments.items() if k not in ("probe", "data", "layers")}
    _check_settings(
        k=values["k"],
        batch_size=values["batch_size"],
        samples=values["samples"],
        start_index=start_index,
        tolerance=values["tolerance"],
    )
    for unused in ("start_index", "progress", "cache", "data_key", "client", "shards"):
        values.pop(unused)
    return values


def _pickled(job: _Job) -> bytes:
    import cloudpickle  # a dependency of distributed

    try:
        return cloudpickle.dumps(job)
    except Exception as error:
        parts = {"the model": job.model, "the dataset": job.dataset, "the scan settings": job.options}
        what = next((name for name, part in parts.items() if not _picklable(part)), "the scan")
        hint = (
            "; pass a function that builds the model instead, e.g. nw.scan(lambda: build_model(), data, layers, "
            "client=client), and each worker builds its own"
            if what == "the model"
            else ""
        )
        raise TypeError(
            f"{what} cannot be pickled to send it to the Dask workers ({type(error).__name__}: {error}){hint}"
        ) from error


def _picklable(value: Any) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


# -- on the workers ------------------------------------------------------------------------------

_JOBS: dict[str, tuple[_Job, Probe, threading.Lock]] = {}  # per worker process: token → unpickled job
_JOBS_LOCK = threading.Lock()


def _job_of(token: str, payload: bytes) -> tuple[_Job, Probe, threading.Lock]:
    """The scan's job, unpickled (and its model built) once per worker and scan."""
    with _JOBS_LOCK:
        if token not in _JOBS:
            import cloudpickle

            job = cloudpickle.loads(payload)
            model = job.model
            if not isinstance(model, Probe | torch.nn.Module):
                model = model()
                if not isinstance(model, Probe | torch.nn.Module):
                    raise TypeError(f"the model function returned {type(model).__name__}, not a Probe or a module")
            # One lock per scan: shards on threads of one worker take turns with the probe's hooks.
            _JOBS[token] = (job, model if isinstance(model, Probe) else Probe(model), threading.Lock())
        return _JOBS[token]


def _forget(token: str) -> None:
    with _JOBS_LOCK:
        _JOBS.pop(token, None)


class _Range(Dataset):
    """Examples ``[start, stop)`` of an indexable dataset, read on the worker."""

    def __init__(self, dataset: Any, start: int, stop: int):
        self.dataset, self.start, self.stop = dataset, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.dataset[self.start + i]


def _scan_shard(payload: bytes, token: str, shard: Shard, piece: Any) -> ScanResult:
    job, probe, lock = _job_of(token, payload)
    if shard.loader is not None:
        data = shard.loader()
    elif job.dataset is not None:
        data = _Range(job.dataset, shard.start, shard.stop)
    else:
        data = piece
    with lock, warnings.catch_warnings():
        # A shard smaller than k is expected; the client warns when the whole data is.
        warnings.filterwarnings("ignore", message=r"k=\d+ is larger than the number of examples")
        result = scan(
            probe,
            data,
            job.layers,
            start_index=job.start_index + shard.start,
            progress=False,
            cache=False,
            **job.options,
        )
    if result.num_examples != shard.stop - shard.start:
        raise ValueError(
            f"its data gave {result.num_examples} examples, but the range ({shard.start}, {shard.stop}) holds "
            f"{shard.stop - shard.start}"
        )
    return result


def _merge(a: ScanResult, b: ScanResult) -> ScanResult:
    """``a.merge(b)``, keeping the settings both parts share (their start_index becomes the lower one), so
    that the merged info reads like one scan's."""
    merged = a.merge(b)
    settings_a, settings_b = a.info.get("settings"), b.info.get("settings")
    if settings_a is not None and settings_b is not None:
        if {**settings_a, "start_index": 0} == {**settings_b, "start_index": 0}:
            first = min(settings_a["start_index"], settings_b["start_index"])
            merged.info["settings"] = {**settings_a, "start_index": first}
    return merged


# -- running (on the client) ---------------------------------------------------------------------


def _homes(plan: list[Shard], threads: Mapping[str, int]) -> dict[int, str]:
    """The worker each shard should run on: neighbouring shards on one worker, in blocks as large as
    its share of the threads, so that the merge tree's lower levels join results where they already
    are (a shard's result is the size of the statistics: tens of MB for a wide layer)."""
    order = sorted(plan, key=lambda s: s.start)
    total = sum(threads.values())
    homes, done = {}, 0
    for address, count in threads.items():
        stop = len(order) if done + count == total else (done + count) * len(order) // total
        for shard in order[done * len(order) // total : stop]:
            homes[shard.index] = address
        done += count
    return homes


def _merge_tree(client, token: str, plan: list[Shard], futures: dict[int, Any]):
    """Submit the pairwise merges of neighbouring shards, level by level, up to one root; returns each
    merge node's children and every node's example range."""
    children: dict[int, tuple[int, int]] = {}
    ranges = {s.index: (s.start, s.stop) for s in plan}
    level = [s.index for s in sorted(plan, key=lambda s: s.start)]
    node = len(plan)
    while len(level) > 1:
        upper = []
        for a, b in zip(level[::2], level[1::2], strict=False):  # an odd last one waits
            futures[node] = client.submit(
                _merge, futures[a], futures[b], key=f"{_KEY_PREFIX}-{token}-merge-{node}", pure=False
            )
            children[node] = (a, b)
            ranges[node] = (ranges[a][0], ranges[b][1])
            upper.append(node)
            node += 1
        if len(level) % 2:
            upper.append(level[-1])
        level = upper
    return children, ranges


def _collect(client, as_completed, plan, futures, children, ranges, start_index, options, progress) -> ScanResult:
    """Wait for the tree's root, with a progress bar over shards. A completed node's children are let
    go (so workers free them); Ctrl-C merges the completed nodes into a partial result; a failed shard
    cancels the rest and raises :class:`ShardError`."""
    root = max(futures)
    parent = {child: node for node, pair in children.items() for child in pair}
    node_of = {future.key: node for node, future in futures.items()}
    bar = _progress_bar(len(plan), progress)
    try:
        for future in as_completed(list(futures.values()), raise_errors=False):
            node = node_of[future.key]
            if future.status == "error":
                raise _failure(plan, futures, ranges, node, start_index)
            if node < len(plan):
                bar.update(1)
            for child in children.get(node, ()):
                futures.pop(child, None)
            if node == root:
                result = future.result()
                break
    except KeyboardInterrupt:
        done = sorted((n for n, f in futures.items() if f.status == "finished"), key=lambda n: ranges[n])
        done = [n for n in done if parent.get(n) not in futures or futures[parent[n]].status != "finished"]
        client.cancel([f for n, f in futures.items() if n not in done])
        if not done:
            raise
        parts = client.gather([futures[n] for n in done])
        result = parts[0]
        for part in parts[1:]:
            result = _merge(result, part)
        result.complete = False
        warnings.warn(
            f"sharded scan interrupted after {result.num_examples} examples "
            f"({sum(1 for s in plan if _within(ranges[s.index], result.ranges))} of {len(plan)} shards): returning "
            "the partial result (result.complete is False)",
            stacklevel=3,
        )
    finally:
        bar.close()
    if result.complete and result.num_examples < options["k"]:
        warnings.warn(
            f"k={options['k']} is larger than the number of examples scanned ({result.num_examples}): "
            "each unit's top_k lists all of them",
            stacklevel=3,
        )
    return result


def _progress_bar(shards: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=shards, unit="shard", desc=f"scan in {shards} shards", dynamic_ncols=True)


def _within(span: tuple[int, int], ranges: list[tuple[int, int]]) -> bool:
    return any(a <= span[0] and span[1] <= b for a, b in ranges)


def _failure(plan, futures, ranges, node, start_index) -> ShardError:
    """The error of the lowest failed shard (a merge that failed because a shard did names that shard)."""
    failed = [s for s in plan if s.index in futures and futures[s.index].status == "error"]
    inside = [s for s in failed if ranges[node][0] <= s.start and s.stop <= ranges[node][1]]
    if inside or node < len(plan):
        shard = min(inside, key=lambda s: s.start) if inside else plan[node]
        what, error = shard.describe(start_index), futures[shard.index].exception()
    else:
        start, stop = ranges[node]
        what, error = f"merging examples {start_index + start}–{start_index + stop - 1}", futures[node].exception()
    shard_error = ShardError(f"sharded scan, {what}: {type(error).__name__}: {error}; the other shards were cancelled")
    shard_error.__cause__ = error
    return shard_error
