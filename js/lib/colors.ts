// Colour scales. Activations use a diverging scale centred on zero (blue < 0 < red), with a
// distinct colour for NaN, so that "not a number" is never mistaken for a value.

export type RGB = [number, number, number];

// ColorBrewer RdBu, reversed so that positive activations are red.
const DIVERGING_STOPS: RGB[] = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
];

export const NAN_COLOR: RGB = [255, 0, 255];
export const NAN_CSS = "rgb(255, 0, 255)";

function buildLut(stops: RGB[], size: number): Uint8Array {
  const lut = new Uint8Array(size * 3);
  for (let i = 0; i < size; i++) {
    const t = (i / (size - 1)) * (stops.length - 1);
    const lo = Math.min(Math.floor(t), stops.length - 2);
    const f = t - lo;
    for (let c = 0; c < 3; c++) lut[3 * i + c] = Math.round(stops[lo][c] * (1 - f) + stops[lo + 1][c] * f);
  }
  return lut;
}

/** How many colours a diverging or sequential scale has (odd: its middle entry is exactly the centre
 * stop, so 0 is white). */
export const LUT_SIZE = 257;
const DIVERGING_LUT = buildLut(DIVERGING_STOPS, LUT_SIZE);

/** A diverging scale on [-limit, +limit]; infinities take the end colours. */
export class DivergingScale {
  constructor(public readonly limit: number) {}

  /** Index into the lookup table, or -1 for NaN. */
  index(value: number): number {
    if (Number.isNaN(value)) return -1;
    const t = this.limit > 0 ? (value / this.limit + 1) / 2 : 0.5;
    return Math.max(0, Math.min(LUT_SIZE - 1, Math.round(t * (LUT_SIZE - 1))));
  }

  rgb(value: number): RGB {
    const i = this.index(value);
    if (i < 0) return NAN_COLOR;
    return [DIVERGING_LUT[3 * i], DIVERGING_LUT[3 * i + 1], DIVERGING_LUT[3 * i + 2]];
  }

  css(value: number): string {
    const [r, g, b] = this.rgb(value);
    return `rgb(${r}, ${g}, ${b})`;
  }

  /** A CSS gradient from -limit to +limit, for legends. */
  static gradient(): string {
    const stops = DIVERGING_STOPS.map(([r, g, b], i) => `rgb(${r}, ${g}, ${b}) ${(100 * i) / (DIVERGING_STOPS.length - 1)}%`);
    return `linear-gradient(to right, ${stops.join(", ")})`;
  }
}

/** The symmetric limit of a diverging scale: the largest finite |value| (1 when there is none). */
export function symmetricLimit(values: Float32Array): number {
  let limit = 0;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    if (v > limit && v !== Infinity) limit = v;
  }
  return limit > 0 ? limit : 1;
}

export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN (not a number)";
  if (!Number.isFinite(value)) return value > 0 ? "+inf" : "-inf";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(3);
  return value.toPrecision(4);
}

// Viridis (11 stops): a sequential scale for quantities on [0, limit], such as firing density.
const SEQUENTIAL_STOPS: RGB[] = [
  [68, 1, 84], [72, 36, 117], [65, 68, 135], [53, 95, 141], [42, 120, 142], [33, 145, 140],
  [34, 168, 132], [68, 191, 112], [122, 209, 81], [189, 223, 38], [253, 231, 37],
];
const SEQUENTIAL_LUT = buildLut(SEQUENTIAL_STOPS, LUT_SIZE);

/** A sequential scale on [0, limit] (values outside are clamped). */
export class SequentialScale {
  constructor(public readonly limit: number = 1) {}

  index(value: number): number {
    if (Number.isNaN(value)) return -1;
    const t = this.limit > 0 ? value / this.limit : 0;
    return Math.max(0, Math.min(LUT_SIZE - 1, Math.round(t * (LUT_SIZE - 1))));
  }

  rgb(value: number): RGB {
    const i = this.index(value);
    if (i < 0) return NAN_COLOR;
    return [SEQUENTIAL_LUT[3 * i], SEQUENTIAL_LUT[3 * i + 1], SEQUENTIAL_LUT[3 * i + 2]];
  }

  static gradient(): string {
    const stops = SEQUENTIAL_STOPS.map(([r, g, b], i) => `rgb(${r}, ${g}, ${b}) ${(100 * i) / (SEQUENTIAL_STOPS.length - 1)}%`);
    return `linear-gradient(to right, ${stops.join(", ")})`;
  }
}

// Flags (dead, saturated): the offending units stand out in a colour no other scale uses.
export const FLAG_ON: RGB = [255, 145, 0];
export const FLAG_OFF: RGB = [224, 224, 224];

/** 1 → FLAG_ON, 0 → FLAG_OFF. */
export class FlagScale {
  readonly limit = 1;

  rgb(value: number): RGB {
    if (Number.isNaN(value)) return NAN_COLOR;
    return value > 0.5 ? FLAG_ON : FLAG_OFF;
  }
}

export type Scale = DivergingScale | SequentialScale | FlagScale;

export function css([r, g, b]: RGB): string {
  return `rgb(${r}, ${g}, ${b})`;
}
