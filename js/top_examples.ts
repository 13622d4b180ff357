// TopExamples: the feature card of one unit from a scan — its top examples and examples from lower
// activation intervals (each position coloured by this unit's activation), its firing density and
// its activation histogram. Clicking an example asks the kernel to make it the current input.

import { decodeBytes, decodeFloat, type WireArray } from "./lib/codec";
import { DivergingScale, formatValue } from "./lib/colors";
import type { LayerState } from "./lib/layer_state";
import { pending } from "./lib/requests";
import { standalone, type Panel } from "./lib/store";
import { Legend, element } from "./lib/ui";

interface CardExample {
  value: number;
  index: number;
  position: number;
}

interface Card {
  message?: string;
  layer?: string;
  unit?: number;
  count?: number;
  density?: number;
  mean?: number;
  max?: number;
  nan_count?: number;
  inf_count?: number;
  num_examples?: number;
  positions_shape?: number[];
  modality?: "text" | "image" | "tensor";
  groups?: { title: string; examples: CardExample[] }[];
  histogram?: { counts: WireArray; edges: WireArray };
  activations?: WireArray;
  tokens?: string[][];
  pixels?: WireArray;
  visualization?: { pixels: WireArray; values: [number, number]; seconds: number }; // optimised inputs: most, least
  logits?: { raised: [string, number][]; lowered: [string, number][] }; // a text unit's direct logit effects
  logits_note?: string; // why there are none (no unembedding, …)
}

export interface ExamplesState extends LayerState {
  card: Card;
  current_index: number;
  shown: number;
}

const WINDOW = 12; // tokens shown on each side of the firing token
const THUMB = 84; // px, image thumbnails

/** The feature card panel of the first selected unit. Its examples are coloured on the store's scale,
 * the one every panel uses: a value has the same colour here as in the grid and the input views (a
 * top example beyond the current input's largest value takes the end colour). */
export const cardPanel: Panel<ExamplesState> = (store, el) => {
  const model = store.model;
  el.classList.add("nw-examples");
  const header = element("div", "nw-examples-header", el);
  const title = element("div", "nw-examples-title", header);
  const facts = element("div", "nw-examples-facts", header);
  const histogram = element("canvas", "nw-examples-histogram", el);
  histogram.setAttribute("role", "img");
  const legend = new Legend(el, "activation");
  const list = element("div", "nw-examples-list", el);
  const track = pending((busy) => el.classList.toggle("nw-pending", busy));
  let drawnLimit = NaN;

  function draw(): void {
    const card = model.get("card");
    list.replaceChildren();
    if (!card || card.message || !card.groups) {
      title.textContent = card?.message ?? "";
      facts.textContent = "";
      histogram.hidden = true;
      legend.el.hidden = true;
      return;
    }
    histogram.hidden = false;
    legend.el.hidden = false;
    title.textContent = `Unit ${card.unit} of ${card.layer}`;
    const bad = (card.nan_count ?? 0) + (card.inf_count ?? 0);
    facts.textContent = [
      `fires on ${((card.density ?? 0) * 100).toFixed(2)}% of positions`,
      `mean ${formatValue(card.mean ?? NaN)}`,
      `max ${formatValue(card.max ?? NaN)}`,
      `${card.num_examples} examples scanned`,
      bad ? `${card.nan_count} NaN, ${card.inf_count} inf values left out` : "",
    ].filter(Boolean).join(" · ");

    const acts = card.activations ? decodeFloat(card.activations) : null;
    const scale = store.scale;
    drawnLimit = scale.limit;
    legend.update(scale.limit);
    legend.el.dataset.limit = String(scale.limit);
    const marks = card.groups[0]?.examples.map((e) => e.value) ?? [];
    if (card.histogram) drawHistogram(histogram, card.histogram, marks);

    const pixels = card.pixels ? decodeBytes(card.pixels) : null;
    if (card.modality === "image") drawVisualization(list, card);
    if (card.modality === "text") drawLogits(list, card);
    let row = 0;
    for (const group of card.groups) {
      if (!group.examples.length) continue;
      const heading = element("div", "nw-examples-group", list);
      heading.textContent = group.title;
      const items = element("div", card.modality === "image" ? "nw-examples-thumbs" : "nw-examples-rows", list);
      for (const example of group.examples) {
        const item = element("div", "nw-example", items);
        item.tabIndex = 0;
        item.setAttribute("role", "button");
        item.setAttribute("aria-label", `example ${example.index}, activation ${formatValue(example.value)}: make it the current input`);
        item.dataset.index = String(example.index);
        item.classList.toggle("nw-current", example.index === model.get("current_index"));
        const caption = element("span", "nw-example-caption", item);
        caption.textContent = `${formatValue(example.value)} · #${example.index}`;
        const unitActs = acts ? acts.values.subarray(row * acts.shape[1], (row + 1) * acts.shape[1]) : new Float32Array(0);
        if (card.modality === "text" && card.tokens) drawTokens(item, card.tokens[row], unitActs, example.position, scale);
        else if (pixels) drawThumb(item, pixels, row, unitActs, card.positions_shape ?? [], scale);
        const open = () => {
          track(store.requests.send("open_example", { index: example.index })).catch(() => {});
        };
        item.addEventListener("click", open);
        item.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            open();
          }
        });
        row++;
      }
    }
  }

  const onCurrent = () => {
    for (const item of list.querySelectorAll<HTMLElement>(".nw-example")) {
      item.classList.toggle("nw-current", Number(item.dataset.index) === model.get("current_index"));
    }
  };
  const onScale = () => {
    if (store.scale.limit !== drawnLimit) draw();
  };
  const listeners: [string, () => void][] = [
    ["change:card", draw],
    ["change:current_index", onCurrent],
    ["change:values", onScale],
    ["change:baseline", onScale],
  ];
  for (const [event, listener] of listeners) model.on(event, listener);
  draw();
  return () => {
    for (const [event, listener] of listeners) model.off(event, listener);
  };
};

