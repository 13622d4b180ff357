// The page's store of one model: decoded once, one colour scale for every panel, found by `_id`.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AnyModel } from "@anywidget/types";
import type { WireArray } from "../lib/codec";
import type { LayerState } from "../lib/layer_state";
import { Store, colourLimit, initializeStore, storeOf } from "../lib/store";

function float32(shape: number[], values: number[]): WireArray {
  return { dtype: "float32", shape, data: new DataView(new Float32Array(values).buffer) };
}

class ModelStub {
  constructor(public state: Record<string, unknown>) {}
  get(key: string): unknown {
    return this.state[key];
  }
  on(): void {}
  off(): void {}
  send(): void {}
}

function storeWith(state: Record<string, unknown>): Store {
  return new Store(new ModelStub({ lengths: [], ...state }) as unknown as AnyModel<LayerState>);
}

test("values are decoded once per array the kernel sends", () => {
  const model = { values: float32([1, 2, 2], [1, -2, 3, 0.5]), lengths: [] };
  const store = storeWith(model);
  const first = store.values;
  assert.equal(store.values, first);
  assert.deepEqual([first.examples, first.positions, first.units], [1, 2, 2]);
  assert.equal(first.value(0, 1, 0), 3);
});

test("the scale's limit is a percentile of the units' largest |values| at real positions, baseline included", () => {
  // Two examples of 2 positions × 2 units; the second has one real position (its second is padding).
  const values = float32([2, 2, 2], [1, -4, 2, Infinity, 3, NaN, 100, 100]);
  // Unit 0: 1, 2, 3 → 3; unit 1: -4, inf, NaN → 4. Index floor(0.99 · 1) of [3, 4]: 3.
  assert.equal(storeWith({ values, lengths: [2, 1] }).scale.limit, 3);
  assert.equal(storeWith({ values, lengths: [] }).scale.limit, 100); // [100, 100]
  const baseline = float32([2, 2], [0, 0, -7, 0]); // unit 0 without the patch: 7
  assert.equal(storeWith({ values, lengths: [2, 1], baseline }).scale.limit, 4); // [4, 7]
  assert.equal(storeWith({ values: null }).scale.limit, 1); // nothing to scale: a unit limit
});

test("a few units with outsized values do not set the scale", () => {
  // 200 units with maxima 0.005…1 and 2 outsized ones ([CLS]-like): the limit stays with the ordinary.
  const maxima = [...Array.from({ length: 200 }, (_, i) => (i + 1) / 200), 500, 900];
  assert.ok(colourLimit([new Float32Array(maxima)], maxima.length) <= 1);
  assert.equal(colourLimit([new Float32Array([0, 0, 0])], 3), 1); // all zero: a unit limit
});

test("initialize builds the store that render finds by the model's _id, and disposes it", () => {
  const model = new ModelStub({ _id: "abc", values: null, lengths: [] }) as unknown as AnyModel<LayerState & { _id: string }>;
  const dispose = initializeStore({ model });
  const store = storeOf(model);
  assert.ok(store instanceof Store);
  assert.equal(storeOf(new ModelStub({ _id: "abc" }) as unknown as AnyModel<LayerState>), store); // another proxy
  dispose();
  assert.throws(() => storeOf(model), /no store for widget abc/);
});
