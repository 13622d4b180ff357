// What the language-model views (attention heads, logit lens) share on the page: the state of one
// text (neurowidgets/widgets/lm_text.py), the token strip, the block picker, the notice and error lines,
// and their styles. Tokens are always text (textContent), never HTML.

import type { AnyModel } from "@anywidget/types";
import { Requests, Superseded } from "./requests";
import type { RequestArgs, RequestKind } from "./schema";
import { element } from "./ui";

/** Sends a request of a kind the kernel answers (typed by the generated schema), one lane per kind:
 * the latest wins. */
export type Send = <K extends RequestKind>(kind: K, args: RequestArgs[K]) => void;

export function sender(requests: Requests): Send {
  return (kind, args) => {
    const lane: string = kind;
    requests.latest(lane, lane, args as Record<string, unknown>).catch((error: Error) => {
      if (!(error instanceof Superseded)) console.warn("neurowidgets:", error.message);
    });
  };
}

export interface LMTextState {
  texts: string[];
  example: number;
  tokens: string[];
  notice: string;
  blocks: string[];
  block: number;
  position: number;
  error: string;
}

type Model<T> = AnyModel<T & LMTextState>;

/** Calls ``update`` now and whenever one of ``names`` changes; returns the cleanup. */
export function watch<T>(model: Model<T>, names: string[], update: () => void): () => void {
  const events = names.map((n) => `change:${n}`).join(" ");
  model.on(events, update);
  update();
  return () => model.off(events, update);
}

/** A line of text from a trait (the kernel's error, a notice), hidden when empty. */
export function textLine<T>(parent: HTMLElement, model: Model<T>, name: string, className: string, role = ""): () => void {
  const line = element("div", className, parent);
  if (role) line.setAttribute("role", role);
  return watch(model, [name], () => {
    const text = String((model.get as (key: string) => unknown)(name) ?? "");
    line.textContent = text;
    line.hidden = !text;
  });
}

/** The picker of a block (``blocks``, ``block``); a choice is a ``select_block`` request. */
export function blockPicker<T>(parent: HTMLElement, model: Model<T>, send: Send): () => void {
  const wrapper = element("label", "nw-control", parent);
  const text = element("span", "nw-control-label", wrapper);
  text.textContent = "block";
  const select = element("select", "nw-select nw-lm-block", wrapper);
  select.setAttribute("aria-label", "block");
  select.addEventListener("change", () => send("select_block", { block: Number(select.value) }));
  return watch(model, ["blocks", "block"], () => {
    const blocks = model.get("blocks");
    if (select.options.length !== blocks.length) {
      select.replaceChildren(...blocks.map((name, i) => {
        const option = document.createElement("option");
        option.value = String(i);
        option.textContent = `${i}: ${name}`;
        return option;
      }));
    }
    select.value = String(model.get("block"));
  });
}

/** The text's tokens, one span each (text only): hover reports the token, a click selects it
 * (``select_position``, or -1 when it is already selected). ``colour`` may tint each token. */
export class TokenStrip {
  readonly el: HTMLDivElement;
  private spans: HTMLSpanElement[] = [];
  private cleanup: () => void;

  constructor(
    parent: HTMLElement,
    private readonly model: Model<object>,
    send: Send,
    private readonly onHover: (position: number) => void = () => {},
  ) {
    this.el = element("div", "nw-lm-tokens", parent);
    this.el.setAttribute("aria-label", "tokens");
    this.el.addEventListener("click", (event) => {
      const position = this.positionOf(event.target);
      if (position < 0) return;
      send("select_position", { position: position === model.get("position") ? -1 : position });
    });
    this.el.addEventListener("mouseover", (event) => this.onHover(this.positionOf(event.target)));
    this.el.addEventListener("mouseleave", () => this.onHover(-1));
    this.cleanup = watch(model, ["tokens", "position"], () => this.draw());
  }

  private positionOf(target: EventTarget | null): number {
    const span = (target as HTMLElement | null)?.closest?.("[data-position]");
    return span ? Number(span.getAttribute("data-position")) : -1;
  }

