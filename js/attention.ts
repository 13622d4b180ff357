// AttentionHeads: one block's heads as small multiples of their attention patterns, all on one canvas
// (texts up to 512 tokens: one pixel block per cell, never one element per cell). A click on a head
// enlarges it (a `select_head` request); hovering or selecting a token outlines its row in every head
// and tints the tokens it attends to in the strip. Patterns arrive once per block; everything else is
// drawn here without the kernel.

import type { AnyModel, RenderProps } from "@anywidget/types";
import { errorBox } from "./lib/store";
import { decodeFloat, type WireArray } from "./lib/codec";
import { SequentialScale, formatValue } from "./lib/colors";
import { TokenStrip, addStyles, sender, blockPicker, textLine, watch, type LMTextState } from "./lib/lm_text";
import { Requests } from "./lib/requests";
import { Tooltip } from "./lib/tooltip";
import { element } from "./lib/ui";

interface AttentionState extends LMTextState {
  heads: number;
  patterns: WireArray | null;
  head: number;
}

const GAP = 6; // px between small multiples
const LABEL = 14; // px above each small multiple for its name
const MAX_WIDTH = 900; // px of small multiples per row
const SCALE = new SequentialScale(1); // attention weights are probabilities: one scale for every head

/** Where things are on the canvas (also written to `data-geometry` for tests). */
interface Geometry {
  mode: "grid" | "head";
  heads: number;
  tokens: number;
  size: number; // px of one head's square
  cols: number;
  gap: number;
  label: number;
}

function geometry(heads: number, tokens: number, head: number): Geometry {
  if (head >= 0) {
    const size = Math.max(tokens, Math.min(512, Math.max(256, tokens * 8)));
    return { mode: "head", heads, tokens, size: Math.max(1, Math.round(size / Math.max(tokens, 1))) * Math.max(tokens, 1), cols: 1, gap: 0, label: LABEL };
  }
  const size = Math.min(192, Math.max(96, tokens * 2));
  const cols = Math.max(1, Math.min(heads, Math.floor((MAX_WIDTH + GAP) / (size + GAP))));
  return { mode: "grid", heads, tokens, size, cols, gap: GAP, label: LABEL };
}

function origin(g: Geometry, head: number): [number, number] {
  const index = g.mode === "head" ? 0 : head;
  const col = index % g.cols;
  const row = Math.floor(index / g.cols);
  return [col * (g.size + g.gap), row * (g.size + g.gap + g.label) + g.label];
}

