// Requests and latest-wins lanes against a model stub that answers like the kernel (widgets/base.py).
import assert from "node:assert/strict";
import { mock, test } from "node:test";
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
  part(index: number, data: unknown): void {
    const { id } = this.sent[index];
    for (const listener of [...this.listeners]) listener({ type: "progress", id, data });
  }
  cancel(index: number): void {
    const { id } = this.sent[index];
    for (const listener of [...this.listeners]) listener({ type: "response", id, ok: false, cancelled: true });
  }
}

/** Whether ``promise`` has settled by now (after the callbacks already queued have run). */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(() => (done = true), () => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
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

test("a streamed request hears its parts in order, then resolves with the final answer", async () => {
  const { kernel, requests } = setUp();
  const parts: unknown[] = [];
  const answer = requests.stream("sample", { size: 64 }, (part) => parts.push(part));
  assert.deepEqual(kernel.sent[0], { type: "request", id: kernel.sent[0].id, kind: "sample", args: { size: 64 } });
  kernel.part(0, { done: 8 });
  kernel.part(0, { done: 16 });
  assert.deepEqual(parts, [{ done: 8 }, { done: 16 }]);
  assert.equal(await settled(answer), false, "parts do not settle it");
  kernel.answer(0, true, { text: "the effect" });
  assert.deepEqual(await answer, { text: "the effect" });
  kernel.part(0, { done: 32 }); // late: the request is closed
  assert.deepEqual(parts, [{ done: 8 }, { done: 16 }]);
  requests.dispose();
});

test("a cancelled answer rejects with Superseded; a lane carries only its request in flight's parts", async () => {
  const { kernel, requests } = setUp();
  const first: unknown[] = [];
  const second: unknown[] = [];
  const running = requests.latestStream("sample", "sample", { size: 8 }, (part) => first.push(part));
  const waiting = requests.latestStream("sample", "sample", { size: 16 }, (part) => second.push(part));
  kernel.part(0, "8: 4");
  kernel.cancel(0); // the kernel's job for it was cancelled (a newer request of its kind)
  await assert.rejects(running, Superseded);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(kernel.sent.map((m) => m.args.size), [8, 16], "the waiting one runs next");
  kernel.part(1, "16: 4");
  kernel.answer(1, true, "done");
  assert.equal(await waiting, "done");
  assert.deepEqual([first, second], [["8: 4"], ["16: 4"]]);
  const plain = requests.send("sample", { size: 1 }); // a plain send is cancelled alike
  kernel.cancel(2);
  await assert.rejects(plain, Superseded);
  requests.dispose();
});

test("a streamed request times out after a silence, and each part restarts the timer", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { kernel, requests } = setUp();
    const parts: unknown[] = [];
    const answer = requests.stream("sample", { size: 8 }, (part) => parts.push(part));
    for (let i = 1; i <= 3; i++) {
      mock.timers.tick(100_000); // under the timeout since the last word, 300 s in all
      kernel.part(0, i);
    }
    assert.equal(await settled(answer), false, "a job still sending parts is not a dead kernel");
    assert.deepEqual(parts, [1, 2, 3]);
    mock.timers.tick(120_000); // then silence
    await assert.rejects(answer, /no answer from the kernel to sample within 120 s/);
    requests.dispose();
  } finally {
    mock.timers.reset();
  }
});
