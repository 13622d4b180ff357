// The page side of one widget model, built once in anywidget's `initialize` and read by every panel
// of every view of that model: the activations decoded once, one request channel, the kernel's error,
// and the one colour scale of activations (so a unit has the same colour in every panel).

import type { AnyModel, RenderProps } from "@anywidget/types";
import { DivergingScale } from "./colors";
import { decodeFloat, type WireArray } from "./codec";
import { LayerValues, type LayerState } from "./layer_state";
import { Requests } from "./requests";
import { element } from "./ui";

export class Store<T extends LayerState = LayerState> {
  readonly requests: Requests;
  private wire: WireArray | null | undefined = undefined;
  private baselineWire: WireArray | null | undefined = undefined;
  private lengths: number[] | undefined = undefined;
  private decoded = LayerValues.empty();
  private decodedBaseline: Float32Array = new Float32Array(0);
  private activationScale = new DivergingScale(1);

  constructor(readonly model: AnyModel<T>) {
    this.requests = new Requests(model);
  }

  /** The (N, positions, units) activations of the current inputs, decoded once per array the kernel sends
   * (whichever panel asks first; the others get the same object). */
  get values(): LayerValues {
    this.refresh();
    return this.decoded;
  }

  /** The colour scale of activations, the same for every panel, so a value has one colour in the grid,
   * the heatmap, the overlay and the card: symmetric around 0, its limit a high percentile of the
   * units' largest |values| (see colourLimit) at the real positions (not padding) of the current
   * inputs and, with an occluding patch, of the image without it (`baseline`). Twin:
   * LayerView.colour_limit. */
  get scale(): DivergingScale {
    this.refresh();
    return this.activationScale;
  }

  /** An image overlay's activations of the current example without its occluding patch
   * ((positions × units), empty without a patch view). */
  get baseline(): Float32Array {
    this.refresh();
    return this.decodedBaseline;
  }

  private refresh(): void {
    const wire = this.model.get("values");
    const baseline = (this.model.get as (key: string) => WireArray | null | undefined)("baseline");
    const lengths = this.model.get("lengths");
    if (wire === this.wire && baseline === this.baselineWire && lengths === this.lengths) return;
    if (wire !== this.wire) this.decoded = LayerValues.decode(wire);
    if (baseline !== this.baselineWire) this.decodedBaseline = baseline ? decodeFloat(baseline).values : new Float32Array(0);
    this.wire = wire;
    this.baselineWire = baseline;
    this.lengths = lengths;
    const values = this.decoded;
    const parts = [this.decodedBaseline];
    for (let e = 0; e < values.examples; e++) parts.push(values.matrix(e).subarray(0, values.valid(e, lengths) * values.units));
    this.activationScale = new DivergingScale(colourLimit(parts, values.units));
  }

  dispose(): void {
    this.requests.dispose();
  }
}

export const COLOUR_QUANTILE = 0.99;

/** The COLOUR_QUANTILE-th of the units' largest finite |value| in ``parts`` (row-major matrices of
 * ``units`` columns), over the units where it is not 0: the lower one, index floor(q · (n − 1)) of
 * them sorted; 1 when there is none. Not the largest of all: transformers put outsized activations in
 * a few units on a few tokens ([CLS], [SEP]), and a scale set by those would leave every other unit
 * white; a value beyond the limit takes the end colour. */
export function colourLimit(parts: Float32Array[], units: number): number {
  const largest = new Float32Array(units);
  for (const part of parts) {
    for (let i = 0; i < part.length; i++) {
      const v = Math.abs(part[i]);
      if (v > largest[i % units] && v !== Infinity) largest[i % units] = v; // NaN fails v > …
    }
  }
  const active = largest.filter((v) => v > 0).sort();
  return active.length ? active[Math.floor(COLOUR_QUANTILE * (active.length - 1))] : 1;
}

/** What a panel is told besides its store: whether it draws its own layer picker (in the explorer the
 * grid carries the one picker that every panel follows). */
export interface PanelOptions {
  layerPicker: boolean;
}

/** A panel draws into `el` from the store (and the model's traits it reads), sends requests through
 * `store.requests`, and returns its cleanup. It never shows the error: its root does, once. */
export type Panel<T extends LayerState> = (store: Store<T>, el: HTMLElement, options: PanelOptions) => () => void;

// The stores of the page, by the `_id` the kernel gives each widget: anywidget hands `initialize` and
// `render` different proxies of one model, so the proxy cannot be the key.
const stores = new Map<string, Store<LayerState>>();

export function initializeStore({ model }: { model: AnyModel<LayerState & { _id: string }> }): () => void {
  const id = model.get("_id");
  stores.set(id, new Store(model));
  return () => {
    stores.get(id)?.dispose();
    stores.delete(id);
  };
}

export function storeOf<T extends LayerState>(model: AnyModel<T>): Store<T> {
  const id = (model.get as (key: string) => string)("_id");
  const store = stores.get(id);
  if (!store) throw new Error(`neurowidgets: no store for widget ${id} (render before initialize)`);
  return store as unknown as Store<T>;
}

/** Shows the model's `error` (text from the kernel) in `parent` (before `before`, else last), once per
 * view; hidden when empty. Below what the user drags in, so that showing it moves nothing under the
 * pointer. */
export function errorBox(parent: HTMLElement, model: AnyModel<{ error: string }>, before: Node | null = null): () => void {
  const box = element("div", "nw-error");
  parent.insertBefore(box, before);
  box.setAttribute("role", "alert");
  const update = () => {
    const message = model.get("error");
    box.textContent = message;
    box.hidden = !message;
  };
  update();
  model.on("change:error", update);
  return () => model.off("change:error", update);
}

/** The anywidget module of a widget that shows one panel: the store in `initialize`; in `render` the
 * panel, then the error box. */
export function standalone<T extends LayerState>(panel: Panel<T>) {
  return {
    initialize: initializeStore,
    render({ model, el }: RenderProps<T>): () => void {
      el.classList.add("nw-root");
      const cleanup = panel(storeOf(model), el, { layerPicker: true });
      const removeErrorBox = errorBox(el, model as unknown as AnyModel<{ error: string }>);
      return () => {
        removeErrorBox();
        cleanup();
      };
    },
  };
}
