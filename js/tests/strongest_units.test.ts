// The worked example's panel (docs/ARCHITECTURE.md): its ranking, without a page.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LayerValues } from "../lib/layer_state";
import { strongestUnits } from "../strongest_units";

test("units are ranked by their max over the example's real positions", () => {
  // 2 examples × 2 positions × 3 units; example 1's second position is padding (length 1).
  const values = new LayerValues(new Float32Array([1, 5, 2, 4, 0, NaN, 9, 9, 9, 0, 1, 3]), 2, 2, 3);
  assert.deepEqual(strongestUnits(values, 0, [], 3).units, [1, 0, 2]); // unit 2 has a NaN: last
  assert.deepEqual(strongestUnits(values, 1, [2, 1], 2).units, [0, 1]); // 9, 9, 9 at its one real position
  assert.equal(strongestUnits(values, 0, [], 3).maxima[0], 4);
});
