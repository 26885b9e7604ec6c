/**
 * Splitting an operation that is too big for one message.
 *
 * The server refuses a frame over `max_message_bytes` (close 1009), an op with
 * more than `max_op_components` components, and one that inserts more than
 * `max_insert_chars` characters (`joined.limits`). A paste of a few megabytes
 * is one such op. {@link splitOperation} cuts it into a prefix `a` that fits
 * and the rest `b`, with `a.compose(b)` equal to the op: sending `a`, then
 * (once it is acked) `b`, makes the same change.
 *
 * ```text
 * op = [3, "hello world", -2, 4]          (limits: at most 5 characters inserted)
 * a  = [3, "hello", 6]                    the prefix, then keep the rest of the document
 * b  = [8, " world", -2, 4]               keep what a made, then the rest of op
 * ```
 *
 * The cut is made between components, or inside an insert between two code
 * points (never between the halves of a surrogate pair). Sizes are exact: an
 * op's size is the UTF-8 length of `JSON.stringify(op.toJSON())`, escapes
 * included. Pure and synchronous; the cost is linear in the text it looks at.
 *
 * @module
 */

import { OperationBuilder, type TextOperation } from "./text-operation.js";

/** How big one op may be; see the module doc. */
export interface OpLimits {
  /** Most UTF-8 bytes of the op's JSON array (`JSON.stringify(op.toJSON())`). */
  readonly maxOpBytes: number;
  /** Most characters (code points) one op may insert. */
  readonly maxInsertChars: number;
  /** Most components in one op. */
  readonly maxComponents: number;
}

/**
 * Limits are raised to at least these, which is what it takes for every
 * prefix to make progress: `[retain, one character or one delete, retain]`
 * with 16-digit counts is at most 53 bytes.
 */
export const MIN_OP_LIMITS: OpLimits = Object.freeze({
  maxOpBytes: 64,
  maxInsertChars: 1,
  maxComponents: 3,
});

/** Size figures of an op (see {@link opStats}). */
export interface OpStats {
  /** UTF-8 bytes of its JSON array. */
  readonly bytes: number;
  /** Components. */
  readonly components: number;
  /** Characters (code points) inserted. */
  readonly insertedChars: number;
}

/** The size of `op` as the limits count it. */
export function opStats(op: TextOperation): OpStats {
  let bytes = 2 + Math.max(0, op.ops.length - 1);
  let insertedChars = 0;
  for (const c of op.ops) {
    if (typeof c === "number") {
      bytes += String(c).length;
    } else {
      const s = scanJsonString(c, Infinity, Infinity);
      bytes += 2 + s.bytes;
      insertedChars += s.chars;
    }
  }
  return { bytes, components: op.ops.length, insertedChars };
}

/** True if `op` is within `limits` (raised to {@link MIN_OP_LIMITS}). */
export function fitsLimits(op: TextOperation, limits: OpLimits): boolean {
  const lim = clampLimits(limits);
  if (op.ops.length > lim.maxComponents) return false;
  // Walk with an early exit: a 3 MB insert is not scanned past the limit.
  let bytes = 2 + Math.max(0, op.ops.length - 1);
  let inserted = 0;
  for (const c of op.ops) {
    if (typeof c === "number") {
      bytes += String(c).length;
    } else {
      const s = scanJsonString(c, lim.maxOpBytes - bytes - 2, lim.maxInsertChars - inserted);
      if (s.end < c.length) return false;
      bytes += 2 + s.bytes;
      inserted += s.chars;
    }
    if (bytes > lim.maxOpBytes) return false;
  }
  return true;
}

/** `limits` raised to {@link MIN_OP_LIMITS} and rounded down to whole numbers. */
export function clampLimits(limits: OpLimits): OpLimits {
  const at = (v: number, min: number): number =>
    Number.isFinite(v) ? Math.max(min, Math.floor(v)) : Number.MAX_SAFE_INTEGER;
  return {
    maxOpBytes: at(limits.maxOpBytes, MIN_OP_LIMITS.maxOpBytes),
    maxInsertChars: at(limits.maxInsertChars, MIN_OP_LIMITS.maxInsertChars),
    maxComponents: at(limits.maxComponents, MIN_OP_LIMITS.maxComponents),
  };
}

/**
 * Cuts `op` into `[a, b]`: `a` is the longest prefix of `op` that fits
 * `limits` (raised to {@link MIN_OP_LIMITS}) followed by a retain of the rest
 * of the document, and `b` is the rest of `op`, based on `a`'s result:
 * `a.compose(b)` equals `op`, and `b.apply(a.apply(doc)) === op.apply(doc)`.
 * Neither is a no-op. `b` may still be too big: split it again when it is
 * sent ({@link splitAll}).
 *
 * # Returns
 * `null` if `op` fits as it is.
 */
