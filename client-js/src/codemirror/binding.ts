/**
 * The CodeMirror 6 binding: one {@link Connection} driving one `EditorView`.
 *
 * * **User edits to operations.** Every transaction that changes the
 *   document and is not ours becomes one op in code points
 *   (`convert.ts`), submitted to the connection.
 * * **Remote operations** are dispatched as transactions annotated
 *   `Transaction.remote` and `Transaction.addToHistory.of(false)`: they
 *   never enter the undo history, and CodeMirror maps our own carets
 *   through them (a colleague typing at our caret leaves it before their
 *   text). A scroll snapshot rides along, so the first visible line stays
 *   put when someone edits above it.
 * * **Undo of one's own edits only.** The binding adds CodeMirror's
 *   `history()` and its keymap (Mod-z, Mod-y, Mod-Shift-z): since remote
 *   changes are not in the history, undo takes back our own edits, mapped
 *   through everyone else's.
 * * **IME composition**: while the view composes, changes stay in the
 *   editor and nothing is sent; they go as one op when it ends (remote ops
 *   meanwhile are transformed past them), and they are one undo step of
 *   their own (`isolateHistory` where composing starts and stops).
 * * **Refused changes** (too big for the document, a reader's typing): the
 *   view is put back to the connection's text.
 * * **Readers**: the view is read-only (`EditorState.readOnly`,
 *   `EditorView.editable`) until the session joins with write permission,
 *   and again with read permission or once the connection is closed.
 * * **Presence**: our selection goes to the connection at most every
 *   `presenceIntervalMs`; peers' cursors are decorations (`cursors.ts`).
 *
 * Line ends: CodeMirror holds LF only; a document or remote insert with CRs
 * is shown with LF and the difference is sent as our own edit, as the
 * Monaco binding does.
 *
 * Everything the binding adds to the view lives in one compartment that
 * {@link CodeMirrorBinding.dispose} empties again.
 *
 * @module
 */

import {
  Annotation,
  ChangeSet,
  Compartment,
  EditorSelection,
  EditorState,
  StateEffect,
  Transaction,
  type Extension,
} from "@codemirror/state";
import { EditorView, keymap, type ViewUpdate } from "@codemirror/view";
import { history, historyKeymap, isolateHistory, redoDepth, undoDepth } from "@codemirror/commands";
import {
  Connection,
  type ConnectionOptions,
  type ConnectionStatus,
  type DocumentSink,
} from "../connection.js";
import { editorText } from "../client/state.js";
import { diffOperation } from "../ot/diff.js";
import type { Selection } from "../ot/selection.js";
import { TextOperation } from "../ot/text-operation.js";
import { peerName } from "../peers.js";
import { hasSurrogates } from "../unicode.js";
import { changesToOperation, operationToChanges, toCodePoint, toUtf16 } from "./convert.js";
import { remoteCursors, setPeers, type PeerCursor } from "./cursors.js";

/** Default for {@link CodeMirrorBindingOptions.presenceIntervalMs}. */
export const PRESENCE_INTERVAL_MS = 60;

/** How long after `compositionend` the binding looks again whether the view still composes. */
const COMPOSITION_FLUSH_DELAY_MS = 20;
/** How many times it looks (CodeMirror ends composing within a frame or two). */
const COMPOSITION_FLUSH_TRIES = 50;

/** Marks the binding's own transactions (remote ops, loads, resets). */
const fromBinding = Annotation.define<boolean>();

/** Options of a {@link CodeMirrorBinding}: the connection's, without `document`. */
export interface CodeMirrorBindingOptions extends Omit<ConnectionOptions, "document"> {
  /** Least time between two presence updates we send (ms). */
  presenceIntervalMs?: number;
}

/** Binds a CodeMirror `EditorView` to a document; see the module doc. */
export class CodeMirrorBinding {
  /** The connection this binding created (and disposes). */
  readonly connection: Connection;
  private readonly view: EditorView;
  private readonly compartment = new Compartment();
  private readonly editable = new Compartment();
  private readonly presenceInterval: number;
  private readonly unsubscribes: (() => void)[] = [];
  private loaded = false;
  private writable = false;
  /** The document may hold astral characters (offsets then need converting). */
  private astral = false;
  /** The composition so far, based on the text the connection believes the view shows. */
  private composition: TextOperation | null = null;
  private presenceTimer: ReturnType<typeof setTimeout> | null = null;
  private lastPresence = -Infinity;
  private disposed = false;
  /** The last user change was part of a composition (for the history cut). */
  private lastWasCompose = false;

