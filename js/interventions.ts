// Interventions: a mode select and a strength slider for the edit of the selected units, the units
// being edited, and the before/after plot (a BokehHost figure, updated in place by the kernel). Slider
// moves go to the kernel through a latest-wins lane: at most one edit computes, the newest waits.
// The effect over a sample of the data arrives later from the kernel's background work: its progress,
// then its size and time, with a button that asks for a sample twice as big (and shows that request's
// progress from the parts of its answer until the final answer, or a newer edit, settles it).
// Token text reaches the page only through textContent and bokeh's own text rendering.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { initializeBokeh, renderBokeh, type BokehState } from "./bokeh_host";
import { Requests, Superseded, pending } from "./lib/requests";
import { element, labelledSelect, setOptions } from "./lib/ui";

type Mode = "ablate" | "clamp" | "scale" | "steer";
const MODES: Mode[] = ["ablate", "clamp", "scale", "steer"];
const STRENGTH_LABEL: Record<Mode, string> = { ablate: "value", clamp: "value", scale: "factor", steer: "alpha" };
const UNITS_LISTED = 12;
const BUSY_DELAY_MS = 120;

export interface InterventionsState extends BokehState {
  mode: Mode;
  strength: number;
  ranges: Record<string, [number, number, number, number]>; // mode → min, max, step, default
  kind: string;
  summary: string;
  sample_effect: string;
  sample_status: string;
  sample_size: number;
  data_size: number;
  direction: string;
  layer: string;
  selected_units: number[];
}

/** A part of the answer to a "sample" request: one chunk of the sample done (interventions.py). */
interface SampleProgress {
  phase: string; // "before" or "after" the edit
  done: number;
  total: number;
}

function formatStrength(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(3).replace(/\.?0+$/, "");
}

function unitsText(model: AnyModel<InterventionsState>): string {
  const units = model.get("selected_units");
  const layer = model.get("layer");
  if (model.get("mode") === "steer" && model.get("direction") !== "the selected units") {
    return `steering ${layer} along ${model.get("direction")}`;
  }
  if (!units.length) return `select units in the grid (layer ${layer})`;
  const listed = units.slice(0, UNITS_LISTED).join(", ");
  const more = units.length > UNITS_LISTED ? `, … (${units.length} units)` : "";
  return `${units.length === 1 ? "unit" : "units"} ${listed}${more} of ${layer}`;
}

