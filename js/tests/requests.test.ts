// Requests and latest-wins lanes against a model stub that answers like the kernel (widgets/base.py).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AnyModel } from "@anywidget/types";
import { Requests, Superseded } from "../lib/requests";

type Listener = (msg: unknown) => void;

class KernelStub {
  sent: { id: number; kind: string; args: Record<string, unknown> }[] = [];
  private listeners: Listener[] = [];
  on(_event: string, listener: Listener): void {
    this.listeners.push(listener);
  }
  off(_event: string, listener: Listener): void {
    this.listeners = this.listeners.filter((l) => l !== listener);
  }
  send(msg: { id: number; kind: string; args: Record<string, unknown> }): void {
    this.sent.push(msg);
  }
  answer(index: number, ok = true, data?: unknown): void {
    const { id } = this.sent[index];
    for (const listener of [...this.listeners]) listener({ type: "response", id, ok, data, error: ok ? undefined : "boom" });
  }
}

function setUp() {
  const kernel = new KernelStub();
  const busy: boolean[] = [];
  const requests = new Requests(kernel as unknown as AnyModel, (b) => busy.push(b));
  return { kernel, busy, requests };
}

test("a request resolves with the kernel's data, and busy brackets it", async () => {
  const { kernel, busy, requests } = setUp();
  const answer = requests.send("card", { unit: 3 });
  assert.deepEqual(kernel.sent[0].args, { unit: 3 });
  kernel.answer(0, true, { ok: 1 });
  assert.deepEqual(await answer, { ok: 1 });
  assert.deepEqual(busy, [true, false]);
  requests.dispose();
});

test("an error answer rejects with the kernel's message", async () => {
  const { kernel, requests } = setUp();
  const answer = requests.send("edit");
  kernel.answer(0, false);
  await assert.rejects(answer, /boom/);
  requests.dispose();
});

test("a lane keeps one request in flight and runs only the newest of those that waited", async () => {
  const { kernel, requests } = setUp();
  const first = requests.latest("drag", "move", { x: 1 });
  const second = requests.latest("drag", "move", { x: 2 });
  const third = requests.latest("drag", "move", { x: 3 });
  assert.equal(kernel.sent.length, 1, "one in flight");
  await assert.rejects(second, Superseded);
  kernel.answer(0);
  await first;
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(kernel.sent.map((m) => m.args.x), [1, 3], "the newest replaced the pending one");
  kernel.answer(1);
  await third;
  requests.dispose();
});

test("two views of one model never take each other's answers", async () => {
  const kernel = new KernelStub();
  const a = new Requests(kernel as unknown as AnyModel);
  const b = new Requests(kernel as unknown as AnyModel);
  const fromA = a.send("x");
  const fromB = b.send("y");
  kernel.answer(1, true, "for b");
  kernel.answer(0, true, "for a");
  assert.equal(await fromA, "for a");
  assert.equal(await fromB, "for b");
  a.dispose();
  b.dispose();
});
