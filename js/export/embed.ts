/*! The exported page's widget renderer (neurowidgets). It bundles, from npm:
 * @jupyter-widgets/html-manager, base, base-manager, controls, output, schema (ipywidgets 8, and 7 as
 * base7 and controls7), @jupyterlab/* and @lumino/*, under the BSD 3-Clause licence:
 *
 * Copyright (c) Jupyter Development Team; Copyright (c) Project Jupyter Contributors;
 * Copyright (c) 2019 Lumino contributors (Copyright (c) 2014-2017 PhosphorJS Contributors).
 * All rights reserved.
 *
 * Redistribution and use in source and binary forms, with or without modification, are permitted
 * provided that the following conditions are met:
 * 1. Redistributions of source code must retain the above copyright notice, this list of conditions
 *    and the following disclaimer.
 * 2. Redistributions in binary form must reproduce the above copyright notice, this list of
 *    conditions and the following disclaimer in the documentation and/or other materials provided
 *    with the distribution.
 * 3. Neither the name of the copyright holder nor the names of its contributors may be used to
 *    endorse or promote products derived from this software without specific prior written
 *    permission.
 *
 * THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR
 * IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND
 * FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
 * CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
 * DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
 * DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER
 * IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT
 * OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
 *
 * The other packages it bundles (jQuery, Backbone, underscore, nouislider, ajv, semver, ...) are MIT or
 * ISC licensed; the notices they carry follow at the end of this file.
 */

// The widget renderer of an exported notebook (neurowidgets/export.py): draws every widget of the
// page from the notebook's saved widget state, with no kernel and no network.
//
// nbconvert's own HTML loads @jupyter-widgets/html-manager and each widget library from a CDN
// (RequireJS + unpkg/jsDelivr): offline, nothing is drawn. This bundle is the same html-manager, built
// into the page, with a module loader that serves only modules the page carries itself: the export
// inlines anywidget's front-end (the AMD module the installed Python `anywidget` ships) and registers
// it here with `define`. Each anywidget then loads its own ESM from its saved `_esm`, and BokehHost
// its BokehJS from the saved state of the widget that carries it: nothing is fetched.

import * as base from "@jupyter-widgets/base";
import { HTMLManager } from "@jupyter-widgets/html-manager/lib/htmlmanager";

const STATE_TYPE = "application/vnd.jupyter.widget-state+json";
const VIEW_TYPE = "application/vnd.jupyter.widget-view+json";

/** What a front-end module the page carries may depend on (the html-manager's own modules). */
const PROVIDED: Record<string, unknown> = { "@jupyter-widgets/base": base };

type Factory = (...deps: unknown[]) => unknown;
const factories = new Map<string, { deps: string[]; factory: Factory }>();
const modules = new Map<string, Promise<unknown>>();

/** Register a widget library carried by the page (an AMD-style module: its dependencies, its factory). */
export function define(name: string, deps: string[], factory: Factory): void {
  factories.set(name, { deps, factory });
}

function load(name: string, version: string): Promise<unknown> {
  let module = modules.get(name);
  if (!module) {
    const entry = factories.get(name);
    if (!entry) {
      return Promise.reject(
        new Error(
          `The widget library ${name}@${version} is not embedded in this page: an offline export carries ` +
            `${["@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output", ...factories.keys()].join(", ")}`,
        ),
      );
    }
    module = Promise.resolve().then(() =>
      entry.factory(
        ...entry.deps.map((dep) => {
          if (!(dep in PROVIDED)) throw new Error(`${name} needs ${dep}, which this page does not carry`);
          return PROVIDED[dep];
        }),
      ),
    );
    modules.set(name, module);
  }
  return module;
}

/** A visible note in place of a widget that cannot be drawn (and the reason in the console). */
function note(where: Element, text: string): void {
  const box = document.createElement("pre");
  box.className = "nw-export-error";
  box.textContent = text;
  where.parentElement?.insertBefore(box, where);
  console.error(`[neurowidgets export] ${text}`);
}

export interface RenderResult {
  models: number;
  views: number;
  missing: number; // views whose model is not in the saved state
}

/** Draw every widget view of `root` from the widget state saved in it. */
export async function render(root: ParentNode = document): Promise<RenderResult> {
  const result: RenderResult = { models: 0, views: 0, missing: 0 };
  const viewTags = Array.from(root.querySelectorAll(`script[type="${VIEW_TYPE}"]`));
  const stateTags = Array.from(root.querySelectorAll(`script[type="${STATE_TYPE}"]`));
  if (viewTags.length && !stateTags.length) {
    viewTags.forEach((tag) =>
      note(tag, "This notebook was saved without its widget state: run it and save it with widget state to see its widgets."),
    );
    result.missing = viewTags.length;
    return result;
  }
  for (const stateTag of stateTags) {
    const manager = new HTMLManager({ loader: load });
    const models = await manager.set_state(JSON.parse(stateTag.textContent || "{}"));
    result.models += models.length;
    await Promise.all(
      viewTags.map(async (tag) => {
        const { model_id: id } = JSON.parse(tag.textContent || "{}") as { model_id?: string };
        const model = models.find((m) => m.model_id === id);
        if (!model || !tag.parentElement) {
          if (stateTags.length === 1) {
            result.missing += 1;
            note(tag, `Widget ${id} is not in the saved widget state (it was closed, or saved before it was shown).`);
          }
          return;
        }
        const el = document.createElement("div");
        el.className = "widget-subarea";
        tag.parentElement.insertBefore(el, tag);
        await manager.display_view(manager.create_view(model as base.DOMWidgetModel), el);
        result.views += 1;
      }),
    );
  }
  return result;
}

function start(): void {
  const html = document.documentElement;
  html.dataset.widgetsRendered = "pending";
  render()
    .then((result) => {
      html.dataset.widgetsRendered = "done";
      html.dataset.widgetViews = String(result.views);
      html.dataset.widgetsMissing = String(result.missing);
    })
    .catch((error) => {
      html.dataset.widgetsRendered = "failed";
      console.error("[neurowidgets export] the saved widget state could not be drawn", error);
    });
}

// The exporter's page defines its libraries (inline scripts after this one) before the document is
// parsed; the widget views and the state are in the body.
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else queueMicrotask(start);