function render({ model, el }: RenderProps<InterventionsState>): () => void {
  el.classList.add("nw-root", "nw-interventions");
  const header = element("div", "nw-header", el);
  const modeSelect = labelledSelect(header, "Edit", (value) => {
    const mode = value as Mode;
    send(mode, model.get("ranges")[mode]?.[3] ?? 0); // each mode starts from its own sensible value
  });
  const control = element("label", "nw-control nw-iv-strength", header);
  const strengthLabel = element("span", "nw-control-label", control);
  const slider = element("input", "nw-range", control);
  slider.type = "range";
  const number = element("input", "nw-number", control);
  number.type = "number";
  const status = element("span", "nw-iv-status", header);
  const units = element("div", "nw-iv-units", el);
  const body = element("div", "nw-iv-plot", el);
  const effect = element("div", "nw-iv-effect", el);
  const effectText = element("span", "nw-iv-effect-text", effect);
  const sampleStatus = element("span", "nw-iv-sample", effect);
  const more = element("button", "nw-iv-more", effect);
  more.type = "button";

  let awaiting = 0; // edits sent and not answered: the controls show the user's value, not the kernel's
  let sampling: string | null = null; // the button's text while its sample request is answered
  let busyTimer: ReturnType<typeof setTimeout> | undefined;
  const requests = new Requests(model as unknown as AnyModel);
  const track = pending((busy) => {
    el.dataset.busy = busy ? "1" : "0";
    clearTimeout(busyTimer);
    if (busy) busyTimer = setTimeout(() => (status.textContent = "computing…"), BUSY_DELAY_MS);
    else status.textContent = "";
  });

  function send(mode: Mode, strength: number): void {
    awaiting++;
    modeSelect.value = mode;
    showStrength(mode, strength);
    track(requests.latest("edit", "edit", { mode, strength }))
      .catch((error: unknown) => {
        if (!(error instanceof Superseded)) console.warn("neurowidgets interventions:", error);
      })
      .finally(() => {
        awaiting--;
        if (awaiting === 0) fromKernel();
      });
  }

  function showStrength(mode: Mode, strength: number): void {
    const [min, max, step] = model.get("ranges")[mode] ?? [0, 0, 0, 0];
    const fixed = mode === "ablate";
    // The slider spans the mode's range (widened to a value typed past its ends); the number takes any value.
    slider.min = String(Math.min(min, strength));
    slider.max = String(Math.max(max, strength));
    slider.step = step > 0 ? String(step) : "any";
    number.step = "any";
    slider.disabled = number.disabled = fixed;
    control.title = fixed ? "ablation sets the units to 0" : "";
    strengthLabel.textContent = STRENGTH_LABEL[mode];
    slider.value = String(strength);
    slider.setAttribute("aria-label", `${STRENGTH_LABEL[mode]} of the ${mode} edit`);
    number.value = formatStrength(fixed ? 0 : strength);
  }

  function fromKernel(): void {
    if (awaiting > 0) return; // an older echo must not move the slider under the user's pointer
    setOptions(modeSelect, MODES, model.get("mode"));
    showStrength(model.get("mode"), model.get("strength"));
    units.textContent = unitsText(model);
  }

  function showEffect(): void {
    const size = model.get("sample_size");
    const total = model.get("data_size");
    effectText.textContent = model.get("sample_effect");
    sampleStatus.textContent = model.get("sample_status");
    effect.hidden = total === 0; // no data: no sample
    more.hidden = sampling === null && size >= total;
    more.disabled = sampling !== null;
    more.textContent = sampling ?? `more examples (${Math.min(2 * size, total)})`;
  }

  more.addEventListener("click", () => {
    const size = Math.min(2 * model.get("sample_size"), model.get("data_size"));
    sampling = `sampling 0 / ${size}…`;
    showEffect();
    const onProgress = (part: unknown) => {
      const { phase, done, total } = part as SampleProgress;
      sampling = `sampling ${done} / ${total} (${phase} the edit)…`;
      showEffect();
    };
    // Not tracked as "computing…" beside the slider: the button itself shows this request's progress.
    requests.latestStream("sample", "sample", { size }, onProgress)
      .catch((error: unknown) => {
        // Superseded: a newer edit cancelled the sample (its own sample follows), which is no error.
        if (!(error instanceof Superseded)) console.warn("neurowidgets interventions:", error);
      })
      .finally(() => {
        sampling = null; // the result is in the traits by now (published before the answer)
        showEffect();
      });
  });

  slider.addEventListener("input", () => send(model.get("mode"), Number(slider.value)));
  number.addEventListener("change", () => {
    const value = Number(number.value);
    if (Number.isFinite(value)) send(model.get("mode"), value);
  });

  const cleanupPlot = renderBokeh(model, body);
  fromKernel();
  showEffect();
  const events = ["change:mode", "change:strength", "change:ranges", "change:selected_units", "change:layer",
    "change:direction"];
  for (const event of events) model.on(event, fromKernel);
  const effectEvents = ["change:sample_effect", "change:sample_status", "change:sample_size", "change:data_size"];
  for (const event of effectEvents) model.on(event, showEffect);

  return () => {
    cleanupPlot();
    requests.dispose();
    clearTimeout(busyTimer);
    for (const event of events) model.off(event, fromKernel);
    for (const event of effectEvents) model.off(event, showEffect);
  };
}

export default { initialize: initializeBokeh, render };
