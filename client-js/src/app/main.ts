/**
 * The Tandem web app's entry point: Monaco's worker set-up and the two
 * pages, `/` (landing) and `/d/{id}` (the editor). Plain DOM, no framework.
 *
 * @module
 */

import "./app.css";
import * as monaco from "monaco-editor";
import { renderLanding } from "./landing.js";
import { renderEditor } from "./editor-page.js";
import { isDocumentId } from "./dom.js";

/** Worker bundle URLs by name, filled in by scripts/build-app.mjs. */
declare const TANDEM_WORKERS: Record<string, string>;

/** Which worker bundle serves a Monaco worker label. */
function workerFor(label: string): string {
  switch (label) {
    case "json":
      return "json.worker";
    case "css":
    case "scss":
    case "less":
      return "css.worker";
    case "html":
    case "handlebars":
    case "razor":
      return "html.worker";
    case "typescript":
    case "javascript":
      return "ts.worker";
    default:
      return "editor.worker";
  }
}

const environment: monaco.Environment = {
  getWorkerUrl(_moduleId: string, label: string): string {
    const url = TANDEM_WORKERS[workerFor(label)] ?? TANDEM_WORKERS["editor.worker"];
    if (!url) throw new Error(`no worker for ${label}`);
    return url;
  },
};
(globalThis as unknown as { MonacoEnvironment: monaco.Environment }).MonacoEnvironment =
  environment;

function route(): void {
  const root = document.getElementById("app");
  if (!root) throw new Error("index.html lacks #app");
  const path = location.pathname;
  const doc = /^\/d\/([^/]+)\/?$/.exec(path);
  if (doc) {
    let id: string;
    try {
      id = decodeURIComponent(doc[1] as string);
    } catch {
      id = "";
    }
    if (isDocumentId(id)) {
      renderEditor(root, id);
      return;
    }
    renderLanding(root, `“${doc[1]}” is not a document id: use 1-128 of A-Z a-z 0-9 . _ -`);
    return;
  }
  renderLanding(root, null);
}

route();
