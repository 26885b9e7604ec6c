/**
 * Undo and redo of one's own edits only, in a shared document.
 *
 * The ot.js `UndoManager` idea: the undo stack holds the *inverses* of the
 * user's own edits, newest last, each based on the document as it is now (the
 * newest) or as it would be after undoing the newer ones. When a colleague's
 * op reaches the editor, every entry is transformed through it (newest first,
 * carrying the op along), so an undo afterwards removes exactly what this user
 * did and leaves the colleague's typing alone. Remote ops never enter the
 * stacks (like collab's `addToHistory: false`).
 *
 * The manager is an immutable value; every function returns a new one.
 * Wiring, for an editor adapter:
 *
 * ```text
 * user edit op on text T:   undo = recordLocalEdit(undo, op, T, {compose}); client.applyClient(op)
 *                           (or recordInverse(undo, inverse, {compose}) if the adapter built the inverse)
 * remote op applied:        undo = transformUndo(undo, op)
 * Ctrl+Z on text T:         {manager, op} = undo(manager, T); apply op to the editor; client.applyClient(op)
 *                           (do not record it with recordLocalEdit: undo() already pushed its redo)
 * ```
 *
 * @module
 */

import { TextOperation } from "../ot/text-operation.js";

/** Default cap on the undo stack; old entries are forgotten first. */
export const DEFAULT_UNDO_DEPTH = 200;

/** The undo and redo stacks (inverse operations, newest last). */
export interface UndoManager {
  readonly undoStack: readonly TextOperation[];
  readonly redoStack: readonly TextOperation[];
  /** At most this many undo entries are kept. */
  readonly maxDepth: number;
}

/** An empty manager. */
export function emptyUndoManager(maxDepth = DEFAULT_UNDO_DEPTH): UndoManager {
  return Object.freeze({ undoStack: [], redoStack: [], maxDepth });
}

/** True if there is something to undo. */
export function canUndo(m: UndoManager): boolean {
  return m.undoStack.length > 0;
}

/** True if there is something to redo. */
export function canRedo(m: UndoManager): boolean {
  return m.redoStack.length > 0;
}

/**
 * Records the user's own edit `op`, applied to the text `before`. With
 * `compose`, it joins the newest undo entry (one Ctrl+Z undoes both), as
 * editors do for a run of typing; see {@link isContinuation}. Clears the redo
 * stack, as any new edit does.
 */
export function recordLocalEdit(
  m: UndoManager,
  op: TextOperation,
  before: string,
  options: { compose?: boolean } = {},
): UndoManager {
  if (op.isNoop()) return m;
  return recordInverse(m, op.invert(before), options);
}

/**
 * Like {@link recordLocalEdit}, given the inverse of the user's edit instead
 * of the edit and the text before it. For an editor adapter that knows the
 * text its change replaced (Monaco reports the range, the adapter keeps the
 * old characters) and should not pay for `invert` over the whole document
 * on every keystroke.
 */
export function recordInverse(
  m: UndoManager,
  inverse: TextOperation,
  options: { compose?: boolean } = {},
): UndoManager {
  if (inverse.isNoop()) return m;
  const stack = m.undoStack.slice();
  const top = stack[stack.length - 1];
  if (options.compose && top) {
    stack[stack.length - 1] = inverse.compose(top);
  } else {
    stack.push(inverse);
    if (stack.length > m.maxDepth) stack.splice(0, stack.length - m.maxDepth);
  }
  return Object.freeze({ undoStack: stack, redoStack: [], maxDepth: m.maxDepth });
}

/**
 * Transforms both stacks through a remote op that was just applied to the
 * editor, so they keep undoing only this user's edits. Entries that the
 * remote op made empty (a colleague deleted the text you typed) disappear.
 */
export function transformUndo(m: UndoManager, remote: TextOperation): UndoManager {
  return Object.freeze({
    undoStack: transformStack(m.undoStack, remote),
    redoStack: transformStack(m.redoStack, remote),
    maxDepth: m.maxDepth,
  });
}

function transformStack(stack: readonly TextOperation[], remote: TextOperation): TextOperation[] {
  const out: TextOperation[] = [];
  let op = remote;
  for (let i = stack.length - 1; i >= 0; i--) {
    const [entry, opAfter] = TextOperation.transform(stack[i] as TextOperation, op);
    if (!entry.isNoop()) out.push(entry);
    op = opAfter;
  }
  return out.reverse();
}

/**
 * Pops the newest undo entry. Returns the op to apply to the editor (and to
 * submit as a local edit) and the manager with its inverse on the redo stack;
 * `null` if there is nothing to undo. `text` is the editor's current text.
 */
export function undo(
  m: UndoManager,
  text: string,
): { manager: UndoManager; op: TextOperation } | null {
  const op = m.undoStack[m.undoStack.length - 1];
  if (!op) return null;
  return {
    op,
    manager: Object.freeze({
      undoStack: m.undoStack.slice(0, -1),
      redoStack: [...m.redoStack, op.invert(text)],
      maxDepth: m.maxDepth,
    }),
  };
}

/** The mirror of {@link undo}: pops the newest redo entry. */
export function redo(
  m: UndoManager,
  text: string,
): { manager: UndoManager; op: TextOperation } | null {
  const op = m.redoStack[m.redoStack.length - 1];
  if (!op) return null;
  return {
    op,
    manager: Object.freeze({
      undoStack: [...m.undoStack, op.invert(text)],
      redoStack: m.redoStack.slice(0, -1),
      maxDepth: m.maxDepth,
    }),
  };
}

/**
 * ot.js `shouldBeComposedWith`: true if `next` continues `prev` the way
 * typing or backspacing does (an insert right after the previous insert, a
 * delete right before or at the previous delete), so an editor may put both
 * in one undo step. Combine with a time limit in the editor adapter.
 */
export function isContinuation(prev: TextOperation, next: TextOperation): boolean {
  if (prev.isNoop() || next.isNoop()) return true;
  const a = simpleEdit(prev);
  const b = simpleEdit(next);
  if (!a || !b) return false;
  if (a.kind === "insert" && b.kind === "insert") return a.at + a.length === b.at;
  if (a.kind === "delete" && b.kind === "delete") return b.at + b.length === a.at || a.at === b.at;
  return false;
}

/** The single insert or delete of an op (with only retains around it), or null. */
function simpleEdit(
  op: TextOperation,
): { kind: "insert" | "delete"; at: number; length: number } | null {
  const ops = op.ops;
  let i = 0;
  let at = 0;
  if (typeof ops[0] === "number" && ops[0] > 0) {
    at = ops[0];
    i = 1;
  }
  const c = ops[i];
  if (c === undefined) return null;
  const rest = ops.slice(i + 1);
  if (rest.length > 1 || (rest.length === 1 && !(typeof rest[0] === "number" && rest[0] > 0)))
    return null;
  if (typeof c === "string") return { kind: "insert", at, length: op.targetLength - op.baseLength };
  if (c < 0) return { kind: "delete", at, length: -c };
  return null;
}