/** The tokens a text unit's output raises and lowers most along the direct path (token text, never HTML). */
function drawLogits(list: HTMLElement, card: Card): void {
  const heading = element("div", "nw-examples-group", list);
  heading.textContent = "Top logits (direct effect on the next-token logits)";
  if (!card.logits) {
    element("div", "nw-logits-note", list).textContent = card.logits_note ?? "";
    return;
  }
  for (const [label, entries] of [["raises", card.logits.raised], ["lowers", card.logits.lowered]] as const) {
    const line = element("div", `nw-logits nw-logits-${label}`, list);
    element("span", "nw-logits-label", line).textContent = label;
    for (const [token, value] of entries) {
      const chip = element("span", "nw-token", line);
      chip.textContent = token;
      chip.title = `${token} · ${formatValue(value)}`;
    }
  }
}

/** An image unit's optimised inputs (nw.visualize, computed in the background: "optimising…" until then):
 * what drives it up most and down most. */
function drawVisualization(list: HTMLElement, card: Card): void {
  const heading = element("div", "nw-examples-group", list);
  heading.textContent = "What it responds to (optimised inputs)";
  const items = element("div", "nw-examples-thumbs nw-visualization", list);
  if (!card.visualization) {
    element("span", "nw-optimised-caption", element("div", "nw-optimised", items)).textContent = "optimising…";
    return;
  }
  const pixels = decodeBytes(card.visualization.pixels);
  const top = card.groups?.[0]?.examples[0]?.value;
  ["most", "least"].forEach((which, row) => {
    const item = element("div", "nw-optimised", items); // not an example: nothing to open
    const value = card.visualization!.values[row];
    element("span", "nw-optimised-caption", item).textContent = `${which}: ${formatValue(value)}`;
    item.title = `${row ? "min" : "max"} over positions ${formatValue(value)}` +
      (top === undefined || row ? "" : `; top scanned example ${formatValue(top)}`) +
      ` · ${card.visualization!.seconds} s`;
    drawThumb(item, pixels, row, null, [], new DivergingScale(1));
  });
}

