"""What the bokeh companion views add to an explorer's interactions, in the kernel.

    .venv/bin/python benchmarks/companions.py [--repeats 200] [--units 8]

On the digits CNN (layer relu2, a batch of 4 test digits, data: the 449 test digits and their scan),
times in the kernel, per interaction, with no companion, then with each of Distributions,
CoActivation (sample 256), Interventions (sample 256, scale mode) and LayerHealth following the
explorer, then with all of them (work over the sample runs in the background and is not counted
here: see benchmarks/live_interventions.py):
- a position click (``explorer.position``), the most frequent interaction;
- another example of the batch (``explorer.example``);
- another unit selection (``explorer.selected_units``);
and, for Interventions alone, a slider move (an ``edit`` request with a new strength: the edited
batch in the handler, then the edited sample in the background, waited for). Prints p50 in ms and
the ratio to the bare explorer, and the bytes each companion sends to the page for one position click
(its patch messages).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "widgets"))

from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.datasets import digits


def timed(action, repeats: int) -> float:
    """p50 in ms of ``action(i)`` over ``repeats`` calls (after two warm-ups)."""
    action(0)
    action(1)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        action(i)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def sent_bytes(frontend: FakeFrontend) -> int:
    return sum(len(json.dumps(msg, default=str)) + sum(len(b) for b in buffers) for msg, buffers in frontend.sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--units", type=int, default=8)
    args = parser.parse_args()

    data = digits()
    scan = nw.scan(data.model, data.test_images, ["relu1", "relu2", "relu3"], k=8, progress=False)
    units = list(range(args.units))

    def explorer():
        return nw.explore(data.model, data.test_images[:4], layer="relu2", data=data.test_images, scan=scan,
                          selected_units=units)  # fmt: skip

    makers = {
        "Distributions": lambda ex: nw.Distributions(scan, follow=ex),
        "CoActivation": lambda ex: nw.CoActivation(ex),
        "Interventions": lambda ex: nw.Interventions(ex, labels=data.test_labels, sample=256),
        "LayerHealth": lambda ex: nw.LayerHealth(scan, follow=ex),
    }
    interactions = {
        "position click": lambda ex: lambda i: setattr(ex, "position", i % 64),
        "example": lambda ex: lambda i: setattr(ex, "example", i % 4),
        "unit selection": lambda ex: lambda i: setattr(ex, "selected_units", [u for u in units if u != i % 8]),
    }
    setups = {"explorer alone": []} | {name: [name] for name in makers} | {"all four": list(makers)}
    print(f"digits CNN, relu2, {args.units} selected units; p50 of {args.repeats} interactions (ms, ratio)")
    bare: dict[str, float] = {}
    for setup, names in setups.items():
        row = []
        for what, interact in interactions.items():
            ex = explorer()
            companions = [makers[name](ex) for name in names]
            for companion in companions:
                companion.wait()  # their samples drawn: the interactions then redraw them
            p50 = timed(interact(ex), args.repeats)
            bare.setdefault(what, p50)
            row.append(f"{what} {p50:7.2f} ({p50 / bare[what]:5.1f}×)")
            for companion in companions:
                companion.close()
        print(f"  {setup:15s} " + "   ".join(row))

    print("bytes sent to the page for one position click:")
    for name, make in makers.items():
        ex = explorer()
        companion = make(ex)
        frontend = FakeFrontend(companion)
        ex.position = 17
        print(f"  {name:15s} {sent_bytes(frontend):7d} bytes")
        companion.close()

    ex = explorer()
    panel = nw.Interventions(ex, labels=data.test_labels, sample=256)
    frontend = FakeFrontend(panel)
    panel.wait()

    def slide(i: int) -> None:
        args = {"mode": "scale", "strength": -1 + i / 97}
        frontend.custom({"type": "request", "id": i, "kind": "edit", "args": args})

    def slide_and_sample(i: int) -> None:
        slide(i)
        panel.wait()

    print(f"Interventions slider move, answer (edited batch): p50 {timed(slide, 50):.2f} ms")
    shown = timed(slide_and_sample, 50)
    print(f"Interventions slider move, until its sample effect (256) is shown: p50 {shown:.2f} ms")


if __name__ == "__main__":
    main()