function render({ model, el }: RenderProps<AttentionState>): () => void {
  addStyles();
  el.classList.add("nw-root", "nw-attention");
  const requests = new Requests(model);
  const send = sender(requests);
  const cleanups: (() => void)[] = [];
  const header = element("div", "nw-header", el);
  cleanups.push(blockPicker(header, model, send));
  const back = element("button", "nw-button nw-attn-all", header);
  back.textContent = "all heads";
  back.addEventListener("click", () => send("select_head", { head: -1 }));
  const caption = element("span", "nw-lm-note", header);
  cleanups.push(textLine(el, model, "notice", "nw-lm-notice", "status"));
  cleanups.push(errorBox(el, model as unknown as AnyModel<{ error: string }>));

  let hovered = -1; // the token hovered in the strip or the canvas (a query row)
  let hoveredHead = -1;
  const strip = new TokenStrip(el, model, send, (position) => {
    hovered = position;
    draw();
  });
  const frame = element("div", "nw-attn-frame", el);
  frame.style.position = "relative";
  const canvas = element("canvas", "nw-attn-canvas", frame);
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", "attention patterns");
  const tooltip = new Tooltip(frame);

  let wire: WireArray | null = null;
  let values: Float32Array = new Float32Array(0);
  let cells: HTMLCanvasElement[] = []; // one T×T image per head
  let g = geometry(0, 0, -1);

  const decode = () => {
    const next = model.get("patterns");
    if (next === wire) return;
    wire = next;
    values = next ? decodeFloat(next).values : new Float32Array(0);
    const heads = model.get("heads");
    const n = model.get("tokens").length;
    cells = [];
    for (let h = 0; h < heads && n > 0; h++) {
      const image = new ImageData(n, n);
      for (let i = 0; i < n * n; i++) {
        const [r, gr, b] = SCALE.rgb(values[h * n * n + i]);
        image.data[4 * i] = r;
        image.data[4 * i + 1] = gr;
        image.data[4 * i + 2] = b;
        image.data[4 * i + 3] = 255;
      }
      const cell = document.createElement("canvas");
      cell.width = n;
      cell.height = n;
      cell.getContext("2d")!.putImageData(image, 0, 0);
      cells.push(cell);
    }
  };

  const focusRow = () => (hovered >= 0 ? hovered : model.get("position"));
  const focusHead = () => (model.get("head") >= 0 ? model.get("head") : hoveredHead);

  function draw(): void {
    decode();
    const heads = cells.length;
    const n = model.get("tokens").length;
    const head = model.get("head");
    g = geometry(heads, n, head);
    const shown = g.mode === "head" ? [head] : [...Array(heads).keys()];
    const rows = Math.ceil(shown.length / g.cols);
    const width = g.cols * (g.size + g.gap) - g.gap;
    const height = rows * (g.size + g.gap + g.label) - g.gap;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = Math.max(width, 1);
      canvas.height = Math.max(height, 1);
    }
    canvas.dataset.geometry = JSON.stringify(g);
    back.hidden = head < 0;
    caption.textContent = head >= 0
      ? `head ${head} of block ${model.get("block")}: rows are queries, columns the keys they attend to`
      : `${heads} heads of block ${model.get("block")}; click a head to enlarge it`;
    const ctx = canvas.getContext("2d")!;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false;
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "bottom";
    const row = focusRow();
    for (const h of shown) {
      if (!cells[h]) continue;
      const [x, y] = origin(g, h);
      ctx.drawImage(cells[h], x, y, g.size, g.size);
      ctx.fillStyle = getComputedStyle(el).color || "#222";
      ctx.fillText(`head ${h}`, x + 1, y - 2);
      if (row >= 0 && row < n) {
        const step = g.size / n;
        ctx.strokeStyle = "#e6550d";
        ctx.lineWidth = 1;
        ctx.strokeRect(x + 0.5, y + row * step - 0.5, g.size - 1, Math.max(step, 1) + 1);
      }
    }
    const fh = focusHead();
    if (row >= 0 && row < n && fh >= 0 && fh < heads) {
      const base = fh * n * n + row * n;
      strip.tint([...Array(n).keys()].map((k) => {
        const v = values[base + k];
        return v > 0.02 ? `rgba(230, 85, 13, ${Math.min(1, v).toFixed(3)})` : "";
      }));
    } else {
      strip.tint(null);
    }
  }

  /** The head and (query, key) under a point of the canvas, or null. */
  function hit(event: MouseEvent): { head: number; q: number; k: number } | null {
    const rect = canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const shown = g.mode === "head" ? [model.get("head")] : [...Array(g.heads).keys()];
    for (const h of shown) {
      const [ox, oy] = origin(g, h);
      if (x >= ox && x < ox + g.size && y >= oy && y < oy + g.size) {
        const q = Math.floor(((y - oy) / g.size) * g.tokens);
        const k = Math.floor(((x - ox) / g.size) * g.tokens);
        return { head: h, q, k };
      }
    }
    return null;
  }

  canvas.addEventListener("mousemove", (event) => {
    const found = hit(event);
    const rect = frame.getBoundingClientRect();
    if (!found) {
      tooltip.hide();
      if (hovered !== -1 || hoveredHead !== -1) {
        hovered = -1;
        hoveredHead = -1;
        draw();
      }
      return;
    }
    const tokens = model.get("tokens");
    const value = values[found.head * g.tokens * g.tokens + found.q * g.tokens + found.k];
    tooltip.show(
      [`head ${found.head}`, `query ${found.q}: ${tokens[found.q]}`, `key ${found.k}: ${tokens[found.k]}`, `attention ${formatValue(value)}`],
      event.clientX - rect.left,
      event.clientY - rect.top,
    );
    if (found.q !== hovered || found.head !== hoveredHead) {
      hovered = found.q;
      hoveredHead = found.head;
      draw();
    }
  });
  canvas.addEventListener("mouseleave", () => {
    tooltip.hide();
    hovered = -1;
    hoveredHead = -1;
    draw();
  });
  canvas.addEventListener("click", (event) => {
    const found = hit(event);
    if (!found) return;
    if (g.mode === "grid") send("select_head", { head: found.head });
    else send("select_position", { position: found.q });
  });

  cleanups.push(watch(model, ["patterns", "heads", "head", "position", "tokens", "block"], draw));
  return () => {
    cleanups.forEach((c) => c());
    strip.dispose();
    requests.dispose();
  };
}

export default { render };
