// BokehHost: a bokeh figure (its bokeh.embed.json_item) inside an anywidget. BokehJS comes from the
// kernel's installed Python `bokeh` package (one shared hidden widget, `_bokehjs`, same version, no
// CDN) and is injected into the page once. After embedding, the figure changes only in place: each
// entry of `patches` (model id → properties, arrays as binary buffers) is set on the drawn model. The
// plot shows the kernel's `selections`; a tap is sent as a "tap" request carrying what was chosen (the
// key column's values at the tapped rows, see BokehHost._tap), never written into `selections`: some
// hosts apply each state write twice (marimo), and a tap must not be applied twice.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { decodeBytes, decodeFloat, decodeInt, isWireArray } from "./lib/codec";
import { Requests } from "./lib/requests";
import { element } from "./lib/ui";

type Patches = Record<string, Record<string, unknown>>; // model id → properties (see BokehHost.update)

export interface BokehState {
  item: string; // the figure's JSON item, as text (see bokeh_host.py)
  patches: Patches;
  selections: Record<string, number[]>;
  _tap_keys: Record<string, string>; // source name → the column saying what a row is ("": its index)
  _bokehjs: string;
  error: string;
}

// Minimal shapes of the BokehJS objects used here (BokehJS has no types in this repo).
interface Signal {
  connect(slot: () => void): void;
  disconnect(slot: () => void): void;
}
interface BokehModel {
  setv(properties: Record<string, unknown>): void;
}
interface Source extends BokehModel {
  selected: { indices: number[]; properties: { indices: { change: Signal } } };
  get_column(name: string): ArrayLike<unknown> | null;
}
interface BokehDocument {
  get_model_by_id(id: string): BokehModel | null;
  get_model_by_name(name: string): BokehModel | null;
}
interface BokehGlobal {
  version: string;
  embed: { embed_item(item: unknown, target: HTMLElement): Promise<unknown> };
}

const REVISION = "__revision__"; // see BokehHost.update
const LOADING_KEY = "__neurowidgetsBokehJS";
type Win = Window & { Bokeh?: BokehGlobal; [LOADING_KEY]?: Promise<BokehGlobal> };

/** BokehJS in this page: the one already there if it is the kernel's version, else injected once. */
async function loadBokeh(model: AnyModel<BokehState>): Promise<BokehGlobal> {
  const win = window as Win;
  const ref = model.get("_bokehjs");
  const carrier = await model.widget_manager.get_model<{ source: string; version: string }>(
    ref.replace(/^IPY_MODEL_/, ""),
  );
  const version = carrier.get("version");
  if (win.Bokeh?.version === version) return win.Bokeh;
  if (!win[LOADING_KEY]) {
    win[LOADING_KEY] = new Promise<BokehGlobal>((resolve, reject) => {
      const script = document.createElement("script");
      script.dataset.neurowidgetsBokeh = version;
      script.textContent = carrier.get("source"); // inline: runs on insertion, nothing is fetched
      document.head.appendChild(script);
      if (win.Bokeh) resolve(win.Bokeh);
      else reject(new Error(`BokehJS ${version} did not define window.Bokeh`));
    });
  }
  return win[LOADING_KEY];
}

/** Wire arrays back to typed arrays (BokehJS takes them as columns), everything else as it is. */
function unpack(value: unknown): unknown {
  if (isWireArray(value)) {
    if (value.dtype === "uint8") return decodeBytes(value).values.slice();
    if (value.dtype === "int32") return decodeInt(value).values;
    return decodeFloat(value).values;
  }
  if (Array.isArray(value) || typeof value !== "object" || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unpack(v)]));
}

/** Put a binary buffer back where the kernel took it out (ipywidgets' buffer paths). */
function putAt(target: Record<string, unknown>, path: (string | number)[], value: unknown): void {
  let node = target as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  node[path[path.length - 1]] = value;
}

function documentOf(views: unknown): BokehDocument | null {
  // embed_item resolves to a ViewManager whose root views carry the document.
  const manager = views as { roots?: Iterable<{ model: { document: BokehDocument } }> };
  for (const view of manager?.roots ?? []) return view.model.document;
  return null;
}

function sameIndices(a: number[], b: number[] | undefined): boolean {
  return !!b && a.length === b.length && a.every((v, i) => v === b[i]);
}

/** For the model's lifetime, not a view's: update() in the kernel sends only what changed ("patch"
 * messages); merge each into the model's `patches` (kept locally, so that a saved notebook has every
 * change, drawn or not), which every view then sets on its drawn models. The kernel ignores this copy
 * when the next change of the page carries it along. */
export function initializeBokeh({ model }: { model: AnyModel<BokehState> }): () => void {
  const onMessage = (message: unknown, buffers: unknown[]) => {
    const msg = message as { type?: string; patches?: Patches; buffer_paths?: (string | number)[][] };
    if (msg?.type !== "patch" || !msg.patches) return;
    const delta = msg.patches as Record<string, unknown>;
    // As they came: the codec reads whichever form the manager gave them in (see codec.ts).
    (msg.buffer_paths ?? []).forEach((path, i) => putAt(delta, path, buffers[i]));
    const merged: Patches = { ...model.get("patches") };
    for (const [id, entry] of Object.entries(msg.patches)) merged[id] = { ...(merged[id] ?? {}), ...entry };
    model.set("patches", merged);
  };
  model.on("msg:custom", onMessage);
  // Patch messages sent before this model was set up were lost: ask for them all, once.
  model.send({ type: "request", id: `sync-${Math.random().toString(36).slice(2)}`, kind: "sync_patches", args: {} });
  return () => model.off("msg:custom", onMessage);
}

