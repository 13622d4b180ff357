// BokehHost: a bokeh figure (its bokeh.embed.json_item) inside an anywidget. BokehJS comes from the
// kernel's installed Python `bokeh` package (the `_bokehjs` trait, same version, no CDN) and is
// injected into the page once; the selection of the ColumnDataSource named `selection_source` is
// synced with the `selected_indices` trait both ways.

import type { RenderProps } from "@anywidget/types";

export interface BokehState {
  item: Record<string, unknown>;
  bokeh_version: string;
  _bokehjs: string;
  selection_source: string;
  selected_indices: number[];
  error: string;
}

// Minimal shapes of the BokehJS objects used here (BokehJS has no types in this repo).
interface Signal {
  connect(slot: () => void): void;
  disconnect(slot: () => void): void;
}
interface Selection {
  indices: number[];
  properties: { indices: { change: Signal } };
}
interface Source {
  selected: Selection;
}
interface BokehGlobal {
  version: string;
  embed: { embed_item(item: unknown, target: HTMLElement): Promise<unknown> };
}

const LOADING_KEY = "__neurowidgetsBokehJS";

type Win = Window & { Bokeh?: BokehGlobal; [LOADING_KEY]?: Promise<BokehGlobal> };

/** BokehJS in this page: the one already there if it is the kernel's version, else injected once. */
export function loadBokeh(version: string, source: string): Promise<BokehGlobal> {
  const win = window as Win;
  if (win.Bokeh?.version === version) return Promise.resolve(win.Bokeh);
  if (!win[LOADING_KEY]) {
    win[LOADING_KEY] = new Promise<BokehGlobal>((resolve, reject) => {
      if (!source) {
        reject(new Error("no BokehJS source was sent by the kernel"));
        return;
      }
      const script = document.createElement("script");
      script.dataset.neurowidgetsBokeh = version;
      script.textContent = source; // inline: runs synchronously on insertion, nothing is fetched
      document.head.appendChild(script);
      if (win.Bokeh) resolve(win.Bokeh);
      else reject(new Error(`BokehJS ${version} did not define window.Bokeh`));
    });
  }
  return win[LOADING_KEY];
}

function findSource(views: unknown, name: string): Source | null {
  // embed_item resolves to a ViewManager: its root views carry the document.
  const manager = views as { roots?: Iterable<{ model: { document: unknown } }> };
  for (const view of manager?.roots ?? []) {
    const doc = view.model.document as { get_model_by_name(n: string): unknown };
    const found = doc?.get_model_by_name(name);
    if (found) return found as Source;
  }
  return null;
}

function sameIndices(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

async function render({ model, el }: RenderProps<BokehState>): Promise<() => void> {
  const root = document.createElement("div");
  root.className = "nw-root nw-bokeh-host";
  const errorBox = document.createElement("div");
  errorBox.className = "nw-error";
  const plot = document.createElement("div");
  plot.className = "nw-bokeh-plot";
  root.append(errorBox, plot);
  el.append(root);

  const showError = () => {
    const text = model.get("error");
    errorBox.textContent = text;
    errorBox.hidden = !text;
  };
  showError();
  model.on("change:error", showError);

  let source: Source | null = null;
  const fromBokeh = () => {
    if (!source) return;
    const indices = [...source.selected.indices];
    if (!sameIndices(indices, model.get("selected_indices"))) {
      model.set("selected_indices", indices);
      model.save_changes();
    }
  };
  const fromKernel = () => {
    if (source && !sameIndices(source.selected.indices, model.get("selected_indices"))) {
      source.selected.indices = [...model.get("selected_indices")];
    }
  };

  const draw = async () => {
    plot.replaceChildren();
    if (source) source.selected.properties.indices.change.disconnect(fromBokeh);
    source = null;
    const Bokeh = await loadBokeh(model.get("bokeh_version"), model.get("_bokehjs"));
    const views = await Bokeh.embed.embed_item(model.get("item"), plot);
    const name = model.get("selection_source");
    source = name ? findSource(views, name) : null;
    if (source) {
      fromKernel();
      source.selected.properties.indices.change.connect(fromBokeh);
    }
    plot.dataset.ready = "1";
  };
  const drawReporting = () =>
    draw().catch((error: unknown) => {
      errorBox.textContent = `bokeh: ${error instanceof Error ? error.message : String(error)}`;
      errorBox.hidden = false;
    });
  await drawReporting();
  model.on("change:item", drawReporting);
  model.on("change:selected_indices", fromKernel);

  return () => {
    if (source) source.selected.properties.indices.change.disconnect(fromBokeh);
    model.off("change:error", showError);
    model.off("change:item", drawReporting);
    model.off("change:selected_indices", fromKernel);
  };
}

export default { render } satisfies { render: (props: RenderProps<BokehState>) => unknown };
