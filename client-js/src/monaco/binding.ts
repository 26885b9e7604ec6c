/**
 * The Monaco binding: one {@link Connection} driving one Monaco editor.
 *
 * * **User edits to operations.** Each model content event is converted to
 *   one operation in code points (`convert.ts`) against a {@link ShadowText}
 *   of the model, which also yields the replaced text for undo. Nothing per
 *   keystroke is proportional to the document.
 * * **Remote operations to the model.** `model.applyEdits` (not
 *   `pushEditOperations`: they must not enter the model's undo stack, and
 *   Monaco's own undo is replaced anyway), with our own carets transformed
 *   the way the connection transforms them: a colleague typing at our caret
 *   leaves it before their text.
 * * **Undo of one's own edits only.** Ctrl/Cmd+Z and Ctrl/Cmd+Shift+Z,
 *   Ctrl+Y are taken over (editor actions) and run the library's
 *   UndoManager, whose stacks are transformed through every remote edit.
 *   Consecutive typing at one place is one step.
 * * **LF only.** The model's end of line is forced to LF. Monaco cannot hold
 *   a CR, so a document (or remote insert) with CRs is shown without them,
 *   and the difference is sent as our own edit: the shared text converges to
 *   LF. The same reconcile step (a diff of what the connection believes the
 *   editor shows against the model) repairs any other mismatch.
 * * **Too big for the document.** A change that would make the document
 *   longer than the server's `max_document_chars` is turned down by the
 *   connection before it is sent (`Connection.submit` returns false and
 *   emits `rejected` with the text): the binding takes it out of the model
 *   again, so the editor, the server and the peers are all unchanged.
 * * **Readers.** With `read` permission (on `joined`, or once an op is
 *   refused with `forbidden`) the editor is read-only, undo does nothing
 *   and no op is sent; presence still is.
 * * **IME composition** (Chinese, Japanese, Korean input, dead keys): while
 *   Monaco composes (`onDidCompositionStart` … `onDidCompositionEnd`) its
 *   intermediate states stay in the editor and nothing is sent; they are
 *   composed into one op, which remote edits transform like a buffer, and
 *   the result goes to the connection once, as one op and one undo step,
 *   when the composition ends.
 * * **Presence.** Our selections go to the connection at most every
 *   `presenceIntervalMs`; peers' cursors are drawn by {@link RemoteCursors}.
 *
 * `dispose()` removes every listener, action, decoration, widget and style
 * the constructor added, disposes the connection and restores the editor's
 * read-only option. The model (and its text) stays.
 *
 * @module
 */

import * as monaco from "monaco-editor/editor";
import {
  Connection,
  type ConnectionOptions,
  type ConnectionStatus,
  type DocumentSink,
} from "../connection.js";
import { editorText } from "../client/state.js";
import {
  canRedo,
  canUndo,
  emptyUndoManager,
  recordInverse,
  redo,
  transformUndo,
  undo,
  type UndoManager,
} from "../client/undo.js";
import { diffOperation } from "../ot/diff.js";
import { transformIndex, transformSelection, type Selection } from "../ot/selection.js";
import { TextOperation } from "../ot/text-operation.js";
import { isWellFormed } from "../unicode.js";
import {
  caretAfter,
  changesToOperation,
  continueGroup,
  operationToEdits,
  simpleEdit,
  type UndoGroup,
  type Utf16Edit,
} from "./convert.js";
import { RemoteCursors } from "./cursors.js";
import { ShadowText } from "./shadow.js";

/** Default for {@link MonacoBindingOptions.presenceIntervalMs}. */
export const PRESENCE_INTERVAL_MS = 60;

const LONE_SURROGATES = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Options of a {@link MonacoBinding}: the connection's, without `document`. */
export interface MonacoBindingOptions extends Omit<ConnectionOptions, "document"> {
  /** Least time between two presence updates we send (ms). */
  presenceIntervalMs?: number;
}

