"""Attribution and feature visualization on the digits CNN (and, with --lm, a GPT-2-size model), timed.

    .venv/bin/python benchmarks/attribution.py [--repeats 21] [--threads N] [--lm]

Prints, for one test digit and a relu2 unit: the kernel time of gradient and gradient × input (median of
interleaved repeats) beside a bare forward + backward; integrated gradients with 32 steps and the number
of forward passes it makes; an occlusion sweep of the 8 × 8 digit with a 2 × 2 patch (49 positions), with
its forward passes, beside the same sweep done one forward per position; nw.visualize of a digits unit
for 256 steps with the time per step. --lm: gradient and integrated gradients (32 steps) of an MLP neuron
on a 20-token sentence of a GPT-2-small-shaped model, as ratios to its bare forward.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import neurowidgets as nw
from neurowidgets.core.images import occlude
from neurowidgets.datasets import digits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # language_models.py


def medians(variants: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each variant, in interleaved rounds after one warm-up each."""
    for fn in variants.values():
        fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def forwards(model, fn) -> list[int]:
    """The batch size of every forward pass ``fn`` makes."""
    calls = []
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(int(args[0].shape[0])))
    try:
        fn()
    finally:
        handle.remove()
    return calls


def digits_figures(repeats: int) -> None:
    data = digits()
    model, digit = data.model, data.test_images[:1]
    probe = nw.Probe(model)
    unit, centre = 5, (4, 4)

    def bare():
        x = digit.clone().requires_grad_(True)
        model[:4](x)[0, unit, 4, 4].backward()

    def one_forward_per_patch():
        with torch.no_grad():
            for top in range(7):
                for left in range(7):
                    model(occlude(digit, (top, left, top + 2, left + 2)))

    run = {
        "bare forward + backward": bare,
        "gradient": lambda: nw.attribute(probe, digit, "relu2", unit, "gradient", position=centre),
        "gradient_x_input": lambda: nw.attribute(probe, digit, "relu2", unit, "gradient_x_input", position=centre),
        "integrated_gradients (32 steps)": lambda: nw.attribute(
            probe, digit, "relu2", unit, "integrated_gradients", position=centre
        ),
        "occlusion 2×2 sweep, batched": lambda: nw.attribute(probe, digit, None, 0, "occlusion", size=2),
        "occlusion 2×2 sweep, 1 forward a patch": one_forward_per_patch,
    }
    times = medians(run, repeats)
    passes = {
        "integrated_gradients (32 steps)": forwards(model, run["integrated_gradients (32 steps)"]),
        "occlusion 2×2 sweep, batched": forwards(model, run["occlusion 2×2 sweep, batched"]),
    }
    print(f"digits CNN, one 8×8 digit, relu2 unit {unit} at {centre} (median of {repeats}):")
    for name, seconds in times.items():
        extra = f"   forward passes (batch sizes): {passes[name]}" if name in passes else ""
        print(f"  {name:40s} {seconds * 1000:8.2f} ms{extra}")
    ratio = times["occlusion 2×2 sweep, 1 forward a patch"] / times["occlusion 2×2 sweep, batched"]
    print(f"  batched occlusion is {ratio:.1f}× faster than one forward per patch")

    nw.visualize(probe, "relu3", 0, size=8, steps=1)  # the optimiser's first step imports much of torch
    for layer, unit3, position in (("relu3", 0, None), ("relu2", 5, "center")):
        steps = []
        start = time.perf_counter()
        nw.visualize(
            probe, layer, unit3, size=8, steps=256, position=position, progress=lambda *a, seen=steps: seen.append(a)
        )
        seconds = time.perf_counter() - start
        print(
            f"  visualize {layer} unit {unit3} ({position or 'one position'}), 256 steps: {seconds:.2f} s, "
            f"{seconds / len(steps) * 1000:.2f} ms per step"
        )


def lm_figures(repeats: int) -> None:
    from language_models import build, tokenizer

    tok = tokenizer()
    model = build("gpt2", tok)
    text = "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat."
    batch = nw.TextAdapter(tok, max_length=20)(text)
    probe = nw.Probe(model)
    layer = "transformer.h.6.mlp.act"

    def bare():
        with torch.no_grad():
            model(**batch)

    run = {
        "bare forward": bare,
        "gradient": lambda: nw.attribute(probe, batch, layer, 100, "gradient", position=-1),
        "integrated_gradients (32 steps)": lambda: nw.attribute(
            probe, batch, layer, 100, "integrated_gradients", position=-1
        ),
    }
    times = medians(run, repeats)
    tokens = batch["input_ids"].shape[1]
    print(f"GPT-2-small shape (124M, random weights), {tokens} tokens, {layer} neuron 100 (median of {repeats}):")
    for name, seconds in times.items():
        print(f"  {name:40s} {seconds * 1000:8.1f} ms   {seconds / times['bare forward']:.2f}× a bare forward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--lm", action="store_true", help="also a GPT-2-size model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load}")
    digits_figures(args.repeats)
    if args.lm:
        lm_figures(max(3, args.repeats // 4))


if __name__ == "__main__":
    main()
