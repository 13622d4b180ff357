// The codec's twin contract with neurowidgets/widgets/wire.py: bytes written by numpy decode to the same values.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeBytes, decodeFloat, type WireArray } from "../lib/codec";

function wire(dtype: WireArray["dtype"], shape: number[], bytes: Uint8Array, offset = 0): WireArray {
  // A DataView that starts inside a larger buffer, as a message's buffers arrive.
  const buffer = new Uint8Array(bytes.length + offset);
  buffer.set(bytes, offset);
  return { dtype, shape, data: new DataView(buffer.buffer, offset, bytes.length) };
}

test("float16 values decode exactly, with NaN and infinities kept", () => {
  // numpy: np.array([0, 1, -2.5, 65504, 6e-8, nan, inf, -inf], np.float16).tobytes()
  const halves = [0x0000, 0x3c00, 0xc100, 0x7bff, 0x0001, 0x7e00, 0x7c00, 0xfc00];
  const bytes = new Uint8Array(new Uint16Array(halves).buffer);
  const { values, shape } = decodeFloat(wire("float16", [2, 4], bytes, 3));
  assert.deepEqual(shape, [2, 4]);
  assert.deepEqual(Array.from(values.slice(0, 4)), [0, 1, -2.5, 65504]);
  assert.equal(values[4], 2 ** -24);
  assert.ok(Number.isNaN(values[5]));
  assert.equal(values[6], Infinity);
  assert.equal(values[7], -Infinity);
});

test("float32 values decode from an unaligned view", () => {
  const source = new Float32Array([1.5, -3.25, 1e-30]);
  const { values } = decodeFloat(wire("float32", [3], new Uint8Array(source.buffer), 1));
  assert.deepEqual(Array.from(values), Array.from(source));
});

test("uint8 pixels decode without a copy of the wrong size", () => {
  const { values, shape } = decodeBytes(wire("uint8", [2, 2], new Uint8Array([0, 127, 128, 255]), 5));
  assert.deepEqual(Array.from(values), [0, 127, 128, 255]);
  assert.deepEqual(shape, [2, 2]);
});

test("a wrong dtype says what was expected", () => {
  assert.throws(() => decodeFloat(wire("uint8", [1], new Uint8Array([1]))), /expected a float array/);
  assert.throws(() => decodeBytes(wire("float32", [1], new Uint8Array(4))), /expected uint8/);
});