/** Binds a Monaco editor (its current model) to a document; see the module doc. */
export class MonacoBinding {
  /** The connection this binding created (and disposes). */
  readonly connection: Connection;
  private readonly editor: monaco.editor.IStandaloneCodeEditor;
  private readonly model: monaco.editor.ITextModel;
  private readonly cursors: RemoteCursors;
  private readonly presenceInterval: number;
  private readonly wasReadOnly: boolean;
  private readonly disposables: monaco.IDisposable[] = [];
  private readonly unsubscribes: (() => void)[] = [];
  private shadow: ShadowText;
  private loaded = false;
  private writable = false;
  /** > 0 while the binding edits the model itself: those changes are not the user's. */
  private suppress = 0;
  /** The model may differ from the connection's text; a microtask will diff them. */
  private reconcilePending = false;
  /** A change the connection turned down, to take out of the model (its inverse). */
  private revertPending: TextOperation | null = null;
  private undoManager: UndoManager = emptyUndoManager();
  private group: UndoGroup | null = null;
  private presenceTimer: ReturnType<typeof setTimeout> | null = null;
  private lastPresence = -Infinity;
  private disposed = false;
  /** An IME composition is in progress: the user's changes are held, not sent. */
  private composing = false;
  /**
   * The changes of the composition so far, as one op based on the text the
   * connection believes the editor shows (the model is that plus this op).
   */
  private composition: TextOperation | null = null;
  /** A reconcile was asked for during the composition: run it after. */
  private reconcileAfterComposition = false;

