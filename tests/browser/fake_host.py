"""A notebook host simulated in a plain page: the real front-end modules of neurowidgets/static/ are
rendered against a minimal widget manager written here, fed the state a Python widget produces, with
its binary buffers handed over in whatever form a host delivers them (to test hosts we cannot run)."""

from __future__ import annotations

import base64
import json
from typing import Any

from neurowidgets.widgets.base import STATIC

ORIGIN = "http://host.test"

# The manager's part: an AnyModel (get / set / on / off / send / save_changes, widget_manager.get_model)
# per widget; `__bytes__` markers become the buffers in the form the test asks for.
PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/static/styles.css">
</head><body><script type="module">
const forms = {
  dataview: (b) => new DataView(b.buffer),
  base64: (b) => btoa(String.fromCharCode(...b)),
  list: (b) => Array.from(b),
  json: (b) => JSON.parse(JSON.stringify(b)),  // a typed array through JSON: {"0": 12, "1": 200, ...}
};
function bytes(text) { return Uint8Array.from(atob(text), (c) => c.charCodeAt(0)); }
function revive(value, form) {
  if (Array.isArray(value)) return value.map((v) => revive(v, form));
  if (value && typeof value === "object") {
    if ("__bytes__" in value) return forms[form](bytes(value.__bytes__));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v, form)]));
  }
  return value;
}
class Model {
  constructor(state, models) { this.state = state; this.models = models; this.listeners = new Map(); this.sent = []; }
  get(key) { return this.state[key]; }
  set(key, value) { this.state[key] = value; for (const f of this.listeners.get(`change:${key}`) ?? []) f(); }
  on(event, f) { this.listeners.set(event, [...(this.listeners.get(event) ?? []), f]); }
  off(event, f) { this.listeners.set(event, (this.listeners.get(event) ?? []).filter((g) => g !== f)); }
  send(message) { this.sent.push(message); }
  save_changes() {}
  get widget_manager() { return { get_model: async (id) => this.models[id] }; }
}
window.showWidget = async (module, states, id, form) => {
  const models = {};
  for (const [key, state] of Object.entries(states)) models[key] = new Model(revive(state, form), models);
  const widget = (await import(`/static/${module}.js`)).default;
  const model = models[id];
  const el = document.createElement("div");
  el.className = "nw-host";
  el.dataset.form = form;
  document.body.appendChild(el);
  widget.initialize?.({ model });
  await widget.render({ model, el });
  return true;
};
</script></body></html>"""


def _portable(value: Any) -> Any:
    """A widget's state as JSON: bytes as `{"__bytes__": base64}` markers."""
    if isinstance(value, (bytes, memoryview)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v) for v in value]
    return value


def widget_states(widget: Any) -> dict[str, Any]:
    """The state of ``widget`` and of every widget it refers to (IPY_MODEL_ references), by model id."""
    states: dict[str, Any] = {}
    todo = [widget]
    while todo:
        current = todo.pop()
        if current.model_id in states:
            continue
        state = current.get_state()
        states[current.model_id] = _portable(state)
        for name in current.keys:
            value = getattr(current, name)
            if hasattr(value, "model_id") and hasattr(value, "get_state"):
                todo.append(value)
    # The page looks referenced models up by id, without the IPY_MODEL_ prefix.
    return json.loads(json.dumps(states).replace('"IPY_MODEL_', '"'))


def open_host(page: Any) -> None:
    """Serve the built bundles and the fake manager's page at ORIGIN, offline."""

    def serve(route: Any) -> None:
        path = route.request.url[len(ORIGIN) :].split("?")[0]
        if path.startswith("/static/"):
            file = STATIC / path[len("/static/") :]
            types = {".js": "text/javascript", ".css": "text/css"}
            route.fulfill(status=200, body=file.read_bytes(), content_type=types.get(file.suffix, "text/plain"))
        else:
            route.fulfill(status=200, body=PAGE, content_type="text/html")

    page.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/")


def show(page: Any, module: str, widget: Any, form: str) -> Any:
    """Render ``widget`` with the front-end ``module`` (a bundle name), its buffers handed over as
    ``form`` ("dataview", "base64", "list", "json"); returns the widget's element."""
    page.evaluate(
        "([module, states, id, form]) => window.showWidget(module, states, id, form)",
        [module, widget_states(widget), widget.model_id, form],
    )
    return page.locator(f'.nw-host[data-form="{form}"]').last
