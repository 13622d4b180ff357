// ActivationTrace: the selected units' activations along the positions of one input (tokens, or a
// conv layer's H×W grid flattened row-major), or each unit's max over positions across a batch.
// The (N, positions, units) array arrives once; choosing units, example or mode redraws here, locally.

import { NAN_CSS, formatValue } from "./lib/colors";
import { LayerValues, positionLabel, showLayers, update, type LayerState } from "./lib/layer_state";
import { standalone, type Panel } from "./lib/store";
import { Tooltip } from "./lib/tooltip";
import { element, labelledSelect, setOptions } from "./lib/ui";

type Along = "positions" | "examples";

export interface TraceState extends LayerState {
  along: Along;
  position_labels: string[][];
}

// Tableau 10 with its dark yellow and dark grey from Tableau 20: distinct, and readable on light
// and dark themes. None is close to the NaN magenta. Beyond ten units the colours repeat, dashed.
export const SERIES_COLOURS = [
  "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1",
  "#76b7b2", "#9c755f", "#ff9da7", "#b6992d", "#79706e",
];
const DASHES: number[][] = [[], [6, 3], [2, 3]];

export function seriesStyle(index: number): { colour: string; dash: number[] } {
  const n = SERIES_COLOURS.length;
  return { colour: SERIES_COLOURS[index % n], dash: DASHES[Math.floor(index / n) % DASHES.length] };
}

const HEIGHT = 260;
const MIN_WIDTH = 320;
const MAX_WIDTH = 960;
const MARGIN = { top: 18, right: 16, bottom: 40, minLeft: 44 };
const FONT_SIZE = 11;
const MAX_TICK_CHARS = 12;
const HINT = "select units in the grid or set selected_units";

/** One unit's values along positions (stride ``units`` in a positions × units matrix). */
export function unitColumn(matrix: Float32Array, positions: number, units: number, unit: number): Float32Array {
  const out = new Float32Array(positions);
  for (let p = 0; p < positions; p++) out[p] = matrix[p * units + unit];
  return out;
}

/** Each example's max over positions of one unit, and where it is (-1 when NaN). NaN anywhere gives NaN. */
export function maxPerExample(
  layer: LayerValues,
  unit: number,
  lengths: number[] = [],
): { values: Float32Array; where: Int32Array } {
  const { examples, units, data } = layer;
  const values = new Float32Array(examples);
  const where = new Int32Array(examples);
  for (let e = 0; e < examples; e++) {
    const positions = layer.valid(e, lengths); // right padding is not part of the example
    let best = -Infinity;
    let at = positions ? 0 : -1;
    const base = e * layer.positions * units + unit;
    for (let p = 0; p < positions; p++) {
      const v = data[base + p * units];
      if (Number.isNaN(v)) {
        best = NaN;
        at = -1;
        break;
      }
      if (v > best) {
        best = v;
        at = p;
      }
    }
    values[e] = best;
    where[e] = at;
  }
  return { values, where };
}

/** Ticks at 1, 2 or 5 × 10^k covering [lo, hi]; the domain is widened to the outer ticks. */
export function niceTicks(lo: number, hi: number, count = 5): { lo: number; hi: number; ticks: number[] } {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.5;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const first = Math.floor(lo / step);
  const last = Math.ceil(hi / step);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return { lo: first * step, hi: last * step, ticks };
}

function tickText(value: number): string {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs < 1e-3 || abs >= 1e5) return value.toExponential(1);
  return String(Number(value.toPrecision(6)));
}

function shorten(text: string): string {
  return text.length > MAX_TICK_CHARS ? `${text.slice(0, MAX_TICK_CHARS - 1)}…` : text;
}

interface Series {
  unit: number;
  values: Float32Array;
  where: Int32Array | null; // examples mode: the position of each max
  colour: string;
  dash: number[];
}

interface Theme {
  text: string;
  muted: string;
  grid: string;
  axis: string;
  marker: string;
  background: string;
  font: string;
}