/** Tokens around the firing position, each on the colour of this unit's activation there. */
function drawTokens(item: HTMLElement, tokens: string[], acts: Float32Array, firing: number, scale: DivergingScale): void {
  const line = element("span", "nw-example-tokens", item);
  const start = Math.max(0, firing - WINDOW);
  const stop = Math.min(tokens.length, firing + WINDOW + 1);
  if (start > 0) element("span", "nw-ellipsis", line).textContent = "…";
  for (let t = start; t < stop; t++) {
    const token = element("span", "nw-token", line);
    token.textContent = tokens[t]; // text, never HTML
    token.style.background = scale.css(acts[t]);
    token.title = `${tokens[t]} · ${formatValue(acts[t])}`;
    if (t === firing) token.classList.add("nw-firing");
  }
  if (stop < tokens.length) element("span", "nw-ellipsis", line).textContent = "…";
}

/** The example image with this unit's spatial map over it (nearest-neighbour upsampling; none when
 * ``acts`` is null). */
function drawThumb(
  item: HTMLElement,
  pixels: { values: Uint8Array; shape: number[] },
  row: number,
  acts: Float32Array | null,
  grid: number[],
  scale: DivergingScale,
): void {
  const [, height, width] = pixels.shape;
  const canvas = element("canvas", "nw-example-thumb", item);
  canvas.width = width;
  canvas.height = height;
  canvas.style.width = `${THUMB}px`;
  canvas.style.height = `${(THUMB * height) / width}px`;
  const ctx = canvas.getContext("2d")!;
  const image = ctx.createImageData(width, height);
  const offset = row * height * width * 4;
  image.data.set(pixels.values.subarray(offset, offset + height * width * 4));
  const [gh, gw] = grid.length === 2 ? grid : [1, 1];
  for (let y = 0; acts && y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cell = Math.floor((y * gh) / height) * gw + Math.floor((x * gw) / width);
      const [r, g, b] = scale.rgb(acts[cell]);
      const i = 4 * (y * width + x);
      const alpha = 0.55;
      image.data[i] = image.data[i] * (1 - alpha) + r * alpha;
      image.data[i + 1] = image.data[i + 1] * (1 - alpha) + g * alpha;
      image.data[i + 2] = image.data[i + 2] * (1 - alpha) + b * alpha;
    }
  }
  ctx.putImageData(image, 0, 0);
}

/** Bars over the scan's (variable-width, symlog) bins, drawn evenly; the top examples marked. */
function drawHistogram(canvas: HTMLCanvasElement, wire: { counts: WireArray; edges: WireArray }, marks: number[]): void {
  const counts = decodeFloat(wire.counts).values;
  const edges = decodeFloat(wire.edges).values;
  const width = 420;
  const height = 90;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const style = getComputedStyle(canvas);
  const ink = style.getPropertyValue("--jp-ui-font-color2").trim() || "#555";
  const bars = counts.length;
  canvas.setAttribute("aria-label", `activation histogram over ${bars} bins`);
  if (!bars) return;
  let top = 0;
  for (const c of counts) top = Math.max(top, c);
  const plot = { left: 4, right: width - 4, top: 8, bottom: height - 18 };
  const step = (plot.right - plot.left) / bars;
  ctx.fillStyle = "#4e79a7";
  for (let i = 0; i < bars; i++) {
    if (!counts[i]) continue;
    const h = Math.max(1, (Math.log1p(counts[i]) / Math.log1p(top)) * (plot.bottom - plot.top));
    ctx.fillRect(plot.left + i * step, plot.bottom - h, Math.max(1, step - 0.5), h);
  }
  ctx.fillStyle = "#e15759";
  for (const value of marks) {
    let i = 0;
    while (i < bars - 1 && edges[i + 1] <= value) i++;
    ctx.fillRect(plot.left + (i + 0.5) * step - 1, plot.top - 6, 2, 6);
  }
  ctx.fillStyle = ink;
  ctx.font = "10px sans-serif";
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  ctx.fillText(formatValue(edges[0]), plot.left, plot.bottom + 4);
  ctx.textAlign = "right";
  ctx.fillText(formatValue(edges[bars]), plot.right, plot.bottom + 4);
  ctx.textAlign = "center";
  ctx.fillText("count (log) per bin · red: top examples", width / 2, plot.bottom + 4);
}

export default standalone(cardPanel);
