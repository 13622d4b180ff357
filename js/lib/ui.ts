// Small DOM pieces shared by every view: labelled controls, the error box, the colour legend.

import { DivergingScale, NAN_CSS, formatValue } from "./colors";

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  parent?: HTMLElement,
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  el.className = className;
  if (parent) parent.appendChild(el);
  return el;
}

/** A <select> with a visible label; ``onChange`` receives the chosen value. */
export function labelledSelect(
  parent: HTMLElement,
  label: string,
  onChange: (value: string) => void,
): HTMLSelectElement {
  const wrapper = element("label", "nw-control", parent);
  const text = element("span", "nw-control-label", wrapper);
  text.textContent = label;
  const select = element("select", "nw-select", wrapper);
  select.setAttribute("aria-label", label);
  select.addEventListener("change", () => onChange(select.value));
  return select;
}

export function setOptions(select: HTMLSelectElement, options: string[], value: string): void {
  const same = select.options.length === options.length &&
    options.every((o, i) => select.options[i].value === o);
  if (!same) {
    select.replaceChildren(...options.map((o) => {
      const option = document.createElement("option");
      option.value = o;
      option.textContent = o;
      return option;
    }));
  }
  select.value = value;
}

/** A horizontal legend for a diverging scale, with the NaN colour. */
export class Legend {
  readonly el: HTMLDivElement;
  private readonly labels: HTMLSpanElement[];

  constructor(parent: HTMLElement, caption: string) {
    this.el = element("div", "nw-legend", parent);
    const title = element("span", "nw-legend-caption", this.el);
    title.textContent = caption;
    const column = element("div", "nw-legend-scale", this.el);
    const bar = element("div", "nw-legend-bar", column);
    bar.style.background = DivergingScale.gradient();
    const ticks = element("div", "nw-legend-ticks", column);
    this.labels = [0, 1, 2].map(() => element("span", "", ticks));
    const nan = element("span", "nw-legend-nan", this.el);
    const swatch = element("span", "nw-swatch", nan);
    swatch.style.background = NAN_CSS;
    nan.appendChild(document.createTextNode("NaN"));
  }

  update(limit: number): void {
    this.labels[0].textContent = formatValue(-limit);
    this.labels[1].textContent = "0";
    this.labels[2].textContent = formatValue(limit);
  }
}
