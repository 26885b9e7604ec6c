/**
 * The editor page, `/d/{id}`: Monaco filling the window under a top bar
 * with the language picker, the people present, the user's name, a
 * copy-link button, a History button (the panel in `history-panel.ts`) and
 * the connection status (`status.ts`: "Connected" only when nothing waits
 * for the server). A change that is refused, such as a paste too big for
 * the document, opens a dialog that holds its text (`rejected-dialog.ts`).
 *
 * Test hook: `window.tandem` holds the editor, the current binding and its
 * connection (the e2e tests read text and state through it).
 *
 * @module
 */

import * as monaco from "monaco-editor";
import { MonacoBinding, normalizeColor, peerName } from "../monaco/index.js";
import type { Connection, ConnectionStatus, Peer } from "../connection.js";
import type { JoinUser } from "../protocol.js";
import { copyText, h } from "./dom.js";
import { cleanName, loadUser, MAX_NAME_LENGTH, saveName } from "./identity.js";
import { HistoryPanel } from "./history-panel.js";
import { RejectedDialog } from "./rejected-dialog.js";
import { describeStatus } from "./status.js";

/** What the page exposes on `window.tandem`. */
export interface TandemHook {
  readonly documentId: string;
  readonly editor: monaco.editor.IStandaloneCodeEditor;
  readonly monaco: typeof monaco;
  readonly binding: MonacoBinding;
  readonly connection: Connection;
  /** The open history panel, if any. */
  readonly history: HistoryPanel | null;
}

declare global {
  interface Window {
    tandem?: TandemHook;
  }
}

/** The WebSocket URL of document `id`, passing on a `?token=` of the page. */
function socketUrl(id: string): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const token = new URLSearchParams(location.search).get("token");
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${scheme}://${location.host}/api/documents/${encodeURIComponent(id)}/ws${query}`;
}

