// The live layer state every activation view reads (the twin of neurowidgets/widgets/layer_view.py).

import type { AnyModel } from "@anywidget/types";
import { decodeFloat, type WireArray } from "./codec";

export interface LayerState {
  layer: string;
  layers: string[];
  values: WireArray | null;
  positions_shape: number[];
  example: number;
  selected_units: number[];
  position: number;
  lengths: number[];
  error: string;
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

  static from(model: AnyModel<LayerState>): LayerValues {
    const wire = model.get("values");
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
