// Requests and latest-wins lanes against a model stub that answers like the kernel (widgets/base.py).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AnyModel } from "@anywidget/types";
import { Requests, Superseded, pending } from "../lib/requests";

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
  const requests = new Requests(kernel as unknown as AnyModel);
  const track = pending((b) => busy.push(b));
  return { kernel, busy, requests, track };
}

test("a request resolves with the kernel's data, and its view's busy brackets it", async () => {
  const { kernel, busy, requests, track } = setUp();
  const answer = track(requests.send("open_example", { index: 3 }));
  assert.deepEqual(kernel.sent[0].args, { index: 3 });
  kernel.answer(0, true, { ok: 1 });
  assert.deepEqual(await answer, { ok: 1 });
  assert.deepEqual(busy, [true, false]);
  requests.dispose();
});

test("an error answer rejects with the kernel's message", async () => {
  const { kernel, requests } = setUp();
  const answer = requests.send("clear");
  kernel.answer(0, false);
  await assert.rejects(answer, /boom/);
  requests.dispose();
});

test("a lane keeps one request in flight and runs only the newest of those that waited", async () => {
  const { kernel, requests } = setUp();
  const first = requests.latest("patch", "occlude", { rect: [1] });
  const second = requests.latest("patch", "occlude", { rect: [2] });
  const third = requests.latest("patch", "occlude", { rect: [3] });
  assert.equal(kernel.sent.length, 1, "one in flight");
  await assert.rejects(second, Superseded);
  kernel.answer(0);
  await first;
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(kernel.sent.map((m) => m.args.rect), [[1], [3]], "the newest replaced the pending one");
  kernel.answer(1);
  await third;
  requests.dispose();
});

test("a kind outside the schema, or wrong arguments, do not compile", () => {
  const requests = new Requests(new KernelStub() as unknown as AnyModel);
  // @ts-expect-error: no handler answers "ocllude"
  void requests.send("ocllude", { rect: [1] }).catch(() => {});
  // @ts-expect-error: occlude takes a rect
  void requests.send("occlude", { row: 1 }).catch(() => {});
  requests.dispose();
});

test("two views of one model never take each other's answers", async () => {
  const kernel = new KernelStub();
  const a = new Requests(kernel as unknown as AnyModel);
  const b = new Requests(kernel as unknown as AnyModel);
  const fromA = a.send("clear");
  const fromB = b.send("cancel_sweep");
  kernel.answer(1, true, "for b");
  kernel.answer(0, true, "for a");
  assert.equal(await fromA, "for a");
  assert.equal(await fromB, "for b");
  a.dispose();
  b.dispose();
});
