// The twin of neurowidgets/widgets/wire.py: {dtype, shape, data} ↔ typed arrays.

export type WireDtype = "float16" | "float32" | "uint8" | "int32";

export interface WireArray {
  dtype: WireDtype;
  shape: number[];
  data: DataView;
}

export interface Decoded<T> {
  values: T;
  shape: number[];
}

const HALF_TABLE = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0) table[h] = sign * 2 ** -14 * (fraction / 1024);
    else if (exponent === 31) table[h] = fraction ? NaN : sign * Infinity;
    else table[h] = sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
  }
  return table;
})();

/** Decode float wire arrays to Float32Array (float16 widened through a lookup table). */
export function decodeFloat(array: WireArray): Decoded<Float32Array> {
  const { data, dtype, shape } = array;
  const size = shape.reduce((a, b) => a * b, 1);
  if (dtype === "float32") {
    // Copy: the DataView may not be 4-byte aligned inside its buffer.
    const bytes = new Uint8Array(data.buffer, data.byteOffset, size * 4).slice();
    return { values: new Float32Array(bytes.buffer), shape };
  }
  if (dtype === "float16") {
    const values = new Float32Array(size);
    for (let i = 0; i < size; i++) values[i] = HALF_TABLE[data.getUint16(2 * i, true)];
    return { values, shape };
  }
  throw new Error(`expected a float array on the wire, got ${dtype}`);
}

export function decodeBytes(array: WireArray): Decoded<Uint8Array> {
  if (array.dtype !== "uint8") throw new Error(`expected uint8 on the wire, got ${array.dtype}`);
  const size = array.shape.reduce((a, b) => a * b, 1);
  return { values: new Uint8Array(array.data.buffer, array.data.byteOffset, size), shape: array.shape };
}
