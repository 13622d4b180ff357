"""The core on a CUDA device: capture, edits and scans on the GPU equal the same on the CPU.

    python benchmarks/gpu_check.py        # on a machine with a CUDA GPU; exits non-zero on a mismatch

Run by hand on a GPU machine (CI has none); the figures of capture_overhead.py and scan_overhead.py
with --device cuda complete it.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from minilm import load_minilm, real_text

import neurowidgets as nw
from neurowidgets.datasets import digits

failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(name)


def hook_capture(model, module, run):
    seen = []
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    return seen[0]


def no_hooks(model) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def compare_scans(name: str, gpu, cpu, layer: str, device: torch.device) -> None:
    g, c = gpu[layer], cpu[layer]
    check(f"{name}: scan statistics on the device of the activations", g.device.type == device.type, str(g.device))
    check(f"{name}: counts equal", np.array_equal(np.asarray(g.count.cpu()), np.asarray(c.count.cpu())))
    check(f"{name}: means close", np.allclose(g.mean, c.mean, rtol=1e-4, atol=1e-5),
          f"max diff {np.abs(g.mean - c.mean).max():.2e}")
    check(f"{name}: max equal", np.allclose(g.max, c.max, rtol=1e-5, atol=1e-6))
    same_top = sum(g.top_k(u)[0][1] == c.top_k(u)[0][1] for u in range(g.num_units))
    check(f"{name}: top-1 example per unit equal", same_top >= 0.99 * g.num_units, f"{same_top}/{g.num_units}")
    hist_diff = np.abs(g.histograms() - c.histograms()).sum() / max(1, c.histograms().sum())
    check(f"{name}: histograms equal (up to values on a bin edge)", hist_diff < 1e-3, f"{hist_diff:.2e}")


def main() -> int:
    # `--dry-run` runs the same checks with the CPU standing in for the GPU, to test this script.
    gpu = torch.device("cpu" if "--dry-run" in sys.argv else "cuda")
    if gpu.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    name = torch.cuda.get_device_name(gpu) if gpu.type == "cuda" else "none (dry run on the CPU)"
    print(f"gpu: {name}, torch {torch.__version__}")

    data = digits()
    cnn = data.model.to(gpu)
    images = data.test_images.to(gpu)
    probe = nw.Probe(cnn)
    acts = probe.run(images[:8], ["relu2"])["relu2"]
    check("digits: capture on the model's device", acts.raw.device.type == gpu.type)
    check("digits: capture equals a hand-written hook",
          torch.equal(acts.raw, hook_capture(cnn, cnn.relu2, lambda: cnn(images[:8]))))
    with probe.edit({"relu2": nw.clamp([3], 5.0, positions=[0, 9])}):
        edited = probe.run(images[:8], ["relu2"])["relu2"].values
    expected = acts.values.clone()
    expected[:, [0, 9], 3] = 5.0
    check("digits: clamp on the GPU equals the manual edit", torch.equal(edited, expected))
    check("digits: no hook left", no_hooks(cnn))
    gpu_scan = nw.scan(probe, images, ["relu2", "fc1"], k=8, cache=False, progress=False)
    cpu_scan = nw.scan(data.model.cpu(), data.test_images, ["relu2", "fc1"], k=8, cache=False, progress=False)
    for layer in ("relu2", "fc1"):
        compare_scans(f"digits {layer}", gpu_scan, cpu_scan, layer, gpu)

    model, tokenizer, what = load_minilm(gpu)
    print(f"model: {what}")
    texts = real_text(64)
    batch = tokenizer(texts[:4], padding=True, truncation=True, max_length=64, return_tensors="pt").to(gpu)
    layer = "encoder.layer.3.intermediate"
    probe = nw.Probe(model)
    acts = probe.run(batch, [layer])[layer]
    ref = hook_capture(model, model.encoder.layer[3].intermediate, lambda: model(**batch))
    check("minilm: capture equals a hand-written hook", torch.equal(acts.values, ref))
    check("minilm: no hook left", no_hooks(model))
    gpu_scan = nw.scan(probe, texts, [layer], k=8, tokenizer=tokenizer, max_length=64, batch_size=16,
                       cache=False, progress=False)
    cpu_model, _, _ = load_minilm("cpu")
    cpu_scan = nw.scan(cpu_model, texts, [layer], k=8, tokenizer=tokenizer, max_length=64, batch_size=16,
                       cache=False, progress=False)
    compare_scans("minilm", gpu_scan, cpu_scan, layer, gpu)
    print(f"{len(failures)} failed" if failures else "all GPU checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
