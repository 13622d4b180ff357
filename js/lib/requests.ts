// Requests from a view to the kernel, with ids, and "latest wins" lanes for drags and typing.
// The kernel answers each request with {type: "response", id, ok, error?} after it has updated the
// widget's traits, so the new state has arrived by the time the promise resolves. A request that a
// background job answers gets its progress first, as parts {type: "progress", id, data}, and a
// response with `cancelled` when a newer request of its kind cancelled the job. Kinds and their
// arguments are typed by the schema generated from the kernel's handlers (schema.ts).

import type { AnyModel } from "@anywidget/types";
import type { ProgressMessage, RequestArgs, RequestKind, ResponseMessage } from "./schema";

/** The arguments of a request of kind ``K``: checked for every kind of the schema (optional where it
 * takes none); a kind outside it does not compile, and only a kind typed as a plain string goes
 * unchecked. */
export type ArgsOf<K extends string> = string extends K ? [Record<string, unknown>?]
  : K extends RequestKind ? ({} extends RequestArgs[K] ? [RequestArgs[K]?] : [RequestArgs[K]])
  : [never];

/** Told each part of an answer (a background job's progress), in order. */
export type OnProgress = (data: unknown) => void;

interface Open {
  kind: string;
  resolve: (data: unknown) => void;
  reject: (error: Error) => void;
  onProgress?: OnProgress;
  timer: ReturnType<typeof setTimeout>;
}

interface Queued {
  kind: string;
  args: Record<string, unknown>;
  onProgress?: OnProgress;
  resolve: (data: unknown) => void;
  reject: (error: Error) => void;
}

export class Superseded extends Error {
  constructor() {
    super("superseded by a newer request");
  }
}

// A dead kernel must not block a lane for ever: a request fails after this long without a word from
// the kernel (an answer, or a part of one).
const TIMEOUT_MS = 120_000;

export class Requests {
  // Every view of a model hears every response: ids start at random so views never take each other's.
  private nextId = Math.floor(Math.random() * 2 ** 30) + 1;
  private readonly open = new Map<number, Open>();
  private readonly lanes = new Map<string, { busy: boolean; pending: Queued | null }>();
  private readonly onMessage: (msg: unknown) => void;

  constructor(private readonly model: AnyModel) {
    this.onMessage = (msg: unknown) => {
      const message = msg as ResponseMessage | ProgressMessage;
      if (!message || (message.type !== "response" && message.type !== "progress")) return;
      const id = message.id as number;
      const entry = this.open.get(id);
      if (!entry) return; // another view's request
      clearTimeout(entry.timer);
      if (message.type === "progress") {
        entry.timer = this.expire(id, entry.kind, entry.reject); // a job still working is not a dead kernel
        entry.onProgress?.(message.data);
        return;
      }
      this.open.delete(id);
      if (message.ok) entry.resolve(message.data);
      else if (message.cancelled) entry.reject(new Superseded());
      else entry.reject(new Error(message.error ?? "the kernel reported an error"));
    };
    model.on("msg:custom", this.onMessage);
  }

  /** Send one request; resolves with the kernel's answer. */
  send<K extends string>(kind: K, ...[args = {}]: ArgsOf<K>): Promise<unknown> {
    return this.request(kind, args);
  }

  /** Send one request whose answer may come in parts: ``onProgress`` is told each one, in order, and the
   * promise resolves with the final answer (rejects with Superseded if a newer request cancelled it). */
  stream<K extends string>(kind: K, args: ArgsOf<K>[0], onProgress: OnProgress): Promise<unknown> {
    return this.request(kind, args ?? {}, onProgress);
  }

  /** At most one request in flight per lane; a newer one replaces any pending one (latest wins). */
  latest<K extends string>(lane: string, kind: K, ...[args = {}]: ArgsOf<K>): Promise<unknown> {
    return this.queue(lane, kind, args);
  }

  /** ``latest`` for a request answered in parts (see ``stream``): only the one in flight has parts. */
  latestStream<K extends string>(
    lane: string, kind: K, args: ArgsOf<K>[0], onProgress: OnProgress,
  ): Promise<unknown> {
    return this.queue(lane, kind, args ?? {}, onProgress);
  }

  private request(kind: string, args: Record<string, unknown>, onProgress?: OnProgress): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.open.set(id, { kind, resolve, reject, onProgress, timer: this.expire(id, kind, reject) });
      this.model.send({ type: "request", id, kind, args });
    });
  }

  /** The timer that gives up on request ``id`` after TIMEOUT_MS without a word from the kernel. */
  private expire(id: number, kind: string, reject: (error: Error) => void): ReturnType<typeof setTimeout> {
    return setTimeout(() => {
      this.open.delete(id);
      reject(new Error(`no answer from the kernel to ${kind} within ${TIMEOUT_MS / 1000} s`));
    }, TIMEOUT_MS);
  }

  private queue(
    lane: string, kind: string, args: Record<string, unknown>, onProgress?: OnProgress,
  ): Promise<unknown> {
    let state = this.lanes.get(lane);
    if (!state) {
      state = { busy: false, pending: null };
      this.lanes.set(lane, state);
    }
    const current = state;
    return new Promise((resolve, reject) => {
      if (current.busy) {
        current.pending?.reject(new Superseded());
        current.pending = { kind, args, onProgress, resolve, reject };
        return;
      }
      const run = (item: Queued) => {
        current.busy = true;
        this.request(item.kind, item.args, item.onProgress).then(item.resolve, item.reject).finally(() => {
          current.busy = false;
          const next = current.pending;
          current.pending = null;
          if (next) run(next);
        });
      };
      run({ kind, args, onProgress, resolve, reject });
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
