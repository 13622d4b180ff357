// Generated from the widgets' @handles methods by `python -m neurowidgets.widgets.wire > js/lib/schema.ts`:
// do not edit (tests/widgets/test_wire_schema.py checks it is current).

/** The arguments of each request kind the kernel answers. */
export interface RequestArgs {
  cancel_sweep: Record<string, never>;
  clear: Record<string, never>;
  edit: { mode: string; strength: number };
  occlude: { rect: number[] };
  open_component: { index: number };
  open_example: { index: number };
  sample: { size: number };
  select_block: { block: number };
  select_head: { head: number };
  select_position: { position: number };
  set_target: { text: string };
  set_text: { row: number; text: string };
  sync_patches: Record<string, never>;
  tap: { chosen: Record<string, unknown[]> };
}

export type RequestKind = keyof RequestArgs;

export interface RequestMessage<K extends RequestKind = RequestKind> {
  type: "request";
  id: number | string;
  kind: K;
  args: RequestArgs[K];
}

export interface ResponseMessage {
  type: "response";
  id: number | string;
  ok: boolean;
  error?: string;
  cancelled?: boolean; // a background job's answer: a newer request of its kind (or shutdown) cancelled it
  data?: unknown;
}

/** A part of the answer to a request that a background job answers: its progress, before the response. */
export interface ProgressMessage {
  type: "progress";
  id: number | string;
  data: unknown;
}

export interface PatchMessage {
  type: "patch";
  patches: Record<string, Record<string, unknown>>;
  buffer_paths: (string | number)[][];
}
