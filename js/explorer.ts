// The explorer: the panels the kernel lists in `panels`, mounted from the registry below, all reading
// ONE store (js/lib/store.ts): selection, position, example and the current input are the same traits
// for every panel, the activations are decoded once, and the error shows once, under the first row.

import type { RenderProps } from "@anywidget/types";
import { tracePanel } from "./activation_trace";
import { overlayPanel } from "./image_overlay";
import type { LayerState } from "./lib/layer_state";
import { errorBox, initializeStore, storeOf, type Panel } from "./lib/store";
import { element } from "./lib/ui";
import { gridPanel } from "./neuron_grid";
import { heatmapPanel } from "./token_heatmap";
import { cardPanel } from "./top_examples";
import { strongestUnitsPanel } from "./strongest_units";
import { tokenUnitsPanel } from "./token_units";

interface Entry {
  title: string;
  /** A wide panel takes a row of its own; the others share a row with their narrow neighbours. */
  wide: boolean;
  mount: Panel<LayerState>;
}

function entry<T extends LayerState>(title: string, wide: boolean, mount: Panel<T>): Entry {
  return { title, wide, mount: mount as unknown as Panel<LayerState> };
}

/** Every panel an explorer can show, by the name the kernel uses (neurowidgets/widgets/explorer.py). */
export const PANELS: Record<string, Entry> = {
  grid: entry("Units", false, gridPanel),
  overlay: entry("Input", false, overlayPanel),
  heatmap: entry("Input", false, heatmapPanel),
  token_units: entry("Top units at the selected token", false, tokenUnitsPanel),
  trace: entry("Selected units along the input", true, tracePanel),
  card: entry("What drives the selected unit", true, cardPanel),
  strongest_units: entry("Strongest units", false, strongestUnitsPanel),
};

interface ExplorerState extends LayerState {
  panels: string[];
  collapsed: string[];
}

function render({ model, el }: RenderProps<ExplorerState>): () => void {
  el.classList.add("nw-root", "nw-explorer");
  const store = storeOf(model);
  const cleanups: (() => void)[] = [];
  const sections = new Map<string, HTMLDetailsElement>();
  let row: HTMLElement | null = null;

  // Each panel folds (a short output area, as in marimo, keeps what matters in view); which are
  // folded is the `collapsed` trait, so a saved notebook and Python see it too.
  model.get("panels").forEach((name, index) => {
    const { title, wide, mount } = PANELS[name];
    const parent = wide ? el : (row ??= element("div", "nw-explorer-row", el));
    if (wide) row = null;
    const section = element("details", `nw-panel nw-panel-${name}`, parent);
    section.setAttribute("aria-label", title);
    section.open = !model.get("collapsed").includes(name);
    element("summary", "nw-panel-title", section).textContent = title;
    section.addEventListener("toggle", () => {
      const others = model.get("collapsed").filter((n) => n !== name);
      const collapsed = section.open ? others : [...others, name];
      if (collapsed.length !== model.get("collapsed").length) {
        model.set("collapsed", collapsed);
        model.save_changes();
      }
    });
    sections.set(name, section);
    // The first panel carries the one layer picker; the others follow the same `layer` trait.
    const body = element("div", "nw-panel-body", section);
    cleanups.push(mount(store, body, { layerPicker: index === 0 }));
  });
  // The error goes under the first panel's row (grid and input, where the user clicks and drags), so
  // that it is in view and showing it moves nothing under the pointer.
  cleanups.push(errorBox(el, model, el.firstElementChild?.nextSibling ?? null));
  const onCollapsed = () => {
    for (const [name, section] of sections) section.open = !model.get("collapsed").includes(name);
  };
  model.on("change:collapsed", onCollapsed);
  cleanups.push(() => model.off("change:collapsed", onCollapsed));
  return () => cleanups.forEach((cleanup) => cleanup());
}

export default { initialize: initializeStore, render };
