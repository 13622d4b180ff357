// The explorer: every view that fits the input, drawn from ONE model. Selection, position, example
// and the current input are the same traits for all views, so linking needs no code here: each view
// listens to the model and redraws itself.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { renderTrace, type TraceState } from "./activation_trace";
import { renderOverlay, type OverlayState } from "./image_overlay";
import { renderGrid, type GridState } from "./neuron_grid";
import { renderHeatmap, type HeatmapState } from "./token_heatmap";
import { renderExamples, type ExamplesState } from "./top_examples";
import { element } from "./lib/ui";

type ExplorerState = GridState & TraceState & ExamplesState & Partial<OverlayState> & Partial<HeatmapState> & {
  modality: "image" | "text" | "tensor";
  collapsed: string[];
};

function render({ model, el }: RenderProps<ExplorerState>): () => void {
  el.classList.add("nw-root", "nw-explorer");
  const top = element("div", "nw-explorer-row", el);
  const cleanups: (() => void)[] = [];
  const panels = new Map<string, HTMLDetailsElement>();

  // Each panel folds (a short output area, as in marimo, keeps what matters in view); which are
  // folded is the `collapsed` trait, so a saved notebook and Python see it too.
  function panel(parent: HTMLElement, name: string, title: string): HTMLElement {
    const section = element("details", `nw-panel nw-panel-${name}`, parent);
    section.setAttribute("aria-label", title);
    section.open = !model.get("collapsed").includes(name);
    const heading = element("summary", "nw-panel-title", section);
    heading.textContent = title;
    section.addEventListener("toggle", () => {
      const others = model.get("collapsed").filter((n) => n !== name);
      const collapsed = section.open ? others : [...others, name];
      if (collapsed.length !== model.get("collapsed").length) {
        model.set("collapsed", collapsed);
        model.save_changes();
      }
    });
    panels.set(name, section);
    return element("div", "nw-panel-body", section);
  }
  const onCollapsed = () => {
    for (const [name, section] of panels) section.open = !model.get("collapsed").includes(name);
  };
  model.on("change:collapsed", onCollapsed);
  cleanups.push(() => model.off("change:collapsed", onCollapsed));
  // The grid carries the one Layer dropdown; the other views follow the same `layer` trait.
  cleanups.push(renderGrid(model, panel(top, "grid", "Units")));
  const modality = model.get("modality");
  if (modality === "image") {
    cleanups.push(renderOverlay(model as unknown as AnyModel<OverlayState>, panel(top, "input", "Input"), { layerSelect: false }));
  } else if (modality === "text") {
    cleanups.push(renderHeatmap(model as unknown as AnyModel<HeatmapState>, panel(top, "input", "Input"), { layerPicker: false }));
  }
  cleanups.push(renderTrace(model, panel(el, "trace", "Selected units along the input"), { layerSelect: false }));
  cleanups.push(renderExamples(model, panel(el, "examples", "What drives the selected unit")));
  return () => cleanups.forEach((cleanup) => cleanup());
}

export default { render };
