// NeuronGrid: one cell per unit, coloured by the unit's activation on the current input, or by a
// statistic of a scan of the layer. The (positions × units) matrix and the (k × units) statistics
// arrive once; reducing, recolouring and reordering happen here, locally.

import {
  DivergingScale, FLAG_OFF, FLAG_ON, FlagScale, LUT_SIZE, NAN_CSS, SequentialScale, css, formatValue, type Scale,
} from "./lib/colors";
import { decodeFloat, type WireArray } from "./lib/codec";
import { LayerValues, positionLabel, showLayers, update, type LayerState } from "./lib/layer_state";
import { standalone, type Panel } from "./lib/store";
import { Tooltip } from "./lib/tooltip";
import { Legend, element, labelledSelect, setOptions } from "./lib/ui";

type Reduce = "max" | "mean";
type Order = "index" | "value";

export interface GridState extends LayerState {
  /** "max" | "mean" over positions, or "scan:<name>" for one of ``stat_names``. */
  reduce: string;
  order: Order;
  unit_stats: WireArray | null;
  stat_names: string[];
}

const MAX_WIDTH = 720;
const STAT_PREFIX = "scan:";
const FLAGS = new Set(["dead", "saturated"]);
const BRUSH_THRESHOLD = 4; // CSS pixels a press must move before it is a brush rather than a click

/** Per-unit value of a (positions × units) matrix; NaN anywhere in a unit makes it NaN. */
export function reduceUnits(matrix: Float32Array, positions: number, units: number, mode: Reduce): Float32Array {
  const out = new Float32Array(units);
  if (mode === "max") out.fill(-Infinity);
  for (let p = 0; p < positions; p++) {
    const row = p * units;
    for (let u = 0; u < units; u++) {
      const v = matrix[row + u];
      if (mode === "max") out[u] = v > out[u] || Number.isNaN(v) ? v : out[u];
      else out[u] += v;
    }
  }
  if (mode === "mean") for (let u = 0; u < units; u++) out[u] /= positions;
  return out;
}

/** Units ordered by value, highest first; NaN last; ties by unit index.
 *
 * Fast for large layers: each float32 becomes an order-preserving 32-bit key, packed with its unit
 * index into one exact float64 (key × n + unit < 2^53 for n < 2^21 units), sorted natively. */
export function orderByValue(values: Float32Array): Uint32Array {
  const n = values.length;
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const keys = new Float64Array(n);
  for (let u = 0; u < n; u++) {
    const b = bits[u];
    // Ascending order of floats as unsigned ints: flip every bit of negatives, the sign bit of positives.
    const ascending = Number.isNaN(values[u]) ? 0 : b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
    keys[u] = (0xffffffff - ascending) * n + u;
  }
  keys.sort();
  const order = new Uint32Array(n);
  for (let s = 0; s < n; s++) order[s] = keys[s] % n;
  return order;
}

export function cellSize(units: number): number {
  if (units <= 64) return 36;
  if (units <= 256) return 24;
  if (units <= 1024) return 14;
  if (units <= 4096) return 9;
  return 6;
}

function packed([r, g, b]: [number, number, number]): number {
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0; // little-endian RGBA
}

