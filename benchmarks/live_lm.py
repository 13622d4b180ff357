"""Live at the scale of real models: kernel time per explorer interaction, as ratios to a bare forward.

    .venv/bin/python benchmarks/live_lm.py [--models gpt2,minilm] [--texts 64] [--repeats 12]

For each model (GPT-2-small's shape built from its config with random weights, 124M parameters,
MiniLM's tokenizer; and all-MiniLM-L6-v2, 22.7M), an explorer on one sentence with a scan of
``--texts`` chunks of real text (128 tokens, two MLP layers) attached, driven as the page drives it
(tests/widgets/frontend.py: the same state updates and requests, no browser):

- select a unit (a ``selected_units`` update): p50/p95 ms, and how many model calls it made;
- edit the sentence (a ``set_text`` request, ~20 tokens): p50/p95 as a ratio to one bare forward of
  that sentence timed just before it, and the bytes sent to the page against 2 × tokens × units + 10 KB;
- switch layer (a ``layer`` update between the two scanned MLP layers): ratio to a bare forward.

Ratios are of medians measured interleaved in one run, so machine load affects both sides alike.

``--token-units`` (GPT-2 shape): the core of two language-model views on a 64-token text whose forward
pass is done (its capture kept, as the heatmap keeps it): ``nw.units_at_token`` (top 20 units of an
MLP layer at a clicked token, with one-line cards from a scan: density, top example's tokens, top
logit) in ms and model calls (goal < 100 ms, none); ``nw.attention_patterns`` (every block's heads,
from the model's own SDPA queries and keys) as a ratio to a bare forward of the text.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "widgets"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frontend import FakeFrontend  # noqa: E402
from language_models import build, tokenizer  # noqa: E402
from minilm import load_minilm, real_text  # noqa: E402

import neurowidgets as nw  # noqa: E402

SENTENCES = [
    "The old lighthouse keeper watched the storm roll in over the grey and restless sea tonight.",
    "She opened the heavy wooden door and found a garden full of strange blue flowers inside.",
    "Python dictionaries keep their insertion order, which makes many small programs simpler.",
    "After the long winter the river rose quickly and flooded the fields along the valley floor.",
]


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def sent_bytes(frontend: FakeFrontend, since: int) -> int:
    return sum(len(json.dumps(m, default=str)) + sum(len(b) for b in bufs) for m, bufs in frontend.sent[since:])


def bare_forward(model, tok, text: str) -> float:
    batch = tok([text], return_tensors="pt")
    start = time.perf_counter()
    with torch.no_grad():
        model(**batch, **({"use_cache": False} if "gpt" in type(model).__name__.lower() else {}))
    return time.perf_counter() - start


def run(name: str, model, tok, layers: list[str], texts: list[str], repeats: int) -> None:
    print(f"\n== {name}: layers {layers}, scan of {len(texts)} texts")
    start = time.perf_counter()
    scan = nw.scan(model, texts, layers, tokenizer=tok, max_length=128, k=16, progress=False)
    print(f"scan: {time.perf_counter() - start:.1f} s{' (cached)' if scan.from_cache else ''}")
    start = time.perf_counter()
    view = nw.explore(model, SENTENCES[0], data=texts, scan=scan, tokenizer=tok, layer=layers[0])
    print(f"explore: {time.perf_counter() - start:.2f} s, layer {view.layer}, {view.num_units} units")
    start = time.perf_counter()
    chosen = nw.explore(model, SENTENCES[0], tokenizer=tok)
    print(f"explore with no layer=: {time.perf_counter() - start:.2f} s, chose {chosen.layer}")
    chosen.close()
    page = FakeFrontend(view)
    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        # select a unit
        times = []
        for i in range(repeats):
            unit = (37 * i + 11) % view.num_units
            start = time.perf_counter()
            page.set_state(selected_units=[unit])
            times.append((time.perf_counter() - start) * 1e3)
        p50, p95 = percentiles(times)
        print(f"select a unit: p50 {p50:.1f} ms, p95 {p95:.1f} ms, model calls {len(calls)} (budget: 0, p95 < 50 ms)")

        # edit the sentence
        ratios, sizes = [], []
        for i in range(repeats):
            text = SENTENCES[(i + 1) % len(SENTENCES)] + ("" if i % 2 else " Indeed.")
            tokens = len(tok(text)["input_ids"])
            bare = bare_forward(model, tok, text)
            since = len(page.sent)
            start = time.perf_counter()
            page.custom({"type": "request", "id": i, "kind": "set_text", "args": {"row": 0, "text": text}})
            ratios.append((time.perf_counter() - start) / bare)
            sizes.append((sent_bytes(page, since), 2 * tokens * view.num_units + 10_000))
            assert not view.error, view.error
        p50, p95 = percentiles(ratios)
        worst = max(sizes, key=lambda s: s[0] / s[1])
        print(
            f"edit a sentence ({tokens} tokens): p50 {p50:.2f}x, p95 {p95:.2f}x one bare forward (budget 1.3x); "
            f"bytes sent {worst[0]:,} (budget {worst[1]:,})"
        )

        # switch layer
        ratios = []
        for i in range(repeats):
            bare = bare_forward(model, tok, view.texts[0])
            start = time.perf_counter()
            page.set_state(layer=layers[(i + 1) % 2])
            ratios.append((time.perf_counter() - start) / bare)
            assert not view.error, view.error
        p50, p95 = percentiles(ratios)
        print(f"switch layer: p50 {p50:.2f}x, p95 {p95:.2f}x one bare forward (budget 1.3x)")
    finally:
        handle.remove()
        view.close()


def token_units(texts: list[str], repeats: int) -> None:
    """Top units for a clicked token and attention patterns on GPT-2's shape; see the module docstring."""
    from neurowidgets.core.examples import Examples

    tok = tokenizer()
    model = build("gpt2", tok)
    layer = "transformer.h.5.mlp.act"
    adapter = nw.TextAdapter(tok, max_length=128)
    probe = nw.Probe(model)
    scan = nw.scan(probe, texts, layer, adapter=adapter, k=8, batch_size=16, cache=False, progress=False)
    examples = Examples(texts, text=adapter)
    inputs = tok([" ".join(SENTENCES)[:330]], return_tensors="pt")
    length = inputs["input_ids"].shape[1]
    capture = probe.run(inputs, [layer], output=False)
    calls: list[int] = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    times = []
    try:
        for i in range(repeats):
            start = time.perf_counter()
            nw.units_at_token(
                probe, inputs, layer, (7 * i) % length, 20, stats=scan[layer], examples=examples, capture=capture
            )
            times.append(time.perf_counter() - start)
    finally:
        hook.remove()
    p50, p95 = percentiles([1e3 * t for t in times])
    print(f"GPT-2 shape, {length} tokens: top 20 units at a token with cards: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
          f"{len(calls)} model calls (goal < 100 ms, none)")  # fmt: skip
    bare, patterns = [], []
    for _ in range(max(3, repeats // 3)):
        bare.append(bare_forward(model, tok, tok.decode(inputs["input_ids"][0], skip_special_tokens=True)))
        start = time.perf_counter()
        found = nw.attention_patterns(model, inputs)
        patterns.append(time.perf_counter() - start)
    print(f"attention patterns of all {found.patterns.shape[0]} blocks x {found.heads} heads ({found.source}): "
          f"{statistics.median(patterns) / statistics.median(bare):.2f}x a bare forward "
          f"(bare {1e3 * statistics.median(bare):.1f} ms)")  # fmt: skip


def lm_views(repeats: int) -> None:
    """The language-model widgets on GPT-2's shape; see the module docstring."""
    from neurowidgets.core import reading as core_reading
    from neurowidgets.widgets import AttentionHeads, LogitLens, background

    tok = tokenizer()
    model = build("gpt2", tok)
    words = " ".join(SENTENCES).split()

    def text(i: int) -> str:  # 64 tokens, a different text each time (nothing cached)
        rotated = words[i % len(words) :] + words[: i % len(words)]
        ids = tok(" ".join(rotated), add_special_tokens=False)["input_ids"][:62]
        return tok.decode(ids)

    heads = AttentionHeads(model, text(0), tok)
    lens = LogitLens(model, text(0), tok)
    print(f"GPT-2 shape, lm views on {len(lens.tokens)} tokens ({len(lens.blocks)} blocks x "
          f"{heads.heads} heads, vocabulary {lens.probe.model.config.vocab_size})")  # fmt: skip
    bare, views, tables = [], [], []
    parts: dict[str, list[float]] = {"forward with captures and patterns": [], "lens table": [], "attribution": []}
    for i in range(1, max(4, repeats // 2) + 1):
        sample = text(i)
        bare.append(bare_forward(model, tok, sample))
        start = time.perf_counter()
        heads.set_texts(sample)
        lens.set_texts(sample)
        views.append(time.perf_counter() - start)
        background.wait(lens)
        tables.append(time.perf_counter() - start)
        inputs = lens.adapter([sample + " again"])
        start = time.perf_counter()
        found = core_reading.read_text(lens.probe, inputs)
        parts["forward with captures and patterns"].append(time.perf_counter() - start)
        start = time.perf_counter()
        core_reading.lens_table(found)
        parts["lens table"].append(time.perf_counter() - start)
        start = time.perf_counter()
        core_reading.attribution(found, found.length - 2)
        parts["attribution"].append(time.perf_counter() - start)
    base = statistics.median(bare)
    print(f"new text, both views answered (one forward, patterns, top 5 and attribution at the token): "
          f"{statistics.median(views) / base:.2f}x a bare forward (bare {1e3 * base:.0f} ms; budget 1.5x)")  # fmt: skip
    print(f"  and the lens table of every block and position, computed after it in the background: "
          f"{statistics.median(tables) / base:.2f}x")  # fmt: skip
    for name, times in parts.items():
        print(f"  {name}: {statistics.median(times) / base:.2f}x")
    calls: list[int] = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    pages = {"lens": FakeFrontend(lens), "heads": FakeFrontend(heads)}
    clicks: dict[str, list[float]] = {"token (lens)": [], "token (heads)": [], "head": []}
    try:
        for i in range(repeats):
            for name, (page, kind, args) in {
                "token (lens)": (pages["lens"], "select_position", {"position": (7 * i) % len(lens.tokens)}),
                "token (heads)": (pages["heads"], "select_position", {"position": (5 * i) % len(heads.tokens)}),
                "head": (pages["heads"], "select_head", {"head": i % heads.heads}),
            }.items():
                start = time.perf_counter()
                page.custom({"type": "request", "id": i, "kind": kind, "args": args})
                clicks[name].append(time.perf_counter() - start)
    finally:
        hook.remove()
    for name, times in clicks.items():
        p50, p95 = percentiles([1e3 * t for t in times])
        print(f"click a {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms (goal < 100 ms)")
    print(f"model calls during the clicks: {len(calls)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,minilm")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--token-units", action="store_true", help="only the top-units and attention timings")
    parser.add_argument("--lm-views", action="store_true", help="only the attention and logit lens widgets")
    args = parser.parse_args()
    texts = real_text(args.texts)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.token_units:
        token_units(texts, args.repeats)
        return
    if args.lm_views:
        lm_views(args.repeats)
        return
    for name in args.models.split(","):
        if name == "gpt2":
            tok = tokenizer()
            model = build("gpt2", tok)
            layers = ["transformer.h.5.mlp.act", "transformer.h.6.mlp.act"]
            run("GPT-2-small shape (random weights)", model, tok, layers, texts, args.repeats)
        elif name == "minilm":
            model, tok, what = load_minilm()
            layers = ["encoder.layer.2.intermediate", "encoder.layer.3.intermediate"]
            run(what, model, tok, layers, texts, args.repeats)
        else:
            raise SystemExit(f"unknown model {name!r}: gpt2 or minilm")


if __name__ == "__main__":
    main()
