// TokenUnits: the units firing most at the token clicked in the heatmap (the shared `position` of the
// current `example`), highest first, each on one line: its value there (on its colour in the store's
// scale), its firing density, its top example with the firing token marked, and the token its output
// raises most. The kernel computes the list from the activations it already holds
// (neurowidgets/widgets/token_units.py: `token_units`); a click on a row selects that unit, so the
// grid, the heatmap, the trace and the card follow. The grid orders by this token when its Order is
// "value"; the header offers to switch it. Tokens are text, never markup: textContent only.

import { formatValue } from "./lib/colors";
import { update, type LayerState } from "./lib/layer_state";
import type { Panel } from "./lib/store";
import { element } from "./lib/ui";

export interface TokenUnitRow {
  unit: number;
  value: number | null;
  density?: number | null;
  top_value?: number | null;
  tokens?: string[];
  focus?: number;
  top_logit?: [string, number | null] | null;
}

export interface TokenUnitsState extends LayerState {
  token_units: {
    layer?: string;
    example?: number;
    position?: number;
    token?: string;
    units?: number[];
    values?: (number | null)[];
    rows?: TokenUnitRow[];
    note?: string;
    seconds?: number;
  };
  order: "index" | "value";
}

/** A density as a percentage a reader compares at a glance: "84%", "0.3%", "0%". */
export function formatDensity(density: number): string {
  const percent = 100 * density;
  return percent === 0 || percent >= 10 ? `${percent.toFixed(0)}%` : `${percent.toPrecision(1)}%`;
}

export const tokenUnitsPanel: Panel<TokenUnitsState> = (store, el) => {
  const model = store.model;
  el.classList.add("nw-token-units");
  const head = element("div", "nw-token-units-head", el);
  const title = element("span", "nw-token-units-title", head);
  title.setAttribute("aria-live", "polite");
  const orderButton = element("button", "nw-button nw-token-units-order", head);
  orderButton.type = "button";
  orderButton.textContent = "Order the grid by this token";
  orderButton.addEventListener("click", () => update(model, "order", "value"));
  const ordered = element("span", "nw-token-units-ordered", head);
  ordered.textContent = "· the grid is ordered by this token";
  const note = element("div", "nw-token-units-note", el);
  note.setAttribute("role", "status");
  const list = element("ol", "nw-token-units-list", el);
  list.setAttribute("aria-label", "units firing most at the selected token");

  function line(row: TokenUnitRow): HTMLLIElement {
    const item = element("li", "nw-token-unit");
    item.dataset.unit = String(row.unit);
    const button = element("button", "nw-token-unit-button", item);
    button.type = "button";
    button.setAttribute("aria-pressed", String(model.get("selected_units").includes(row.unit)));
    const value = row.value ?? NaN;
    element("span", "nw-swatch", button).style.background = store.scale.css(value);
    element("span", "nw-token-unit-id", button).textContent = `unit ${row.unit}`;
    element("span", "nw-token-unit-value", button).textContent = formatValue(value);
    if (row.density !== undefined && row.density !== null) {
      const density = element("span", "nw-token-unit-density", button);
      density.textContent = `density ${formatDensity(row.density)}`;
      density.title = "fraction of the scanned tokens where it fires";
    }
    if (row.tokens?.length) {
      const snippet = element("span", "nw-token-unit-snippet", button);
      snippet.title = `its top example${row.top_value != null ? ` (${formatValue(row.top_value)})` : ""}`;
      row.tokens.forEach((token, i) => {
        if (i) snippet.append(" ");
        const part = element(i === row.focus ? "mark" : "span", i === row.focus ? "nw-token-unit-focus" : "", snippet);
        part.textContent = token; // text, never HTML
      });
    }
    if (row.top_logit) {
      const logit = element("span", "nw-token-unit-logit", button);
      logit.title = "the token whose logit its output raises most (direct path)";
      logit.append("→ ");
      element("span", "nw-token", logit).textContent = row.top_logit[0];
    }
    button.addEventListener("click", () => update(model, "selected_units", [row.unit]));
    return item;
  }

  /** Scroll a snippet that overflows its line so that its firing token is in view, a third from the left. */
  function centreFocus(snippet: HTMLElement): void {
    const mark = snippet.querySelector("mark");
    if (!mark || snippet.scrollWidth <= snippet.clientWidth) return;
    const offset = mark.getBoundingClientRect().left - snippet.getBoundingClientRect().left + snippet.scrollLeft;
    snippet.scrollLeft = Math.max(0, offset - snippet.clientWidth / 3);
  }

  function draw(): void {
    const found = model.get("token_units") ?? {};
    const position = model.get("position");
    const shown = found.position !== undefined && found.position >= 0;
    // The kernel answers a click with the new list; until then the old one is marked stale.
    el.classList.toggle("nw-token-units-stale", shown && (found.position !== position || found.example !== model.get("example")));
    if (!shown) {
      title.textContent = "Click a token in the text to list the units that fire most there.";
      list.replaceChildren();
    } else {
      title.textContent = `At “${found.token ?? ""}” (text ${(found.example ?? 0) + 1}, position ${found.position}): ` +
        `${found.rows?.length ?? 0} units, highest first`;
      list.replaceChildren(...(found.rows ?? []).map(line));
      list.querySelectorAll<HTMLElement>(".nw-token-unit-snippet").forEach(centreFocus);
    }
    note.textContent = shown ? found.note ?? "" : "";
    note.hidden = !note.textContent;
    const byValue = model.get("order") === "value";
    orderButton.hidden = !shown || byValue;
    ordered.hidden = !shown || !byValue;
  }

  const events = ["change:token_units", "change:position", "change:example", "change:selected_units", "change:order", "change:values", "change:baseline"];
  for (const event of events) model.on(event, draw);
  draw();
  return () => {
    for (const event of events) model.off(event, draw);
  };
};
