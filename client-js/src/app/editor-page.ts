/**
 * The editor page, `/d/{id}`: Monaco filling the window under a top bar
 * with the language picker, the people present, the user's name, a
 * copy-link button, a History button (the panel in `history-panel.ts`) and
 * the connection status (`status.ts`: "Connected" only when nothing waits
 * for the server). A change that is refused, such as a paste too big for
 * the document, opens a dialog that holds its text (`rejected-dialog.ts`).
 *
 * Credentials (`credentials.ts`): the page's `?token=` and `?link=` go with
 * the WebSocket URL and every REST call. With `read` permission a banner
 * says the document is read-only (the binding makes the editor so, and the
 * history's restore is hidden). A session the server closes with 4401 or
 * 4403 before it joined shows a page that says why ("Sign in to open this
 * document", "You don't have access to this document") instead of an empty
 * editor; after it joined, a banner says the access was revoked (or the
 * sign-in is no longer valid) and the editor stays read-only with the text
 * last seen. The connection does not retry either.
 *
 * Test hook: `window.tandem` holds the editor, the current binding and its
 * connection (the e2e tests read text and state through it).
 *
 * @module
 */

import * as monaco from "monaco-editor";
import { EditorState } from "@codemirror/state";
import {
  drawSelection,
  EditorView,
  highlightActiveLine,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import { defaultKeymap } from "@codemirror/commands";
import { MonacoBinding, normalizeColor, peerName } from "../monaco/index.js";
import { CodeMirrorBinding } from "../codemirror/index.js";
import type { Connection, ConnectionStatus, Peer } from "../connection.js";
import type { JoinUser, Permission } from "../protocol.js";
import {
  forgetRefused,
  pageCredentials,
  shareUrl,
  withCredentials,
  type Credentials,
} from "./credentials.js";
import { copyText, h } from "./dom.js";
import { cleanName, loadUser, MAX_NAME_LENGTH, saveName } from "./identity.js";
import { HistoryPanel } from "./history-panel.js";
import { RejectedDialog } from "./rejected-dialog.js";
import { describeStatus } from "./status.js";
import { HEARTBEAT_MS, memoryStore, storageStore, type OfflineStore } from "../client/offline.js";

/** Where unsaved edits wait across reloads: localStorage, or memory if it is unavailable. */
function offlineStore(): OfflineStore {
  try {
    return storageStore(window.localStorage);
  } catch {
    return memoryStore();
  }
}

/** Which editor the page shows: Monaco, or CodeMirror 6 with `?editor=codemirror`. */
export type EditorKind = "monaco" | "codemirror";

/**
 * What the tests (and debugging) need of either editor, in its own units
 * (1-based lines and UTF-16 columns, as Monaco counts).
 */
export interface EditorUi {
  readonly kind: EditorKind;
  getValue(): string;
  focus(): void;
  setCaret(lineNumber: number, column: number): void;
  setCaretAtEnd(): void;
  setSelection(startLine: number, startColumn: number, endLine: number, endColumn: number): void;
  languageId(): string;
  /** Pastes `text` at the caret as the editor's own paste does (no clipboard needed). */
  paste(text: string): void;
  /** The text of the first line in view. */
  topLine(): string;
  /** Scrolls so that line `line` (1-based) is the first in view. */
  scrollToLine(line: number): void;
}

/** What the page exposes on `window.tandem`. */
export interface TandemHook {
  readonly documentId: string;
  /** The Monaco editor (with `?editor=codemirror`, a hidden one that is not bound). */
  readonly editor: monaco.editor.IStandaloneCodeEditor;
  readonly monaco: typeof monaco;
  readonly binding: MonacoBinding | CodeMirrorBinding;
  readonly connection: Connection;
  /** The open history panel, if any. */
  readonly history: HistoryPanel | null;
  /** The editor the user sees, whichever it is. */
  readonly ui: EditorUi;
  /** The CodeMirror view, with `?editor=codemirror`. */
  readonly view: EditorView | null;
}

/** The editor asked for in the page's query (`?editor=codemirror`), Monaco by default. */
export function editorKind(search: string): EditorKind {
  return new URLSearchParams(search).get("editor") === "codemirror" ? "codemirror" : "monaco";
}

declare global {
  interface Window {
    tandem?: TandemHook;
  }
}

/** The WebSocket URL of document `id`, with the page's credentials. */
function socketUrl(id: string, credentials: Credentials): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return withCredentials(
    `${scheme}://${location.host}/api/documents/${encodeURIComponent(id)}/ws`,
    credentials,
  );
}

