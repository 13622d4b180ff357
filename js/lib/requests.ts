// Requests from a view to the kernel, with ids, and "latest wins" lanes for drags and typing.
// The kernel answers each request with {type: "response", id, ok, error?} after it has updated the
// widget's traits, so the new state has arrived by the time the promise resolves.

import type { AnyModel } from "@anywidget/types";

export interface Response {
  type: "response";
  id: number;
  ok: boolean;
  error?: string;
  data?: unknown;
}

interface Open {
  resolve: (data: unknown) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Queued {
  kind: string;
  args: Record<string, unknown>;
  resolve: (data: unknown) => void;
  reject: (error: Error) => void;
}

export class Superseded extends Error {
  constructor() {
    super("superseded by a newer request");
  }
}

const TIMEOUT_MS = 120_000; // a dead kernel must not block a lane for ever

export class Requests {
  // Every view of a model hears every response: ids start at random so views never take each other's.
  private nextId = Math.floor(Math.random() * 2 ** 30) + 1;
  private readonly open = new Map<number, Open>();
  private readonly lanes = new Map<string, { busy: boolean; pending: Queued | null }>();
  private readonly onMessage: (msg: unknown) => void;

  /** ``onBusy`` is told when the first request starts and when the last one ends. */
  constructor(private readonly model: AnyModel, private readonly onBusy: (busy: boolean) => void = () => {}) {
    this.onMessage = (msg: unknown) => {
      const response = msg as Response;
      if (!response || response.type !== "response") return;
      const entry = this.open.get(response.id);
      if (!entry) return; // another view's request
      clearTimeout(entry.timer);
      this.open.delete(response.id);
      if (response.ok) entry.resolve(response.data);
      else entry.reject(new Error(response.error ?? "the kernel reported an error"));
      if (this.open.size === 0) this.onBusy(false);
    };
    model.on("msg:custom", this.onMessage);
  }

  /** Send one request; resolves with the kernel's answer. */
  send(kind: string, args: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.open.delete(id);
        if (this.open.size === 0) this.onBusy(false);
        reject(new Error(`no answer from the kernel to ${kind} within ${TIMEOUT_MS / 1000} s`));
      }, TIMEOUT_MS);
      if (this.open.size === 0) this.onBusy(true);
      this.open.set(id, { resolve, reject, timer });
      this.model.send({ type: "request", id, kind, args });
    });
  }

  /** At most one request in flight per lane; a newer one replaces any pending one (latest wins). */
  latest(lane: string, kind: string, args: Record<string, unknown> = {}): Promise<unknown> {
    let state = this.lanes.get(lane);
    if (!state) {
      state = { busy: false, pending: null };
      this.lanes.set(lane, state);
    }
    const current = state;
    return new Promise((resolve, reject) => {
      if (current.busy) {
        current.pending?.reject(new Superseded());
        current.pending = { kind, args, resolve, reject };
        return;
      }
      const run = (item: Queued) => {
        current.busy = true;
        this.send(item.kind, item.args).then(item.resolve, item.reject).finally(() => {
          current.busy = false;
          const next = current.pending;
          current.pending = null;
          if (next) run(next);
        });
      };
      run({ kind, args, resolve, reject });
    });
  }

  dispose(): void {
    this.model.off("msg:custom", this.onMessage);
    for (const entry of this.open.values()) clearTimeout(entry.timer);
    this.open.clear();
  }
}