/** Monaco's languages as picker options, by display name. */
function languageOptions(): { id: string; name: string }[] {
  const seen = new Set<string>();
  const out: { id: string; name: string }[] = [];
  for (const l of monaco.languages.getLanguages()) {
    if (seen.has(l.id)) continue;
    seen.add(l.id);
    out.push({ id: l.id, name: l.aliases?.[0] ?? l.id });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Renders the editor for document `id` into `root` and connects. */
export function renderEditor(root: HTMLElement, id: string): void {
  document.title = `${id} · Tandem`;
  document.body.className = "editor-page";
  let user: JoinUser = loadUser();

  // ---- top bar ---------------------------------------------------------------
  const language = h("select", { id: "language", "aria-label": "Language", disabled: "" });
  for (const l of languageOptions()) language.append(h("option", { value: l.id }, l.name));
  const people = h("ul", { id: "people", class: "people", "aria-label": "People here" });
  const nameInput = h("input", {
    id: "name",
    placeholder: "Your name",
    "aria-label": "Your name",
    maxlength: String(MAX_NAME_LENGTH),
    autocomplete: "nickname",
    spellcheck: "false",
  });
  nameInput.value = user.name;
  const share = h(
    "button",
    { id: "share", type: "button", title: "Copy this document's link" },
    "Copy link",
  );
  const historyButton = h(
    "button",
    {
      id: "history",
      type: "button",
      title: "Show the document's history",
      "aria-expanded": "false",
    },
    "History",
  );
  const statusText = h("span", { class: "status-text" }, "Connecting…");
  const retry = h(
    "button",
    { id: "retry", type: "button", class: "link", hidden: "" },
    "Retry now",
  );
  const status = h(
    "div",
    { id: "status", class: "status connecting", role: "status", "aria-live": "polite" },
    h("span", { class: "status-dot" }),
    statusText,
    retry,
  );
  const bar = h(
    "header",
    { class: "topbar" },
    h(
      "a",
      { href: "/", class: "brand", title: "All documents" },
      h("span", { class: "logo-dot a" }),
      h("span", { class: "logo-dot b" }),
      "Tandem",
    ),
    h("span", { class: "doc-id", title: "Document id" }, id),
    language,
    h("div", { class: "spacer" }),
    people,
    nameInput,
    share,
    historyButton,
    status,
  );
  const editorHost = h("div", { id: "editor", class: "editor" });
  // A refused change's text, until the user closes the dialog.
  let refused: string | null = null;
  const rejectedDialog = new RejectedDialog(() => {
    refused = null;
    refreshStatus();
    editor.focus();
  });
  root.replaceChildren(bar, editorHost, rejectedDialog.element);

  // ---- the editor --------------------------------------------------------------
  const dark = window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
  const model = monaco.editor.createModel(
    "",
    "plaintext",
    monaco.Uri.parse(`inmemory://tandem/${encodeURIComponent(id)}`),
  );
  const editor = monaco.editor.create(editorHost, {
    model,
    automaticLayout: true,
    theme: dark ? "vs-dark" : "vs",
    fontSize: 14,
    scrollBeyondLastLine: false,
    fixedOverflowWidgets: true,
    unusualLineTerminators: "off",
    renderLineHighlight: "all",
    readOnly: true,
  });

  let binding: MonacoBinding;
  let unsubscribe: (() => void)[] = [];

  const setLanguage = (lang: string): void => {
    if (!language.querySelector(`option[value="${CSS.escape(lang)}"]`)) {
      language.append(h("option", { value: lang }, lang));
    }
    language.value = lang;
    if (model.getLanguageId() !== lang) monaco.editor.setModelLanguage(model, lang);
  };

  const renderPeople = (peers: ReadonlyMap<string, Peer>): void => {
    const chip = (name: string, color: string, title: string, self: boolean) =>
      h(
        "li",
        { class: self ? "person self" : "person", title },
        h("span", { class: "person-dot", style: `background:${normalizeColor(color)}` }),
        h("span", { class: "person-name" }, name),
      );
    const me = chip(user.name ? `${user.name} (you)` : "You", user.color, "You", true);
    const others = [...peers.values()].map((p) =>
      chip(peerName(p), p.user?.color ?? "", `${peerName(p)} is here`, false),
    );
    people.replaceChildren(me, ...others);
    people.dataset["count"] = String(others.length + 1);
  };

  // When the op in flight was last acked (or first sent): edits that wait
  // longer than a few seconds are "not saved", not "saving".
  let inFlight: number | null = null;
  let inFlightSince = Date.now();
  const renderStatus = (s: ConnectionStatus, waiting: number): void => {
    const seq = binding.connection.inFlightSeq;
    if (seq !== inFlight) {
      inFlight = seq;
      inFlightSince = Date.now();
    }
    const view = describeStatus(s, {
      waiting,
      stalledMs: seq === null ? 0 : Date.now() - inFlightSince,
      refused,
    });
    status.className = `status ${view.kind}`;
    status.dataset["waiting"] = String(waiting);
    status.dataset["state"] = view.kind;
    // Only real changes: the live region would read the same text out again.
    if (statusText.textContent !== view.text) statusText.textContent = view.text;
    retry.hidden = !(s.kind === "reconnecting" || s.kind === "offline");
  };
  const refreshStatus = (): void =>
    renderStatus(binding.connection.status, binding.connection.waitingEdits);

  const bind = (): void => {
    binding = new MonacoBinding(editor, { url: socketUrl(id), user });
    const c = binding.connection;
    unsubscribe = [
      c.on("status", (s) => renderStatus(s, c.waitingEdits)),
      c.on("peers", (p) => renderPeople(p)),
      c.on("joined", (j) => {
        language.disabled = j.permission === "read";
        setLanguage(j.language ?? "plaintext");
      }),
      c.on("language", (l) => setLanguage(l.language)),
      c.on("refused", (r) =>
        console.warn(`tandem: the server refused a message: ${r.code}: ${r.message}`),
      ),
      c.on("rejected", (r) => {
        refused =
          r.code === "too_large" ? "a change too big for this document" : `a change (${r.code})`;
        rejectedDialog.show(r);
        refreshStatus();
      }),
      c.on("protocolError", (e) =>
        console.warn("tandem: protocol error, reloading the document", e),
      ),
    ];
    renderPeople(c.peers);
    renderStatus(c.status, 0);
    binding.start();
  };
  bind();

  // The status event does not fire on acks: refresh "saving" from time to time.
  window.setInterval(refreshStatus, 400);

  language.addEventListener("change", () => {
    const lang = language.value;
    if (binding.connection.setLanguage(lang)) setLanguage(lang);
    else setLanguage(binding.connection.language ?? model.getLanguageId());
  });

  retry.addEventListener("click", () => binding.connection.reconnectNow());

  share.addEventListener("click", () => {
    const url = `${location.origin}/d/${encodeURIComponent(id)}`;
    void copyText(url).then((ok) => {
      share.textContent = ok ? "Copied!" : "Copy failed";
      window.setTimeout(() => (share.textContent = "Copy link"), 1500);
    });
  });

  // A new name rejoins under the same client id: peers see the new name,
  // and pending edits and the undo history stay.
  nameInput.addEventListener("change", () => {
    const name = cleanName(nameInput.value);
    nameInput.value = name;
    if (name === user.name) return;
    saveName(name);
    user = { ...user, name };
    binding.connection.setUser(user);
    renderPeople(binding.connection.peers);
  });
  nameInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      nameInput.blur();
      editor.focus();
    }
  });

  // Leave at once when the tab goes (peers see us leave); come back from the
  // back/forward cache with a fresh session.
  window.addEventListener("pagehide", () => {
    for (const u of unsubscribe) u();
    binding.dispose();
  });
  window.addEventListener("pageshow", (e) => {
    if (e.persisted) bind();
  });

  // ---- history -------------------------------------------------------------------
  let history: HistoryPanel | null = null;
  const closeHistory = (): void => history?.close();
  historyButton.addEventListener("click", () => {
    if (history) {
      closeHistory();
      return;
    }
    const panel = new HistoryPanel({ id, model, userName: () => user.name, dark }, () => {
      if (history === panel) history = null;
      historyButton.setAttribute("aria-expanded", "false");
      historyButton.classList.remove("active");
    });
    history = panel;
    root.append(panel.element);
    historyButton.setAttribute("aria-expanded", "true");
    historyButton.classList.add("active");
    void panel.start();
  });

  window.tandem = {
    documentId: id,
    editor,
    monaco,
    get binding() {
      return binding;
    },
    get connection() {
      return binding.connection;
    },
    get history() {
      return history;
    },
  };
  editor.focus();
}
