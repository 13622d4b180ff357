// One floating tooltip per view. Text only: values, names and tokens never become HTML.

export class Tooltip {
  readonly el: HTMLDivElement;

  constructor(parent: HTMLElement) {
    this.el = document.createElement("div");
    this.el.className = "nw-tooltip";
    this.el.setAttribute("role", "tooltip");
    this.el.hidden = true;
    parent.appendChild(this.el);
  }

  /** Show ``lines`` at (x, y), in the parent's coordinates. */
  show(lines: string[], x: number, y: number): void {
    this.el.replaceChildren(...lines.map((line) => {
      const div = document.createElement("div");
      div.textContent = line;
      return div;
    }));
    this.el.style.left = `${x + 12}px`;
    this.el.style.top = `${y + 12}px`;
    this.el.hidden = false;
  }

  hide(): void {
    this.el.hidden = true;
  }
}
