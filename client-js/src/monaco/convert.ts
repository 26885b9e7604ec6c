/**
 * Conversions at the editor boundary: Monaco content changes (UTF-16) to
 * TextOperations (code points), and operations back to UTF-16 edits. Pure:
 * the binding passes Monaco's change objects and applies the edits.
 *
 * @module
 */

import { OperationBuilder, TextOperation } from "../ot/text-operation.js";
import { codePointLength } from "../unicode.js";
import { ShadowMismatch, type ShadowText, type TextChange } from "./shadow.js";

/** A user's change as an operation, and the operation that undoes it. */
export interface LocalEdit {
  /** Based on the text before the changes. */
  readonly op: TextOperation;
  /** Based on the text after the changes: `inverse.apply(op.apply(t)) === t`. */
  readonly inverse: TextOperation;
}

/**
 * Turns the changes of one Monaco content event into one operation, and
 * applies them to `shadow`. The changes are all in the coordinates of the
 * text before the event and do not overlap (Monaco's contract); their order
 * does not matter.
 *
 * Cost: O(changes · log pairs) plus the changed lines and the inserted
 * text; nothing proportional to the document.
 *
 * # Errors
 * Throws {@link ShadowMismatch} if the changes overlap or do not fit the
 * shadow (which is then unusable until rebuilt).
 */
export function changesToOperation(shadow: ShadowText, changes: readonly TextChange[]): LocalEdit {
  const sorted = [...changes].sort((a, b) => a.rangeOffset - b.rangeOffset);
  const oldLength = shadow.codePointLength;
  // Code point offsets first, in the old text.
  const starts: number[] = [];
  const ends: number[] = [];
  let prevEnd = 0;
  for (const c of sorted) {
    if (c.rangeOffset < prevEnd) throw new ShadowMismatch("overlapping changes");
    prevEnd = c.rangeOffset + c.rangeLength;
    starts.push(shadow.toCodePoint(c.rangeOffset));
    ends.push(shadow.toCodePoint(prevEnd));
  }
  // Then the shadow, from the end backwards, collecting the replaced text.
  const removed: string[] = new Array<string>(sorted.length);
  for (let i = sorted.length - 1; i >= 0; i--) {
    removed[i] = shadow.replace(sorted[i] as TextChange);
  }
  const op = new OperationBuilder();
  const inverse = new OperationBuilder();
  let pos = 0;
  sorted.forEach((c, i) => {
    const start = starts[i] as number;
    const end = ends[i] as number;
    op.retain(start - pos)
      .insert(c.text)
      .delete(end - start);
    inverse
      .retain(start - pos)
      .insert(removed[i] as string)
      .delete(codePointLength(c.text));
    pos = end;
  });
  op.retain(oldLength - pos);
  inverse.retain(oldLength - pos);
  return { op: op.build(), inverse: inverse.build() };
}

/** One replacement in UTF-16 offsets of the text before all the edits of its list. */
export interface Utf16Edit {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

/**
 * The edits that apply `op` to the text `shadow` mirrors, in UTF-16 offsets
 * of that text, ascending and not overlapping (what Monaco's `applyEdits`
 * takes). An insert followed by a delete at the same place is one edit.
 *
 * # Errors
 * Throws {@link ShadowMismatch} if `op` does not span the shadow's text.
 */
export function operationToEdits(shadow: ShadowText, op: TextOperation): Utf16Edit[] {
  if (op.baseLength !== shadow.codePointLength) {
    throw new ShadowMismatch(
      `operation spans ${op.baseLength} characters, the editor has ${shadow.codePointLength}`,
    );
  }
  const edits: Utf16Edit[] = [];
  let cp = 0;
  let pending: { at: number; text: string; deleted: number } | null = null;
  const flush = (): void => {
    if (!pending) return;
    const start = shadow.toUtf16(pending.at);
    const end = pending.deleted > 0 ? shadow.toUtf16(pending.at + pending.deleted) : start;
    edits.push({ start, end, text: pending.text });
    pending = null;
  };
  for (const c of op.ops) {
    if (typeof c === "string") {
      pending ??= { at: cp, text: "", deleted: 0 };
      pending.text += c;
    } else if (c > 0) {
      flush();
      cp += c;
    } else {
      pending ??= { at: cp, text: "", deleted: 0 };
      pending.deleted += -c;
      cp += -c;
    }
  }
  flush();
  return edits;
}

/**
 * Where a caret goes after `op` is applied (as an undo or redo): after the
 * last text it inserts, or where its last delete was. In code points of the
 * new text; null for a no-op.
 */
export function caretAfter(op: TextOperation): number | null {
  let pos = 0;
  let caret: number | null = null;
  for (const c of op.ops) {
    if (typeof c === "string") {
      pos += codePointLength(c);
      caret = pos;
    } else if (c > 0) {
      pos += c;
    } else {
      caret = pos;
    }
  }
  return caret;
}

/** The single insert or delete of an op, with only retains around it; null otherwise. */
export interface SimpleEdit {
  readonly kind: "insert" | "delete";
  /** Code point offset where it happens. */
  readonly at: number;
  /** Characters inserted or deleted. */
  readonly length: number;
  /** For an insert: whether it contains a line break. */
  readonly newline: boolean;
}

/** See {@link SimpleEdit}. */
export function simpleEdit(op: TextOperation): SimpleEdit | null {
  const ops = op.ops;
  let i = 0;
  let at = 0;
  if (typeof ops[0] === "number" && ops[0] > 0) {
    at = ops[0];
    i = 1;
  }
  const c = ops[i];
  const rest = ops.length - i - 1;
  if (c === undefined || rest > 1) return null;
  if (rest === 1 && !(typeof ops[i + 1] === "number" && (ops[i + 1] as number) > 0)) return null;
  if (typeof c === "string") {
    return { kind: "insert", at, length: codePointLength(c), newline: c.includes("\n") };
  }
  if (c < 0) return { kind: "delete", at, length: -c, newline: false };
  return null;
}

/**
 * Undo grouping: consecutive typing (or backspacing) at one place is one
 * undo step, as in editors. `anchor` is where the next edit must happen to
 * continue the group, in code points of the current text.
 */
export interface UndoGroup {
  readonly kind: "insert" | "delete";
  readonly anchor: number;
  /** When the last edit of the group was made (ms). */
  readonly time: number;
}

/** A pause longer than this starts a new undo step. */
export const UNDO_GROUP_PAUSE_MS = 1000;

/**
 * Whether `edit` continues `group`, and the group after it. An edit that is
 * not simple, or inserts more than one character, is a step of its own; a
 * change of kind, a pause or a line break starts a new group.
 */
export function continueGroup(
  group: UndoGroup | null,
  edit: SimpleEdit | null,
  now: number,
): { continues: boolean; group: UndoGroup | null } {
  // Not simple, or a paste (or an auto-closed pair): a step of its own.
  if (!edit || (edit.kind === "insert" && edit.length > 1))
    return { continues: false, group: null };
  const next: UndoGroup =
    edit.kind === "insert"
      ? { kind: "insert", anchor: edit.at + edit.length, time: now }
      : { kind: "delete", anchor: edit.at, time: now };
  if (
    !group ||
    group.kind !== edit.kind ||
    edit.newline ||
    now - group.time > UNDO_GROUP_PAUSE_MS
  ) {
    return { continues: false, group: next };
  }
  const continues =
    edit.kind === "insert"
      ? edit.at === group.anchor
      : // Backspace ends where the group is; the delete key starts there.
        edit.at + edit.length === group.anchor || edit.at === group.anchor;
  return { continues, group: next };
}