/** The grid panel: one cell per unit of the current example. */
export const gridPanel: Panel<GridState> = (store, el, options) => {
  const model = store.model;
  el.classList.add("nw-grid");
  const header = element("div", "nw-header", el);
  const layerSelect = labelledSelect(header, "Layer", (value) => update(model, "layer", value));
  (layerSelect.parentElement as HTMLElement).hidden = !options.layerPicker;
  const reduceSelect = labelledSelect(header, "Colour by", (value) => update(model, "reduce", value));
  const orderSelect = labelledSelect(header, "Order", (value) => update(model, "order", value as Order));
  setOptions(orderSelect, ["index", "value"], model.get("order"));
  orderSelect.options[0].textContent = "unit index";
  orderSelect.options[1].textContent = "value, highest first";
  const summary = element("span", "nw-summary", header);

  const body = element("div", "nw-grid-body", el);
  const canvas = element("canvas", "nw-grid-canvas", body);
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "grid");
  const ctx = canvas.getContext("2d")!;
  const brush = element("div", "nw-grid-brush", body);
  brush.hidden = true;
  const tooltip = new Tooltip(body);
  const legend = new Legend(el, "activation");
  const statLegend = element("div", "nw-legend nw-grid-stat-legend", el);

  let layerValues = LayerValues.empty();
  let matrix: Float32Array = new Float32Array(0);
  let unitValues: Float32Array = new Float32Array(0);
  let stats: Float32Array = new Float32Array(0);
  let statNames: string[] = [];
  let units = 0;
  let positions = 0;
  let cols = 1;
  let cell = 36;
  let scale: Scale = new DivergingScale(1);
  let order: Uint32Array = new Uint32Array(0); // slot → unit
  let slotOf: Uint32Array = new Uint32Array(0); // unit → slot
  let image: ImageData | null = null;
  let focusUnit = 0;
  let keyboardFocus = false; // the focus ring shows only while the keyboard drives the grid

  function loadValues(): void {
    layerValues = store.values;
    ({ units } = layerValues);
    loadExample();
    cell = cellSize(units);
    cols = Math.max(1, Math.min(units, Math.floor(MAX_WIDTH / cell)));
    focusUnit = Math.min(focusUnit, Math.max(0, units - 1));
    loadStats();
  }

  function loadExample(): void {
    if (!layerValues.examples) return;
    const example = Math.min(model.get("example"), layerValues.examples - 1);
    // Only the example's real positions: a padded text row's padding is not part of it.
    positions = layerValues.valid(example, model.get("lengths"));
    matrix = layerValues.matrix(example).subarray(0, positions * units);
  }

  function loadStats(): void {
    const wire = model.get("unit_stats");
    const decoded = wire ? decodeFloat(wire) : null;
    const fits = decoded !== null && decoded.shape.length === 2 && decoded.shape[1] === units;
    stats = fits ? decoded.values : new Float32Array(0);
    statNames = fits ? model.get("stat_names").slice(0, decoded.shape[0]) : [];
    const options = ["max", "mean", ...statNames.map((name) => STAT_PREFIX + name)];
    const current = options.includes(model.get("reduce")) ? model.get("reduce") : "max";
    setOptions(reduceSelect, options, current);
    for (const option of Array.from(reduceSelect.options)) option.textContent = optionLabel(option.value);
  }

  function optionLabel(value: string): string {
    if (value === "max" || value === "mean") return `${value} over positions`;
    const name = value.slice(STAT_PREFIX.length);
    return FLAGS.has(name) ? `${name} units (scan)` : `${name} (scan)`;
  }

  /** The scan statistic the grid is coloured by, or null for the current input's activations. */
  function statistic(): string | null {
    const reduce = model.get("reduce");
    if (!reduce.startsWith(STAT_PREFIX)) return null;
    const name = reduce.slice(STAT_PREFIX.length);
    return statNames.includes(name) ? name : null;
  }

  function statRow(name: string): Float32Array {
    const row = statNames.indexOf(name);
    return stats.subarray(row * units, (row + 1) * units);
  }

  function colourBy(): string {
    const name = statistic();
    if (name !== null) return FLAGS.has(name) ? name : `scan ${name}`;
    const position = model.get("position");
    return position >= 0 && position < positions ? `at position ${positionLabel(position, model.get("positions_shape"))}` : model.get("reduce");
  }

  /** Recompute every unit's value, colour and slot, then paint. Local: no kernel round trip. */
  function recolour(): void {
    const start = performance.now();
    const name = statistic();
    const position = model.get("position");
    if (name !== null) unitValues = statRow(name);
    else if (position >= 0 && position < positions) unitValues = matrix.slice(position * units, (position + 1) * units);
    else unitValues = reduceUnits(matrix, positions, units, model.get("reduce") === "mean" ? "mean" : "max");
    if (name === "density") scale = new SequentialScale(1);
    else if (name !== null && FLAGS.has(name)) scale = new FlagScale();
    else scale = store.scale;
    updateLegend(name);
    reorder();
    paint();
    draw();
    el.dispatchEvent(new CustomEvent("nw-grid-paint", { detail: { ms: performance.now() - start, time: performance.now() } }));
  }

  function reorder(): void {
    if (model.get("order") === "value") order = orderByValue(unitValues);
    else if (order.length !== units || order[units - 1] !== units - 1 || order[0] !== 0) {
      order = new Uint32Array(units);
      for (let u = 0; u < units; u++) order[u] = u;
    }
    if (slotOf.length !== units) slotOf = new Uint32Array(units);
    for (let s = 0; s < units; s++) slotOf[order[s]] = s;
  }

  function updateLegend(name: string | null): void {
    legend.el.hidden = name !== null;
    statLegend.hidden = name === null;
    if (name === null) return legend.update((scale as DivergingScale).limit);
    if (statLegend.dataset.stat === name && name !== "mean" && name !== "max") return;
    statLegend.dataset.stat = name;
    const caption = element("span", "nw-legend-caption");
    caption.textContent = colourBy();
    const parts: HTMLElement[] = [caption];
    if (scale instanceof FlagScale) {
      for (const [colour, text] of [[FLAG_ON, name], [FLAG_OFF, `not ${name}`]] as const) {
        const item = element("span", "nw-legend-nan");
        element("span", "nw-swatch", item).style.background = css(colour);
        item.appendChild(document.createTextNode(text));
        parts.push(item);
      }
    } else {
      const column = element("div", "nw-legend-scale");
      const bar = element("div", "nw-legend-bar", column);
      const ticks = element("div", "nw-legend-ticks", column);
      const limit = scale.limit;
      const labels = scale instanceof SequentialScale ? ["0", String(limit / 2), String(limit)] : [formatValue(-limit), "0", formatValue(limit)];
      bar.style.background = scale instanceof SequentialScale ? SequentialScale.gradient() : DivergingScale.gradient();
      for (const label of labels) element("span", "", ticks).textContent = label;
      parts.push(column);
    }
    const nan = element("span", "nw-legend-nan");
    element("span", "nw-swatch", nan).style.background = NAN_CSS;
    nan.appendChild(document.createTextNode("NaN"));
    parts.push(nan);
    statLegend.replaceChildren(...parts);
  }

  /** Fill the cells into the cached image (one packed colour per unit, written in its slot). */
  function paint(): void {
    const rows = Math.ceil(units / cols);
    const width = cols * cell;
    const height = Math.max(1, rows * cell);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    if (!image || image.width !== width || image.height !== height) image = ctx.createImageData(width, height);
    const pixels = new Uint32Array(image.data.buffer);
    pixels.fill(0);
    const gap = cell >= 9 ? 1 : 0;
    const size = cell - gap;
    // Diverging and sequential scales map a value to one of LUT_SIZE colours (or NaN's): pack each once.
    const indexed = scale instanceof FlagScale ? null : scale;
    const table = new Uint32Array(LUT_SIZE + 1);
    const known = new Uint8Array(LUT_SIZE + 1);
    for (let s = 0; s < units; s++) {
      const value = unitValues[order[s]];
      let colour: number;
      if (indexed) {
        const i = indexed.index(value) + 1;
        if (!known[i]) {
          table[i] = packed(indexed.rgb(value));
          known[i] = 1;
        }
        colour = table[i];
      } else colour = packed(scale.rgb(value));
      const x0 = (s % cols) * cell;
      const y0 = Math.floor(s / cols) * cell;
      for (let y = y0; y < y0 + size; y++) pixels.fill(colour, y * width + x0, y * width + x0 + size);
    }
  }

  /** Blit the painted cells and draw the outlines (selection changes only redraw this). */
  function draw(): void {
    if (image) ctx.putImageData(image, 0, 0);
    for (const u of model.get("selected_units")) outline(u, "#000", "#fff");
    if (keyboardFocus && document.activeElement === canvas) outline(focusUnit, "#fc0", "#fc0");
    canvas.dataset.units = String(units);
    canvas.dataset.cols = String(cols);
    canvas.dataset.cell = String(cell);
    canvas.dataset.order = model.get("order");
    canvas.setAttribute("aria-label", `${units} units of layer ${model.get("layer")}`);
    const grid = model.get("positions_shape");
    const where = grid.length ? `${grid.join("×")} positions` : "1 position";
    const at = model.get("position") >= 0 || statistic() !== null ? ` · coloured ${colourBy()}` : "";
    summary.textContent = `${units} units · ${where}${at}`;
  }

  function outline(unit: number, outer: string, inner: string): void {
    if (unit < 0 || unit >= units || slotOf.length !== units) return;
    const slot = slotOf[unit];
    const x = (slot % cols) * cell;
    const y = Math.floor(slot / cols) * cell;
    const size = cell - (cell >= 9 ? 1 : 0);
    ctx.lineWidth = 2;
    ctx.strokeStyle = outer;
    ctx.strokeRect(x + 1, y + 1, size - 2, size - 2);
    if (size > 8) {
      ctx.lineWidth = 1;
      ctx.strokeStyle = inner;
      ctx.strokeRect(x + 2.5, y + 2.5, size - 5, size - 5);
    }
  }

  /** A pointer's position in canvas pixels. */
  function canvasPoint(event: MouseEvent): [number, number] {
    const rect = canvas.getBoundingClientRect();
    return [((event.clientX - rect.left) * canvas.width) / rect.width, ((event.clientY - rect.top) * canvas.height) / rect.height];
  }

  function unitAt(event: MouseEvent): number {
    const [x, y] = canvasPoint(event);
    const slot = Math.floor(y / cell) * cols + Math.floor(x / cell);
    return x >= 0 && x < cols * cell && y >= 0 && slot < units ? order[slot] : -1;
  }

  function select(unit: number, add: boolean): void {
    const current = model.get("selected_units");
    let next: number[];
    if (add) next = current.includes(unit) ? current.filter((u) => u !== unit) : [...current, unit];
    else next = [unit];
    update(model, "selected_units", next);
  }

  function describe(unit: number): string[] {
    const name = statistic();
    const value = unitValues[unit];
    const shown = name !== null && FLAGS.has(name) ? (value > 0.5 ? "yes" : "no") : formatValue(value);
    const lines = [`unit ${unit}`, `${colourBy()}: ${shown}`];
    if (positions > 1) {
      let nan = 0;
      for (let p = 0; p < positions; p++) if (Number.isNaN(matrix[p * units + unit])) nan++;
      if (nan) lines.push(`${nan} of ${positions} positions are NaN`);
    }
    if (statNames.length) {
      const numbers = statNames.filter((n) => !FLAGS.has(n) && n !== name).map((n) => `${n} ${formatValue(statRow(n)[unit])}`);
      if (numbers.length) lines.push(`scan: ${numbers.join(" · ")}`);
      const flags = statNames.filter((n) => FLAGS.has(n) && statRow(n)[unit] > 0.5);
      if (flags.length && !(name !== null && FLAGS.has(name))) lines.push(flags.join(", "));
    }
    return lines;
  }

  // -- brush: press, drag a rectangle, release; the covered cells' units become the selection ----
  let press: { x: number; y: number; clientX: number; clientY: number } | null = null;
  let brushing = false;
  let swallowClick = false;

  function brushRect(event: MouseEvent): [number, number, number, number] {
    const [x, y] = canvasPoint(event);
    const clampX = (v: number) => Math.max(0, Math.min(canvas.width - 1, v));
    const clampY = (v: number) => Math.max(0, Math.min(canvas.height - 1, v));
    const x0 = clampX(Math.min(press!.x, x)), x1 = clampX(Math.max(press!.x, x));
    const y0 = clampY(Math.min(press!.y, y)), y1 = clampY(Math.max(press!.y, y));
    return [x0, y0, x1, y1];
  }

  function showBrush(event: MouseEvent): void {
    const [x0, y0, x1, y1] = brushRect(event);
    const canvasBox = canvas.getBoundingClientRect();
    const bodyBox = body.getBoundingClientRect();
    const k = canvasBox.width / canvas.width;
    brush.style.left = `${canvasBox.left - bodyBox.left + body.scrollLeft + x0 * k}px`;
    brush.style.top = `${canvasBox.top - bodyBox.top + body.scrollTop + y0 * k}px`;
    brush.style.width = `${(x1 - x0) * k}px`;
    brush.style.height = `${(y1 - y0) * k}px`;
    brush.hidden = false;
  }

  function brushedUnits(event: MouseEvent): number[] {
    const [x0, y0, x1, y1] = brushRect(event);
    const c0 = Math.floor(x0 / cell), c1 = Math.min(cols - 1, Math.floor(x1 / cell));
    const r0 = Math.floor(y0 / cell), r1 = Math.floor(y1 / cell);
    const covered: number[] = [];
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const slot = r * cols + c;
        if (slot < units) covered.push(order[slot]);
      }
    }
    return covered;
  }

  const onDragMove = (event: MouseEvent) => {
    if (!press) return;
    if (!brushing && Math.hypot(event.clientX - press.clientX, event.clientY - press.clientY) < BRUSH_THRESHOLD) return;
    brushing = true;
    tooltip.hide();
    showBrush(event);
  };
  const onDragEnd = (event: PointerEvent) => {
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    if (press && brushing && event.type === "pointerup") {
      const covered = brushedUnits(event);
      swallowClick = true; // the click that follows this release is the end of the brush
      keyboardFocus = false;
      if (covered.length) {
        focusUnit = covered[0];
        const next = event.shiftKey ? [...model.get("selected_units"), ...covered] : covered;
        update(model, "selected_units", Array.from(new Set(next)));
      }
    }
    press = null;
    brushing = false;
    brush.hidden = true;
  };
  // Pointer events with capture: the drag follows the pointer outside the canvas, and the
  // notebook's own capturing mouse listeners (shift-drag selects cells) cannot swallow it.
  const onDown = (event: PointerEvent) => {
    swallowClick = false;
    if (event.button !== 0) return;
    const [x, y] = canvasPoint(event);
    press = { x, y, clientX: event.clientX, clientY: event.clientY };
    brushing = false;
    canvas.setPointerCapture(event.pointerId);
  };

  let hoverFrame = 0;
  const onMove = (event: MouseEvent) => {
    cancelAnimationFrame(hoverFrame);
    if (brushing) return;
    hoverFrame = requestAnimationFrame(() => {
      const unit = unitAt(event);
      if (unit < 0 || brushing) return tooltip.hide();
      const rect = body.getBoundingClientRect();
      tooltip.show(describe(unit), event.clientX - rect.left + body.scrollLeft, event.clientY - rect.top + body.scrollTop);
    });
  };
  const onLeave = () => {
    cancelAnimationFrame(hoverFrame);
    tooltip.hide();
  };
  const onClick = (event: MouseEvent) => {
    if (swallowClick) {
      swallowClick = false;
      return;
    }
    const unit = unitAt(event);
    keyboardFocus = false;
    if (unit >= 0) {
      focusUnit = unit;
      select(unit, event.shiftKey);
    }
  };
  const onKey = (event: KeyboardEvent) => {
    keyboardFocus = true;
    const moves: Record<string, number> = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols };
    if (event.key in moves && units > 0) {
      const slot = Math.max(0, Math.min(units - 1, slotOf[focusUnit] + moves[event.key]));
      focusUnit = order[slot];
      draw();
      event.preventDefault();
    } else if (event.key === "Enter" || event.key === " ") {
      select(focusUnit, event.shiftKey);
      event.preventDefault();
    }
  };
  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onDragMove);
  canvas.addEventListener("pointerup", onDragEnd);
  canvas.addEventListener("pointercancel", onDragEnd);
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("mouseleave", onLeave);
  canvas.addEventListener("click", onClick);
  canvas.addEventListener("keydown", onKey);
  canvas.addEventListener("focus", draw);
  canvas.addEventListener("blur", draw);

  const onValues = () => {
    tooltip.hide(); // it described the previous values (or layer) until the pointer moves again
    loadValues();
    recolour();
  };
  const onStats = () => {
    loadStats();
    recolour();
  };
  const onLayers = () => showLayers(layerSelect, model);
  const onReduce = () => {
    reduceSelect.value = statistic() !== null || !model.get("reduce").startsWith(STAT_PREFIX) ? model.get("reduce") : "max";
    recolour();
  };
  const onOrder = () => {
    orderSelect.value = model.get("order");
    recolour();
  };
  const onExample = () => {
    loadExample();
    recolour();
  };
  const listeners: [string, () => void][] = [
    ["change:values", onValues],
    ["change:baseline", recolour], // the colour scale's limit (see Store.scale)
    ["change:unit_stats", onStats],
    ["change:stat_names", onStats],
    ["change:layers", onLayers],
    ["change:layer_groups", onLayers],
    ["change:layer", onLayers],
    ["change:reduce", onReduce],
    ["change:position", onReduce],
    ["change:order", onOrder],
    ["change:example", onExample],
    ["change:lengths", onExample],
    ["change:selected_units", draw],
  ];
  for (const [event, listener] of listeners) model.on(event, listener);
  onLayers();
  onValues();

  return () => {
    cancelAnimationFrame(hoverFrame);
    for (const [event, listener] of listeners) model.off(event, listener);
  };
};

export default standalone(gridPanel);
