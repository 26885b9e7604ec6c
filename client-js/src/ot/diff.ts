/**
 * A TextOperation that turns one text into another (a diff), for rebasing.
 *
 * When the client comes back from a long absence the server answers with the
 * whole current text instead of the operations it missed. The client then
 * needs an operation from the text it knew to the new one, so that it can
 * transform its unsent edits through it (see `client/resync.ts`). Any
 * operation with the right effect keeps the documents consistent; a *good*
 * one also keeps the user's edits where they belong, so this diff works line
 * by line (Myers' O(ND) algorithm) and then trims each changed block to the
 * characters that really changed. Past a work budget it degrades to one
 * replaced block between the common prefix and suffix, which is still correct.
 *
 * @module
 */

import { OperationBuilder, TextOperation } from "./text-operation.js";
import { codePointLength } from "../unicode.js";

/**
 * Bound on the Myers work (about (lines old + lines new) x edit distance in
 * lines) before falling back to one block. 20 million steps take well under a
 * second, and only run on a rejoin after a long disconnection.
 */
const MAX_DIFF_WORK = 20_000_000;

/** Bound on the edit distance in lines, which also bounds memory (D^2 / 2 ints). */
const MAX_DIFF_LINES = 2_000;

/** An operation `op` with `op.apply(from) === to`. */
export function diffOperation(from: string, to: string): TextOperation {
  const b = new OperationBuilder();
  const prefix = commonPrefix(from, to);
  const suffix = commonSuffix(from, to, prefix);
  const oldMid = from.slice(prefix, from.length - suffix);
  const newMid = to.slice(prefix, to.length - suffix);
  b.retain(codePointLength(from.slice(0, prefix)));
  if (oldMid === "" || newMid === "") {
    b.insert(newMid).delete(codePointLength(oldMid));
  } else {
    diffLines(b, oldMid, newMid);
  }
  b.retain(codePointLength(from.slice(from.length - suffix)));
  return b.build();
}

/** Length in UTF-16 units of the common prefix, never ending inside a surrogate pair. */
function commonPrefix(a: string, b: string): number {
  const max = Math.min(a.length, b.length);
  let i = 0;
  while (i < max && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i > 0 && isHigh(a.charCodeAt(i - 1))) i--;
  return i;
}

/** Length of the common suffix that does not overlap the first `skip` units. */
function commonSuffix(a: string, b: string, skip: number): number {
  const max = Math.min(a.length, b.length) - skip;
  let i = 0;
  while (i < max && a.charCodeAt(a.length - 1 - i) === b.charCodeAt(b.length - 1 - i)) i++;
  if (i > 0 && isLow(a.charCodeAt(a.length - i))) i--;
  return i;
}

function isHigh(u: number): boolean {
  return u >= 0xd800 && u <= 0xdbff;
}

function isLow(u: number): boolean {
  return u >= 0xdc00 && u <= 0xdfff;
}

/** Splits into lines, each keeping its "\n" (the last may have none). */
function lines(s: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const nl = s.indexOf("\n", start);
    if (nl < 0) break;
    out.push(s.slice(start, nl + 1));
    start = nl + 1;
  }
  if (start < s.length) out.push(s.slice(start));
  return out;
}

/** Appends to `b` a line-level diff of `from` -> `to`. */
function diffLines(b: OperationBuilder, from: string, to: string): void {
  const a = lines(from);
  const c = lines(to);
  const script = myers(a, c);
  if (script === null) {
    replaceBlock(b, from, to);
    return;
  }
  let oldBlock = "";
  let newBlock = "";
  const flush = (): void => {
    if (oldBlock !== "" || newBlock !== "") replaceBlock(b, oldBlock, newBlock);
    oldBlock = "";
    newBlock = "";
  };
  for (const step of script) {
    if (step.kind === "equal") {
      flush();
      b.retain(codePointLength(step.line));
    } else if (step.kind === "delete") {
      oldBlock += step.line;
    } else {
      newBlock += step.line;
    }
  }
  flush();
}

/** Appends `from` -> `to` as retain prefix, insert, delete, retain suffix. */
function replaceBlock(b: OperationBuilder, from: string, to: string): void {
  const prefix = commonPrefix(from, to);
  const suffix = commonSuffix(from, to, prefix);
  b.retain(codePointLength(from.slice(0, prefix)))
    .insert(to.slice(prefix, to.length - suffix))
    .delete(codePointLength(from.slice(prefix, from.length - suffix)))
    .retain(codePointLength(from.slice(from.length - suffix)));
}

type Step = { kind: "equal" | "delete" | "insert"; line: string };

/**
 * Myers' shortest edit script between two line arrays, or `null` when it
 * would exceed the work budget.
 */
function myers(a: readonly string[], b: readonly string[]): Step[] | null {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  const maxD = Math.min(max, MAX_DIFF_LINES, Math.floor(MAX_DIFF_WORK / Math.max(1, max)));
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  // trace[d] holds v[-d..d] as it was before round d.
  const trace: Int32Array[] = [];
  for (let d = 0; d <= maxD; d++) {
    trace.push(v.slice(offset - d, offset + d + 1));
    for (let k = -d; k <= d; k += 2) {
      let x: number;
      if (k === -d || (k !== d && (v[offset + k - 1] as number) < (v[offset + k + 1] as number))) {
        x = v[offset + k + 1] as number;
      } else {
        x = (v[offset + k - 1] as number) + 1;
      }
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) return backtrack(a, b, trace);
    }
  }
  return null;
}

function backtrack(a: readonly string[], b: readonly string[], trace: Int32Array[]): Step[] {
  const steps: Step[] = [];
  let x = a.length;
  let y = b.length;
  for (let d = trace.length - 1; d >= 0; d--) {
    const vd = trace[d] as Int32Array;
    const at = (k: number): number => vd[k + d] as number; // vd holds k in [-d, d]
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      steps.push({ kind: "equal", line: a[x - 1] as string });
      x--;
      y--;
    }
    if (d > 0) {
      if (x === prevX) steps.push({ kind: "insert", line: b[y - 1] as string });
      else steps.push({ kind: "delete", line: a[x - 1] as string });
    }
    x = prevX;
    y = prevY;
  }
  return steps.reverse();
}
