"""The scan on a CUDA device: ``nw.scan`` (every statistic, k=32) vs the bare forward passes, and checks
that the statistics make no host sync and give what the CPU way gives. A short prepared script for
someone with a GPU (about a minute); on a machine without CUDA it runs the same steps on the CPU,
where the sync check is skipped.

Model: all-MiniLM-L6-v2 (see minilm.py); layer ``encoder.layer.3.intermediate`` (1,536 units); data:
``--batches`` batches of 32 windows of 128 tokens of the standard library's documentation topics,
tokenized once and moved to the device beforehand. Three timings, alternating ``--repeats`` times,
each ending with ``torch.cuda.synchronize()``:

- bare: ``model(**batch)`` under ``torch.no_grad()`` (the whole model);
- capture: ``probe.run(batch, [layer], output=False)`` (stops after the layer: what the scan runs);
- scan: ``nw.scan`` over the same batches.

Printed: scan / bare (goal <= 1.10x), scan / capture (the statistics' own cost), the GPU memory peak of
a scan over N and 4N batches (goal: flat), then two checks:

- no sync: every ``LayerStats.update`` of a scan runs under ``torch.cuda.set_sync_debug_mode("error")``,
  which raises on any synchronizing CUDA call (``.item()``, ``nonzero``, a device-to-host copy, ...);
- the same statistics: one batch's captured activations fed to a CUDA ``LayerStats`` (the sync-free
  way) and, copied to the CPU, to a CPU one (the CPU way): counts, min, max, histograms, top-k,
  bottom-k, samples and kept rows equal; mean and variance to float32 rounding.

    .venv/bin/python benchmarks/gpu_scan.py                   # CUDA if available
    .venv/bin/python benchmarks/gpu_scan.py --batches 16 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from minilm import load_minilm

import neurowidgets as nw
from neurowidgets.core.stats import LayerStats

TOKENS = 128


def text_chunks(tokenizer, count: int) -> list[str]:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    width = TOKENS - 2
    stride = max(1, (len(ids) - width) // max(1, count - 1))
    return tokenizer.batch_decode([ids[(i * stride) % (len(ids) - width) :][:width] for i in range(count)])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device, work) -> float:
    sync(device)
    start = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=32, help="batches of 32 x 128 tokens (default 32)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layer", default="encoder.layer.3.intermediate")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model, tokenizer, what = load_minilm(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; model: {what}; layer {args.layer}")
    adapter = nw.TextAdapter(tokenizer, max_length=TOKENS)
    texts = text_chunks(tokenizer, args.batches * args.batch_size)
    size = args.batch_size
    batches = [{k: v.to(device) for k, v in adapter(texts[i : i + size]).items()} for i in range(0, len(texts), size)]
    probe = nw.Probe(model)
    layer = args.layer

    def bare():
        with torch.no_grad():
            for batch in batches:
                model(**batch)

    def capture():
        for batch in batches:
            probe.run(batch, [layer], output=False)

    def scan(data=batches):
        return nw.scan(probe, data, layer, k=32, batch_size=size, cache=False, progress=False, inputs=lambda b: b)

    bare(), capture(), scan(batches[:2])  # warm up (kernels, allocator, workspace)
    times = {"bare": [], "capture": [], "scan": []}
    for _ in range(args.repeats):
        times["bare"].append(timed(device, bare))
        times["capture"].append(timed(device, capture))
        times["scan"].append(timed(device, scan))
    best = {key: min(value) for key, value in times.items()}  # the least disturbed of the repeats
    per = {key: 1e3 * value / len(batches) for key, value in best.items()}
    print(
        f"{len(batches)} batches of {size} x {TOKENS} tokens; per batch: bare {per['bare']:.2f} ms, capture "
        f"{per['capture']:.2f} ms, scan {per['scan']:.2f} ms"
    )
    print(f"scan / bare forward: {best['scan'] / best['bare']:.3f}x (goal <= 1.10x)")
    print(f"scan / capture of the layer (the statistics' own cost): {best['scan'] / best['capture']:.3f}x")

    if device.type == "cuda":
        peaks = []
        for count in (max(1, len(batches) // 4), len(batches)):
            data = [batches[i % len(batches)] for i in range(count)]
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            scan(data)
            peaks.append(torch.cuda.max_memory_allocated() - before)
        print(
            f"GPU memory peak above before: {peaks[0] / 2**20:.1f} MiB for N batches, {peaks[1] / 2**20:.1f} MiB "
            f"for 4N ({peaks[1] / max(1, peaks[0]):.3f}x; goal: flat)"
        )
        original = LayerStats.update

        def guarded(self, *a, **k):
            torch.cuda.set_sync_debug_mode("error")
            try:
                return original(self, *a, **k)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        LayerStats.update = guarded
        try:
            scan(batches[:8])
            print("no sync: every LayerStats.update ran under torch.cuda.set_sync_debug_mode('error') - OK")
        except RuntimeError as error:
            print(f"no sync: FAILED, a synchronizing call in LayerStats.update: {error}")
        finally:
            LayerStats.update = original
    else:
        print("no sync: skipped (no CUDA device; the tests check the sync-free way on the CPU under a guard)")

    values = probe.run(batches[0], [layer], output=False)[layer].values
    valid = batches[0]["attention_mask"] != 0
    here = LayerStats("x", values.shape[2], (values.shape[1],), device=device)
    here.sync_free = True
    cpu = LayerStats("x", values.shape[2], (values.shape[1],))
    for start in range(0, values.shape[0], 8):  # four updates, so that merges of kept entries happen
        part = slice(start, start + 8)
        here.update(values[part], valid[part], start)
        cpu.update(values[part].cpu(), valid[part].cpu(), start)
    here.to("cpu")
    here.compact()
    cpu.compact()
    unequal = [
        n
        for n in cpu._arrays()
        if n not in ("mean_", "m2") and not torch.equal(getattr(cpu, n).nan_to_num(), getattr(here, n).nan_to_num())
    ]
    close = torch.allclose(cpu.mean_, here.mean_, rtol=1e-5, atol=1e-6) and torch.allclose(
        cpu.m2, here.m2, rtol=1e-4, atol=1e-5
    )
    verdict = "OK" if not unequal and close else f"FAILED: {unequal or 'mean/var'}"
    print(f"same statistics on {name} (sync-free way) as on the CPU (the CPU way), one batch: {verdict}")


if __name__ == "__main__":
    main()
