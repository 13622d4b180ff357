// StrongestUnits: the units with the largest values on the current example (each unit's max over the
// example's positions), largest first, each on its colour in the store's scale; a click selects one.
// It reads only the shared state, so it needs no Python of its own: the worked example of
// docs/ARCHITECTURE.md.

import { formatValue } from "./lib/colors";
import { update, type LayerState, type LayerValues } from "./lib/layer_state";
import type { Panel } from "./lib/store";
import { element } from "./lib/ui";
import { orderByValue, reduceUnits } from "./neuron_grid";

const SHOWN = 8;

/** The ``count`` units with the largest max over the real positions of ``example``, largest first
 * (NaN last), with those maxima. */
export function strongestUnits(values: LayerValues, example: number, lengths: number[], count: number) {
  const positions = values.valid(example, lengths);
  const maxima = reduceUnits(values.matrix(example).subarray(0, positions * values.units), positions, values.units, "max");
  return { units: Array.from(orderByValue(maxima).subarray(0, count)), maxima };
}

export const strongestUnitsPanel: Panel<LayerState> = (store, el) => {
  const model = store.model;
  const list = element("ol", "nw-strongest-units", el);
  list.setAttribute("aria-label", "units with the largest values");
  function draw(): void {
    const values = store.values;
    if (!values.examples) return list.replaceChildren();
    const example = Math.min(model.get("example"), values.examples - 1);
    const { units, maxima } = strongestUnits(values, example, model.get("lengths"), SHOWN);
    list.replaceChildren(...units.map((unit) => {
      const item = element("li", "nw-strongest-unit");
      const button = element("button", "nw-button", item);
      button.type = "button";
      button.setAttribute("aria-pressed", String(model.get("selected_units").includes(unit)));
      element("span", "nw-swatch", button).style.background = store.scale.css(maxima[unit]);
      button.append(`unit ${unit} · ${formatValue(maxima[unit])}`);
      button.addEventListener("click", () => update(model, "selected_units", [unit]));
      return item;
    }));
  }
  const events = ["change:values", "change:example", "change:lengths", "change:selected_units", "change:baseline"];
  for (const event of events) model.on(event, draw);
  draw();
  return () => {
    for (const event of events) model.off(event, draw);
  };
};