/** Draw the trace of ``model`` into ``el``; returns the cleanup function. */
/** The trace panel: the selected units along the positions of the current input, or across the batch. */
export const tracePanel: Panel<TraceState> = (store, el, options) => {
  const model = store.model;
  el.classList.add("nw-trace");
  const header = element("div", "nw-header", el);
  const layerSelect = labelledSelect(header, "Layer", (value) => update(model, "layer", value));
  const layerControl = layerSelect.parentElement!;
  layerControl.hidden = !options.layerPicker;
  const alongSelect = labelledSelect(header, "Along", (value) => update(model, "along", value as Along));
  setOptions(alongSelect, ["positions", "examples"], model.get("along"));
  alongSelect.options[1].textContent = "examples (max over positions)";
  const exampleSelect = labelledSelect(header, "Example", (value) => update(model, "example", Number(value)));
  const exampleControl = exampleSelect.parentElement!;
  const summary = element("span", "nw-summary", header);

  const legend = element("div", "nw-trace-legend", el);
  legend.setAttribute("role", "list");
  legend.setAttribute("aria-label", "units");

  const body = element("div", "nw-trace-body", el);
  const canvas = element("canvas", "nw-trace-canvas", body);
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  const overlay = element("canvas", "nw-trace-overlay", body);
  overlay.setAttribute("aria-hidden", "true");
  const hint = element("div", "nw-trace-hint", body);
  hint.textContent = HINT;
  const ctx = canvas.getContext("2d")!;
  const octx = overlay.getContext("2d")!;
  const tooltip = new Tooltip(body);

  let layerValues = LayerValues.empty();
  let series: Series[] = [];
  let count = 0; // points along x
  let width = 0; // CSS pixels
  let left = MARGIN.minLeft;
  let yLo = -1;
  let yHi = 1;
  let cursor = -1; // index under the pointer or the keyboard cursor
  let keyboard = false;
  let emphasis = -1; // unit whose legend entry is hovered
  let theme: Theme | null = null;
  let tipAt: [number, number] = [0, 0]; // where the tooltip was last shown

  const along = (): Along => (model.get("along") === "examples" && layerValues.examples > 1 ? "examples" : "positions");
  const example = (): number => Math.max(0, Math.min(model.get("example"), layerValues.examples - 1));
  const plotWidth = (): number => width - left - MARGIN.right;
  const step = (): number => plotWidth() / Math.max(1, count);
  const xOf = (i: number): number => left + (i + 0.5) * step();
  const bottom = HEIGHT - MARGIN.bottom;
  const yOf = (v: number): number => MARGIN.top + ((yHi - v) / (yHi - yLo)) * (bottom - MARGIN.top);

  function readTheme(): Theme {
    const css = getComputedStyle(el);
    const v = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
    return {
      text: v("--jp-ui-font-color1", "#1f1f1f"),
      muted: v("--jp-ui-font-color2", "#616161"),
      grid: v("--jp-border-color2", "#e0e0e0"),
      axis: v("--jp-border-color1", "#bdbdbd"),
      marker: v("--jp-brand-color1", "#1976d2"),
      background: v("--jp-layout-color1", "#ffffff"),
      font: `${FONT_SIZE}px ${v("--jp-ui-font-family", "system-ui, sans-serif")}`,
    };
  }

  /** Labels of the current example's positions set by Python, when they fit this layer. */
  function tokenLabels(): string[] | null {
    const labels = model.get("position_labels") ?? [];
    const row = labels[example()];
    return row && row.length === layerValues.valid(example(), model.get("lengths")) && row.length > 0 ? row : null;
  }

  function positionName(p: number): string {
    return positionLabel(p, model.get("positions_shape"));
  }

  /** The x label of index ``i``: a token, "(r, c)", a position or an example index. */
  function xLabel(i: number, tokens: string[] | null): string {
    if (along() === "examples") return String(i);
    return tokens ? tokens[i] : positionName(i);
  }

  function xTitle(tokens: string[] | null): string {
    if (along() === "examples") return `example (each unit's max over ${layerValues.positions === 1 ? "its one position" : "positions"})`;
    if (tokens) return "token";
    return model.get("positions_shape").length === 2 ? "position (row, col), row-major" : "position";
  }

  // -- data -----------------------------------------------------------------------------------

  function loadValues(): void {
    layerValues = store.values;
    const n = layerValues.examples;
    setOptions(exampleSelect, Array.from({ length: n }, (_, i) => String(i)), String(example()));
    exampleControl.hidden = n < 2;
    alongSelect.disabled = n < 2;
    alongSelect.title = n < 2 ? "needs a batch of more than one input" : "";
    rebuild();
  }

  /** The drawn series for the current selection, example and mode; then redraw. */
  function rebuild(): void {
    alongSelect.value = along();
    exampleSelect.value = String(example());
    const { examples, units } = layerValues;
    const positions = layerValues.valid(example(), model.get("lengths"));
    const selected = model.get("selected_units").filter((u) => u >= 0 && u < units);
    const mode = along();
    count = mode === "examples" ? examples : positions;
    series = selected.map((unit, i) => {
      const style = seriesStyle(i);
      if (mode === "examples") {
        const { values, where } = maxPerExample(layerValues, unit, model.get("lengths"));
        return { unit, values, where, ...style };
      }
      const matrix = layerValues.matrix(example());
      return { unit, values: unitColumn(matrix, positions, units, unit), where: null, ...style };
    });
    cursor = Math.min(cursor, count - 1);
    buildLegend();
    draw();
  }

  function buildLegend(): void {
    legend.replaceChildren(...series.map((s) => {
      const item = element("span", "nw-trace-key");
      item.setAttribute("role", "listitem");
      item.dataset.unit = String(s.unit);
      const swatch = element("span", "nw-trace-swatch", item);
      swatch.style.borderTopColor = s.colour;
      swatch.style.borderTopStyle = s.dash.length === 0 ? "solid" : s.dash[0] > 3 ? "dashed" : "dotted";
      const name = element("span", "nw-trace-key-name", item);
      name.textContent = `unit ${s.unit}`;
      const note = nonFinite(s.values);
      if (note) element("span", "nw-trace-key-note", item).textContent = note;
      const remove = element("button", "nw-trace-key-remove", item);
      remove.type = "button";
      remove.textContent = "×";
      remove.title = `remove unit ${s.unit}`;
      remove.setAttribute("aria-label", `remove unit ${s.unit}`);
      remove.addEventListener("click", () => {
        update(model, "selected_units", model.get("selected_units").filter((u) => u !== s.unit));
      });
      item.addEventListener("mouseenter", () => emphasise(s.unit));
      item.addEventListener("mouseleave", () => emphasise(-1));
      return item;
    }));
    if (series.some((s) => s.values.some(Number.isNaN))) {
      const nan = element("span", "nw-trace-key nw-trace-key-nan", legend);
      element("span", "nw-trace-nan-swatch", nan);
      nan.appendChild(document.createTextNode("NaN"));
    }
    legend.hidden = series.length === 0;
  }

  /** "(all NaN)", "(3 NaN, 1 +inf)": what a series cannot draw as a line. */
  function nonFinite(values: Float32Array): string {
    let nan = 0;
    let pos = 0;
    let neg = 0;
    for (const v of values) {
      if (Number.isNaN(v)) nan++;
      else if (v === Infinity) pos++;
      else if (v === -Infinity) neg++;
    }
    if (nan === values.length && nan > 0) return "(all NaN)";
    const parts = [[nan, "NaN"], [pos, "+inf"], [neg, "-inf"]].filter(([n]) => n).map(([n, what]) => `${n} ${what}`);
    return parts.length ? `(${parts.join(", ")})` : "";
  }

  function emphasise(unit: number): void {
    if (emphasis === unit) return;
    emphasis = unit;
    draw();
  }

  // -- drawing --------------------------------------------------------------------------------

  function resize(target: HTMLCanvasElement, c: CanvasRenderingContext2D): void {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(width * dpr);
    const h = Math.round(HEIGHT * dpr);
    if (target.width !== w || target.height !== h) {
      target.width = w;
      target.height = h;
    }
    target.style.width = `${width}px`;
    target.style.height = `${HEIGHT}px`;
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, width, HEIGHT);
  }

  function yRange(): void {
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of series) {
      for (const v of s.values) {
        if (!Number.isFinite(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (lo > hi) [lo, hi] = [0, 0]; // nothing finite
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
    ({ lo: yLo, hi: yHi } = niceTicks(lo, hi));
  }

  function draw(): void {
    const empty = series.length === 0 || count === 0;
    hint.hidden = !empty;
    hint.textContent = layerValues.units === 0 ? "no activations yet" : HINT;
    canvas.hidden = empty;
    overlay.hidden = empty;
    describe();
    if (empty) {
      tooltip.hide();
      return;
    }
    theme = readTheme();
    width = Math.max(MIN_WIDTH, Math.min(MAX_WIDTH, Math.floor(body.clientWidth || MAX_WIDTH)));
    yRange();
    const { ticks } = niceTicks(yLo, yHi);
    ctx.font = theme.font;
    left = Math.max(MARGIN.minLeft, Math.ceil(Math.max(...ticks.map((t) => ctx.measureText(tickText(t)).width))) + 22);
    resize(canvas, ctx);
    ctx.font = theme.font;
    drawAxes(ticks, theme);
    drawMarker(theme);
    for (const s of series) drawSeries(s, emphasis >= 0 && emphasis !== s.unit);
    canvas.dataset.count = String(count);
    canvas.dataset.left = String(left);
    canvas.dataset.step = String(step());
    canvas.dataset.top = String(MARGIN.top);
    canvas.dataset.bottom = String(bottom);
    canvas.dataset.units = series.map((s) => s.unit).join(",");
    canvas.dataset.along = along();
    if (cursor >= 0 && !tooltip.el.hidden) showCursor(cursor, tipAt[0], tipAt[1]); // fresh values
    else drawOverlay();
  }

  function drawAxes(ticks: number[], t: Theme): void {
    const right = width - MARGIN.right;
    ctx.lineWidth = 1;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (const tick of ticks) {
      const y = Math.round(yOf(tick)) + 0.5;
      ctx.strokeStyle = tick === 0 ? t.axis : t.grid;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(right, y);
      ctx.stroke();
      ctx.fillStyle = t.muted;
      ctx.fillText(tickText(tick), left - 6, y);
    }
    // y title, rotated along the axis
    ctx.save();
    ctx.translate(10, (MARGIN.top + bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("activation", 0, 0);
    ctx.restore();

    // x ticks: as many labels as fit without overlapping
    const tokens = along() === "positions" ? tokenLabels() : null;
    const grid = model.get("positions_shape");
    const rowLength = along() === "positions" && grid.length === 2 ? grid[1] : 0;
    let widest = 0;
    for (let i = 0; i < count; i++) widest = Math.max(widest, ctx.measureText(shorten(xLabel(i, tokens))).width);
    const every = tickStep(Math.ceil((widest + 10) / step()), rowLength);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.strokeStyle = t.axis;
    ctx.beginPath();
    ctx.moveTo(left, bottom + 0.5);
    ctx.lineTo(right, bottom + 0.5);
    ctx.stroke();
    if (rowLength) {
      // faint separators between the rows of the grid
      ctx.strokeStyle = t.grid;
      ctx.beginPath();
      for (let i = rowLength; i < count; i += rowLength) {
        const x = Math.round(left + i * step()) + 0.5;
        ctx.moveTo(x, MARGIN.top);
        ctx.lineTo(x, bottom);
      }
      ctx.stroke();
    }
    ctx.fillStyle = t.muted;
    for (let i = 0; i < count; i += every) {
      const x = xOf(i);
      ctx.strokeStyle = t.axis;
      ctx.beginPath();
      ctx.moveTo(Math.round(x) + 0.5, bottom);
      ctx.lineTo(Math.round(x) + 0.5, bottom + 4);
      ctx.stroke();
      ctx.fillText(shorten(xLabel(i, tokens)), x, bottom + 6);
    }
    ctx.fillText(xTitle(tokens), (left + right) / 2, bottom + 6 + FONT_SIZE + 8);
  }

  /** The smallest tick step ≥ ``minimum``: 1, 2, 5, 10… or, on a grid, divisors and multiples of a row. */
  function tickStep(minimum: number, rowLength: number): number {
    const candidates: number[] = [];
    if (rowLength) {
      for (let d = 1; d <= rowLength; d++) if (rowLength % d === 0) candidates.push(d);
      for (let k = 2; k * rowLength <= count; k++) candidates.push(k * rowLength);
    } else {
      for (let power = 1; power <= Math.max(10, count * 10); power *= 10) candidates.push(power, 2 * power, 5 * power);
    }
    return candidates.find((c) => c >= minimum) ?? Math.max(1, count);
  }

  /** The selected position (or example, across examples) as a dashed vertical line. */
  function drawMarker(t: Theme): void {
    const selected = along() === "examples" ? example() : model.get("position");
    const shown = selected >= 0 && selected < count;
    canvas.dataset.marker = String(shown ? selected : -1);
    if (!shown) return;
    const x = Math.round(xOf(selected)) + 0.5;
    ctx.save();
    ctx.strokeStyle = t.marker;
    ctx.lineWidth = 1.5;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(x, MARGIN.top - 4);
    ctx.lineTo(x, bottom);
    ctx.stroke();
    ctx.restore();
    ctx.fillStyle = t.marker;
    ctx.textBaseline = "bottom";
    ctx.textAlign = x < left + 40 ? "left" : x > width - MARGIN.right - 40 ? "right" : "center";
    const name = along() === "examples" ? `example ${selected}` : shorten(xLabel(selected, tokenLabels()));
    ctx.fillText(name, x, MARGIN.top - 5);
  }

  function drawSeries(s: Series, dimmed: boolean): void {
    const { values, colour, dash } = s;
    ctx.save();
    ctx.globalAlpha = dimmed ? 0.2 : 1;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.setLineDash(dash);
    ctx.beginPath();
    let drawing = false;
    for (let i = 0; i < count; i++) {
      const v = values[i];
      if (!Number.isFinite(v)) {
        drawing = false; // a gap at NaN and ±inf
        continue;
      }
      const x = xOf(i);
      const y = yOf(v);
      if (drawing) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      drawing = true;
    }
    ctx.stroke();
    ctx.setLineDash([]);
    const dots = step() >= 8;
    for (let i = 0; i < count; i++) {
      const v = values[i];
      const x = xOf(i);
      if (Number.isNaN(v)) {
        // NaN: a magenta tick on the x axis
        ctx.fillStyle = NAN_CSS;
        ctx.fillRect(Math.round(x) - 1, bottom - 7, 3, 7);
      } else if (!Number.isFinite(v)) {
        // ±inf: a triangle pointing at the edge it lies beyond (above the NaN ticks at the bottom)
        const tip = v > 0 ? MARGIN.top : bottom - 9;
        const base = v > 0 ? tip + 8 : tip - 8;
        ctx.fillStyle = colour;
        ctx.beginPath();
        ctx.moveTo(x, tip);
        ctx.lineTo(x - 5, base);
        ctx.lineTo(x + 5, base);
        ctx.closePath();
        ctx.fill();
      } else if (dots || !hasFiniteNeighbour(values, i)) {
        ctx.fillStyle = colour;
        ctx.beginPath();
        ctx.arc(x, yOf(v), 2.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    ctx.restore();
  }

  function hasFiniteNeighbour(values: Float32Array, i: number): boolean {
    return (i > 0 && Number.isFinite(values[i - 1])) || (i + 1 < count && Number.isFinite(values[i + 1]));
  }

  /** The crosshair at ``cursor``: a vertical line and a dot on every series. */
  function drawOverlay(): void {
    resize(overlay, octx);
    if (cursor < 0 || cursor >= count || !theme) return;
    const x = Math.round(xOf(cursor)) + 0.5;
    octx.strokeStyle = theme.muted;
    octx.lineWidth = 1;
    octx.beginPath();
    octx.moveTo(x, MARGIN.top);
    octx.lineTo(x, bottom);
    octx.stroke();
    for (const s of series) {
      const v = s.values[cursor];
      if (!Number.isFinite(v)) continue;
      octx.beginPath();
      octx.arc(xOf(cursor), yOf(v), 4, 0, 2 * Math.PI);
      octx.fillStyle = s.colour;
      octx.fill();
      octx.lineWidth = 1.5;
      octx.strokeStyle = theme.background;
      octx.stroke();
    }
  }

  function describe(): void {
    const { examples, positions } = layerValues;
    const grid = model.get("positions_shape");
    const where = grid.length ? `${grid.join("×")} positions` : "1 position";
    const n = series.length;
    const units = `${n} unit${n === 1 ? "" : "s"}`;
    summary.textContent = along() === "examples"
      ? `${units} · max over ${where} · ${examples} examples`
      : `${units} · ${where}${examples > 1 ? ` · example ${example()} of ${examples}` : ""}`;
    const what = along() === "examples" ? `${examples} examples` : `${positions} positions`;
    canvas.setAttribute(
      "aria-label",
      `activations of ${n ? series.map((s) => `unit ${s.unit}`).join(", ") : "no unit"} along ${what} of layer ` +
        `${model.get("layer")}; arrow keys move the cursor, Enter selects`,
    );
  }

  // -- hover, click, keyboard -----------------------------------------------------------------

  function tooltipLines(i: number): string[] {
    const lines: string[] = [];
    if (along() === "examples") {
      lines.push(`example ${i}`);
      for (const s of series) {
        const at = s.where && s.where[i] >= 0 && layerValues.positions > 1 ? ` at ${positionName(s.where[i])}` : "";
        lines.push(`unit ${s.unit}: ${formatValue(s.values[i])}${at}`);
      }
    } else {
      const tokens = tokenLabels();
      lines.push(tokens ? `position ${i}: ${tokens[i]}` : `position ${positionName(i)}`);
      for (const s of series) lines.push(`unit ${s.unit}: ${formatValue(s.values[i])}`);
    }
    return lines;
  }

  function showCursor(i: number, x: number, y: number): void {
    cursor = i;
    tipAt = [x, y];
    drawOverlay();
    if (i < 0) return tooltip.hide();
    tooltip.show(tooltipLines(i), x, y);
    // a swatch of the series colour before each unit's line
    const rows = Array.from(tooltip.el.children) as HTMLElement[];
    series.forEach((s, k) => {
      const row = rows[k + 1];
      if (!row) return;
      const swatch = element("span", "nw-trace-tip-swatch");
      swatch.style.background = s.colour;
      row.prepend(swatch);
    });
    // keep it inside the chart: flip to the left of the pointer near the right edge
    const tipWidth = tooltip.el.offsetWidth;
    if (x + 12 + tipWidth > width) tooltip.el.style.left = `${Math.max(0, x - 12 - tipWidth)}px`;
    const tipHeight = tooltip.el.offsetHeight;
    if (y + 12 + tipHeight > HEIGHT) tooltip.el.style.top = `${Math.max(0, HEIGHT - tipHeight)}px`;
  }

  function indexAt(event: MouseEvent): number {
    const rect = canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const i = Math.floor((x - left) / step());
    return x >= left && i >= 0 && i < count ? i : -1;
  }

  function choose(i: number): void {
    if (i < 0 || i >= count) return;
    if (along() === "examples") update(model, "example", i);
    else update(model, "position", model.get("position") === i ? -1 : i);
  }

  let hoverFrame = 0;
  const onMove = (event: MouseEvent) => {
    cancelAnimationFrame(hoverFrame);
    hoverFrame = requestAnimationFrame(() => {
      keyboard = false;
      const rect = body.getBoundingClientRect();
      showCursor(indexAt(event), event.clientX - rect.left, event.clientY - rect.top);
    });
  };
  const onLeave = () => {
    cancelAnimationFrame(hoverFrame);
    if (!keyboard) showCursor(-1, 0, 0);
  };
  const onClick = (event: MouseEvent) => choose(indexAt(event));
  const onKey = (event: KeyboardEvent) => {
    if (count === 0) return;
    const start = cursor >= 0 ? cursor : Math.max(0, along() === "examples" ? example() : model.get("position"));
    const jump = event.shiftKey ? 10 : 1;
    const moves: Record<string, number> = {
      ArrowLeft: start - (cursor >= 0 ? jump : 0),
      ArrowRight: start + (cursor >= 0 ? jump : 0),
      Home: 0,
      End: count - 1,
    };
    if (event.key in moves) {
      keyboard = true;
      const i = Math.max(0, Math.min(count - 1, moves[event.key]));
      showCursor(i, xOf(i), MARGIN.top);
    } else if ((event.key === "Enter" || event.key === " ") && cursor >= 0) {
      choose(cursor);
    } else if (event.key === "Escape") {
      keyboard = false;
      showCursor(-1, 0, 0);
      if (along() === "positions") update(model, "position", -1);
    } else {
      return;
    }
    event.preventDefault();
  };
  const onBlur = () => {
    if (keyboard) showCursor(-1, 0, 0);
    keyboard = false;
  };
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("mouseleave", onLeave);
  canvas.addEventListener("click", onClick);
  canvas.addEventListener("keydown", onKey);
  canvas.addEventListener("blur", onBlur);

  // Redraw when the output area is resized or JupyterLab's theme changes.
  let lastWidth = -1;
  const resizeObserver = new ResizeObserver(() => {
    const w = Math.floor(body.clientWidth);
    if (w !== lastWidth) {
      lastWidth = w;
      draw();
    }
  });
  resizeObserver.observe(body);
  const themeObserver = new MutationObserver(() => draw());
  themeObserver.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light"] });

  const onLayers = () => showLayers(layerSelect, model);
  const listeners: [string, () => void][] = [
    ["change:values", loadValues],
    ["change:layers", onLayers],
    ["change:layer_groups", onLayers],
    ["change:layer", onLayers],
    ["change:along", rebuild],
    ["change:example", rebuild],
    ["change:selected_units", rebuild],
    ["change:position_labels", draw],
    ["change:lengths", rebuild],
    ["change:positions_shape", draw],
    ["change:position", draw],
  ];
  for (const [event, listener] of listeners) model.on(event, listener);
  onLayers();
  loadValues();

  return () => {
    cancelAnimationFrame(hoverFrame);
    resizeObserver.disconnect();
    themeObserver.disconnect();
    for (const [event, listener] of listeners) model.off(event, listener);
  };
};

export default standalone(tracePanel);
