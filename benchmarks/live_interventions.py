"""Long work never blocks a click: the Interventions panel on a GPT-2-size model with text data attached.

    .venv/bin/python benchmarks/live_interventions.py [--texts 512] [--moves 12] [--clicks 12]

GPT-2-small's shape (12 layers, 768 wide, 3,072 MLP neurons; random weights, MiniLM's tokenizer), an
explorer on one sentence at ``transformer.h.6.mlp.act`` with ``--texts`` chunks of real text
(benchmarks/minilm.py, 128 tokens each) as its data, and ``nw.Interventions`` on it, driven as the
page drives it (tests/widgets/frontend.py). The sample effect runs in the background
(neurowidgets/widgets/background.py) while the kernel answers:

- construction of the panel, and the default sample size it chose (sized by a timed forward);
- slider moves (``edit`` requests, one every ``--gap`` seconds, so that each lands while the previous
  move's sample computes): the kernel's time to answer (the current input's before/after), as a
  ratio to one bare forward of the sentence timed between moves (p50, p95); once with the background
  pausing while a handler works (the default), once with it running alongside (no pause);
- clicks while the sample computes: a position click (``position`` update, no model call) and a unit
  selection (``selected_units`` update: the panel reruns the edited sentence), kernel time to answer;
- the sample effect: time from the last move to its arrival, with the job's progress reports;
- what a cooperative alternative (chunks on the kernel's event loop) would make a click wait: the
  time of one chunk of the sample, as a ratio to a bare forward;
- CoActivation (``--co-sample`` texts): a layer switch's answer, and when the new layer's maxima arrive.

Ratios are of times measured interleaved in one run, so machine load affects both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
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
from minilm import real_text  # noqa: E402

import neurowidgets as nw  # noqa: E402
from neurowidgets.widgets import background  # noqa: E402

SENTENCE = "The old lighthouse keeper watched the storm roll in over the grey and restless sea tonight."
LAYER = "transformer.h.6.mlp.act"


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def bare_forward(model, batch) -> float:
    """One forward pass of ``batch`` alone: the background's forward passes pause meanwhile."""
    with background.foreground():
        start = time.perf_counter()
        with torch.no_grad():
            model(**batch, use_cache=False)
        return time.perf_counter() - start


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--moves", type=int, default=12)
    parser.add_argument("--clicks", type=int, default=12)
    parser.add_argument("--gap", type=float, default=0.4, help="seconds between slider moves")
    parser.add_argument("--co-sample", type=int, default=16, help="CoActivation's sample (texts)")
    args = parser.parse_args()

    tok = tokenizer()
    model = build("gpt2", tok).eval()
    texts = real_text(args.texts)
    batch = tok([SENTENCE], return_tensors="pt")
    for _ in range(2):
        bare_forward(model, batch)
    # The explorer needs a scan of its data for the feature card; the panel does not use it: a small one.
    scan = nw.scan(model, texts[:16], [LAYER], tokenizer=tok, max_length=128, k=4, progress=False)
    explorer = nw.explore(
        model, SENTENCE, data=texts, scan=scan, tokenizer=tok, layer=LAYER, selected_units=[11, 42, 97]
    )
    units = explorer.selected_units
    print(f"GPT-2-small shape, {LAYER} ({explorer.num_units} units), data: {len(texts)} texts of real text")
    tokens = batch["input_ids"].shape[1]
    print(f"one bare forward of the sentence ({tokens} tokens): {bare_forward(model, batch):.3f} s")

    start = time.perf_counter()
    panel = nw.Interventions(explorer, mode="scale")
    built = time.perf_counter() - start
    print(f"construction: {built:.2f} s (the sample is not run here); default sample {panel.sample_size} texts")
    first = time.perf_counter()
    panel.wait()
    print(f"the first sample (before and after): {time.perf_counter() - first:.1f} s after construction")

    page = FakeFrontend(panel)
    grid = FakeFrontend(explorer)
    request_id = iter(range(10**6))

    def move(strength: float) -> None:
        edit = {"mode": "scale", "strength": strength}
        page.custom({"type": "request", "id": next(request_id), "kind": "edit", "args": edit})
        assert not panel.error, panel.error

    def slider(label: str, pause: bool) -> None:
        ratios = []
        runner = background._runner
        paused = runner.foreground
        for i in range(args.moves):
            forward = bare_forward(model, batch)  # alone: the background pauses for it
            strength = -1.0 + 0.137 * i + (0.01 if pause else 0.0)
            if not pause:
                runner.foreground = contextlib.nullcontext  # the background runs alongside the handler
            try:
                ratios.append(timed(lambda strength=strength: move(strength)) / forward)
            finally:
                runner.foreground = paused
            time.sleep(args.gap)  # the sample of this move computes meanwhile
            assert background.running(panel), "a move's sample should still be computing"
        p50, p95 = percentiles(ratios)
        print(f"slider move, {label}: before/after answered in p50 {p50:.2f}×, p95 {p95:.2f}× a bare forward "
              f"(budget ≤ 1.5×; {args.moves} moves)")  # fmt: skip

    slider("background paused while the handler works", pause=True)
    slider("background running alongside (no pause)", pause=False)

    # Clicks while a sample computes: a new edit starts one, then the grid is clicked.
    move(2.5)
    positions, selections, forwards = [], [], []
    for i in range(args.clicks):
        assert background.running(panel)
        forwards.append(bare_forward(model, batch))
        position, chosen = i % explorer.num_positions, units[: 1 + i % len(units)]
        positions.append(timed(lambda position=position: grid.set_state(position=position)))
        selections.append(timed(lambda chosen=chosen: grid.set_state(selected_units=chosen)))
        assert not explorer.error and not panel.error, (explorer.error, panel.error)
    forward = statistics.median(forwards)
    for label, times in (("position click (no model call)", positions), ("unit selection", selections)):
        p50, p95 = percentiles(times)
        print(f"{label} while the sample computes: p50 {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms "
              f"({p50 / forward:.2f}×, {p95 / forward:.2f}× a bare forward)")  # fmt: skip

    # The last edit's sample effect: progress, then the result.
    reports: list[tuple[float, str]] = []
    status = panel.observe(lambda change: reports.append((time.perf_counter(), change["new"])), "sample_status")
    start = time.perf_counter()
    move(0.5)
    panel.wait()
    arrived = time.perf_counter() - start
    panel.unobserve(status, "sample_status")
    progress = [text for _, text in reports if text.startswith("sample:")]
    print(f"sample effect of the last move: arrived {arrived:.1f} s after it, {len(progress)} progress reports "
          f"({progress[0]!r} … {progress[-1]!r}); shown: {panel.sample_status!r}")  # fmt: skip
    print(f"  {panel.sample_effect}")
    steps = [b - a for (a, _), (b, _) in itertools.pairwise(reports)][1:]
    chunk = statistics.median(steps) if steps else float("nan")
    print(f"one chunk of the sample: {chunk:.2f} s = {chunk / forward:.1f}× a bare forward: what a click would wait "
          f"for with the chunks on the kernel's event loop instead of a thread")  # fmt: skip

    # A burst: the last move wins.
    for i in range(6):
        move(1.0 + i / 10)
    panel.wait()
    assert panel.strength == 1.5 and panel.sample_effect, (panel.strength, panel.sample_effect)
    print(f"burst of 6 moves: ends on strength {panel.strength}, effect over {panel.effect['examples']} texts")
    panel.close()

    # CoActivation: a layer switch answers with the explorer's forward; the sample's maxima follow.
    co = nw.CoActivation(explorer, sample=args.co_sample)
    co.wait()
    forward = bare_forward(model, batch)
    start = time.perf_counter()
    switch = timed(lambda: grid.set_state(layer="transformer.h.7.mlp.act"))
    assert background.running(co) and not explorer.error
    co.wait()
    arrived = time.perf_counter() - start
    print(f"CoActivation, layer switch: answered in {switch / forward:.2f}× a bare forward (the explorer's own "
          f"forward; the sample runs behind it); the maxima of {args.co_sample} texts arrived {arrived:.1f} s "
          f"after the switch")  # fmt: skip
    co.close()


if __name__ == "__main__":
    main()
