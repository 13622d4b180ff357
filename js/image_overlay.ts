// ImageOverlay: the current image drawn crisply, the first selected unit's spatial map over it, and
// drag-to-occlude probing. Colouring for another unit, example or mode is local; only the patch goes
// to the kernel, through a latest-wins lane (at most one request in flight while dragging).
//
// The map is upsampled nearest-neighbour: every image pixel takes the colour of the layer cell it maps
// to (row floor(y · Hl / H), column floor(x · Wl / W)), so the cells seen are the cells the layer has.

import { decodeBytes, decodeFloat, type WireArray } from "./lib/codec";
import { DivergingScale, formatValue, symmetricLimit } from "./lib/colors";
import { LayerValues, positionLabel, showLayers, update, type LayerState } from "./lib/layer_state";
import { pending } from "./lib/requests";
import { standalone, type Panel } from "./lib/store";
import { Tooltip } from "./lib/tooltip";
import { Legend, element, labelledSelect, setOptions } from "./lib/ui";

type Show = "activation" | "change" | "attribution";

/** neurowidgets.core.attribution.METHODS */
const METHODS = ["gradient", "gradient_x_input", "integrated_gradients", "occlusion"];

export interface AttributionInfo {
  method?: string;
  target?: "unit" | "prediction";
  unit?: number; // the class, for a prediction
  seconds?: number;
  nan?: number;
  done?: number; // an occlusion sweep's patches done, of total (null until the first pass)
  total?: number | null;
  cancelled?: boolean;
}
type Rect = [number, number, number, number]; // top, left, bottom, right in image pixels

export interface ClassProbability {
  index: number;
  label: string;
  probability: number | null;
  original_probability: number | null;
}

export interface Prediction {
  label?: string;
  index?: number;
  probability?: number | null;
  original_label?: string;
  original_index?: number;
  original_probability?: number | null;
  original_now?: number | null;
  patched?: boolean;
  top?: ClassProbability[];
}

export interface OverlayState extends LayerState {
  pixels: WireArray | null;
  opacity: number;
  show: Show;
  patch: number[];
  fill: number | number[];
  fill_colour: number[];
  baseline: WireArray | null;
  prediction: Prediction;
  attribution_method: string;
  attribution_target: "unit" | "prediction";
  attribution: WireArray | null;
  attribution_info: AttributionInfo;
}

/** Display size: crisp integer scaling to about 256 px for small images, at most 512 px. */
export function displayScale(height: number, width: number): number {
  const side = Math.max(height, width, 1);
  if (side > 512) return 512 / side;
  return Math.max(1, Math.round(256 / side));
}

/** For each of ``size`` overlay pixels, the layer cell (row or column) it maps to. */
export function cellIndex(size: number, cells: number): Int32Array {
  const out = new Int32Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor((i * cells) / size);
  return out;
}

/** The overlay pixels [start, end) that map to ``cell`` (inverse of cellIndex). */
export function cellSpan(cell: number, size: number, cells: number): [number, number] {
  return [Math.ceil((cell * size) / cells), Math.ceil(((cell + 1) * size) / cells)];
}

function clipRect(rect: Rect, height: number, width: number): Rect | null {
  const top = Math.max(0, Math.min(rect[0], rect[2]));
  const bottom = Math.min(height, Math.max(rect[0], rect[2]));
  const left = Math.max(0, Math.min(rect[1], rect[3]));
  const right = Math.min(width, Math.max(rect[1], rect[3]));
  return top < bottom && left < right ? [top, left, bottom, right] : null;
}

function percent(value: number | null | undefined): string {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : `${(100 * value).toFixed(1)}%`;
}

/** A labelled control wrapper, like ui.ts's labelledSelect. */
function labelled(parent: HTMLElement, label: string): HTMLLabelElement {
  const wrapper = element("label", "nw-control", parent);
  const text = element("span", "nw-control-label", wrapper);
  text.textContent = label;
  return wrapper;
}

function numberInput(parent: HTMLElement, label: string, onChange: (value: number) => void): HTMLInputElement {
  const wrapper = labelled(parent, label);
  const input = element("input", "nw-number", wrapper);
  input.type = "number";
  input.min = "0";
  input.step = "1";
  input.setAttribute("aria-label", label);
  input.addEventListener("change", () => {
    const value = Number(input.value);
    if (input.value !== "" && Number.isInteger(value)) onChange(value);
  });
  return input;
}

const DRAG_THRESHOLD_PX = 3;
const BUSY_DELAY_MS = 120;