/** The banner's text for a reader. */
export const READ_ONLY_TEXT = "Read-only: you can view this document but not edit it";

/**
 * The page shown instead of the editor when the server refuses the session
 * before it joined: 4401 (no valid credentials) or 4403 (no right).
 */
function accessPage(id: string, code: number, detail: string | null): HTMLElement {
  const unauthenticated = code === 4401;
  const title = unauthenticated
    ? "Sign in to open this document"
    : "You don't have access to this document";
  const explanation = unauthenticated
    ? "The token is missing, invalid or expired, or the link is no longer valid."
    : "You are known to the server, but this document is not shared with you.";
  const hint = unauthenticated
    ? `Open it with a sign-in token (/d/${id}?token=…) or with a share link someone sent you (/d/${id}?link=…).`
    : "Ask the document's owner to give you access, or to send you a share link.";
  return h(
    "main",
    {
      id: "access-page",
      class: "landing access-page",
      "data-reason": unauthenticated ? "unauthenticated" : "forbidden",
    },
    h("h1", {}, title),
    h("p", { class: "tagline" }, explanation),
    h("p", {}, hint),
    ...(detail ? [h("p", { class: "muted" }, `The server said: ${detail}`)] : []),
    h("p", {}, h("a", { href: "/" }, "All documents")),
  );
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
  const credentials = pageCredentials(id);

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
  const banner = h("div", { id: "access-banner", class: "access-banner", hidden: "" });
  const editorHost = h("div", { id: "editor", class: "editor" });
  // A refused change's text, until the user closes the dialog.
  let refused: string | null = null;
  const rejectedDialog = new RejectedDialog(() => {
    refused = null;
    refreshStatus();
    ui.focus();
  });
  root.replaceChildren(bar, banner, editorHost, rejectedDialog.element);

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

  // With ?editor=codemirror a CodeMirror 6 view takes the Monaco editor's
  // place (the Monaco editor stays, hidden and unbound; History, which
  // needs its model, is not offered).
  const kind = editorKind(location.search);
  let view: EditorView | null = null;
  if (kind === "codemirror") {
    editorHost.hidden = true;
    historyButton.hidden = true;
    const cmHost = h("div", { id: "cm-editor", class: "editor cm-host" });
    editorHost.after(cmHost);
    view = new EditorView({
      parent: cmHost,
      state: EditorState.create({
        doc: "",
        extensions: [
          lineNumbers(),
          highlightActiveLine(),
          drawSelection(),
          keymap.of(defaultKeymap),
          EditorView.theme({ "&": { height: "100%" }, ".cm-scroller": { overflow: "auto" } }),
        ],
      }),
    });
  }
  const ui = editorUi(kind, editor, view, () => language.value);

  let binding: MonacoBinding | CodeMirrorBinding;
  let unsubscribe: (() => void)[] = [];
  // What we may do (null before the first joined, and once access is gone).
  let permission: Permission | null = null;
  // Why the server last refused us (the error before a 4401/4403).
  let refusal: string | null = null;
  let history: HistoryPanel | null = null;
  let statusTimer: number | null = null;

  const showBanner = (kind: "read" | "revoked" | "signed-out" | null): void => {
    if (kind === null) {
      banner.hidden = true;
      banner.removeAttribute("data-kind");
      banner.replaceChildren();
      return;
    }
    banner.hidden = false;
    banner.dataset["kind"] = kind;
    banner.className = `access-banner ${kind}`;
    banner.setAttribute("role", kind === "read" ? "status" : "alert");
    if (kind === "read") {
      banner.replaceChildren(h("strong", {}, READ_ONLY_TEXT));
      return;
    }
    const waiting = binding.connection.waitingEdits;
    const unsaved =
      waiting > 0
        ? ` ${waiting === 1 ? "1 edit was" : `${waiting} edits were`} not saved: copy what you need.`
        : "";
    banner.replaceChildren(
      h(
        "strong",
        {},
        kind === "revoked"
          ? "Your access to this document was revoked"
          : "Sign in to open this document",
      ),
      " ",
      h(
        "span",
        {},
        (kind === "revoked"
          ? "The text below is what you last saw; it is no longer updated."
          : "Your sign-in is no longer valid (the token expired or the link was revoked). The text below is no longer updated.") +
          unsaved,
      ),
    );
  };

  const applyPermission = (p: Permission | null): void => {
    permission = p;
    language.disabled = p === null || p === "read";
    if (p === "read") showBanner("read");
    else if (p !== null) showBanner(null);
    history?.refreshRestore();
  };

  /** The server closed the session for good with 4401/4403. */
  const accessLost = (code: number): void => {
    const everJoined = binding.connection.revision !== null;
    if (code === 4401) forgetRefused(id, credentials);
    if (!everJoined) {
      // Nothing to show: a page that says why, not an empty editor.
      for (const u of unsubscribe) u();
      unsubscribe = [];
      binding.dispose();
      history?.close();
      if (statusTimer !== null) window.clearInterval(statusTimer);
      editor.dispose();
      model.dispose();
      document.body.className = "access-page-body";
      root.replaceChildren(accessPage(id, code, refusal));
      return;
    }
    applyPermission(null);
    showBanner(code === 4401 ? "signed-out" : "revoked");
    renderPeople(new Map()); // no longer with the others
  };

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
    const me = chip(user.name ? `${user.name} (you)` : "You", user.color ?? "", "You", true);
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

  // Unsaved edits are kept in the browser as they are made; a page that
  // finds some left by a page that is gone (a reload, a crash, a closed
  // browser) resumes that session: same client id, revision and seqs.
  const offline = offlineStore();
  const bind = (): void => {
    const saved = offline.claim(id);
    const options = { url: socketUrl(id, credentials), user, saved };
    binding = view ? new CodeMirrorBinding(view, options) : new MonacoBinding(editor, options);
    const c = binding.connection;
    unsubscribe = [
      c.on("pending", () => offline.save(id, c.savedSession())),
      c.on("status", (s) => {
        renderStatus(s, c.waitingEdits);
        if (s.kind === "closed" && (s.code === 4401 || s.code === 4403)) accessLost(s.code);
      }),
      c.on("peers", (p) => renderPeople(p)),
      c.on("joined", (j) => setLanguage(j.language ?? "plaintext")),
      c.on("permission", (p) => applyPermission(p)),
      c.on("language", (l) => setLanguage(l.language)),
      c.on("refused", (r) => {
        if (r.seq === null && (r.code === "unauthenticated" || r.code === "forbidden"))
          refusal = r.message || null;
        console.warn(`tandem: the server refused a message: ${r.code}: ${r.message}`);
      }),
      c.on("rejected", (r) => {
        refused =
          r.code === "too_large"
            ? "a change too big for this document"
            : r.code === "forbidden"
              ? "this document is read-only for you"
              : `a change (${r.code})`;
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
  statusTimer = window.setInterval(refreshStatus, 400);

  language.addEventListener("change", () => {
    const lang = language.value;
    if (binding.connection.setLanguage(lang)) setLanguage(lang);
    else setLanguage(binding.connection.language ?? model.getLanguageId());
  });

  retry.addEventListener("click", () => binding.connection.reconnectNow());

  share.addEventListener("click", () => {
    // With the page's share link, if any; never with a sign-in token.
    const url = shareUrl(location.origin, id, credentials);
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
      ui.focus();
    }
  });

  // Leave at once when the tab goes (peers see us leave); come back from the
  // back/forward cache with a fresh session.
  // Other tabs of this document leave our saved session alone while we beat.
  window.setInterval(() => offline.heartbeat(id), HEARTBEAT_MS);
  window.addEventListener("pagehide", () => {
    offline.save(id, binding.connection.savedSession());
    offline.release(id);
    for (const u of unsubscribe) u();
    binding.dispose();
  });
  // Closing or reloading with unsaved edits asks first (they are kept in
  // the browser and resent on the next visit, but the user should know).
  window.addEventListener("beforeunload", (e) => {
    if (binding.connection.waitingEdits === 0) return;
    e.preventDefault();
    e.returnValue = "";
  });
  window.addEventListener("pageshow", (e) => {
    // Not once the page says the access is gone (the editor is disposed).
    if (e.persisted && !document.getElementById("access-page")) bind();
  });

  // ---- history -------------------------------------------------------------------
  const closeHistory = (): void => history?.close();
  historyButton.addEventListener("click", () => {
    if (history) {
      closeHistory();
      return;
    }
    const live = {
      id,
      model,
      userName: () => user.name,
      dark,
      credentials,
      canRestore: () => permission === "write" || permission === "admin",
    };
    const panel = new HistoryPanel(live, () => {
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
    ui,
    view,
  };
  ui.focus();
}

/** {@link EditorUi} over the editor the page shows. */
function editorUi(
  kind: EditorKind,
  editor: monaco.editor.IStandaloneCodeEditor,
  view: EditorView | null,
  languageId: () => string,
): EditorUi {
  if (!view) {
    const model = (): monaco.editor.ITextModel | null => editor.getModel();
    return {
      kind,
      getValue: () => editor.getValue(),
      focus: () => editor.focus(),
      setCaret: (lineNumber, column) => {
        editor.focus();
        editor.setPosition({ lineNumber, column });
      },
      setCaretAtEnd: () => {
        const m = model();
        if (!m) return;
        editor.focus();
        const line = m.getLineCount();
        editor.setPosition({ lineNumber: line, column: m.getLineMaxColumn(line) });
      },
      setSelection: (startLineNumber, startColumn, endLineNumber, endColumn) =>
        editor.setSelection({ startLineNumber, startColumn, endLineNumber, endColumn }),
      languageId: () => model()?.getLanguageId() ?? "",
      paste: (text) => editor.trigger("keyboard", "paste", { text }),
      topLine: () => {
        const line = editor.getVisibleRanges()[0]?.startLineNumber ?? 0;
        return model()?.getLineContent(line) ?? "";
      },
      scrollToLine: (line) => editor.setScrollTop(editor.getTopForLineNumber(line)),
    };
  }
  const pos = (line: number, column: number): number => {
    const doc = view.state.doc;
    const l = doc.line(Math.max(1, Math.min(line, doc.lines)));
    return Math.min(l.from + column - 1, l.to);
  };
  return {
    kind,
    getValue: () => view.state.doc.toString(),
    focus: () => view.focus(),
    setCaret: (line, column) => {
      view.focus();
      view.dispatch({ selection: { anchor: pos(line, column) } });
    },
    setCaretAtEnd: () => {
      view.focus();
      view.dispatch({ selection: { anchor: view.state.doc.length } });
    },
    setSelection: (l1, c1, l2, c2) =>
      view.dispatch({ selection: { anchor: pos(l1, c1), head: pos(l2, c2) } }),
    // The document's language (this view has no highlighting).
    languageId,
    paste: (text) =>
      view.dispatch({
        ...view.state.replaceSelection(text),
        userEvent: "input.paste",
        scrollIntoView: true,
      }),
    topLine: () => {
      const top = view.scrollDOM.scrollTop - view.documentPadding.top + 1;
      return view.state.doc.lineAt(view.lineBlockAtHeight(top).from).text;
    },
    scrollToLine: (line) => {
      const block = view.lineBlockAt(view.state.doc.line(line).from);
      view.scrollDOM.scrollTop = block.top + view.documentPadding.top;
    },
  };
}
