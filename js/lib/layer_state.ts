// The live layer state every activation view reads (the twin of neurowidgets/widgets/layer_view.py).

import type { AnyModel } from "@anywidget/types";
import { decodeFloat, type WireArray } from "./codec";

export interface LayerState {
  layer: string;
  layers: string[];
  layer_groups: { label: string; layers: string[] }[];
  values: WireArray | null;
  positions_shape: number[];
  example: number;
  selected_units: number[];
  position: number;
  lengths: number[];
  error: string;
}

/** Fill a layer picker: grouped by kind when the kernel sent groups (blocks in order within each), else
 * the plain list; the current layer is always there. Rebuilt only when the entries change. */
export function showLayers(select: HTMLSelectElement, model: AnyModel<LayerState>): void {
  const layer = model.get("layer");
  const groups = model.get("layer_groups") ?? [];
  const entries = groups.length ? groups : [{ label: "", layers: model.get("layers") }];
  const listed = entries.flatMap((g) => g.layers);
  if (!listed.includes(layer)) entries.push({ label: "", layers: [layer] });
  const key = JSON.stringify(entries);
  if (select.dataset.entries !== key) {
    const option = (name: string) => {
      const element = document.createElement("option");
      element.value = name;
      element.textContent = name;
      return element;
    };
    select.replaceChildren(...entries.flatMap((g) => {
      if (!g.label) return g.layers.map(option);
      const group = document.createElement("optgroup");
      group.label = g.label;
      group.append(...g.layers.map(option));
      return [group];
    }));
    select.dataset.entries = key;
  }
  select.value = layer;
}

/** The decoded (N, positions, units) activations of the current inputs. */
export class LayerValues {
  constructor(
    readonly data: Float32Array,
    readonly examples: number,
    readonly positions: number,
    readonly units: number,
  ) {}

  static empty(): LayerValues {
    return new LayerValues(new Float32Array(0), 0, 0, 0);
  }

  static decode(wire: WireArray | null): LayerValues {
    if (!wire) return LayerValues.empty();
    const { values, shape } = decodeFloat(wire);
    const [examples, positions, units] = shape;
    return new LayerValues(values, examples, positions, units);
  }

  /** The (positions × units) matrix of one example, without copying. */
  matrix(example: number): Float32Array {
    const size = this.positions * this.units;
    return this.data.subarray(example * size, (example + 1) * size);
  }

  /** Positions of an example that are not right padding (``lengths`` from the kernel; all if empty). */
  valid(example: number, lengths: number[] | undefined): number {
    const length = lengths?.[example];
    return length === undefined ? this.positions : Math.max(0, Math.min(length, this.positions));
  }

  value(example: number, position: number, unit: number): number {
    return this.data[(example * this.positions + position) * this.units + unit];
  }
}

/** Set and send one piece of the shared state. */
export function update<T extends object, K extends keyof T & string>(model: AnyModel<T>, key: K, value: T[K]): void {
  model.set(key, value);
  model.save_changes();
}

/** Human label of a flat position index on a grid: "12" for tokens, "(r, c)" for H×W. */
export function positionLabel(position: number, grid: number[]): string {
  if (grid.length === 2) return `(${Math.floor(position / grid[1])}, ${position % grid[1]})`;
  return String(position);
}
