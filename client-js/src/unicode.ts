/**
 * Unicode helpers: Tandem counts text in code points, editors count UTF-16.
 *
 * Every length and offset on the wire counts Unicode scalar values (code
 * points): that is what the server's Rust `char`s and its rope count, and a
 * code point can never be split in half. JavaScript strings and browser
 * editors (Monaco, CodeMirror) count UTF-16 code units, in which a character
 * outside the Basic Multilingual Plane ("😀", "𝔸", each half of "👍🏽") is a
 * surrogate pair of two units. These helpers convert at the editor boundary,
 * and nowhere else.
 *
 * Fast path: a string without surrogates has code point offsets equal to its
 * UTF-16 offsets, so no conversion walks it. {@link hasSurrogates} is one
 * native regular expression scan.
 *
 * @module
 */

const SURROGATE = /[\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True if `s` contains any UTF-16 surrogate code unit (paired or not). */
export function hasSurrogates(s: string): boolean {
  return SURROGATE.test(s);
}

/**
 * True if `s` is a sequence of Unicode scalar values: no unpaired surrogate.
 * Only such strings can be sent to the server (its JSON parser rejects lone
 * surrogates, and a Rust `String` cannot hold one).
 */
export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

function isHigh(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLow(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/** The length of `s` in code points (a lone surrogate counts as one). */
export function codePointLength(s: string): number {
  if (!hasSurrogates(s)) return s.length;
  let pairs = 0;
  for (let i = 0; i + 1 < s.length; i++) {
    if (isHigh(s.charCodeAt(i)) && isLow(s.charCodeAt(i + 1))) {
      pairs++;
      i++;
    }
  }
  return s.length - pairs;
}

/**
 * The UTF-16 offset reached by advancing `count` code points from the UTF-16
 * offset `from` in `s`. Stops at the end of the string.
 */
export function advanceCodePoints(s: string, from: number, count: number): number {
  let i = from;
  let left = count;
  while (left > 0 && i < s.length) {
    i += isHigh(s.charCodeAt(i)) && i + 1 < s.length && isLow(s.charCodeAt(i + 1)) ? 2 : 1;
    left--;
  }
  return i;
}

/**
 * `s.slice` counted in code points: the code points in `[start, end)`.
 * `end` defaults to the end of the string.
 */
export function sliceCodePoints(s: string, start: number, end?: number): string {
  if (!hasSurrogates(s)) return s.slice(start, end);
  const from = advanceCodePoints(s, 0, start);
  const to = end === undefined ? s.length : advanceCodePoints(s, from, end - start);
  return s.slice(from, to);
}

/**
 * Converts a UTF-16 offset in `s` to a code point offset. An offset that
 * falls between the two halves of a surrogate pair is rounded down to the
 * start of the pair. Offsets are clamped to `[0, s.length]`.
 */
export function utf16ToCodePoint(s: string, utf16Offset: number): number {
  const off = Math.max(0, Math.min(utf16Offset, s.length));
  if (!hasSurrogates(s)) return off;
  let cp = 0;
  let i = 0;
  while (i < off) {
    const pair = isHigh(s.charCodeAt(i)) && i + 1 < s.length && isLow(s.charCodeAt(i + 1));
    if (pair && i + 1 === off) break; // inside a pair: round down
    i += pair ? 2 : 1;
    cp++;
  }
  return cp;
}

/**
 * Converts a code point offset in `s` to a UTF-16 offset. Offsets past the
 * end are clamped to `s.length`.
 */
export function codePointToUtf16(s: string, cpOffset: number): number {
  const off = Math.max(0, cpOffset);
  if (!hasSurrogates(s)) return Math.min(off, s.length);
  return advanceCodePoints(s, 0, off);
}

/**
 * Converts many offsets in one text in O(log n) each, for an editor adapter
 * that translates every change event. Built in one pass over the text; holds
 * the UTF-16 offsets of its surrogate pairs (none for most source code, in
 * which case every conversion is the identity).
 */
export class OffsetMap {
  /** UTF-16 offsets of the high surrogate of each pair, ascending. */
  private readonly pairs: readonly number[];
  /** The text's length in UTF-16 code units. */
  readonly utf16Length: number;
  /** The text's length in code points. */
  readonly codePointLength: number;

  constructor(text: string) {
    const pairs: number[] = [];
    if (hasSurrogates(text)) {
      for (let i = 0; i + 1 < text.length; i++) {
        if (isHigh(text.charCodeAt(i)) && isLow(text.charCodeAt(i + 1))) {
          pairs.push(i);
          i++;
        }
      }
    }
    this.pairs = pairs;
    this.utf16Length = text.length;
    this.codePointLength = text.length - pairs.length;
  }

  /** Like {@link utf16ToCodePoint}: rounds down inside a pair, clamps. */
  toCodePoint(utf16Offset: number): number {
    const off = Math.max(0, Math.min(utf16Offset, this.utf16Length));
    // Each pair that starts before `off` is two units but one code point.
    // An `off` between the halves of a pair counts that pair too, which
    // lands on the pair's start: the documented rounding down.
    return off - countLess(this.pairs, off);
  }

  /** Like {@link codePointToUtf16}: clamps past the end. */
  toUtf16(cpOffset: number): number {
    const cp = Math.max(0, Math.min(cpOffset, this.codePointLength));
    // The k-th pair (0-based) starts at code point pairs[k] - k. A code point
    // offset `cp` lies after every pair whose start code point is < cp.
    let lo = 0;
    let hi = this.pairs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.pairs[mid] as number) - mid < cp) lo = mid + 1;
      else hi = mid;
    }
    return cp + lo;
  }
}

/** Number of entries of the ascending array `xs` that are `< x`. */
function countLess(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((xs[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The length of `s` in UTF-8 bytes, as it goes over a WebSocket (a lone
 * surrogate counts as the 3 bytes of U+FFFD, which is what `TextEncoder`
 * makes of it). One pass, no copy.
 */
export function utf8Length(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    if (u < 0x80) bytes += 1;
    else if (u < 0x800) bytes += 2;
    else if (isHigh(u) && i + 1 < s.length && isLow(s.charCodeAt(i + 1))) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