export function splitOperation(
  op: TextOperation,
  limits: OpLimits,
): [TextOperation, TextOperation] | null {
  const lim = clampLimits(limits);
  if (fitsLimits(op, lim)) return null;
  const ops = op.ops;
  // Room kept for the retain that ends `a`: a comma and at most the document's length.
  let bytes = 2 + 1 + String(op.baseLength).length;
  let count = 0;
  let inserted = 0;
  let baseTaken = 0; // characters of the base document a's prefix covers
  let targetTaken = 0; // characters of its result
  const a = new OperationBuilder();
  let next = 0; // the first component of op not (wholly) in a
  let leftover = ""; // the part of a cut insert that goes to b
  for (; next < ops.length; next++) {
    const c = ops[next] as number | string;
    const comma = count > 0 ? 1 : 0;
    if (count + 2 > lim.maxComponents) break; // this one and the final retain
    if (typeof c === "number") {
      const cost = comma + String(c).length;
      if (bytes + cost > lim.maxOpBytes) break;
      bytes += cost;
      count++;
      if (c > 0) {
        a.retain(c);
        baseTaken += c;
        targetTaken += c;
      } else {
        a.delete(-c);
        baseTaken += -c;
      }
      continue;
    }
    const s = scanJsonString(c, lim.maxOpBytes - bytes - comma - 2, lim.maxInsertChars - inserted);
    if (s.end > 0) {
      a.insert(s.end === c.length ? c : c.slice(0, s.end));
      bytes += comma + 2 + s.bytes;
      count++;
      inserted += s.chars;
      targetTaken += s.chars;
    }
    if (s.end < c.length) {
      leftover = c.slice(s.end);
      next++;
      break;
    }
  }
  const first = a.retain(op.baseLength - baseTaken).build();
  const rest = new OperationBuilder().retain(targetTaken).insert(leftover);
  for (let i = next; i < ops.length; i++) {
    const c = ops[i] as number | string;
    if (typeof c === "string") rest.insert(c);
    else if (c > 0) rest.retain(c);
    else rest.delete(-c);
  }
  const second = rest.build();
  if (first.isNoop() || second.isNoop()) {
    // Unreachable with limits at or above MIN_OP_LIMITS; kept as a guard.
    throw new Error(`cannot split ${op.ops.length} components within the limits`);
  }
  return [first, second];
}

/**
 * `op` as a sequence of ops that each fit `limits` (raised to
 * {@link MIN_OP_LIMITS}), to apply one after the other; their composition
 * equals `op`. `[op]` if it fits.
 */
export function splitAll(op: TextOperation, limits: OpLimits): TextOperation[] {
  const parts: TextOperation[] = [];
  let rest = op;
  for (;;) {
    const split = splitOperation(rest, limits);
    if (!split) break;
    parts.push(split[0]);
    rest = split[1];
  }
  parts.push(rest);
  return parts;
}

/** The text an op inserts, its inserts joined in order. */
export function insertedText(op: TextOperation): string {
  let s = "";
  for (const c of op.ops) if (typeof c === "string") s += c;
  return s;
}

/**
 * Scans `s` as `JSON.stringify` writes it (without its quotes) in UTF-8,
 * code point by code point, and stops before the first one that would go
 * over `maxBytes` bytes or `maxChars` characters. Returns the UTF-16 index
 * it stopped at (`s.length` if it got through), and the bytes and
 * characters before it.
 */
function scanJsonString(
  s: string,
  maxBytes: number,
  maxChars: number,
): { end: number; bytes: number; chars: number } {
  let bytes = 0;
  let chars = 0;
  let i = 0;
  while (i < s.length) {
    const u = s.charCodeAt(i);
    let cost: number;
    let units = 1;
    if (u < 0x20) {
      // \b \t \n \f \r, and \u00XX for the other control characters.
      cost = u === 8 || u === 9 || u === 10 || u === 12 || u === 13 ? 2 : 6;
    } else if (u === 0x22 || u === 0x5c) {
      cost = 2; // \" and \\
    } else if (u < 0x80) {
      cost = 1;
    } else if (u < 0x800) {
      cost = 2;
    } else if (u >= 0xd800 && u <= 0xdfff) {
      const low = u <= 0xdbff && i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (low >= 0xdc00 && low <= 0xdfff) {
        cost = 4;
        units = 2;
      } else {
        cost = 6; // a lone surrogate: \uXXXX (never in a valid op)
      }
    } else {
      cost = 3;
    }
    if (bytes + cost > maxBytes || chars + 1 > maxChars) break;
    bytes += cost;
    chars++;
    i += units;
  }
  return { end: i, bytes, chars };
}
