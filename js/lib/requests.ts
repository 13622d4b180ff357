// Requests from a view to the kernel, with ids, and "latest wins" lanes for drags and typing.
// The kernel answers each request with {type: "response", id, ok, error?} after it has updated the
// widget's traits, so the new state has arrived by the time the promise resolves. Kinds and their
// arguments are typed by the schema generated from the kernel's handlers (schema.ts).

import type { AnyModel } from "@anywidget/types";
import type { RequestArgs, RequestKind, ResponseMessage } from "./schema";

/** The arguments of a request of kind ``K``: checked for every kind of the schema (optional where it
 * takes none); a kind outside it does not compile, and only a kind typed as a plain string goes
 * unchecked. */
export type ArgsOf<K extends string> = string extends K ? [Record<string, unknown>?]
  : K extends RequestKind ? ({} extends RequestArgs[K] ? [RequestArgs[K]?] : [RequestArgs[K]])
  : [never];

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

  constructor(private readonly model: AnyModel) {
    this.onMessage = (msg: unknown) => {
      const response = msg as ResponseMessage;
      if (!response || response.type !== "response") return;
      const entry = this.open.get(response.id as number);
      if (!entry) return; // another view's request
      clearTimeout(entry.timer);
      this.open.delete(response.id as number);
      if (response.ok) entry.resolve(response.data);
      else entry.reject(new Error(response.error ?? "the kernel reported an error"));
    };
    model.on("msg:custom", this.onMessage);
  }

  /** Send one request; resolves with the kernel's answer. */
  send<K extends string>(kind: K, ...[args = {}]: ArgsOf<K>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.open.delete(id);
        reject(new Error(`no answer from the kernel to ${kind} within ${TIMEOUT_MS / 1000} s`));
      }, TIMEOUT_MS);
      this.open.set(id, { resolve, reject, timer });
      this.model.send({ type: "request", id, kind, args });
    });
  }

  /** At most one request in flight per lane; a newer one replaces any pending one (latest wins). */
  latest<K extends string>(lane: string, kind: K, ...[args = {}]: ArgsOf<K>): Promise<unknown> {
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
        this.send(item.kind as string, item.args).then(item.resolve, item.reject).finally(() => {
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

/** Tracks one view's own requests on a channel that every panel of the model shares: ``onBusy(true)``
 * when the first of them starts, ``onBusy(false)`` when the last one is answered or superseded. */
export function pending(onBusy: (busy: boolean) => void): <R>(request: Promise<R>) => Promise<R> {
  let open = 0;
  return (request) => {
    if (open++ === 0) onBusy(true);
    return request.finally(() => {
      if (--open === 0) onBusy(false);
    });
  };
}
