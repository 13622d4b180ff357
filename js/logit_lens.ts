// LogitLens: the logit lens of the current text as a blocks × positions table (each cell the top token,
// shaded by its probability), the selected position's top 5 of every block, and the direct logit
// attribution of a target token there as bars (embeddings, each block's attention and MLP) and a
// blocks × heads grid. A bar's click opens its layer; a typed token becomes the target. Tokens are text.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { errorBox } from "./lib/store";
import { decodeFloat, type WireArray } from "./lib/codec";
import { DivergingScale, formatValue } from "./lib/colors";
import { TokenStrip, addStyles, sender, textLine, watch, type LMTextState } from "./lib/lm_text";
import { Requests } from "./lib/requests";
import { element } from "./lib/ui";

interface LensState extends LMTextState {
  unavailable: string;
  attribution_note: string;
  lens_tokens: string[][];
  lens_probs: WireArray | null;
  lens_ids: WireArray | null;
  lens_progress: number;
  shown_position: number;
  top_tokens: string[][];
  top_probs: WireArray | null;
  top_ids: WireArray | null;
  target_text: string;
  target: number;
  target_token: string;
  target_note: string;
  dla_labels: string[];
  dla_layers: string[];
  dla: WireArray | null;
  dla_heads: WireArray | null;
  dla_info: { position?: number; target?: number; logit?: number; constant?: number; scale?: number; total?: number };
}

/** A probability as text: three decimals, or two significant digits below 0.001. */
export function probability(p: number): string {
  return p > 0 && p < 0.001 ? p.toExponential(1) : p.toFixed(3);
}

/** A probability as a cell's shade (blue, stronger when surer); dark text on light shades. */
/** A table cell showing ``text`` (as text) shaded by the probability ``p``. */
function probabilityCell(text: string, p: number): HTMLTableCellElement {
  const td = document.createElement("td");
  const alpha = Math.max(0, Math.min(1, p));
  td.textContent = text;
  td.setAttribute("data-prob", String(p));
  td.style.background = `rgba(33, 102, 172, ${alpha.toFixed(3)})`;
  td.style.color = alpha > 0.55 ? "#fff" : "";
  return td;
}

