/**
 * The editor page's history panel: a time slider over revisions
 * 0..current with play/pause, a read-only diff of the chosen revision
 * against the current text (or another revision), the grouped revisions
 * with their authors, and "Restore this version".
 *
 * Reads the server's history REST API (docs/api.md, "History"); the live
 * editor keeps working while the panel is open and receives a restore as
 * an ordinary op.
 *
 * @module
 */

import * as monaco from "monaco-editor";
import { withCredentials, type Credentials } from "./credentials.js";
import { DiffView } from "./diff-view.js";
import { h } from "./dom.js";

/** One group of `GET /api/documents/{id}/revisions`. */
export interface RevisionGroup {
  readonly from: number;
  readonly to: number;
  readonly author: string | null;
  readonly start: number;
  readonly end: number;
  readonly inserted: number;
  readonly deleted: number;
}

/** How long the slider must rest before the text is fetched. */
export const SLIDER_DEBOUNCE_MS = 150;
/** One step of play. */
export const PLAY_INTERVAL_MS = 300;

/** A stable colour for an author name (same name, same colour, on every page). */
export function authorColor(name: string | null): string {
  if (!name) return "hsl(0, 0%, 50%)";
  let hash = 2166136261;
  for (const ch of name) {
    hash ^= ch.codePointAt(0) ?? 0;
    hash = Math.imul(hash, 16777619);
  }
  const hue = (hash >>> 0) % 360;
  return `hsl(${hue}, 65%, 42%)`;
}

/** The revision the live document is at, and its text (what "current" means). */
export interface LiveDocument {
  readonly id: string;
  readonly model: monaco.editor.ITextModel;
  /** The name to record a restore under ("" for the server's default). */
  readonly userName: () => string;
  readonly dark: boolean;
  /** Sent with every request (`?token=`, `?link=`). */
  readonly credentials: Credentials;
  /** False for a reader (or once access is gone): "Restore this version" is hidden. */
  readonly canRestore: () => boolean;
}

function api(live: LiveDocument, tail: string): string {
  return withCredentials(`/api/documents/${encodeURIComponent(live.id)}/${tail}`, live.credentials);
}

