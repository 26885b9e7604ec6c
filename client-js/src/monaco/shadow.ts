/**
 * A shadow of the Monaco model's text, kept in step with its change events,
 * so the adapter can convert each change without scanning the document.
 *
 * Two things Monaco does not give cheaply:
 *
 * * **The text a change replaced.** A content change event reports the old
 *   range but not the characters that were in it, and undo needs them (the
 *   inverse of a delete re-inserts the deleted text). The shadow keeps the
 *   text as an array of lines (the model's end of line is always LF, see the
 *   binding), so a change touches only its own lines.
 * * **Code point offsets.** Monaco counts UTF-16 code units; the wire counts
 *   code points. The shadow keeps the UTF-16 offsets of the surrogate pairs
 *   (astral characters such as emoji), sorted. Without any (the usual case
 *   for source code) every conversion is the identity and costs nothing;
 *   with some it is a binary search, and a change costs O(pairs).
 *
 * The shadow knows nothing of Monaco: the binding feeds it
 * {@link TextChange}s (Monaco's `IModelContentChange` has this shape).
 *
 * @module
 */

import { hasSurrogates, isWellFormed } from "../unicode.js";

/** One replaced range, as Monaco's `IModelContentChange` reports it (1-based lines and columns, UTF-16). */
export interface TextChange {
  readonly range: {
    readonly startLineNumber: number;
    readonly startColumn: number;
    readonly endLineNumber: number;
    readonly endColumn: number;
  };
  /** UTF-16 offset of the range's start in the text before the change. */
  readonly rangeOffset: number;
  /** UTF-16 length of the replaced range. */
  readonly rangeLength: number;
  /** The new text (LF line ends). */
  readonly text: string;
}

/**
 * Thrown by {@link ShadowText.replace} for a change it cannot follow: one
 * outside the text, that splits a surrogate pair, or that inserts a lone
 * surrogate. The caller rebuilds the shadow from the model's text.
 */
export class ShadowMismatch extends Error {
  override readonly name = "ShadowMismatch";
}

function isHigh(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLow(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/** UTF-16 offsets of the surrogate pairs of `s` (of their high halves), plus `base`. */
function pairsOf(s: string, base: number): number[] {
  const out: number[] = [];
  if (!hasSurrogates(s)) return out;
  for (let i = 0; i + 1 < s.length; i++) {
    if (isHigh(s.charCodeAt(i)) && isLow(s.charCodeAt(i + 1))) {
      out.push(base + i);
      i++;
    }
  }
  return out;
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

/** The model's text as lines and surrogate pair offsets; see the module doc. */
export class ShadowText {
  private lines: string[];
  /** UTF-16 offsets of the high surrogate of each pair, ascending. */
  private pairs: number[];
  private length16: number;

  /** A shadow of `text` (LF line ends; a CR is kept as an ordinary character). */
  constructor(text: string) {
    this.lines = text.split("\n");
    this.pairs = pairsOf(text, 0);
    this.length16 = text.length;
  }

  /** Length in UTF-16 code units (Monaco's `getValueLength()` with LF line ends). */
  get utf16Length(): number {
    return this.length16;
  }

  /** Length in code points (the protocol's unit). */
  get codePointLength(): number {
    return this.length16 - this.pairs.length;
  }

  /** Number of lines (Monaco's `getLineCount()`). */
  get lineCount(): number {
    return this.lines.length;
  }

  /** True if the text has no astral characters: code point offsets are UTF-16 offsets. */
  get isBmp(): boolean {
    return this.pairs.length === 0;
  }

  /** The whole text (O(n): for checks and slow paths only). */
  text(): string {
    return this.lines.join("\n");
  }

  /** The code point offset of a UTF-16 offset; inside a pair rounds down; clamps. */
  toCodePoint(utf16Offset: number): number {
    const off = Math.max(0, Math.min(utf16Offset, this.length16));
    if (this.pairs.length === 0) return off;
    return off - countLess(this.pairs, off);
  }

  /** The UTF-16 offset of a code point offset; clamps. */
  toUtf16(cpOffset: number): number {
    const cp = Math.max(0, Math.min(cpOffset, this.codePointLength));
    if (this.pairs.length === 0) return cp;
    // The k-th pair starts at code point pairs[k] - k; count those before cp.
    let lo = 0;
    let hi = this.pairs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.pairs[mid] as number) - mid < cp) lo = mid + 1;
      else hi = mid;
    }
    return cp + lo;
  }

  /**
   * Applies one change, given in the current text's coordinates, and
   * returns the text it replaced. To apply the changes of one Monaco event
   * (all in the old text's coordinates), apply them from the end of the
   * text to the start, as Monaco orders them.
   *
   * # Errors
   * Throws {@link ShadowMismatch} if the change does not fit (see there);
   * the shadow is then unusable until rebuilt.
   */
  replace(change: TextChange): string {
    const { range, rangeOffset: start, rangeLength, text } = change;
    const end = start + rangeLength;
    const sl = range.startLineNumber - 1;
    const el = range.endLineNumber - 1;
    const sc = range.startColumn - 1;
    const ec = range.endColumn - 1;
    const first = this.lines[sl];
    const last = this.lines[el];
    if (
      first === undefined ||
      last === undefined ||
      sl > el ||
      sc < 0 ||
      sc > first.length ||
      ec < 0 ||
      ec > last.length ||
      start < 0 ||
      end > this.length16
    ) {
      throw new ShadowMismatch("change outside the text");
    }
    const pairs = this.pairs;
    if (pairs.length > 0) {
      // A boundary between the halves of a pair would split it.
      const i = countLess(pairs, start);
      if (i > 0 && pairs[i - 1] === start - 1) throw new ShadowMismatch("change splits a pair");
      const j = countLess(pairs, end);
      if (j > 0 && pairs[j - 1] === end - 1 && end > start)
        throw new ShadowMismatch("change splits a pair");
    }
    const astral = hasSurrogates(text);
    if (astral && !isWellFormed(text)) throw new ShadowMismatch("lone surrogate inserted");

    // Lines.
    let removed: string;
    if (sl === el) {
      removed = first.slice(sc, ec);
    } else {
      const parts = [first.slice(sc)];
      for (let l = sl + 1; l < el; l++) parts.push(this.lines[l] as string);
      parts.push(last.slice(0, ec));
      removed = parts.join("\n");
    }
    if (removed.length !== rangeLength) throw new ShadowMismatch("range and offset disagree");
    const joined = first.slice(0, sc) + text + last.slice(ec);
    if (sl === el && text.indexOf("\n") < 0) {
      this.lines[sl] = joined;
    } else {
      this.lines.splice(sl, el - sl + 1, ...joined.split("\n"));
    }

    // Surrogate pairs: drop those removed, shift those after, add the new ones.
    if (pairs.length > 0 || astral) {
      const delta = text.length - rangeLength;
      const from = countLess(pairs, start);
      const to = countLess(pairs, end);
      const added = astral ? pairsOf(text, start) : [];
      const tail = pairs.slice(to).map((p) => p + delta);
      this.pairs = pairs.slice(0, from).concat(added, tail);
    }
    this.length16 += text.length - rangeLength;
    return removed;
  }
}
