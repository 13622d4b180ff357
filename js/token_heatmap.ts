// TokenHeatmap: one row per text, its tokens coloured by the selected unit's activation at each token.
// The (rows × positions × units) matrix arrives once; recolouring for another unit happens here.
// Typing in a row's text box asks the kernel to re-run the model (debounced, latest edit wins).
// Tokens are text, never markup: every string from the kernel goes through textContent.

import { DivergingScale, formatValue, symmetricLimit } from "./lib/colors";
import { decodeFloat, type WireArray } from "./lib/codec";
import { LayerValues, showLayers, update, type LayerState } from "./lib/layer_state";
import { Superseded, pending } from "./lib/requests";
import { standalone, type Panel } from "./lib/store";
import { Tooltip } from "./lib/tooltip";
import { Legend, element, labelledSelect, setOptions } from "./lib/ui";

/** neurowidgets.core.attribution.METHODS */
const METHODS = ["gradient", "gradient_x_input", "integrated_gradients", "occlusion"];

export interface HeatmapState extends LayerState {
  texts: string[];
  tokens: string[][];
  notice: string;
  max_length: number;
  debounce_ms: number;
  show: "activation" | "attribution";
  attribution_method: string;
  attribution: WireArray | null; // (tokens,) of the current row
  attribution_info: { method?: string; unit?: number; example?: number; seconds?: number; nan?: number };
}

interface Row {
  index: number;
  root: HTMLDivElement;
  textarea: HTMLTextAreaElement;
  count: HTMLSpanElement;
  tokensEl: HTMLDivElement;
  hint: HTMLDivElement;
  spans: HTMLSpanElement[];
  tokens: string[];
  kernelText: string | null; // the kernel's text of this row when it was last put in the text box
  timer: ReturnType<typeof setTimeout> | null; // a debounced edit not sent yet
  outstanding: number; // edits sent and not answered (or superseded) yet
  answered: number; // performance.now() of the last answer to an edit of this row
}

/** Black or white text, whichever reads better on an (r, g, b) background. */
export function textColour([r, g, b]: [number, number, number]): string {
  return 0.299 * r + 0.587 * g + 0.114 * b < 140 ? "#fff" : "#000";
}

