"""Capture overhead of Probe.run against the bare forward pass, side by side in one run.

    .venv/bin/python benchmarks/capture_overhead.py [--device cuda] [--repeats 7]

Prints ratios (probe / bare) for one and for all six MLP layers of MiniLM on a batch of 32 × 128
tokens, a hand-written hook for reference, and the fixed cost per call on one 16-token sentence.
Runs interleave the variants so that drift in machine speed hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from minilm import load_minilm, real_text

import neurowidgets as nw


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(variants: dict, repeats: int, device) -> dict[str, float]:
    """Median seconds of each variant, measured in interleaved rounds after one warm-up each."""
    for fn in variants.values():
        fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    device = torch.device(args.device)
    model, tokenizer, what = load_minilm(device)
    texts = real_text(args.batch)
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=args.tokens,
                      return_tensors="pt").to(device)
    probe = nw.Probe(model)
    one = ["encoder.layer.0.intermediate"]
    six = [f"encoder.layer.{i}.intermediate" for i in range(6)]

    def bare():
        with torch.no_grad():
            model(**batch)

    def hand_hooks(names):
        def run():
            kept = []
            modules = dict(model.named_modules())
            handles = [modules[n].register_forward_hook(lambda m, a, out: kept.append(out.detach())) for n in names]
            try:
                with torch.no_grad():
                    model(**batch)
            finally:
                for handle in handles:
                    handle.remove()

        return run

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    if device.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(device)}")
    print(f"model: {what}")
    medians = compare(
        {"bare": bare, "hook1": hand_hooks(one), "probe1": lambda: probe.run(batch, one),
         "hook6": hand_hooks(six), "probe6": lambda: probe.run(batch, six)},
        args.repeats, device,
    )
    print(f"batch {args.batch} × {args.tokens} tokens: bare forward {medians['bare'] * 1e3:.1f} ms")
    for n in ("1", "6"):
        print(f"  hand-written hooks, {n} MLP layer(s): {medians['hook' + n] / medians['bare']:.3f}×")
        print(f"  probe.run,          {n} MLP layer(s): {medians['probe' + n] / medians['bare']:.3f}×  (goal ≤ 1.02×)")

    sentence = tokenizer(["The quick brown fox jumps over the lazy dog again and again today."],
                         return_tensors="pt").to(device)
    assert sentence["input_ids"].shape[1] == 16, sentence["input_ids"].shape

    def bare_small():
        with torch.no_grad():
            model(**sentence)

    small = compare({"bare": bare_small, "probe": lambda: probe.run(sentence, one)}, args.repeats * 30, device)
    fixed = (small["probe"] - small["bare"]) * 1e3
    print(f"one 16-token sentence: bare {small['bare'] * 1e3:.2f} ms, probe.run {small['probe'] * 1e3:.2f} ms, "
          f"fixed cost {fixed:+.3f} ms  (goal ≤ 0.2 ms)")


if __name__ == "__main__":
    main()