  /**
   * Binds `view`. It is read-only until the document is loaded. Call
   * {@link start} to connect.
   */
  constructor(view: EditorView, options: CodeMirrorBindingOptions) {
    this.view = view;
    this.presenceInterval = options.presenceIntervalMs ?? PRESENCE_INTERVAL_MS;
    const document: DocumentSink = {
      load: (text) => this.load(text),
      apply: (op) => this.applyRemote(op),
    };
    const { presenceIntervalMs: _unused, ...connectionOptions } = options;
    this.connection = new Connection({ ...connectionOptions, document });
    view.dispatch({
      effects: StateEffect.appendConfig.of(this.compartment.of(this.extensions())),
    });
    this.unsubscribes.push(
      this.connection.on("peers", () => this.renderPeers()),
      this.connection.on("permission", (p) => this.setWritable(p !== "read")),
      this.connection.on("status", (s: ConnectionStatus) => {
        if (s.kind === "closed") this.setWritable(false);
      }),
    );
  }

  /** Connects (the first time). */
  start(): void {
    this.connection.start();
  }

  /** True if Mod-z would undo something of ours. */
  get canUndo(): boolean {
    return undoDepth(this.view.state) > 0;
  }

  /** True if there is an undone edit of ours to redo. */
  get canRedo(): boolean {
    return redoDepth(this.view.state) > 0;
  }

  /** Removes everything the binding added to the view and disposes the connection. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.presenceTimer !== null) clearTimeout(this.presenceTimer);
    for (const u of this.unsubscribes.splice(0)) u();
    this.connection.dispose();
    this.view.dispatch({ effects: this.compartment.reconfigure([]) });
  }

  private extensions(): Extension {
    return [
      history(),
      keymap.of(historyKeymap),
      this.editable.of(readOnly(true)),
      remoteCursors(),
      // A composition is one undo step of its own: history is cut where
      // composing changes start and where they stop.
      EditorState.transactionExtender.of((tr) => {
        if (!tr.docChanged || tr.annotation(fromBinding)) return null;
        const compose = tr.isUserEvent("input.type.compose");
        if (compose === this.lastWasCompose) return null;
        this.lastWasCompose = compose;
        return { annotations: isolateHistory.of("before") };
      }),
      EditorView.updateListener.of((u) => this.onUpdate(u)),
      // A composition may end without a further update: flush it then.
      EditorView.domEventHandlers({
        compositionend: () => {
          this.flushCompositionSoon(COMPOSITION_FLUSH_TRIES);
          return false;
        },
      }),
    ];
  }

  // ---- the document, from the connection -----------------------------------

  private load(text: string): void {
    this.astral = hasSurrogates(text);
    const doc = this.view.state.doc;
    this.dispatchOwn({ changes: { from: 0, to: doc.length, insert: text } });
    this.loaded = true;
    if (text.includes("\r")) queueMicrotask(() => this.reconcile());
  }

  private applyRemote(remote: TextOperation): void {
    if (this.disposed) return;
    let op = remote;
    if (this.composition) {
      const [ours, theirs] = TextOperation.transform(this.composition, remote);
      this.composition = ours;
      op = theirs;
    }
    const doc = this.view.state.doc;
    const astral = this.astral;
    if (op.ops.some((c) => typeof c === "string" && hasSurrogates(c))) this.astral = true;
    const changes = ChangeSet.of(operationToChanges(op, doc, astral), doc.length);
    // The line at the top of the view stays there when text comes in above it.
    const keepScroll = this.view.scrollSnapshot().map(changes);
    this.dispatchOwn({ changes, effects: keepScroll ? [keepScroll] : [] });
    if (op.ops.some((c) => typeof c === "string" && c.includes("\r"))) {
      queueMicrotask(() => this.reconcile());
    }
  }

  private dispatchOwn(spec: { changes?: unknown; effects?: StateEffect<unknown>[] }): void {
    this.view.dispatch({
      ...(spec.changes ? { changes: spec.changes as never } : {}),
      ...(spec.effects ? { effects: spec.effects } : {}),
      annotations: [
        fromBinding.of(true),
        Transaction.remote.of(true),
        Transaction.addToHistory.of(false),
      ],
    });
  }

  // ---- the user's edits ------------------------------------------------------

  private onUpdate(u: ViewUpdate): void {
    if (this.disposed) return;
    for (const tr of u.transactions) {
      if (!tr.docChanged || tr.annotation(fromBinding) || !this.loaded) continue;
      const op = changesToOperation(tr.changes, tr.startState.doc, this.astral);
      tr.changes.iterChanges((_a, _b, _c, _d, inserted) => {
        if (hasSurrogates(inserted.toString())) this.astral = true;
      });
      if (u.view.composing) {
        this.composition = this.composition ? this.composition.compose(op) : op;
        continue;
      }
      this.submit(op);
    }
    this.flushComposition();
    if (u.selectionSet || u.docChanged) this.schedulePresence();
  }

  /** Sends the composition as one op once the view no longer composes. */
  private flushComposition(): boolean {
    if (this.view.composing || !this.composition || this.disposed) return false;
    const composed = this.composition;
    this.composition = null;
    this.submit(composed);
    this.schedulePresence();
    return true;
  }

