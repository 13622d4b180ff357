import assert from "node:assert/strict";
import { test } from "node:test";
import { DivergingScale, LUT_SIZE, NAN_COLOR, formatValue, symmetricLimit } from "../lib/colors";

test("the diverging scale is white at zero, red above, blue below, magenta for NaN", () => {
  const scale = new DivergingScale(2);
  assert.deepEqual(scale.rgb(0), [247, 247, 247]);
  assert.deepEqual(scale.rgb(2), [103, 0, 31]);
  assert.deepEqual(scale.rgb(-2), [5, 48, 97]);
  assert.deepEqual(scale.rgb(Number.NaN), NAN_COLOR);
  assert.deepEqual(scale.rgb(Infinity), scale.rgb(2), "infinities take the end colours");
  assert.deepEqual(scale.rgb(-Infinity), scale.rgb(-2));
});

test("the same value and limit give the same colour, whatever else is drawn", () => {
  assert.equal(new DivergingScale(0.5).css(0.3), new DivergingScale(0.5).css(0.3));
  assert.notEqual(new DivergingScale(0.5).css(0.3), new DivergingScale(1).css(0.3));
});

test("the symmetric limit ignores infinities and NaN, and is 1 for nothing finite", () => {
  assert.equal(symmetricLimit(new Float32Array([0.5, -3, Infinity, Number.NaN])), 3);
  assert.equal(symmetricLimit(new Float32Array([Number.NaN, Infinity])), 1);
  assert.equal(symmetricLimit(new Float32Array([])), 1);
});

test("values are formatted as text a person reads", () => {
  assert.equal(formatValue(Number.NaN), "NaN (not a number)");
  assert.equal(formatValue(-Infinity), "-inf");
  assert.equal(formatValue(0.12345), "0.1235");
  assert.equal(formatValue(123456), "1.235e+5");
});

test("indices stay inside the scale's LUT_SIZE colours (tables of colours are sized by it), NaN is -1", () => {
  const scale = new DivergingScale(3);
  const indices = [-Infinity, -3, -1e-9, 0, 1e-9, 3, Infinity].map((v) => scale.index(v));
  assert.ok(indices.every((i) => i >= 0 && i < LUT_SIZE), String(indices));
  assert.equal(scale.index(3), LUT_SIZE - 1);
  assert.equal(scale.index(0), (LUT_SIZE - 1) / 2);
  assert.equal(scale.index(Number.NaN), -1);
});