function sameTokens(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

/** The heatmap panel: one row of coloured tokens per text, each row editable. */
export const heatmapPanel: Panel<HeatmapState> = (store, el, options) => {
  const model = store.model;
  el.classList.add("nw-heatmap");
  const header = element("div", "nw-header", el);
  const layerSelect = !options.layerPicker
    ? null
    : labelledSelect(header, "Layer", (value) => {
      setBusy("layer", true);
      update(model, "layer", value);
    });
  const unitLabel = element("label", "nw-control", header);
  element("span", "nw-control-label", unitLabel).textContent = "Unit";
  const unitInput = element("input", "nw-select nw-heatmap-unit", unitLabel);
  unitInput.type = "number";
  unitInput.min = "0";
  unitInput.step = "1";
  unitInput.setAttribute("aria-label", "Unit");
  const showSelect = labelledSelect(header, "Show", (value) => update(model, "show", value as HeatmapState["show"]));
  setOptions(showSelect, ["activation", "attribution"], model.get("show") ?? "activation");
  const methodSelect = labelledSelect(header, "Method", (value) => update(model, "attribution_method", value));
  setOptions(methodSelect, METHODS, model.get("attribution_method") ?? "integrated_gradients");
  const methodControl = methodSelect.parentElement as HTMLElement;
  const attributionText = element("span", "nw-heatmap-attribution", header);
  attributionText.setAttribute("aria-live", "polite");
  const summary = element("span", "nw-summary", header);
  const badge = element("span", "nw-heatmap-busy", header);
  badge.setAttribute("role", "status");
  const notice = element("div", "nw-heatmap-notice", el);
  notice.setAttribute("role", "status");

  const body = element("div", "nw-heatmap-body", el);
  const rowsEl = element("div", "nw-heatmap-rows", body);
  const tooltip = new Tooltip(el); // in the root, not the scrolling body, which would clip it
  const legend = new Legend(el, "activation");
  const caption = legend.el.querySelector(".nw-legend-caption") as HTMLElement;

  // -- pending state: requests in flight, a layer change on its way --------------------------------
  const busyReasons = new Set<string>();
  function setBusy(reason: string, busy: boolean): void {
    if (busy) busyReasons.add(reason);
    else busyReasons.delete(reason);
    const any = busyReasons.size > 0;
    el.classList.toggle("nw-heatmap-computing", any);
    badge.textContent = any ? "computing…" : "";
  }
  const track = pending((busy) => setBusy("requests", busy));

  // -- rows -----------------------------------------------------------------------------------
  const rows: Row[] = [];
  let layerValues = LayerValues.empty();
  let scale = new DivergingScale(1);
  let unit = -1;
  let focus = { row: 0, position: 0 }; // the token that takes the keyboard focus (roving tabindex)
  let renders = 0;
  let hovered: HTMLElement | null = null; // the token under the mouse, whose tooltip is shown

  function makeRow(index: number): Row {
    const root = element("div", "nw-heatmap-row", rowsEl);
    root.dataset.row = String(index);
    const label = element("label", "nw-heatmap-label", root);
    const head = element("span", "nw-heatmap-label-text", label);
    head.textContent = `Text ${index + 1}`;
    const count = element("span", "nw-heatmap-count", head);
    const textarea = element("textarea", "nw-heatmap-input", label);
    textarea.rows = 1;
    textarea.spellcheck = false;
    textarea.setAttribute("aria-label", `Text ${index + 1}`);
    const tokensEl = element("div", "nw-heatmap-tokens", root);
    tokensEl.setAttribute("role", "listbox");
    tokensEl.setAttribute("aria-orientation", "horizontal");
    tokensEl.setAttribute("aria-label", `Tokens of text ${index + 1}`);
    const hint = element("div", "nw-heatmap-hint", root);
    const row: Row = { index, root, textarea, count, tokensEl, hint, spans: [], tokens: [], kernelText: null, timer: null, outstanding: 0, answered: 0 };
    textarea.addEventListener("input", () => onEdit(row));
    return row;
  }

  function idle(row: Row): boolean {
    return row.timer === null && row.outstanding === 0;
  }

  function markPending(row: Row): void {
    if (idle(row)) delete row.root.dataset.pending;
    else row.root.dataset.pending = "true";
  }

  // How long an edit waits for a pause in typing. While the kernel answers within debounce_ms an
  // edit goes at once (latest wins keeps one request in flight, so a stale run costs less than the
  // wait would); a slower kernel gets the debounce, so that it does not start runs the user has
  // already typed past, which it could not cancel.
  const roundTrips: number[] = []; // ms the kernel took to answer the last few edits
  function delay(): number {
    const debounce = Math.max(0, model.get("debounce_ms") ?? 150);
    if (!roundTrips.length) return debounce;
    const median = [...roundTrips].sort((a, b) => a - b)[Math.floor(roundTrips.length / 2)];
    return median <= debounce ? 0 : debounce; // the median: one slow answer does not switch modes
  }

  function onEdit(row: Row): void {
    if (row.timer !== null) clearTimeout(row.timer);
    row.timer = setTimeout(() => send(row), delay());
    markPending(row);
  }

  function send(row: Row): void {
    row.timer = null;
    const text = row.textarea.value;
    const start = performance.now();
    row.outstanding++;
    // An edit queued behind the one in flight goes out when that one is answered: time from then.
    const answered = () => {
      const now = performance.now();
      roundTrips.push(now - Math.max(start, row.answered));
      if (roundTrips.length > 5) roundTrips.shift();
      row.answered = now;
    };
    track(store.requests.latest(`text-${row.index}`, "set_text", { row: row.index, text })).then(
      () => {
        answered();
        row.textarea.removeAttribute("aria-invalid");
      },
      (error: Error) => {
        if (error instanceof Superseded) return;
        answered();
        // The kernel kept the previous text (its error shows in the error box); keep what was typed.
        row.textarea.setAttribute("aria-invalid", "true");
      },
    ).finally(() => {
      row.outstanding--;
      markPending(row);
      schedule(); // a row that became idle shows the kernel's text if it differs
    });
  }

  function syncRows(texts: string[], tokens: string[][]): void {
    const count = Math.max(texts.length, tokens.length);
    while (rows.length < count) rows.push(makeRow(rows.length));
    while (rows.length > count) {
      const row = rows.pop()!;
      if (row.timer !== null) clearTimeout(row.timer);
      row.root.remove();
    }
    for (const row of rows) {
      const text = texts[row.index] ?? "";
      // Never overwrite what the user is typing, nor an edit the kernel refused: a row takes the
      // kernel's text when it is idle and that text is new.
      if (idle(row) && text !== row.kernelText) {
        if (row.textarea.value !== text) row.textarea.value = text;
        row.kernelText = text;
        row.textarea.removeAttribute("aria-invalid");
      }
      const rowTokens = tokens[row.index] ?? [];
      if (!sameTokens(row.tokens, rowTokens)) {
        row.tokens = rowTokens;
        row.spans = rowTokens.map((token, position) => {
          const span = document.createElement("span");
          span.className = "nw-heatmap-token";
          span.textContent = token; // text, never HTML
          span.dataset.row = String(row.index);
          span.dataset.position = String(position);
          span.setAttribute("role", "option");
          span.tabIndex = -1;
          return span;
        });
        row.tokensEl.replaceChildren(...row.spans);
      }
      const n = rowTokens.length;
      row.count.textContent = ` · ${n} token${n === 1 ? "" : "s"}`;
      row.hint.textContent = n === 0 ? "no tokens" : text.trim() === "" ? "empty text: only the tokenizer's special tokens" : "";
      row.hint.hidden = row.hint.textContent === "";
    }
  }

  function attributionMode(): boolean {
    return model.get("show") === "attribution";
  }

  /** The current row's attributions (attribution mode), NaN elsewhere. */
  function attributionAt(row: number, position: number): number {
    const wire = model.get("attribution");
    if (!wire || row !== model.get("attribution_info")?.example) return NaN;
    const values = decodeFloat(wire).values;
    return position < values.length ? values[position] : NaN;
  }

  function value(row: number, position: number): number {
    if (unit < 0 || row >= layerValues.examples || position >= layerValues.positions) return NaN;
    return layerValues.value(row, position, unit);
  }

  function recolour(): void {
    const selected = model.get("selected_units") ?? [];
    unit = selected.length && selected[0] < layerValues.units ? selected[0] : -1;
    scale = store.scale;
    const attributing = attributionMode();
    const info = model.get("attribution_info") ?? {};
    const wire = model.get("attribution");
    if (attributing) scale = new DivergingScale(wire ? symmetricLimit(decodeFloat(wire).values) : 1);
    for (const row of rows) {
      row.spans.forEach((span, p) => {
        if (attributing) {
          // Only the current row has attributions; the others stay plain.
          const own = wire !== null && wire !== undefined && row.index === info.example && unit >= 0;
          const rgb = own ? scale.rgb(attributionAt(row.index, p)) : null;
          span.style.background = rgb ? `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})` : "";
          span.style.color = rgb ? textColour(rgb) : "";
          return;
        }
        if (unit < 0) {
          span.style.background = "";
          span.style.color = "";
          return;
        }
        const rgb = scale.rgb(value(row.index, p));
        span.style.background = `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
        span.style.color = textColour(rgb);
      });
    }
    legend.update(scale.limit);
    legend.el.hidden = unit < 0;
    caption.textContent = unit < 0 ? "" : attributing
      ? `attribution to unit ${unit} (${model.get("attribution_method").replace(/_/g, " ")})`
      : `unit ${unit}`;
    legend.el.dataset.limit = String(scale.limit);
    showSelect.value = model.get("show") ?? "activation";
    methodSelect.value = model.get("attribution_method") ?? "integrated_gradients";
    methodControl.hidden = !attributing;
    attributionText.hidden = !attributing || info.method === undefined;
    if (info.method !== undefined) {
      const ms = info.seconds !== undefined ? `${(1000 * info.seconds).toFixed(1)} ms` : "";
      const nan = info.nan ? ` · ${info.nan} NaN (magenta)` : "";
      attributionText.textContent = `${info.method.replace(/_/g, " ")} of unit ${info.unit}, text ${(info.example ?? 0) + 1} · ${ms}${nan}`;
    }
    if (document.activeElement !== unitInput) unitInput.value = unit >= 0 ? String(unit) : "";
    unitInput.max = String(Math.max(0, layerValues.units - 1));
  }

  function highlight(): void {
    const example = model.get("example");
    const position = model.get("position");
    focus.row = Math.min(focus.row, Math.max(0, rows.length - 1));
    const focusRow = rows[focus.row];
    focus.position = focusRow ? Math.min(focus.position, Math.max(0, focusRow.spans.length - 1)) : 0;
    for (const row of rows) {
      if (rows.length > 1 && row.index === example) row.root.dataset.current = "true";
      else delete row.root.dataset.current;
      row.spans.forEach((span, p) => {
        span.setAttribute("aria-selected", row.index === example && p === position ? "true" : "false");
        span.tabIndex = row.index === focus.row && p === focus.position ? 0 : -1;
      });
    }
  }

  function describe(row: number, position: number): string[] {
    const token = rows[row]?.tokens[position] ?? "";
    const lines = [`token: ${token}`, `text ${row + 1} · position ${position}`];
    lines.push(unit >= 0 ? `unit ${unit}: ${formatValue(value(row, position))}` : "no unit selected");
    if (attributionMode() && row === model.get("attribution_info")?.example) {
      lines.push(`attribution: ${formatValue(attributionAt(row, position))}`);
    }
    return lines;
  }

  // -- one render per batch of changes (values, tokens and texts arrive in one message) -----------
  let scheduled = false;
  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(render);
  }

  function render(): void {
    scheduled = false;
    layerValues = store.values; // decoded once by the store, whichever panel asks first
    syncRows(model.get("texts") ?? [], model.get("tokens") ?? []);
    recolour();
    highlight();
    const message = model.get("notice") ?? "";
    notice.textContent = message;
    notice.hidden = !message;
    const tokens = rows.reduce((n, row) => n + row.tokens.length, 0);
    const texts = rows.length;
    summary.textContent = `${texts} text${texts === 1 ? "" : "s"} · ${tokens} tokens` +
      (unit >= 0 ? ` · coloured by unit ${unit}` : " · no unit selected: pick one");
    if (hovered && hovered.isConnected) showTooltip(hovered, Number(hovered.dataset.row), Number(hovered.dataset.position));
    else if (hovered) {
      hovered = null;
      tooltip.hide();
    }
    el.dataset.heatmapRenders = String(++renders); // observed by tests and benchmarks/edit_latency.py
  }

  // -- pointer and keyboard -------------------------------------------------------------------
  function tokenOf(target: EventTarget | null): { row: number; position: number; span: HTMLElement } | null {
    const span = target instanceof HTMLElement ? target.closest<HTMLElement>(".nw-heatmap-token") : null;
    if (!span || !rowsEl.contains(span)) return null;
    return { row: Number(span.dataset.row), position: Number(span.dataset.position), span };
  }

  /** The tooltip of a token, under it (above it when the widget ends there); for mouse and keyboard. */
  function showTooltip(span: HTMLElement, row: number, position: number): void {
    const host = el.getBoundingClientRect();
    const box = span.getBoundingClientRect();
    const offset = 12; // Tooltip.show adds it
    tooltip.show(describe(row, position), box.left - host.left - offset, box.bottom - host.top + 4 - offset);
    const tip = tooltip.el.getBoundingClientRect();
    if (tip.bottom > host.bottom && box.top - host.top > tip.height + 4) {
      tooltip.el.style.top = `${box.top - host.top - tip.height - 4}px`;
    }
    const overflow = tip.right - host.right;
    if (overflow > 0) tooltip.el.style.left = `${Math.max(0, tip.left - host.left - overflow)}px`;
  }

  function choose(row: number, position: number): void {
    const same = model.get("example") === row && model.get("position") === position;
    model.set("example", row);
    model.set("position", same ? -1 : position); // clicking the chosen token again clears it
    model.save_changes();
  }

  const onMove = (event: MouseEvent) => {
    const hit = tokenOf(event.target);
    if (!hit) {
      hovered = null;
      return tooltip.hide();
    }
    if (hit.span === hovered) return;
    hovered = hit.span;
    showTooltip(hit.span, hit.row, hit.position);
  };
  const onLeave = () => {
    hovered = null;
    tooltip.hide();
  };
  const onClick = (event: MouseEvent) => {
    const hit = tokenOf(event.target);
    if (!hit) return;
    focus = { row: hit.row, position: hit.position };
    choose(hit.row, hit.position);
  };
  const onFocus = (event: FocusEvent) => {
    const hit = tokenOf(event.target);
    if (hit && hit.span.matches(":focus-visible")) showTooltip(hit.span, hit.row, hit.position);
  };
  const onKey = (event: KeyboardEvent) => {
    const hit = tokenOf(event.target);
    if (!hit) return;
    let { row, position } = hit;
    const last = (r: number) => Math.max(0, rows[r].spans.length - 1);
    switch (event.key) {
      case "ArrowLeft":
        if (position > 0) position--;
        else if (row > 0) position = last(--row);
        break;
      case "ArrowRight":
        if (position < last(row)) position++;
        else if (row < rows.length - 1) {
          row++;
          position = 0;
        }
        break;
      case "ArrowUp":
        if (row > 0) position = Math.min(position, last(--row));
        break;
      case "ArrowDown":
        if (row < rows.length - 1) position = Math.min(position, last(++row));
        break;
      case "Home":
        position = 0;
        break;
      case "End":
        position = last(row);
        break;
      case "Enter":
      case " ":
        choose(row, position);
        event.preventDefault();
        return;
      case "Escape":
        tooltip.hide();
        return;
      default:
        return;
    }
    event.preventDefault();
    focus = { row, position };
    highlight();
    rows[row].spans[position]?.focus();
  };
  rowsEl.addEventListener("mousemove", onMove);
  rowsEl.addEventListener("mouseleave", onLeave);
  rowsEl.addEventListener("click", onClick);
  rowsEl.addEventListener("keydown", onKey);
  rowsEl.addEventListener("focusin", onFocus);
  rowsEl.addEventListener("focusout", onLeave);

  const chooseUnit = () => {
    const next = Number(unitInput.value);
    if (unitInput.value === "" || !Number.isInteger(next) || next < 0 || next >= layerValues.units) {
      recolour(); // back to the unit shown
      return;
    }
    const rest = (model.get("selected_units") ?? []).slice(1).filter((u) => u !== next);
    if (next !== unit) update(model, "selected_units", [next, ...rest]); // replaces the first selected unit
  };
  unitInput.addEventListener("change", chooseUnit);
  unitInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") chooseUnit();
  });

  // -- model events ---------------------------------------------------------------------------
  const onValues = () => {
    setBusy("layer", false);
    schedule();
  };
  const onError = () => {
    if (model.get("error")) setBusy("layer", false);
  };
  const onLayers = () => {
    if (layerSelect) showLayers(layerSelect, model);
  };
  const listeners: [string, () => void][] = [
    ["change:values", onValues],
    ["change:texts", schedule],
    ["change:tokens", schedule],
    ["change:notice", schedule],
    ["change:selected_units", schedule],
    ["change:example", schedule],
    ["change:position", schedule],
    ["change:show", schedule],
    ["change:attribution", schedule],
    ["change:attribution_info", schedule],
    ["change:attribution_method", schedule],
    ["change:error", onError],
    ["change:layers", onLayers],
    ["change:layer_groups", onLayers],
    ["change:layer", onLayers],
  ];
  for (const [event, listener] of listeners) model.on(event, listener);
  onLayers();
  render();

  return () => {
    for (const row of rows) if (row.timer !== null) clearTimeout(row.timer);
    for (const [event, listener] of listeners) model.off(event, listener);
  };
};

export default standalone(heatmapPanel);
