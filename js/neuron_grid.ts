// NeuronGrid: one cell per unit, coloured by the unit's activation on the current input.
// The (positions × units) matrix arrives once; reducing and recolouring happen here, locally.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { DivergingScale, formatValue, symmetricLimit } from "./lib/colors";
import { LayerValues, positionLabel, update, type LayerState } from "./lib/layer_state";
import { Tooltip } from "./lib/tooltip";
import { Legend, element, errorBox, labelledSelect, setOptions } from "./lib/ui";

type Reduce = "max" | "mean";

export interface GridState extends LayerState {
  reduce: Reduce;
}

const MAX_WIDTH = 720;

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

export function cellSize(units: number): number {
  if (units <= 64) return 36;
  if (units <= 256) return 24;
  if (units <= 1024) return 14;
  if (units <= 4096) return 9;
  return 6;
}

/** Draw the grid of ``model`` into ``el``; returns the cleanup function. */
export function renderGrid(model: AnyModel<GridState>, el: HTMLElement): () => void {
  el.classList.add("nw-grid");
  const header = element("div", "nw-header", el);
  const layerSelect = labelledSelect(header, "Layer", (value) => update(model, "layer", value));
  const reduceSelect = labelledSelect(header, "Colour by", (value) => update(model, "reduce", value as Reduce));
  setOptions(reduceSelect, ["max", "mean"], model.get("reduce"));
  reduceSelect.options[0].textContent = "max over positions";
  reduceSelect.options[1].textContent = "mean over positions";
  const summary = element("span", "nw-summary", header);

  const body = element("div", "nw-grid-body", el);
  const canvas = element("canvas", "nw-grid-canvas", body);
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "grid");
  const ctx = canvas.getContext("2d")!;
  const tooltip = new Tooltip(body);
  const legend = new Legend(el, "activation");
  const removeErrorBox = errorBox(el, model);

  let layerValues = LayerValues.empty();
  let matrix: Float32Array = new Float32Array(0);
  let unitValues: Float32Array = new Float32Array(0);
  let units = 0;
  let positions = 0;
  let cols = 1;
  let cell = 36;
  let scale = new DivergingScale(1);
  let focusUnit = 0;
  let keyboardFocus = false; // the focus ring shows only while the keyboard drives the grid

  function loadValues(): void {
    layerValues = LayerValues.from(model);
    ({ positions, units } = layerValues);
    loadExample();
    cell = cellSize(units);
    cols = Math.max(1, Math.min(units, Math.floor(MAX_WIDTH / cell)));
    focusUnit = Math.min(focusUnit, Math.max(0, units - 1));
  }

  function loadExample(): void {
    matrix = layerValues.examples ? layerValues.matrix(Math.min(model.get("example"), layerValues.examples - 1)) : matrix;
  }

  /** Per-unit values: at the selected position if there is one, else reduced over positions. */
  function colourBy(): string {
    const position = model.get("position");
    return position >= 0 && position < positions ? `at position ${positionLabel(position, model.get("positions_shape"))}` : model.get("reduce");
  }

  function recolour(): void {
    const position = model.get("position");
    if (position >= 0 && position < positions) unitValues = matrix.slice(position * units, (position + 1) * units);
    else unitValues = reduceUnits(matrix, positions, units, model.get("reduce"));
    scale = new DivergingScale(symmetricLimit(unitValues));
    legend.update(scale.limit);
    draw();
  }

  function draw(): void {
    const rows = Math.ceil(units / cols);
    const width = cols * cell;
    const height = Math.max(1, rows * cell);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const image = ctx.createImageData(width, height);
    const pixels = new Uint32Array(image.data.buffer);
    const gap = cell >= 9 ? 1 : 0;
    for (let u = 0; u < units; u++) {
      const [r, g, b] = scale.rgb(unitValues[u]);
      const colour = (255 << 24) | (b << 16) | (g << 8) | r; // little-endian RGBA
      const x0 = (u % cols) * cell;
      const y0 = Math.floor(u / cols) * cell;
      for (let y = y0; y < y0 + cell - gap; y++) pixels.fill(colour, y * width + x0, y * width + x0 + cell - gap);
    }
    ctx.putImageData(image, 0, 0);
    for (const u of model.get("selected_units")) outline(u, "#000", "#fff");
    if (keyboardFocus && document.activeElement === canvas) outline(focusUnit, "#fc0", "#fc0");
    canvas.dataset.units = String(units);
    canvas.dataset.cols = String(cols);
    canvas.dataset.cell = String(cell);
    canvas.setAttribute("aria-label", `${units} units of layer ${model.get("layer")}`);
    const grid = model.get("positions_shape");
    const where = grid.length ? `${grid.join("×")} positions` : "1 position";
    const at = model.get("position") >= 0 ? ` · coloured ${colourBy()}` : "";
    summary.textContent = `${units} units · ${where}${at}`;
  }

  function outline(unit: number, outer: string, inner: string): void {
    if (unit < 0 || unit >= units) return;
    const x = (unit % cols) * cell;
    const y = Math.floor(unit / cols) * cell;
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

  function unitAt(event: MouseEvent): number {
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * canvas.width) / rect.width;
    const y = ((event.clientY - rect.top) * canvas.height) / rect.height;
    const unit = Math.floor(y / cell) * cols + Math.floor(x / cell);
    return x >= 0 && x < cols * cell && unit >= 0 && unit < units ? unit : -1;
  }

  function select(unit: number, add: boolean): void {
    const current = model.get("selected_units");
    let next: number[];
    if (add) next = current.includes(unit) ? current.filter((u) => u !== unit) : [...current, unit];
    else next = [unit];
    update(model, "selected_units", next);
  }

  function describe(unit: number): string[] {
    const lines = [`unit ${unit}`, `${colourBy()}: ${formatValue(unitValues[unit])}`];
    if (positions > 1) {
      let nan = 0;
      for (let p = 0; p < positions; p++) if (Number.isNaN(matrix[p * units + unit])) nan++;
      if (nan) lines.push(`${nan} of ${positions} positions are NaN`);
    }
    return lines;
  }

  let hoverFrame = 0;
  const onMove = (event: MouseEvent) => {
    cancelAnimationFrame(hoverFrame);
    hoverFrame = requestAnimationFrame(() => {
      const unit = unitAt(event);
      if (unit < 0) return tooltip.hide();
      const rect = body.getBoundingClientRect();
      tooltip.show(describe(unit), event.clientX - rect.left + body.scrollLeft, event.clientY - rect.top + body.scrollTop);
    });
  };
  const onLeave = () => {
    cancelAnimationFrame(hoverFrame);
    tooltip.hide();
  };
  const onClick = (event: MouseEvent) => {
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
    if (event.key in moves) {
      focusUnit = Math.max(0, Math.min(units - 1, focusUnit + moves[event.key]));
      draw();
      event.preventDefault();
    } else if (event.key === "Enter" || event.key === " ") {
      select(focusUnit, event.shiftKey);
      event.preventDefault();
    }
  };
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("mouseleave", onLeave);
  canvas.addEventListener("click", onClick);
  canvas.addEventListener("keydown", onKey);
  canvas.addEventListener("focus", draw);
  canvas.addEventListener("blur", draw);

  const onValues = () => {
    loadValues();
    recolour();
  };
  const onLayers = () => setOptions(layerSelect, model.get("layers"), model.get("layer"));
  const onReduce = () => {
    reduceSelect.value = model.get("reduce");
    recolour();
  };
  const onExample = () => {
    loadExample();
    recolour();
  };
  const listeners: [string, () => void][] = [
    ["change:values", onValues],
    ["change:layers", onLayers],
    ["change:layer", onLayers],
    ["change:reduce", onReduce],
    ["change:position", onReduce],
    ["change:example", onExample],
    ["change:selected_units", draw],
  ];
  for (const [event, listener] of listeners) model.on(event, listener);
  onLayers();
  onValues();

  return () => {
    cancelAnimationFrame(hoverFrame);
    removeErrorBox();
    for (const [event, listener] of listeners) model.off(event, listener);
  };
}

export default {
  render({ model, el }: RenderProps<GridState>) {
    el.classList.add("nw-root");
    return renderGrid(model, el);
  },
};