async function errorText(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { message?: string; code?: string };
    return body.message ?? body.code ?? `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

/** The open panel; `close()` removes it and disposes the diff editor. */
export class HistoryPanel {
  readonly element: HTMLElement;
  /** The revision whose text the diff's left side shows (null while loading). */
  shownRev: number | null = null;
  /** The diff (its texts are replaced with new models, never edited: `diff-view.ts`). */
  private readonly diff: DiffView;
  private readonly slider: HTMLInputElement;
  private readonly revLabel: HTMLElement;
  private readonly play: HTMLButtonElement;
  private readonly compare: HTMLSelectElement;
  private readonly list: HTMLElement;
  private readonly message: HTMLElement;
  private readonly restore: HTMLButtonElement;
  private groups: RevisionGroup[] = [];
  private current = 0;
  private closed = false;
  private fetchSeq = 0;
  private restoring = false;
  private compareSeq = 0;
  private sliderTimer: number | null = null;
  private playTimer: number | null = null;
  private liveTimer: number | null = null;
  private readonly disposables: monaco.IDisposable[] = [];

  constructor(
    private readonly live: LiveDocument,
    private readonly onClose: () => void,
  ) {
    this.slider = h("input", {
      id: "history-slider",
      type: "range",
      min: "0",
      max: "0",
      step: "1",
      value: "0",
      "aria-label": "Revision",
    });
    this.revLabel = h("span", { id: "history-rev", class: "history-rev" }, "…");
    this.play = h(
      "button",
      { id: "history-play", type: "button", title: "Play the history" },
      "▶ Play",
    );
    this.compare = h(
      "select",
      { id: "history-compare", "aria-label": "Compare with" },
      h("option", { value: "current" }, "the current text"),
    );
    this.restore = h(
      "button",
      { id: "history-restore", type: "button", class: "primary small" },
      "Restore this version",
    );
    const close = h(
      "button",
      { id: "history-close", type: "button", title: "Close the history" },
      "Close",
    );
    this.message = h("span", { class: "history-message", role: "status" });
    this.list = h("ol", { id: "history-list", class: "history-list", "aria-label": "Revisions" });
    const diffHost = h("div", { id: "history-diff", class: "history-diff" });
    this.element = h(
      "section",
      { id: "history-panel", class: "history-panel", "aria-label": "History" },
      h(
        "div",
        { class: "history-controls" },
        h("strong", {}, "History"),
        this.play,
        this.slider,
        this.revLabel,
        h("label", { class: "history-compare" }, "compared with ", this.compare),
        this.message,
        h("div", { class: "spacer" }),
        this.restore,
        close,
      ),
      h("div", { class: "history-body" }, this.list, diffHost),
    );

    this.diff = new DiffView(
      diffHost,
      { original: "", modified: live.model.getValue() },
      { language: () => live.model.getLanguageId(), dark: live.dark },
    );
    this.refreshRestore();

    this.slider.addEventListener("input", () => this.onSlider());
    this.play.addEventListener("click", () => this.togglePlay());
    this.compare.addEventListener("change", () => void this.loadCompare());
    this.restore.addEventListener("click", () => void this.doRestore());
    close.addEventListener("click", () => this.close());
    this.element.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.close();
    });
    // Keep "current" and the slider's end in step with the live document.
    this.disposables.push(
      live.model.onDidChangeContent(() => {
        if (this.liveTimer !== null) window.clearTimeout(this.liveTimer);
        this.liveTimer = window.setTimeout(() => {
          this.liveTimer = null;
          if (this.compare.value === "current") this.diff.show({ modified: live.model.getValue() });
          void this.loadRevisions(false);
        }, 500);
      }),
    );
  }

  /** Shows "Restore this version" only to someone who may write (call when that changes). */
  refreshRestore(): void {
    const allowed = this.live.canRestore();
    this.restore.hidden = !allowed;
    if (!allowed) this.restore.disabled = true;
    else if (!this.restoring) this.restore.disabled = false;
  }

  /** Loads the revisions and shows the current revision. */
  async start(): Promise<void> {
    await this.loadRevisions(true);
  }

  /** The diff editor (the tests read its two sides). */
  get diffEditor(): monaco.editor.IStandaloneDiffEditor {
    return this.diff.editor;
  }

  get revision(): number {
    return Number(this.slider.value);
  }

  /** Moves the slider to `rev` and shows that revision (after the debounce). */
  setRevision(rev: number): void {
    this.slider.value = String(Math.max(0, Math.min(this.current, rev)));
    this.onSlider();
  }

  private onSlider(): void {
    const rev = this.revision;
    this.revLabel.textContent = `revision ${rev} of ${this.current}`;
    this.highlight(rev);
    if (this.sliderTimer !== null) window.clearTimeout(this.sliderTimer);
    this.sliderTimer = window.setTimeout(() => {
      this.sliderTimer = null;
      void this.loadText(rev);
    }, SLIDER_DEBOUNCE_MS);
  }

  private async fetchText(rev: number): Promise<string> {
    const res = await fetch(api(this.live, `text?rev=${rev}`));
    if (!res.ok) throw new Error(await errorText(res));
    return res.text();
  }

  private async loadText(rev: number): Promise<void> {
    const seq = ++this.fetchSeq;
    try {
      const text = await this.fetchText(rev);
      if (this.closed || seq !== this.fetchSeq) return;
      this.diff.show({ original: text });
      this.shownRev = rev;
      this.element.dataset["shownRev"] = String(rev);
      this.setMessage("");
    } catch (e) {
      if (!this.closed && seq === this.fetchSeq) this.setMessage(`Could not load: ${String(e)}`);
    }
  }

  private async loadCompare(): Promise<void> {
    const seq = ++this.compareSeq;
    const value = this.compare.value;
    if (value === "current") {
      this.diff.show({ modified: this.live.model.getValue() });
      return;
    }
    try {
      const text = await this.fetchText(Number(value));
      if (!this.closed && seq === this.compareSeq) this.diff.show({ modified: text });
    } catch (e) {
      if (!this.closed) this.setMessage(`Could not load: ${String(e)}`);
    }
  }

  private async loadRevisions(initial: boolean): Promise<void> {
    let body: { rev: number; revisions: RevisionGroup[] };
    try {
      const res = await fetch(api(this.live, "revisions"));
      if (!res.ok) throw new Error(await errorText(res));
      body = (await res.json()) as { rev: number; revisions: RevisionGroup[] };
    } catch (e) {
      if (!this.closed) this.setMessage(`Could not load the history: ${String(e)}`);
      return;
    }
    if (this.closed) return;
    const atEnd = this.revision === this.current;
    this.groups = body.revisions;
    this.current = body.rev;
    this.slider.max = String(this.current);
    this.element.dataset["current"] = String(this.current);
    this.renderList();
    this.renderCompareOptions();
    if (initial || (atEnd && this.playTimer === null)) {
      this.setRevision(this.current);
    } else {
      this.revLabel.textContent = `revision ${this.revision} of ${this.current}`;
      this.highlight(this.revision);
    }
  }

  private renderList(): void {
    const items = [...this.groups].reverse().map((g) => {
      const author = g.author ?? "(created)";
      const time = new Date(g.end).toLocaleString();
      const li = h(
        "li",
        {
          class: "history-item",
          "data-from": String(g.from),
          "data-to": String(g.to),
          tabindex: "0",
          title: `revisions ${g.from + 1}–${g.to}`,
        },
        h(
          "span",
          { class: "history-author", style: `color:${authorColor(g.author)}` },
          h("span", { class: "person-dot", style: `background:${authorColor(g.author)}` }),
          author,
        ),
        h("span", { class: "history-time" }, time),
        h(
          "span",
          { class: "history-counts" },
          h("span", { class: "ins" }, `+${g.inserted}`),
          " ",
          h("span", { class: "del" }, `−${g.deleted}`),
        ),
      );
      const pick = (): void => this.setRevision(g.to);
      li.addEventListener("click", pick);
      li.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          pick();
        }
      });
      return li;
    });
    const origin = h(
      "li",
      { class: "history-item", "data-from": "0", "data-to": "0", tabindex: "0" },
      h("span", { class: "history-author" }, "Created"),
      h("span", { class: "history-time" }, "revision 0"),
    );
    origin.addEventListener("click", () => this.setRevision(0));
    this.list.replaceChildren(...items, origin);
  }

  private renderCompareOptions(): void {
    const chosen = this.compare.value;
    const options = [h("option", { value: "current" }, "the current text")];
    for (const g of [...this.groups].reverse()) {
      options.push(h("option", { value: String(g.to) }, `revision ${g.to} (${g.author ?? "?"})`));
    }
    options.push(h("option", { value: "0" }, "revision 0"));
    this.compare.replaceChildren(...options);
    this.compare.value = options.some((o) => o.value === chosen) ? chosen : "current";
  }

  private highlight(rev: number): void {
    for (const li of this.list.querySelectorAll<HTMLElement>(".history-item")) {
      const from = Number(li.dataset["from"]);
      const to = Number(li.dataset["to"]);
      li.classList.toggle("selected", rev === 0 ? to === 0 : from < rev && rev <= to);
    }
  }

  private togglePlay(): void {
    if (this.playTimer !== null) {
      this.stopPlay();
      return;
    }
    if (this.revision >= this.current) this.setRevision(0);
    const step = Math.max(1, Math.round(this.current / 60));
    this.play.textContent = "⏸ Pause";
    this.playTimer = window.setInterval(() => {
      const next = Math.min(this.current, this.revision + step);
      this.setRevision(next);
      if (next >= this.current) this.stopPlay();
    }, PLAY_INTERVAL_MS);
  }

  private stopPlay(): void {
    if (this.playTimer !== null) window.clearInterval(this.playTimer);
    this.playTimer = null;
    this.play.textContent = "▶ Play";
  }

  private async doRestore(): Promise<void> {
    if (!this.live.canRestore()) return;
    const rev = this.revision;
    this.stopPlay();
    this.restore.disabled = true;
    this.restoring = true;
    const name = this.live.userName();
    const body: { rev: number; author?: string } = { rev };
    if (name) body.author = name;
    try {
      const res = await fetch(api(this.live, "restore"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(await errorText(res));
    } catch (e) {
      this.restoring = false;
      this.refreshRestore();
      if (!this.closed) this.setMessage(`Restore failed: ${String(e)}`);
      return;
    }
    this.close();
  }

  private setMessage(text: string): void {
    this.message.textContent = text;
  }

  /** Removes the panel and disposes the diff editor and its models. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopPlay();
    for (const t of [this.sliderTimer, this.liveTimer]) if (t !== null) window.clearTimeout(t);
    for (const d of this.disposables) d.dispose();
    this.diff.dispose();
    this.element.remove();
    this.onClose();
  }
}