/** Draw the figure of a BokehHost model into `parent`; returns the cleanup. Other views reuse it. */
/** Resolves true once ``el`` is in the document (checked each frame), false if the view is disposed first. */
function attached(el: HTMLElement, disposed: () => boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const check = () => {
      if (el.isConnected) resolve(true);
      else if (disposed()) resolve(false);
      else requestAnimationFrame(check);
    };
    check();
  });
}

export function renderBokeh(model: AnyModel<BokehState>, parent: HTMLElement): () => void {
  const errorBox = element("div", "nw-error", parent);
  const plot = element("div", "nw-bokeh-plot", parent);
  const requests = new Requests(model);
  const showError = () => {
    const text = model.get("error");
    errorBox.textContent = text;
    errorBox.hidden = !text;
  };
  showError();

  let doc: BokehDocument | null = null;
  let disposed = false;
  const sources = new Map<string, Source>();
  const listeners = new Map<string, () => void>();
  const disconnect = () => {
    for (const [name, slot] of listeners) sources.get(name)?.selected.properties.indices.change.disconnect(slot);
    listeners.clear();
    sources.clear();
  };

  const fromKernel = () => {
    const wanted = model.get("selections");
    for (const [name, source] of sources) {
      const indices = wanted[name] ?? [];
      if (!sameIndices(indices, source.selected.indices)) source.selected.indices = [...indices];
    }
  };
  const applied = new Map<string, unknown>(); // model id → the revision of its properties set last
  const applyPatches = () => {
    if (!doc) return;
    for (const [id, entry] of Object.entries(model.get("patches"))) {
      const { [REVISION]: revision, ...properties } = entry;
      if (applied.get(id) === revision) continue;
      doc.get_model_by_id(id)?.setv(unpack(properties) as Record<string, unknown>);
      applied.set(id, revision);
    }
    plot.dataset.patched = String(Number(plot.dataset.patched ?? 0) + 1);
  };

  const draw = async () => {
    disconnect();
    doc = null;
    applied.clear();
    plot.replaceChildren();
    delete plot.dataset.ready;
    const Bokeh = await loadBokeh(model);
    // BokehJS embeds only into an element under <body>; a host may render a view before attaching it
    // (JupyterLab restoring a saved notebook does).
    if (!(await attached(plot, () => disposed))) return;
    doc = documentOf(await Bokeh.embed.embed_item(JSON.parse(model.get("item")), plot));
    applyPatches();
    // One tap changes several sources' selections, one signal each: send them as one request. A
    // signal that leaves a source as the kernel has it is the kernel's own change (fromKernel).
    const touched = new Set<string>();
    const fromBokeh = () => {
      const kernel = model.get("selections");
      const keys = model.get("_tap_keys");
      const chosen: Record<string, unknown[]> = {};
      for (const name of touched) {
        const source = sources.get(name);
        const rows = source ? [...source.selected.indices] : [];
        if (!source || sameIndices(rows, kernel[name])) continue;
        const column = keys[name] ? source.get_column(keys[name]) : null;
        chosen[name] = column ? rows.map((i) => column[i]) : rows;
      }
      touched.clear();
      if (Object.keys(chosen).length === 0) return;
      // Then the plot shows the kernel's selections again, whatever it made of the tap (one it ignored
      // or answered elsewhere is undone); an error is shown in the widget through `error`.
      requests.send("tap", { chosen }).catch(() => undefined).finally(fromKernel);
    };
    for (const name of Object.keys(model.get("selections"))) {
      const source = doc?.get_model_by_name(name) as Source | null;
      if (!source) continue;
      const slot = () => {
        if (touched.size === 0) queueMicrotask(fromBokeh);
        touched.add(name);
      };
      sources.set(name, source);
      listeners.set(name, slot);
      source.selected.properties.indices.change.connect(slot);
    }
    fromKernel();
    plot.dataset.ready = "1";
  };
  const drawReporting = () =>
    draw().catch((error: unknown) => {
      errorBox.textContent = `bokeh: ${error instanceof Error ? error.message : String(error)}`;
      errorBox.hidden = false;
    });
  void drawReporting();
  model.on("change:error", showError);
  model.on("change:item", drawReporting);
  model.on("change:patches", applyPatches);
  model.on("change:selections", fromKernel);
  return () => {
    disposed = true;
    disconnect();
    requests.dispose();
    model.off("change:error", showError);
    model.off("change:item", drawReporting);
    model.off("change:patches", applyPatches);
    model.off("change:selections", fromKernel);
  };
}

function render({ model, el }: RenderProps<BokehState>): () => void {
  el.classList.add("nw-root", "nw-bokeh-host");
  return renderBokeh(model, el);
}

export default { initialize: initializeBokeh, render };