/** The overlay panel: the current image with the first selected unit's map, and the occluding patch. */
export const overlayPanel: Panel<OverlayState> = (store, el, options) => {
  const model = store.model;
  el.classList.add("nw-overlay");

  // -- controls --------------------------------------------------------------------------------
  const header = element("div", "nw-header", el);
  const layerSelect = labelledSelect(header, "Layer", (value) => update(model, "layer", value));
  (layerSelect.parentElement as HTMLElement).hidden = !options.layerPicker;
  const unitInput = numberInput(header, "Unit", (unit) => {
    if (unit < 0 || unit >= units) return syncControls();
    const rest = model.get("selected_units").filter((u) => u !== unit);
    update(model, "selected_units", [unit, ...rest]);
  });
  const exampleInput = numberInput(header, "Example", (example) => {
    if (example < 0 || example >= examples) return syncControls();
    update(model, "example", example);
  });
  const exampleControl = exampleInput.parentElement as HTMLElement;
  const showSelect = labelledSelect(header, "Show", (value) => update(model, "show", value as Show));
  setOptions(showSelect, ["activation", "change", "attribution"], model.get("show"));
  showSelect.options[0].textContent = "activation";
  showSelect.options[1].textContent = "change vs original";
  showSelect.options[2].textContent = "attribution";
  const methodSelect = labelledSelect(header, "Method", (value) => update(model, "attribution_method", value));
  setOptions(methodSelect, METHODS, model.get("attribution_method"));
  const methodControl = methodSelect.parentElement as HTMLElement;
  const targetSelect = labelledSelect(header, "Of", (value) => update(model, "attribution_target", value as "unit" | "prediction"));
  setOptions(targetSelect, ["unit", "prediction"], model.get("attribution_target"));
  targetSelect.options[1].textContent = "prediction (its class)";
  const targetControl = targetSelect.parentElement as HTMLElement;
  const opacityLabel = labelled(header, "Opacity");
  const opacityInput = element("input", "nw-range", opacityLabel);
  opacityInput.type = "range";
  opacityInput.min = "0";
  opacityInput.max = "1";
  opacityInput.step = "0.05";
  opacityInput.setAttribute("aria-label", "Overlay opacity");
  const opacityValue = element("output", "nw-overlay-opacity-value", opacityLabel);
  const clearButton = element("button", "nw-button", header);
  clearButton.type = "button";
  clearButton.textContent = "Clear patch";
  clearButton.title = "Remove the occluding patch (Escape)";

  // -- the image stage -------------------------------------------------------------------------
  const body = element("div", "nw-overlay-body", el);
  const stageBox = element("div", "nw-overlay-stage-box", body);
  const stage = element("div", "nw-overlay-stage", stageBox);
  stage.tabIndex = 0;
  stage.setAttribute("role", "application");
  stage.setAttribute("aria-roledescription", "image with activation map");
  const imageCanvas = element("canvas", "nw-overlay-image", stage);
  const mapCanvas = element("canvas", "nw-overlay-map", stage);
  const positionBox = element("div", "nw-overlay-cell nw-overlay-position", stage);
  const hoverBox = element("div", "nw-overlay-cell nw-overlay-hover", stage);
  const patchBox = element("div", "nw-overlay-patch", stage);
  const imageCtx = imageCanvas.getContext("2d")!;
  const mapCtx = mapCanvas.getContext("2d")!;
  const tooltip = new Tooltip(stageBox);
  const note = element("div", "nw-overlay-note", stageBox);
  note.setAttribute("aria-live", "polite");
  const status = element("div", "nw-overlay-status", stageBox);
  status.setAttribute("role", "status");
  // The attribution's method and kernel time, or an occlusion sweep's progress with its Cancel.
  const attributionLine = element("div", "nw-overlay-attribution", stageBox);
  const attributionText = element("span", "nw-overlay-attribution-text", attributionLine);
  attributionText.setAttribute("aria-live", "polite");
  const sweepProgress = element("progress", "nw-overlay-sweep", attributionLine);
  sweepProgress.setAttribute("aria-label", "occlusion sweep progress");
  const cancelButton = element("button", "nw-button", attributionLine);
  cancelButton.type = "button";
  cancelButton.textContent = "Cancel";
  cancelButton.title = "Stop the occlusion sweep";

  // -- the prediction readout ------------------------------------------------------------------
  const readout = element("div", "nw-overlay-readout", body);
  const readoutTitle = element("div", "nw-overlay-readout-title", readout);
  readoutTitle.textContent = "Prediction";
  const summaryList = element("div", "nw-overlay-summary", readout);
  element("span", "nw-overlay-term", summaryList).textContent = "original";
  const originalValue = element("span", "nw-overlay-original", summaryList);
  element("span", "nw-overlay-term", summaryList).textContent = "with patch";
  const patchedValue = element("span", "nw-overlay-patched", summaryList);
  const topList = element("ol", "nw-overlay-top", readout);
  topList.setAttribute("aria-label", "top classes with the patch (tick: without)");

  const legend = new Legend(el, "activation");
  const legendCaption = legend.el.querySelector(".nw-legend-caption") as HTMLElement;
  const hint = element("div", "nw-overlay-hint", el);
  hint.textContent =
    "Drag on the image to occlude a patch; drag inside the patch to move it; Escape or Clear patch removes it. " +
    "Click a cell to select its position. Keys: arrows move, Enter selects, Shift+arrows move the patch.";

  // -- state -----------------------------------------------------------------------------------
  let pixels: Uint8Array = new Uint8Array(0);
  let examples = 0;
  let height = 0; // image pixels
  let width = 0;
  let layerValues = LayerValues.empty();
  let baseline: Float32Array = new Float32Array(0);
  let attribution: Float32Array = new Float32Array(0); // (H, W) image pixels, from the kernel
  let attributionH = 0;
  let attributionW = 0;
  let units = 0;
  let gridH = 0; // layer grid (0 when the layer has no 2-D grid)
  let gridW = 0;
  let overlayH = 0; // overlay canvas pixels (the image's, or the grid's when that is finer)
  let overlayW = 0;
  let rowOf: Int32Array = new Int32Array(0);
  let colOf: Int32Array = new Int32Array(0);
  let shown = new Float32Array(0); // per position: what the map shows
  let current = new Float32Array(0); // per position: the activation now
  let original = new Float32Array(0); // per position: the activation without the patch
  let scale = new DivergingScale(1);
  let paints = 0;
  let hoverCell = -1;
  let keyCell = -1;
  let busy = false;
  let busyTimer: ReturnType<typeof setTimeout> | undefined;
  let localRect: Rect | null = null; // the patch being dragged (may reach outside the image)
  let awaiting = 0; // patch requests not answered yet

  // Pending: shown once the kernel has been busy for a moment, so fast answers do not flicker.
  const track = pending((isBusy) => {
    busy = isBusy;
    el.dataset.busy = isBusy ? "1" : "0";
    clearTimeout(busyTimer);
    if (isBusy) busyTimer = setTimeout(() => showPending(true), BUSY_DELAY_MS);
    else showPending(false);
  });

  function showPending(pending: boolean): void {
    el.classList.toggle("nw-busy", pending && busy);
    status.textContent = pending && busy ? "computing…" : "";
  }

  function unit(): number {
    const selected = model.get("selected_units");
    return selected.length && selected[0] < units ? selected[0] : -1;
  }

  function example(): number {
    return Math.max(0, Math.min(model.get("example"), examples - 1));
  }

  function patch(): Rect | null {
    const p = model.get("patch");
    return p && p.length === 4 ? (p as Rect) : null;
  }

  /** The patch to draw: the one being dragged (until the kernel has answered), else the kernel's. */
  function shownPatch(): Rect | null {
    if (localRect && (drag || awaiting > 0)) return clipRect(localRect, height, width);
    return patch();
  }

  // -- loading ---------------------------------------------------------------------------------
  function loadPixels(): void {
    const wire = model.get("pixels");
    if (!wire) {
      pixels = new Uint8Array(0);
      examples = height = width = 0;
      return;
    }
    const decoded = decodeBytes(wire);
    pixels = decoded.values;
    [examples, height, width] = decoded.shape;
    const s = displayScale(height, width);
    stage.style.width = `${Math.round(width * s)}px`;
    stage.style.height = `${Math.round(height * s)}px`;
    if (imageCanvas.width !== width || imageCanvas.height !== height) {
      imageCanvas.width = width;
      imageCanvas.height = height;
    }
    stage.dataset.height = String(height);
    stage.dataset.width = String(width);
  }

  function loadValues(): void {
    layerValues = store.values;
    units = layerValues.units;
    const grid = model.get("positions_shape");
    [gridH, gridW] = grid.length === 2 ? grid : [0, 0];
    loadGeometry();
  }

  function loadGeometry(): void {
    if (!gridH || !height) {
      overlayH = overlayW = 0;
      return;
    }
    overlayH = gridH > height ? gridH : height;
    overlayW = gridW > width ? gridW : width;
    rowOf = cellIndex(overlayH, gridH);
    colOf = cellIndex(overlayW, gridW);
    if (mapCanvas.width !== overlayW || mapCanvas.height !== overlayH) {
      mapCanvas.width = overlayW; // resizing clears a canvas: only when the size changes
      mapCanvas.height = overlayH;
    }
    stage.dataset.grid = `${gridH}x${gridW}`;
  }

  function loadBaseline(): void {
    baseline = store.baseline;
  }

  function loadAttribution(): void {
    const wire = model.get("attribution");
    const decoded = wire ? decodeFloat(wire) : null;
    attribution = decoded ? decoded.values : new Float32Array(0);
    [attributionH, attributionW] = decoded && decoded.shape.length === 2 ? decoded.shape : [0, 0];
  }

  // -- drawing ---------------------------------------------------------------------------------
  function drawImage(): void {
    if (!examples) return;
    const size = height * width * 4;
    const start = example() * size;
    const image = new ImageData(new Uint8ClampedArray(pixels.subarray(start, start + size)), width, height);
    imageCtx.putImageData(image, 0, 0);
    const rect = shownPatch();
    if (rect) {
      const [r, g, b, a] = model.get("fill_colour").length === 4 ? model.get("fill_colour") : [0, 0, 0, 255];
      imageCtx.fillStyle = `rgba(${r}, ${g}, ${b}, ${a / 255})`;
      imageCtx.clearRect(rect[1], rect[0], rect[3] - rect[1], rect[2] - rect[0]);
      imageCtx.fillRect(rect[1], rect[0], rect[3] - rect[1], rect[2] - rect[0]);
    }
  }

  /** The per-position values of the current unit and the colour limit; local, no kernel round trip. */
  function computeMap(): void {
    const u = unit();
    const positions = layerValues.positions;
    current = new Float32Array(positions);
    original = new Float32Array(positions);
    shown = new Float32Array(positions);
    if (u < 0 || !layerValues.examples) return;
    const ex = Math.min(model.get("example"), layerValues.examples - 1);
    const haveBaseline = baseline.length === positions * units;
    const change = model.get("show") === "change";
    // The store's scale covers the layer with and without the patch, so colours stay comparable while
    // the patch moves (a change beyond its limit takes the end colour).
    scale = store.scale;
    for (let p = 0; p < positions; p++) {
      const now = layerValues.value(ex, p, u);
      const before = haveBaseline ? baseline[p * units + u] : now;
      current[p] = now;
      original[p] = before;
      shown[p] = change ? now - before : now;
    }
  }

  /** Paint one colour per canvas pixel; resizing clears a canvas, so only when the size changes. */
  function paintCanvas(h: number, w: number, colourAt: (y: number, x: number) => number): void {
    if (mapCanvas.width !== w || mapCanvas.height !== h) {
      mapCanvas.width = w;
      mapCanvas.height = h;
    }
    const image = mapCtx.createImageData(w, h);
    const out = new Uint32Array(image.data.buffer);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = colourAt(y, x);
    mapCtx.putImageData(image, 0, 0);
  }

  function packed(value: number): number {
    const [r, g, b] = scale.rgb(value);
    return (255 << 24) | (b << 16) | (g << 8) | r; // little-endian RGBA
  }

  /** The attribution map: one colour per image pixel (NaN in the scale's NaN colour). */
  function drawAttribution(): boolean {
    const ofUnit = model.get("attribution_target") !== "prediction";
    const spatial = attributionH > 0 && (unit() >= 0 || !ofUnit) && examples > 0;
    scale = new DivergingScale(symmetricLimit(attribution));
    if (spatial) paintCanvas(attributionH, attributionW, (y, x) => packed(attribution[y * attributionW + x]));
    legendCaption.textContent = `attribution (${model.get("attribution_method").replace(/_/g, " ")})`;
    return spatial;
  }

  function drawMap(): void {
    if (model.get("show") === "attribution") {
      finishMap(drawAttribution());
      return;
    }
    computeMap();
    const spatial = overlayH > 0 && unit() >= 0 && examples > 0;
    if (spatial && (mapCanvas.width !== overlayW || mapCanvas.height !== overlayH)) {
      mapCanvas.width = overlayW; // back from the attribution's image-sized canvas
      mapCanvas.height = overlayH;
    }
    if (spatial) {
      const colours = new Uint32Array(shown.length);
      for (let p = 0; p < shown.length; p++) {
        const [r, g, b] = scale.rgb(shown[p]);
        colours[p] = (255 << 24) | (b << 16) | (g << 8) | r; // little-endian RGBA
      }
      const image = mapCtx.createImageData(overlayW, overlayH);
      const out = new Uint32Array(image.data.buffer);
      for (let y = 0; y < overlayH; y++) {
        const rowBase = rowOf[y] * gridW;
        const line = y * overlayW;
        for (let x = 0; x < overlayW; x++) out[line + x] = colours[rowBase + colOf[x]];
      }
      mapCtx.putImageData(image, 0, 0);
    }
    const change = model.get("show") === "change";
    legendCaption.textContent = change ? "change vs original" : "activation";
    finishMap(spatial);
  }

  function finishMap(spatial: boolean): void {
    mapCanvas.hidden = !spatial;
    legend.update(scale.limit);
    legend.el.hidden = !spatial;
    mapCanvas.dataset.limit = String(scale.limit);
    mapCanvas.dataset.unit = String(unit());
    mapCanvas.dataset.show = model.get("show");
    drawNote();
    paints++;
    mapCanvas.dataset.paints = String(paints);
    el.dispatchEvent(
      new CustomEvent("nw-overlay-paint", { detail: { paints, patch: model.get("patch"), time: performance.now() } }),
    );
  }

  function drawNote(): void {
    const grid = model.get("positions_shape");
    const layer = model.get("layer");
    let text = "";
    if (!examples) text = "No image.";
    else if (grid.length === 0 && model.get("show") !== "attribution") text = `Layer ${layer} has one position: no spatial map. Drag a patch to see the prediction change.`;
    else if (grid.length !== 2 && model.get("show") !== "attribution") text = `Layer ${layer}'s positions (${grid.join("×")}) are not a 2-D grid: no spatial map.`;
    else if (unit() < 0 && !(model.get("show") === "attribution" && model.get("attribution_target") === "prediction")) {
      text = `Select a unit to overlay its map on the image (Unit, or a click in a linked view).`;
    }
    else if (model.get("show") === "change" && !patch()) text = "No patch yet: the change is zero everywhere.";
    else if (model.get("show") === "attribution") text = attributionNote();
    note.textContent = text;
    note.hidden = !text;
    const u = unit();
    stage.setAttribute(
      "aria-label",
      `${height}×${width} image ${example()}` + (overlayH && u >= 0 ? ` with the ${model.get("show")} map of unit ${u} of ${layer}` : ""),
    );
  }

  function attributionNote(): string {
    const info = model.get("attribution_info") || {};
    if (info.cancelled) return "Occlusion sweep cancelled: change the unit, patch or method to start again.";
    if (!attributionH) return "Computing the attribution…";
    if (info.nan) return `${info.nan} pixel(s) have a NaN gradient (drawn magenta).`;
    return "";
  }

  function drawAttributionInfo(): void {
    const info = model.get("attribution_info") || {};
    const on = model.get("show") === "attribution" && info.method !== undefined;
    attributionLine.hidden = !on;
    if (!on) return;
    const sweeping = info.total !== undefined && !info.cancelled && (info.total === null || (info.done ?? 0) < info.total);
    sweepProgress.hidden = cancelButton.hidden = !sweeping;
    sweepProgress.max = info.total || 1;
    sweepProgress.value = info.done ?? 0;
    const method = (info.method ?? "").replace(/_/g, " ");
    const ms = info.seconds !== undefined ? `${(1000 * info.seconds).toFixed(1)} ms` : "";
    if (sweeping) attributionText.textContent = `${method}: ${info.done ?? 0} of ${info.total ?? "?"} patches`;
    else if (info.cancelled) attributionText.textContent = `${method}: cancelled`;
    else if (info.target === "prediction") attributionText.textContent = `${method} of class ${info.unit} · ${ms}`;
    else attributionText.textContent = `${method} of unit ${info.unit} · ${ms}`;
    attributionLine.dataset.seconds = info.seconds !== undefined ? String(info.seconds) : "";
  }

  function placeBox(box: HTMLElement, rect: [number, number, number, number] | null, rows: number, cols: number): void {
    if (!rect) {
      box.hidden = true;
      return;
    }
    const [top, left, bottom, right] = rect;
    box.hidden = false;
    box.style.top = `${(100 * top) / rows}%`;
    box.style.left = `${(100 * left) / cols}%`;
    box.style.height = `${(100 * (bottom - top)) / rows}%`;
    box.style.width = `${(100 * (right - left)) / cols}%`;
  }

  function cellRect(cell: number): [number, number, number, number] | null {
    if (cell < 0 || !overlayH || cell >= gridH * gridW) return null;
    const [top, bottom] = cellSpan(Math.floor(cell / gridW), overlayH, gridH);
    const [left, right] = cellSpan(cell % gridW, overlayW, gridW);
    return [top, left, bottom, right];
  }

  function drawMarks(): void {
    const position = model.get("position");
    placeBox(positionBox, cellRect(position), overlayH, overlayW);
    placeBox(hoverBox, cellRect(hoverCell >= 0 ? hoverCell : keyCell), overlayH, overlayW);
    const rect = shownPatch();
    placeBox(patchBox, rect, height, width);
    patchBox.classList.toggle("nw-dragging", drag !== null);
    stage.dataset.patch = rect ? rect.join(",") : "";
    clearButton.disabled = !patch() && !localRect;
  }

  function drawReadout(): void {
    const p = model.get("prediction") || {};
    readout.hidden = p.index === undefined;
    if (p.index === undefined) return;
    originalValue.textContent = `${p.original_label} · ${percent(p.original_probability)}`;
    if (p.patched) {
      const changed = p.index !== p.original_index;
      patchedValue.textContent =
        `${p.label} · ${percent(p.probability)}` +
        (changed ? ` (${p.original_label}: ${percent(p.original_now)})` : "");
      patchedValue.classList.toggle("nw-overlay-flipped", changed);
    } else {
      patchedValue.textContent = "no patch";
      patchedValue.classList.remove("nw-overlay-flipped");
    }
    readout.dataset.label = p.label ?? "";
    readout.dataset.originalLabel = p.original_label ?? "";
    const rows = (p.top ?? []).map((entry) => {
      const li = document.createElement("li");
      li.className = "nw-overlay-class";
      if (entry.index === p.original_index) li.classList.add("nw-overlay-class-original");
      const name = element("span", "nw-overlay-class-label", li);
      name.textContent = entry.label;
      const bar = element("span", "nw-overlay-bar", li);
      const fillBar = element("span", "nw-overlay-bar-fill", bar);
      fillBar.style.width = `${100 * (entry.probability ?? 0)}%`;
      const tick = element("span", "nw-overlay-bar-tick", bar);
      tick.style.left = `${100 * (entry.original_probability ?? 0)}%`;
      tick.title = `without the patch: ${percent(entry.original_probability)}`;
      const value = element("span", "nw-overlay-class-value", li);
      value.textContent = percent(entry.probability);
      li.title = `${entry.label}: ${percent(entry.probability)} with the patch, ${percent(entry.original_probability)} without`;
      return li;
    });
    topList.replaceChildren(...rows);
  }

  function syncControls(): void {
    showLayers(layerSelect, model);
    unitInput.max = String(Math.max(0, units - 1));
    const u = unit();
    if (document.activeElement !== unitInput) unitInput.value = u >= 0 ? String(u) : "";
    exampleInput.max = String(Math.max(0, examples - 1));
    if (document.activeElement !== exampleInput) exampleInput.value = String(example());
    exampleControl.hidden = examples <= 1;
    showSelect.value = model.get("show");
    methodSelect.value = model.get("attribution_method");
    methodControl.hidden = targetControl.hidden = model.get("show") !== "attribution";
    targetSelect.value = model.get("attribution_target");
    drawAttributionInfo();
    const opacity = model.get("opacity");
    opacityInput.value = String(opacity);
    opacityValue.textContent = `${Math.round(100 * opacity)}%`;
    mapCanvas.style.opacity = String(opacity);
    const spatial = overlayH > 0;
    // Attribution maps are over the image's pixels, whatever the layer's positions.
    opacityInput.disabled = !spatial && model.get("show") !== "attribution";
    showSelect.disabled = !examples;
    unitInput.disabled = !units;
  }

  // Several traits arrive in one message: coalesce their repaints into one, right after the message.
  const dirty = new Set<"image" | "map" | "marks" | "readout" | "controls">();
  let scheduled = false;
  function schedule(...parts: ("image" | "map" | "marks" | "readout" | "controls")[]): void {
    for (const part of parts) dirty.add(part);
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(flush);
  }
  function flush(): void {
    scheduled = false;
    const parts = new Set(dirty);
    dirty.clear();
    if (parts.has("controls")) syncControls();
    if (parts.has("image")) drawImage();
    if (parts.has("map")) drawMap();
    if (parts.has("marks")) drawMarks();
    if (parts.has("readout")) drawReadout();
    if (hoverCell >= 0 && lastPointer) showTooltip(hoverCell, lastPointer.x, lastPointer.y);
  }

  // -- pointer geometry ------------------------------------------------------------------------
  /** Pointer → fractional position over the stage (may be outside 0…1 while a drag is captured). */
  function fraction(event: { clientX: number; clientY: number }): { fx: number; fy: number } {
    const box = stage.getBoundingClientRect();
    return { fx: (event.clientX - box.left) / box.width, fy: (event.clientY - box.top) / box.height };
  }

  function cellAt(fx: number, fy: number): number {
    if (!overlayH || fx < 0 || fy < 0 || fx >= 1 || fy >= 1) return -1;
    return rowOf[Math.floor(fy * overlayH)] * gridW + colOf[Math.floor(fx * overlayW)];
  }

  function pixelAt(fx: number, fy: number): [number, number] {
    return [Math.floor(fy * height), Math.floor(fx * width)];
  }

  function describe(cell: number): string[] {
    const u = unit();
    const lines = [`unit ${u} · position ${positionLabel(cell, [gridH, gridW])}`];
    lines.push(`activation: ${formatValue(current[cell])}`);
    if (patch() || model.get("show") === "change") {
      lines.push(`original: ${formatValue(original[cell])}`);
      lines.push(`change: ${formatValue(current[cell] - original[cell])}`);
    }
    return lines;
  }

  let lastPointer: { x: number; y: number } | null = null;
  function showTooltip(cell: number, x: number, y: number): void {
    if (cell < 0 || unit() < 0 || !overlayH) return tooltip.hide();
    tooltip.show(describe(cell), x, y);
  }

  function tooltipAtCell(cell: number): void {
    const rect = cellRect(cell);
    if (!rect) return tooltip.hide();
    const box = stage.getBoundingClientRect();
    const outer = stageBox.getBoundingClientRect();
    const x = box.left - outer.left + ((rect[3] / overlayW) * box.width);
    const y = box.top - outer.top + ((rect[0] / overlayH) * box.height);
    showTooltip(cell, x, y);
  }

  // -- the patch: requests to the kernel ---------------------------------------------------------
  let lastDragRect = ""; // moves within one pixel repeat the same patch: send it once per drag
  function sendPatch(rect: Rect | null): void {
    awaiting++;
    const request = rect ? store.requests.latest("patch", "occlude", { rect }) : store.requests.latest("patch", "clear");
    track(request)
      .catch(() => {}) // superseded, or the kernel's error: the error box shows its message
      .finally(() => {
        awaiting--;
        if (awaiting === 0 && !drag) {
          localRect = null;
          schedule("image", "marks");
        }
      });
  }

  function clearPatch(): void {
    localRect = null;
    drag = null;
    sendPatch(null);
    schedule("image", "marks");
  }

  // -- pointer interactions --------------------------------------------------------------------
  interface Drag {
    mode: "draw" | "move" | "pending";
    startX: number; // client coordinates at pointer down
    startY: number;
    anchor: [number, number]; // image pixel at pointer down
    base: Rect | null; // for "move": the rect at pointer down
    pointerId: number;
  }
  let drag: Drag | null = null;

  const onPointerDown = (event: PointerEvent) => {
    if (event.button !== 0 || !examples) return;
    event.preventDefault();
    pointerFocus = true;
    stage.classList.remove("nw-keyboard");
    stage.focus({ preventScroll: true });
    pointerFocus = false;
    const { fx, fy } = fraction(event);
    const [py, px] = pixelAt(fx, fy);
    const existing = localRect ?? patch();
    const inside = existing && py >= existing[0] && py < existing[2] && px >= existing[1] && px < existing[3];
    lastDragRect = "";
    drag = {
      mode: "pending",
      startX: event.clientX,
      startY: event.clientY,
      anchor: [py, px],
      base: inside && existing ? ([...existing] as Rect) : null,
      pointerId: event.pointerId,
    };
    stage.setPointerCapture(event.pointerId);
  };

  const onPointerMove = (event: PointerEvent) => {
    const { fx, fy } = fraction(event);
    lastPointer = pointerInBox(event);
    if (drag && event.pointerId === drag.pointerId) {
      if (drag.mode === "pending") {
        if (Math.hypot(event.clientX - drag.startX, event.clientY - drag.startY) < DRAG_THRESHOLD_PX) return;
        drag.mode = drag.base ? "move" : "draw";
        tooltip.hide();
      }
      const [py, px] = pixelAt(fx, fy);
      let rect: Rect;
      if (drag.mode === "move" && drag.base) {
        const dy = py - drag.anchor[0];
        const dx = px - drag.anchor[1];
        rect = [drag.base[0] + dy, drag.base[1] + dx, drag.base[2] + dy, drag.base[3] + dx];
      } else {
        const [ay, ax] = drag.anchor;
        rect = [Math.min(ay, py), Math.min(ax, px), Math.max(ay, py) + 1, Math.max(ax, px) + 1];
      }
      localRect = rect;
      if (rect.join(",") === lastDragRect) return;
      lastDragRect = rect.join(",");
      drawImage();
      drawMarks();
      sendPatch(rect);
      return;
    }
    const cell = cellAt(fx, fy);
    if (cell !== hoverCell) {
      hoverCell = cell;
      drawMarks();
    }
    showTooltip(cell, lastPointer.x, lastPointer.y);
  };

  const onPointerUp = (event: PointerEvent) => {
    if (!drag || event.pointerId !== drag.pointerId) return;
    const finished = drag;
    drag = null;
    if (stage.hasPointerCapture(event.pointerId)) stage.releasePointerCapture(event.pointerId);
    if (finished.mode === "pending") {
      // A click, not a drag: select the position under the pointer (again: deselect).
      const { fx, fy } = fraction(event);
      const cell = cellAt(fx, fy);
      if (cell >= 0) update(model, "position", model.get("position") === cell ? -1 : cell);
    } else if (awaiting === 0) {
      localRect = null;
    }
    schedule("image", "marks");
  };

  const onPointerLeave = () => {
    if (drag) return;
    hoverCell = -1;
    lastPointer = null;
    tooltip.hide();
    drawMarks();
  };

  function pointerInBox(event: { clientX: number; clientY: number }): { x: number; y: number } {
    const outer = stageBox.getBoundingClientRect();
    return { x: event.clientX - outer.left, y: event.clientY - outer.top };
  }

  // The focus ring shows while the keyboard drives the stage, not after a drag.
  let pointerFocus = false;
  const onFocus = () => stage.classList.toggle("nw-keyboard", !pointerFocus);
  const onKey = (event: KeyboardEvent) => {
    stage.classList.add("nw-keyboard");
    const arrows: Record<string, [number, number]> = {
      ArrowLeft: [0, -1],
      ArrowRight: [0, 1],
      ArrowUp: [-1, 0],
      ArrowDown: [1, 0],
    };
    if (event.key === "Escape" || event.key === "Delete") {
      if (patch() || localRect) {
        clearPatch();
        event.preventDefault();
        event.stopPropagation();
      }
      return;
    }
    if (event.key in arrows) {
      const [dy, dx] = arrows[event.key];
      const rect = localRect ?? patch();
      if (event.shiftKey && rect) {
        localRect = [rect[0] + dy, rect[1] + dx, rect[2] + dy, rect[3] + dx];
        drawImage();
        drawMarks();
        sendPatch(localRect);
      } else if (overlayH) {
        const start = keyCell >= 0 ? keyCell : Math.max(0, model.get("position"));
        const r = Math.max(0, Math.min(gridH - 1, Math.floor(start / gridW) + dy));
        const c = Math.max(0, Math.min(gridW - 1, (start % gridW) + dx));
        keyCell = r * gridW + c;
        hoverCell = -1;
        drawMarks();
        tooltipAtCell(keyCell);
      }
      event.preventDefault();
      event.stopPropagation();
    } else if ((event.key === "Enter" || event.key === " ") && keyCell >= 0) {
      update(model, "position", model.get("position") === keyCell ? -1 : keyCell);
      event.preventDefault();
      event.stopPropagation();
    }
  };
  const onBlur = () => {
    stage.classList.remove("nw-keyboard");
    keyCell = -1;
    if (hoverCell < 0) tooltip.hide();
    drawMarks();
  };
  // Keys typed into the widget's own controls are theirs: JupyterLab's notebook shortcuts would
  // otherwise take them (command mode prevents the default of arrows on a focused slider). Escape
  // anywhere in the widget clears the patch.
  const onRootKey = (event: KeyboardEvent) => {
    if (event.target === stage) return;
    if (event.key === "Escape") {
      if (patch() || localRect) {
        clearPatch();
        event.stopPropagation();
      }
      return;
    }
    const control = event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement;
    const passes = event.key === "Tab" || event.ctrlKey || event.metaKey || (event.key === "Enter" && event.shiftKey);
    if (control && !passes) event.stopPropagation();
  };

  stage.addEventListener("pointerdown", onPointerDown);
  stage.addEventListener("pointermove", onPointerMove);
  stage.addEventListener("pointerup", onPointerUp);
  stage.addEventListener("pointercancel", onPointerUp);
  stage.addEventListener("pointerleave", onPointerLeave);
  stage.addEventListener("keydown", onKey);
  stage.addEventListener("blur", onBlur);
  stage.addEventListener("focus", onFocus);
  el.addEventListener("keydown", onRootKey);
  clearButton.addEventListener("click", clearPatch);
  cancelButton.addEventListener("click", () => track(store.requests.send("cancel_sweep")).catch(() => {}));
  opacityInput.addEventListener("input", () => {
    const value = Number(opacityInput.value);
    mapCanvas.style.opacity = String(value);
    opacityValue.textContent = `${Math.round(100 * value)}%`;
    model.set("opacity", value);
  });
  opacityInput.addEventListener("change", () => update(model, "opacity", Number(opacityInput.value)));

  // -- model events ------------------------------------------------------------------------------
  const listeners: [string, () => void][] = [
    ["change:pixels", () => { loadPixels(); loadGeometry(); schedule("controls", "image", "map", "marks"); }],
    ["change:values", () => { loadValues(); schedule("controls", "map", "marks"); }],
    ["change:positions_shape", () => { loadValues(); schedule("controls", "map", "marks"); }],
    ["change:baseline", () => { loadBaseline(); schedule("map"); }],
    ["change:attribution", () => { loadAttribution(); schedule("map"); }],
    ["change:attribution_info", () => schedule("controls", "map")],
    ["change:attribution_method", () => schedule("controls")],
    ["change:attribution_target", () => schedule("controls")],
    ["change:example", () => schedule("controls", "image", "map")],
    ["change:selected_units", () => schedule("controls", "map")],
    ["change:show", () => schedule("controls", "map")],
    ["change:opacity", () => schedule("controls")],
    ["change:patch", () => schedule("image", "marks", "map")],
    ["change:fill_colour", () => schedule("image")],
    ["change:prediction", () => schedule("readout")],
    ["change:position", () => schedule("marks")],
    ["change:layers", () => schedule("controls")],
    ["change:layer_groups", () => schedule("controls")],
    ["change:layer", () => schedule("controls")],
  ];
  for (const [event, listener] of listeners) model.on(event, listener);
  loadPixels();
  loadValues();
  loadBaseline();
  loadAttribution();
  syncControls();
  drawImage();
  drawMap();
  drawMarks();
  drawReadout();

  return () => {
    clearTimeout(busyTimer);
    el.removeEventListener("keydown", onRootKey);
    for (const [event, listener] of listeners) model.off(event, listener);
  };
};

export default standalone(overlayPanel);
