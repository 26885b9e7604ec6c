/**
 * Selections (cursors) and how operations move them.
 *
 * A selection is the protocol's `{"ranges": [{"anchor": a, "head": h}]}`:
 * offsets in code points; `head` is where the caret is, `anchor` where the
 * selection started (equal for a plain cursor).
 *
 * # Which way a cursor goes at an insert
 *
 * The only choice is an insert exactly at a cursor's offset. ot.js
 * (`Selection.transform`, its inner `transformIndex`) always moves the cursor
 * after the inserted text, which is right for the person who typed it: their
 * caret follows their typing. For someone else's cursor it is wrong: when a
 * colleague types where your caret is, your caret should stay where it was,
 * before their text, or it would jump away while you think. So every function
 * here takes `ownOp`:
 *
 * * `ownOp = true`: the operation was made by the owner of the cursor. An
 *   insert at the cursor pushes it after the insert (ot.js semantics).
 * * `ownOp = false`: someone else's operation. An insert at the cursor leaves
 *   it before the insert. Inserts strictly before it still push it.
 *
 * In both cases a cursor inside a deleted range moves to the start of the
 * range, and offsets are first clamped into `[0, op.baseLength]`, so the
 * result is always within `[0, op.targetLength]`.
 *
 * @module
 */

import { TextOperation } from "./text-operation.js";
import { codePointLength } from "../unicode.js";

/** One range of a selection, in code points. */
export interface SelectionRange {
  readonly anchor: number;
  readonly head: number;
}

/** A (multi-range) selection as sent on the wire. */
export interface Selection {
  readonly ranges: readonly SelectionRange[];
}

/** A selection with a single collapsed cursor at `offset`. */
export function cursor(offset: number): Selection {
  return { ranges: [{ anchor: offset, head: offset }] };
}

/**
 * Where `index` ends up after `op` is applied (see the module doc for
 * `ownOp`). The ot.js algorithm: walk the components, counting the
 * characters left before the index.
 */
export function transformIndex(op: TextOperation, index: number, ownOp: boolean): number {
  const start = Math.max(0, Math.min(index, op.baseLength));
  let remaining = start; // characters of the old document still before the index
  let moved = start;
  for (const c of op.ops) {
    if (typeof c === "string") {
      if (remaining > 0 || ownOp) moved += codePointLength(c);
      else break; // remaining === 0 and someone else's insert: stay before it
    } else if (c > 0) {
      remaining -= c;
    } else {
      moved -= Math.min(remaining, -c);
      remaining += c;
    }
    if (remaining < 0) break;
  }
  return moved;
}

/** Transforms every range of `selection` through `op` (see {@link transformIndex}). */
export function transformSelection(
  selection: Selection,
  op: TextOperation,
  ownOp: boolean,
): Selection {
  return {
    ranges: selection.ranges.map((r) => {
      const anchor = transformIndex(op, r.anchor, ownOp);
      const head = r.anchor === r.head ? anchor : transformIndex(op, r.head, ownOp);
      return { anchor, head };
    }),
  };
}

/** True if both selections have the same ranges in the same order. */
export function selectionsEqual(a: Selection | null, b: Selection | null): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.ranges.length === b.ranges.length &&
    a.ranges.every((r, i) => r.anchor === b.ranges[i]?.anchor && r.head === b.ranges[i]?.head)
  );
}

/**
 * Validates a selection from untrusted JSON: an object whose `ranges` is an
 * array of `{anchor, head}` non-negative safe integers. Returns a fresh copy
 * without extra fields, or `null` if `json` is not such a selection.
 */
export function parseSelection(json: unknown): Selection | null {
  if (typeof json !== "object" || json === null) return null;
  const ranges = (json as { ranges?: unknown }).ranges;
  if (!Array.isArray(ranges)) return null;
  const out: SelectionRange[] = [];
  for (const r of ranges as unknown[]) {
    if (typeof r !== "object" || r === null) return null;
    const { anchor, head } = r as { anchor?: unknown; head?: unknown };
    if (!isOffset(anchor) || !isOffset(head)) return null;
    out.push({ anchor, head });
  }
  return { ranges: out };
}

function isOffset(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}