  /** After `compositionend`: CodeMirror leaves its composing state a moment later. */
  private flushCompositionSoon(tries: number): void {
    setTimeout(() => {
      if (!this.composition || this.disposed) return;
      if (!this.flushComposition() && tries > 1) this.flushCompositionSoon(tries - 1);
    }, COMPOSITION_FLUSH_DELAY_MS);
  }

  private submit(op: TextOperation): void {
    let ok = false;
    try {
      ok = this.connection.submit(op);
    } catch {
      ok = false;
    }
    // Turned down: show the connection's text again (outside this update).
    if (!ok) queueMicrotask(() => this.resetView());
  }

  /** Makes the view show exactly the connection's text (a refused change is taken out). */
  private resetView(): void {
    const state = this.connection.state;
    if (!state || this.disposed) return;
    const expected = editorText(state);
    const actual = this.view.state.doc.toString();
    if (expected === actual) return;
    this.astral = hasSurrogates(expected);
    const op = diffOperation(actual, expected);
    this.dispatchOwn({ changes: operationToChanges(op, this.view.state.doc, this.astral) });
  }

  /** Sends what differs between the view and the connection's text (CRs CodeMirror dropped). */
  private reconcile(): void {
    const state = this.connection.state;
    if (!state || this.disposed || this.composition) return;
    const expected = editorText(state);
    const actual = this.view.state.doc.toString();
    if (expected === actual) return;
    if (!this.writable || !this.connection.submit(diffOperation(expected, actual))) {
      this.resetView();
    }
  }

  // ---- presence ----------------------------------------------------------------

  private schedulePresence(): void {
    if (this.presenceTimer !== null || this.disposed) return;
    const wait = Math.max(0, this.lastPresence + this.presenceInterval - Date.now());
    this.presenceTimer = setTimeout(() => {
      this.presenceTimer = null;
      this.lastPresence = Date.now();
      if (!this.disposed && this.loaded && !this.composition)
        this.connection.setSelection(this.localSelection());
    }, wait);
  }

  private localSelection(): Selection {
    const doc = this.view.state.doc;
    const ranges = this.view.state.selection.ranges.map((r) => ({
      anchor: toCodePoint(doc, r.anchor, this.astral),
      head: toCodePoint(doc, r.head, this.astral),
    }));
    return { ranges };
  }

  private renderPeers(): void {
    if (this.disposed) return;
    const doc = this.view.state.doc;
    const peers: PeerCursor[] = [];
    for (const p of this.connection.peers.values()) {
      if (!p.selection) continue;
      peers.push({
        name: peerName(p),
        color: p.user?.color ?? "",
        ranges: p.selection.ranges.map((r) => ({
          anchor: toUtf16(doc, r.anchor, this.astral),
          head: toUtf16(doc, r.head, this.astral),
        })),
      });
    }
    // Peers move inside an update (a remote op): render after it.
    queueMicrotask(() => {
      if (!this.disposed) this.view.dispatch({ effects: setPeers.of(peers) });
    });
  }

  private setWritable(writable: boolean): void {
    if (this.disposed || this.writable === writable) return;
    this.writable = writable;
    this.view.dispatch({ effects: this.editable.reconfigure(readOnly(!writable)) });
  }

  /** Puts our caret at code point offset `offset` (for apps and tests). */
  setCaret(offset: number): void {
    const pos = toUtf16(this.view.state.doc, offset, this.astral);
    this.view.dispatch({ selection: EditorSelection.cursor(pos), scrollIntoView: true });
  }
}

function readOnly(on: boolean): Extension {
  return [EditorState.readOnly.of(on), EditorView.editable.of(!on)];
}