  /**
   * Binds `editor`'s current model. The editor is read-only until the
   * document is loaded (and stays so with read permission or once the
   * connection is closed for good). Call {@link start} to connect.
   *
   * # Errors
   * Throws if the editor has no model.
   */
  constructor(editor: monaco.editor.IStandaloneCodeEditor, options: MonacoBindingOptions) {
    const model = editor.getModel();
    if (!model) throw new Error("the editor has no model");
    this.editor = editor;
    this.model = model;
    this.presenceInterval = options.presenceIntervalMs ?? PRESENCE_INTERVAL_MS;
    this.wasReadOnly = editor.getOption(monaco.editor.EditorOption.readOnly);
    editor.updateOptions({ readOnly: true });
    model.setEOL(monaco.editor.EndOfLineSequence.LF);
    this.shadow = new ShadowText(model.getValue());
    this.cursors = new RemoteCursors(editor);

    const document: DocumentSink = {
      load: (text) => this.load(text),
      apply: (op) => this.applyRemote(op),
    };
    const { presenceIntervalMs: _unused, ...connectionOptions } = options;
    this.connection = new Connection({ ...connectionOptions, document });

    this.disposables.push(
      model.onDidChangeContent((e) => this.onContent(e)),
      editor.onDidChangeCursorSelection((e) => this.onSelection(e)),
      editor.onDidChangeModel(() => this.dispose()),
      editor.onDidCompositionStart(() => {
        this.composing = true;
      }),
      // After the event: Monaco may still apply the composed text in the same handler.
      editor.onDidCompositionEnd(() => queueMicrotask(() => this.endComposition())),
      model.onWillDispose(() => this.dispose()),
      editor.addAction({
        id: "tandem.undo",
        label: "Undo my last edit",
        keybindings: [monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyZ],
        run: () => void this.undo(),
      }),
      editor.addAction({
        id: "tandem.redo",
        label: "Redo my last undone edit",
        keybindings: [
          monaco.KeyMod.CtrlCmd | monaco.KeyMod.Shift | monaco.KeyCode.KeyZ,
          monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyY,
        ],
        run: () => void this.redo(),
      }),
    );
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

  /** True if Ctrl+Z would undo something of ours. */
  get canUndo(): boolean {
    return canUndo(this.undoManager);
  }

  /** True if there is an undone edit of ours to redo. */
  get canRedo(): boolean {
    return canRedo(this.undoManager);
  }

  /** Undoes our newest edit (not a colleague's); false if there was none. */
  undo(): boolean {
    return this.undoOrRedo(undo);
  }

  /** Redoes our newest undone edit; false if there was none. */
  redo(): boolean {
    return this.undoOrRedo(redo);
  }

  /** Undoes everything the constructor did (see the module doc). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.presenceTimer !== null) clearTimeout(this.presenceTimer);
    this.presenceTimer = null;
    for (const u of this.unsubscribes.splice(0)) u();
    for (const d of this.disposables.splice(0)) d.dispose();
    this.cursors.dispose();
    this.connection.dispose();
    this.editor.updateOptions({ readOnly: this.wasReadOnly });
  }

  // ---- the document, from the connection -----------------------------------

  private load(text: string): void {
    this.suppress++;
    try {
      // Same text (a binding replacing another): keep the carets.
      if (this.model.getValue() !== text) this.model.setValue(text);
      this.model.setEOL(monaco.editor.EndOfLineSequence.LF);
    } finally {
      this.suppress--;
    }
    this.shadow = new ShadowText(this.model.getValue());
    this.loaded = true;
    this.undoManager = emptyUndoManager();
    this.group = null;
    if (this.shadow.utf16Length !== text.length || this.shadow.text() !== text) {
      this.scheduleReconcile();
    }
  }

  private applyRemote(remote: TextOperation): void {
    if (this.disposed) return;
    this.undoManager = transformUndo(this.undoManager, remote);
    if (this.group)
      this.group = { ...this.group, anchor: transformIndex(remote, this.group.anchor, false) };
    let op = remote;
    if (this.composition) {
      // The model also holds the composition, not yet sent: like a buffer,
      // ours first (it will be sent after this op, so it goes first at a tie).
      const [ours, theirs] = TextOperation.transform(this.composition, remote);
      this.composition = ours;
      op = theirs;
    }
    if (this.reconcilePending) {
      // The model has changes the connection does not know yet; show the
      // connection's text (the reconcile then finds what is left to send).
      this.replaceModelText(this.expectedText());
      return;
    }
    let edits: Utf16Edit[];
    try {
      edits = operationToEdits(this.shadow, op);
    } catch {
      this.replaceModelText(this.expectedText());
      return;
    }
    const before = this.localSelectionOrNull();
    const viewport = this.viewportAnchor();
    this.editModel(edits);
    if (before) this.restoreSelection(transformSelection(before, op, false));
    if (viewport) this.restoreViewport(viewport, op);
    const crInserted = op.ops.some((c) => typeof c === "string" && c.includes("\r"));
    if (crInserted || this.shadow.utf16Length !== this.model.getValueLength()) {
      this.scheduleReconcile();
    }
  }

  // ---- the user's edits ------------------------------------------------------

  private onContent(e: monaco.editor.IModelContentChangedEvent): void {
    if (this.disposed) return;
    const userEdit = this.suppress === 0 && this.loaded && !this.reconcilePending;
    if (e.isFlush || e.isEolChange) {
      this.rebuildShadow();
      if (this.loaded && this.suppress === 0) this.scheduleReconcile();
      return;
    }
    let edit;
    try {
      edit = changesToOperation(this.shadow, e.changes);
    } catch {
      this.rebuildShadow();
      if (this.loaded) this.scheduleReconcile();
      return;
    }
    if (this.shadow.utf16Length !== this.model.getValueLength()) {
      this.rebuildShadow();
      if (this.loaded) this.scheduleReconcile();
      return;
    }
    if (!userEdit) return;
    if (this.composing) {
      this.composition = this.composition ? this.composition.compose(edit.op) : edit.op;
      return;
    }
    try {
      if (!this.connection.submit(edit.op)) {
        this.scheduleRevert(edit.inverse);
        return;
      }
    } catch {
      this.scheduleReconcile();
      return;
    }
    const { continues, group } = continueGroup(this.group, simpleEdit(edit.op), Date.now());
    this.group = group;
    this.undoManager = recordInverse(this.undoManager, edit.inverse, { compose: continues });
  }

  private undoOrRedo(
    step: (m: UndoManager, text: string) => { manager: UndoManager; op: TextOperation } | null,
  ): boolean {
    if (!this.loaded || !this.writable || this.disposed) return false;
    if (this.reconcilePending) this.reconcile();
    let result;
    try {
      result = step(this.undoManager, this.model.getValue());
    } catch {
      return false; // the stacks do not fit the text: a bug; do nothing rather than corrupt
    }
    if (!result) return false;
    let edits: Utf16Edit[];
    try {
      edits = operationToEdits(this.shadow, result.op);
    } catch {
      this.rebuildShadow();
      this.scheduleReconcile();
      return false;
    }
    const before = this.model.getValue();
    this.editModel(edits);
    if (!this.connection.submit(result.op)) {
      // Too big for the document now (the connection says so to the user).
      this.editModel(operationToEdits(this.shadow, result.op.invert(before)));
      return false;
    }
    this.undoManager = result.manager;
    this.group = null;
    const caret = caretAfter(result.op);
    if (caret !== null) {
      const pos = this.toPosition(caret);
      this.suppress++;
      try {
        this.editor.setPosition(pos);
        this.editor.revealPositionInCenterIfOutsideViewport(pos);
      } finally {
        this.suppress--;
      }
      this.schedulePresence();
    }
    return true;
  }

  // ---- IME composition ------------------------------------------------------------

  /** Sends what the composition made, as one op and one undo step. */
  private endComposition(): void {
    if (!this.composing || this.disposed) return;
    this.composing = false;
    const op = this.composition;
    this.composition = null;
    const state = this.connection.state;
    if (op && !op.isNoop() && state) {
      // Its inverse, from the text it is based on (once per composition).
      const inverse = op.invert(editorText(state));
      let accepted = false;
      try {
        accepted = this.connection.submit(op);
      } catch {
        this.scheduleReconcile();
      }
      if (accepted) {
        this.group = null;
        this.undoManager = recordInverse(this.undoManager, inverse, { compose: false });
      } else {
        this.scheduleRevert(inverse);
      }
    }
    if (this.reconcileAfterComposition) {
      this.reconcileAfterComposition = false;
      this.scheduleReconcile();
    }
    this.schedulePresence();
  }

  // ---- refused changes --------------------------------------------------------

  /**
   * Takes a change the connection turned down out of the model again, once
   * Monaco has finished the edit that made it (the model is not edited from
   * inside its own change event). `inverse` is based on the model's text now.
   */
  private scheduleRevert(inverse: TextOperation): void {
    if (this.revertPending) {
      // A second one before the first was undone: show the connection's text.
      this.revertPending = null;
      this.scheduleReconcile();
      return;
    }
    this.revertPending = inverse;
    queueMicrotask(() => this.revert());
  }

  private revert(): void {
    const inverse = this.revertPending;
    this.revertPending = null;
    if (!inverse || this.disposed) return;
    try {
      this.editModel(operationToEdits(this.shadow, inverse));
    } catch {
      this.rebuildShadow();
    }
    if (this.shadow.utf16Length !== this.model.getValueLength()) this.rebuildShadow();
    const expected = this.expectedText();
    if (this.model.getValue() !== expected) this.replaceModelText(expected);
    this.schedulePresence();
  }

  // ---- reconcile: the slow path that repairs any mismatch ------------------

  private scheduleReconcile(): void {
    if (this.reconcilePending || this.disposed) return;
    this.reconcilePending = true;
    queueMicrotask(() => this.reconcile());
  }

  /** Sends the difference between the model and what the connection believes it shows. */
  private reconcile(): void {
    if (!this.reconcilePending || this.disposed) return;
    this.reconcilePending = false;
    if (this.composing) {
      // Never send half a composition: the diff would hold it.
      this.reconcileAfterComposition = true;
      return;
    }
    const state = this.connection.state;
    if (!state || !this.loaded) return;
    this.rebuildShadow();
    let actual = this.model.getValue();
    if (!isWellFormed(actual)) {
      // Only whole characters can be sent: lone surrogate halves become U+FFFD.
      const fixed = actual.replace(LONE_SURROGATES, "\uFFFD");
      this.editModel(operationToEdits(this.shadow, diffOperation(actual, fixed)));
      actual = fixed;
    }
    const expected = editorText(state);
    // A reader sends nothing; what Monaco cannot show (a CR) simply stays different.
    if (expected !== actual && this.writable) {
      const op = diffOperation(expected, actual);
      if (this.connection.submit(op)) {
        this.undoManager = transformUndo(this.undoManager, op);
      } else {
        this.replaceModelText(expected); // too big for the document: not kept
      }
      this.group = null;
    }
    this.schedulePresence();
  }

  private expectedText(): string {
    const state = this.connection.state;
    return state ? editorText(state) : this.model.getValue();
  }

  /** Makes the model show `text`, touching only what differs. */
  private replaceModelText(text: string): void {
    this.rebuildShadow();
    const current = this.model.getValue();
    if (current === text) return;
    const before = this.localSelectionOrNull();
    const op = diffOperation(current, text);
    this.editModel(operationToEdits(this.shadow, op));
    if (before) this.restoreSelection(transformSelection(before, op, false));
  }

  private rebuildShadow(): void {
    this.shadow = new ShadowText(this.model.getValue());
  }

  /** Applies edits that are not the user's typing (no model undo, no op sent). */
  private editModel(edits: readonly Utf16Edit[]): void {
    if (edits.length === 0) return;
    const ops = edits.map((e) => ({
      range: monaco.Range.fromPositions(
        this.model.getPositionAt(e.start),
        this.model.getPositionAt(e.end),
      ),
      text: e.text,
    }));
    this.suppress++;
    try {
      this.model.applyEdits(ops);
    } finally {
      this.suppress--;
    }
  }

  // ---- selections and presence ---------------------------------------------

  private onSelection(e: monaco.editor.ICursorSelectionChangedEvent): void {
    if (this.suppress > 0 || !this.loaded || this.disposed) return;
    // The user moved the caret: the next typing is a new undo step.
    if (e.reason === monaco.editor.CursorChangeReason.Explicit) this.group = null;
    this.schedulePresence();
  }

  private schedulePresence(): void {
    if (this.presenceTimer !== null || this.disposed) return;
    const wait = this.lastPresence + this.presenceInterval - Date.now();
    if (wait <= 0) {
      this.flushPresence();
      return;
    }
    this.presenceTimer = setTimeout(() => {
      this.presenceTimer = null;
      this.flushPresence();
    }, wait);
  }

  private flushPresence(): void {
    if (!this.loaded || this.reconcilePending || this.disposed) return;
    this.lastPresence = Date.now();
    this.connection.setSelection(this.localSelectionOrNull());
  }

  /** Our selections in code points of the current text (null without any). */
  private localSelectionOrNull(): Selection | null {
    const selections = this.editor.getSelections();
    if (!selections || selections.length === 0) return null;
    const cp = (line: number, column: number): number =>
      this.shadow.toCodePoint(this.model.getOffsetAt({ lineNumber: line, column }));
    return {
      ranges: selections.map((s) => ({
        anchor: cp(s.selectionStartLineNumber, s.selectionStartColumn),
        head: cp(s.positionLineNumber, s.positionColumn),
      })),
    };
  }

  /** Sets our selections (code points) if Monaco put them elsewhere. */
  private restoreSelection(selection: Selection): void {
    const wanted = selection.ranges.map((r) => {
      const a = this.toPosition(r.anchor);
      const h = this.toPosition(r.head);
      return new monaco.Selection(a.lineNumber, a.column, h.lineNumber, h.column);
    });
    const current = this.editor.getSelections() ?? [];
    const same =
      current.length === wanted.length &&
      current.every((s, i) => s.equalsSelection(wanted[i] as monaco.Selection));
    if (same || wanted.length === 0) return;
    this.suppress++;
    try {
      this.editor.setSelections(wanted);
    } finally {
      this.suppress--;
    }
  }

  /**
   * The first visible line (as a code point offset of its start) and how far
   * the view is scrolled into it, so that a colleague's edit above the view
   * does not move what the user is looking at.
   */
  private viewportAnchor(): { offset: number; line: number; delta: number } | null {
    const range = this.editor.getVisibleRanges()[0];
    // At the very top, text inserted above simply pushes the view's content down.
    if (!range || this.editor.getScrollTop() <= 0) return null;
    const line = range.startLineNumber;
    return {
      line,
      offset: this.shadow.toCodePoint(this.model.getOffsetAt({ lineNumber: line, column: 1 })),
      delta: this.editor.getScrollTop() - this.editor.getTopForLineNumber(line),
    };
  }

  private restoreViewport(
    anchor: { offset: number; line: number; delta: number },
    op: TextOperation,
  ): void {
    // As if the anchor were ours: text inserted right at it goes above the view.
    const line = this.toPosition(transformIndex(op, anchor.offset, true)).lineNumber;
    if (line === anchor.line) return;
    this.editor.setScrollTop(
      this.editor.getTopForLineNumber(line) + anchor.delta,
      monaco.editor.ScrollType.Immediate,
    );
  }

  private toPosition(offset: number): monaco.IPosition {
    return this.model.getPositionAt(this.shadow.toUtf16(offset));
  }

  private renderPeers(): void {
    if (!this.loaded || this.disposed) return;
    this.cursors.render(this.connection.peers.values(), (offset) => this.toPosition(offset));
  }

  private setWritable(writable: boolean): void {
    if (this.disposed) return;
    this.writable = writable;
    this.editor.updateOptions({ readOnly: !writable });
  }
}
