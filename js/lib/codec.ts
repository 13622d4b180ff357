// The twin of neurowidgets/widgets/wire.py: {dtype, shape, data} ↔ typed arrays.

export type WireDtype = "float16" | "float32" | "uint8" | "int32";

// The bytes of an array as the widget manager hands them over: a DataView from ipywidgets' managers
// (JupyterLab, Notebook 7, VS Code, marimo); other managers have been seen to drop binary buffers
// (Colab) and hand over an ArrayBuffer or typed array, base64 text, or the bytes as a plain array.
export type WireBytes = DataView | ArrayBuffer | ArrayBufferView | string | number[] | Record<string, number>;

export interface WireArray {
  dtype: WireDtype;
  shape: number[];
  data: WireBytes;
}

const DTYPES: readonly string[] = ["float16", "float32", "uint8", "int32"];

/** Whether ``value`` has the shape of a wire array (whatever form its bytes arrived in). */
export function isWireArray(value: unknown): value is WireArray {
  const wire = value as WireArray;
  return typeof value === "object" && value !== null && DTYPES.includes(wire.dtype) && Array.isArray(wire.shape) &&
    wire.data !== undefined && wire.data !== null;
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The bytes of ``data`` as a DataView, whichever form the manager handed them over in. */
export function asDataView(data: unknown): DataView {
  if (data instanceof DataView) return data;
  if (data instanceof ArrayBuffer) return new DataView(data);
  if (ArrayBuffer.isView(data)) return new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === "string") {
    const bytes = fromBase64(data.replace(/^data:[^,]*;base64,/, ""));
    return new DataView(bytes.buffer);
  }
  // A plain array of bytes, or a typed array that went through JSON ({"0": 12, "1": 200, …}); a
  // DataView that went through JSON is {}: no bytes (bytesOf says so if some were expected).
  const values = Array.isArray(data) ? data : typeof data === "object" && data !== null ? Object.values(data) : null;
  if (values && values.every((v) => Number.isInteger(v) && v >= 0 && v < 256)) {
    return new DataView(Uint8Array.from(values as number[]).buffer);
  }
  throw new Error(`an array's bytes arrived as ${values ? "an object that is not bytes" : typeof data}`);
}

/** ``array``'s bytes, checked against its dtype and shape. */
function bytesOf(array: WireArray, itemSize: number): DataView {
  const data = asDataView(array.data);
  const size = array.shape.reduce((a, b) => a * b, 1);
  if (data.byteLength < size * itemSize) {
    const why = data.byteLength === 0 ? ": this notebook host dropped the binary buffer" : "";
    throw new Error(`a ${array.dtype} array of shape [${array.shape}] arrived with ${data.byteLength} bytes${why}`);
  }
  return data;
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
  const { dtype, shape } = array;
  const size = shape.reduce((a, b) => a * b, 1);
  if (dtype !== "float32" && dtype !== "float16") throw new Error(`expected a float array on the wire, got ${dtype}`);
  const data = bytesOf(array, dtype === "float32" ? 4 : 2);
  if (dtype === "float32") {
    // Copy: the DataView may not be 4-byte aligned inside its buffer.
    const bytes = new Uint8Array(data.buffer, data.byteOffset, size * 4).slice();
    return { values: new Float32Array(bytes.buffer), shape };
  }
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = HALF_TABLE[data.getUint16(2 * i, true)];
  return { values, shape };
}

export function decodeBytes(array: WireArray): Decoded<Uint8Array> {
  if (array.dtype !== "uint8") throw new Error(`expected uint8 on the wire, got ${array.dtype}`);
  const data = bytesOf(array, 1);
  const size = array.shape.reduce((a, b) => a * b, 1);
  return { values: new Uint8Array(data.buffer, data.byteOffset, size), shape: array.shape };
}

export function decodeInt(array: WireArray): Decoded<Int32Array> {
  if (array.dtype !== "int32") throw new Error(`expected int32 on the wire, got ${array.dtype}`);
  const data = bytesOf(array, 4);
  const size = array.shape.reduce((a, b) => a * b, 1);
  // Copy: the DataView may not be 4-byte aligned inside its buffer.
  const bytes = new Uint8Array(data.buffer, data.byteOffset, size * 4).slice();
  return { values: new Int32Array(bytes.buffer), shape: array.shape };
}