function render({ model, el }: RenderProps<LensState>): () => void {
  addStyles();
  el.classList.add("nw-root", "nw-logit-lens");
  const requests = new Requests(model);
  const send = sender(requests);
  const cleanups: (() => void)[] = [];
  cleanups.push(textLine(el, model, "notice", "nw-lm-notice", "status"));
  cleanups.push(errorBox(el, model as unknown as AnyModel<{ error: string }>));
  cleanups.push(textLine(el, model, "unavailable", "nw-lm-unavailable", "note"));
  const strip = new TokenStrip(el, model, send);

  // -- the lens table ------------------------------------------------------------------------
  const lensTitle = element("div", "nw-lm-note", el);
  const scroll = element("div", "nw-lens-scroll", el);
  const table = element("table", "nw-lens-table", scroll);
  table.setAttribute("aria-label", "logit lens");
  table.addEventListener("click", (event) => {
    const cell = (event.target as HTMLElement).closest("[data-position]");
    if (!cell) return;
    const position = Number(cell.getAttribute("data-position"));
    send("select_position", { position: position === model.get("position") ? -1 : position });
  });
  let lensWire: WireArray | null = null;

  const drawTable = () => {
    const wire = model.get("lens_probs");
    const tokens = model.get("tokens");
    const names = model.get("lens_tokens");
    const progress = model.get("lens_progress");
    table.hidden = !wire;
    lensTitle.hidden = !wire && progress >= 1;
    if (!wire) {
      table.replaceChildren();
      lensWire = null;
      lensTitle.textContent = `Computing the logit lens table… ${Math.round(100 * progress)}%`;
      return;
    }
    lensTitle.textContent = "Logit lens: the top token of each block's residual stream (rows) at each position " +
      "(columns), shaded by its probability; the last row is the model's own prediction. Click a column.";
    if (wire !== lensWire) {
      lensWire = wire;
      const { values, shape } = decodeFloat(wire);
      const [blocks, n] = shape;
      const head = document.createElement("tr");
      head.append(element("th", ""));
      for (let t = 0; t < n; t++) {
        const th = document.createElement("th");
        th.textContent = tokens[t] ?? "";
        th.setAttribute("data-position", String(t));
        th.title = `position ${t}`;
        head.append(th);
      }
      const rows = [head];
      for (let b = 0; b < blocks; b++) {
        const tr = document.createElement("tr");
        const label = document.createElement("th");
        label.textContent = String(b);
        label.title = model.get("blocks")[b] ?? "";
        tr.append(label);
        for (let t = 0; t < n; t++) {
          const p = values[b * n + t];
          const td = probabilityCell(names[b]?.[t] ?? "", p);
          td.title = `block ${b}, position ${t}: ${names[b]?.[t] ?? ""} (p = ${formatValue(p)})`;
          td.setAttribute("data-position", String(t));
          td.setAttribute("data-block", String(b));
          tr.append(td);
        }
        rows.push(tr);
      }
      table.replaceChildren(...rows);
    }
    const shown = model.get("shown_position");
    for (const cell of table.querySelectorAll("[data-position]")) {
      cell.classList.toggle("nw-lm-selected", Number(cell.getAttribute("data-position")) === shown);
    }
  };
  cleanups.push(watch(model, ["lens_probs", "lens_tokens", "lens_progress", "tokens", "shown_position"], drawTable));

  // -- the selected position: top 5 per block, and the attribution ------------------------------
  const row = element("div", "nw-lm-row", el);
  const topBox = element("div", "", row);
  const topTitle = element("div", "nw-lm-note", topBox);
  const top = element("table", "nw-lens-top", topBox);
  top.setAttribute("aria-label", "top tokens per block");
  const drawTop = () => {
    const wire = model.get("top_probs");
    topBox.hidden = !wire;
    if (!wire) return;
    const position = model.get("shown_position");
    const tokens = model.get("tokens");
    topTitle.textContent = `Top 5 at position ${position} (${tokens[position] ?? ""})` +
      (model.get("position") < 0 ? ", the last: click a token to choose another" : "");
    const { values, shape } = decodeFloat(wire);
    const [blocks, k] = shape;
    const names = model.get("top_tokens");
    const rows = [];
    for (let b = 0; b < blocks; b++) {
      const tr = document.createElement("tr");
      const label = document.createElement("td");
      label.textContent = `block ${b}`;
      tr.append(label);
      for (let j = 0; j < k; j++) {
        const p = values[b * k + j];
        tr.append(probabilityCell(`${names[b]?.[j] ?? ""} ${probability(p)}`, p));
      }
      rows.push(tr);
    }
    top.replaceChildren(...rows);
  };
  cleanups.push(watch(model, ["top_probs", "top_tokens", "shown_position", "position"], drawTop));

  const dlaBox = element("div", "nw-dla", row);
  const targetLine = element("div", "nw-header", dlaBox);
  const label = element("label", "nw-control", targetLine);
  const labelText = element("span", "nw-control-label", label);
  labelText.textContent = "target token";
  const input = element("input", "nw-lm-input", label);
  input.setAttribute("aria-label", "target token");
  input.placeholder = "next token";
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") send("set_target", { text: input.value.trim() });
  });
  input.addEventListener("change", () => send("set_target", { text: input.value.trim() }));
  const targetInfo = element("span", "nw-lm-note nw-dla-target", targetLine);
  const dlaNote = element("div", "nw-lm-unavailable", dlaBox);
  const bars = element("div", "nw-dla-bars", dlaBox);
  bars.setAttribute("aria-label", "direct logit attribution");
  bars.addEventListener("click", (event) => {
    const bar = (event.target as HTMLElement).closest("[data-component]");
    if (bar) send("open_component", { index: Number(bar.getAttribute("data-component")) });
  });
  const headsTitle = element("div", "nw-lm-note", dlaBox);
  const heads = element("table", "nw-dla-heads", dlaBox);
  heads.setAttribute("aria-label", "attribution per head");
  heads.addEventListener("click", (event) => {
    const cell = (event.target as HTMLElement).closest("[data-component]");
    if (cell) send("open_component", { index: Number(cell.getAttribute("data-component")) });
  });

  const drawAttribution = () => {
    const note = model.get("attribution_note");
    dlaNote.textContent = note;
    dlaNote.hidden = !note;
    const available = !model.get("unavailable");
    dlaBox.hidden = !available;
    if (document.activeElement !== input) input.value = model.get("target_text");
    const info = model.get("dla_info");
    const target = model.get("target_token");
    targetInfo.textContent = target
      ? `${target} (${model.get("target_note")})` + (info.logit !== undefined
        ? `: logit ${formatValue(info.logit)}, parts + constant ${formatValue(info.total ?? NaN)}, final-norm scale ${formatValue(info.scale ?? NaN)}`
        : "")
      : "";
    const wire = model.get("dla");
    if (!wire) {
      bars.replaceChildren();
      heads.replaceChildren();
      headsTitle.hidden = true;
      return;
    }
    const { values } = decodeFloat(wire);
    const labels = model.get("dla_labels");
    const layers = model.get("dla_layers");
    let limit = 0;
    for (const v of values) if (Number.isFinite(v)) limit = Math.max(limit, Math.abs(v));
    limit = limit || 1;
    const scale = new DivergingScale(limit);
    bars.replaceChildren(...[...values].map((v, i) => {
      const bar = document.createElement("div");
      bar.className = "nw-dla-bar";
      bar.setAttribute("data-component", String(i));
      bar.setAttribute("data-value", String(v));
      bar.title = `${layers[i]}: ${formatValue(v)} (click to open this layer)`;
      const name = element("span", "", bar);
      name.textContent = labels[i];
      const track = element("span", "nw-dla-track", bar);
      const fill = element("span", "nw-dla-fill", track);
      const half = 50 * Math.min(1, Math.abs(v) / limit);
      fill.style.left = `${v >= 0 ? 50 : 50 - half}%`;
      fill.style.width = `${half}%`;
      fill.style.background = scale.css(v);
      const axis = element("span", "nw-dla-axis", track);
      axis.style.left = "50%";
      const number = element("span", "", bar);
      number.textContent = formatValue(v);
      return bar;
    }));
    const headWire = model.get("dla_heads");
    headsTitle.hidden = !headWire;
    if (!headWire) {
      heads.replaceChildren();
      return;
    }
    headsTitle.textContent = "Each head's share (rows: blocks, columns: heads); click to open the block's attention";
    const decoded = decodeFloat(headWire);
    const [blocks, width] = decoded.shape;
    let headLimit = 0;
    for (const v of decoded.values) if (Number.isFinite(v)) headLimit = Math.max(headLimit, Math.abs(v));
    const headScale = new DivergingScale(headLimit || 1);
    const header = document.createElement("tr");
    header.append(element("th", ""));
    for (let h = 0; h < width; h++) {
      const th = document.createElement("th");
      th.textContent = String(h);
      header.append(th);
    }
    const rows = [header];
    for (let b = 0; b < blocks; b++) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = String(b);
      tr.append(th);
      const component = layers.indexOf(model.get("blocks")[b] !== undefined ? attentionOf(layers, model.get("blocks")[b]) : "");
      for (let h = 0; h < width; h++) {
        const v = decoded.values[b * width + h];
        const td = document.createElement("td");
        td.style.background = headScale.css(v);
        td.title = `block ${b} head ${h}: ${formatValue(v)}`;
        td.setAttribute("data-value", String(v));
        td.setAttribute("data-block", String(b));
        td.setAttribute("data-head", String(h));
        if (component >= 0) td.setAttribute("data-component", String(component));
        tr.append(td);
      }
      rows.push(tr);
    }
    heads.replaceChildren(...rows);
  };
  cleanups.push(watch(model, ["dla", "dla_heads", "dla_info", "target_token", "target_note", "target_text",
    "attribution_note", "unavailable"], drawAttribution));

  return () => {
    cleanups.forEach((c) => c());
    strip.dispose();
    requests.dispose();
  };
}

/** The attention component of a block among the attribution's layers (the first after the block's
 * name that is not its MLP: the attribution lists attention before MLP). */
function attentionOf(layers: string[], block: string): string {
  return layers.find((name) => name.startsWith(`${block}.`)) ?? "";
}

export default { render };