  private draw(): void {
    const tokens = this.model.get("tokens");
    if (this.spans.length !== tokens.length || this.spans.some((s, i) => s.textContent !== tokens[i])) {
      this.spans = tokens.map((token, i) => {
        const span = document.createElement("span");
        span.className = "nw-lm-token";
        span.textContent = token;
        span.setAttribute("data-position", String(i));
        span.title = `position ${i}`;
        return span;
      });
      this.el.replaceChildren(...this.spans);
    }
    const selected = this.model.get("position");
    this.spans.forEach((span, i) => span.classList.toggle("nw-lm-selected", i === selected));
  }

  /** Tint each token (CSS colours, "" for none). */
  tint(colours: string[] | null): void {
    this.spans.forEach((span, i) => {
      span.style.background = colours?.[i] ?? "";
    });
  }

  dispose(): void {
    this.cleanup();
  }
}

const STYLE_ID = "nw-lm-styles";
const STYLES = `
.nw-lm-tokens { display: flex; flex-wrap: wrap; gap: 2px; max-height: 160px; overflow: auto; font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.nw-lm-token { padding: 1px 3px; border: 1px solid var(--jp-border-color2, #ddd); border-radius: 3px; cursor: pointer; white-space: pre; }
.nw-lm-token.nw-lm-selected { outline: 2px solid #e6550d; }
.nw-lm-notice { color: var(--jp-warn-color0, #8a5a00); }
.nw-lm-error { color: var(--jp-error-color1, #c62828); white-space: pre-wrap; }
.nw-lm-unavailable { color: var(--jp-ui-font-color2, #555); font-style: italic; }
.nw-lm-note { color: var(--jp-ui-font-color2, #555); font-size: 12px; }
.nw-attn-canvas { display: block; cursor: pointer; }
.nw-lm-row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.nw-lens-scroll { max-width: 100%; overflow: auto; max-height: 420px; }
.nw-lens-table { border-collapse: collapse; font-family: var(--jp-code-font-family, monospace); font-size: 11px; }
.nw-lens-table td, .nw-lens-table th { border: 1px solid var(--jp-border-color2, #ddd); padding: 1px 3px; white-space: pre; max-width: 90px; overflow: hidden; text-overflow: ellipsis; }
.nw-lens-table th { font-weight: normal; color: var(--jp-ui-font-color2, #555); background: var(--jp-layout-color2, #f3f3f3); }
.nw-lens-table td { cursor: pointer; }
.nw-lens-table .nw-lm-selected { outline: 2px solid #e6550d; outline-offset: -2px; }
.nw-lens-top { border-collapse: collapse; font-family: var(--jp-code-font-family, monospace); font-size: 11px; }
.nw-lens-top td { padding: 1px 4px; white-space: pre; }
.nw-dla { display: flex; flex-direction: column; gap: 1px; min-width: 320px; font-size: 12px; }
.nw-dla-bar { display: grid; grid-template-columns: 90px 1fr 70px; align-items: center; gap: 6px; cursor: pointer; }
.nw-dla-track { position: relative; height: 12px; background: var(--jp-layout-color2, #f3f3f3); }
.nw-dla-fill { position: absolute; top: 0; bottom: 0; }
.nw-dla-axis { position: absolute; top: -2px; bottom: -2px; width: 1px; background: var(--jp-ui-font-color2, #777); }
.nw-dla-bar:hover .nw-dla-track { outline: 1px solid var(--jp-brand-color1, #1976d2); }
.nw-dla-heads { border-collapse: collapse; width: auto; align-self: flex-start; }
.nw-dla-heads th:first-child { text-align: right; }
.nw-dla-heads td { width: 14px; height: 14px; padding: 0; border: 1px solid var(--jp-layout-color1, #fff); cursor: pointer; }
.nw-dla-heads th { font-weight: normal; font-size: 10px; color: var(--jp-ui-font-color2, #555); padding: 0 3px; }
.nw-lm-input { font: inherit; width: 10em; }
`;

/** Adds the language-model views' styles to the document once. */
export function addStyles(): void {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = STYLES;
  document.head.appendChild(style);
}
