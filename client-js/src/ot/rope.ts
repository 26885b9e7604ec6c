/**
 * `Rope`: an immutable text in chunks, counted in code points, so that
 * applying an operation costs what the operation touches, not a copy of the
 * document.
 *
 * The client keeps the server's text at its revision (the state machine's
 * `text`) to rebase unsent edits on a rejoin and to invert a refused op. A
 * plain string would be rebuilt on every remote op and every ack: O(document)
 * per op, which on a 1 MB file with busy peers is a millisecond and a megabyte
 * of garbage each time. Here a text is a flat array of chunks of at most
 * {@link MAX_CHUNK} code points; {@link Rope.apply} shares every chunk the
 * op only retains and rebuilds the few it edits, so an op costs O(chunks) in
 * pointer copies (a few hundred for 1 MB) plus O(chunk) string work per edit
 * point. `toString` joins the chunks once and caches the result.
 *
 * Chunks never split a surrogate pair: offsets are code points, and each
 * chunk knows whether it has any astral character (if not, code point and
 * UTF-16 offsets are the same and slicing is direct).
 *
 * @module
 */

import { OperationBuilder, OperationError, type TextOperation } from "./text-operation.js";
import { advanceCodePoints, codePointLength, hasSurrogates } from "../unicode.js";

/**
 * Largest chunk, in code points. Small enough that rebuilding one chunk at an
 * edit is cheap, big enough that a megabyte is a few hundred chunks.
 */
export const MAX_CHUNK = 4096;

interface Chunk {
  readonly text: string;
  /** Length in code points. */
  readonly length: number;
  /** No surrogate pair: code point offsets are UTF-16 offsets. */
  readonly bmp: boolean;
}

/** Code points `start..end` of `c`. */
function sliceChunk(c: Chunk, start: number, end: number): string {
  if (start === 0 && end === c.length) return c.text;
  if (c.bmp) return c.text.slice(start, end);
  const s = advanceCodePoints(c.text, 0, start);
  return c.text.slice(s, advanceCodePoints(c.text, s, end - start));
}

/**
 * Appends `text` (of `length` code points) to `out` in chunks of at most
 * `max`. `bmp`: known to have no surrogate pair (no scan needed).
 */
function pushText(out: Chunk[], text: string, length: number, bmp: boolean, max: number): void {
  if (length === 0) return;
  if (length <= max) {
    out.push({ text, length, bmp: bmp || !hasSurrogates(text) });
    return;
  }
  // Even pieces: 4097 code points become two of about 2048, never 4096 and 1.
  const size = Math.ceil(length / Math.ceil(length / max));
  let pos = 0;
  for (let left = length; left > 0; left -= size) {
    const n = Math.min(size, left);
    const end = bmp ? pos + n : advanceCodePoints(text, pos, n);
    const piece = text.slice(pos, end);
    out.push({ text: piece, length: n, bmp: bmp || !hasSurrogates(piece) });
    pos = end;
  }
}

/** An immutable text, counted in code points. See the module doc. */
export class Rope {
  /** The joined text, computed on first use. */
  private joined: string | null;

  private constructor(
    private readonly chunks: readonly Chunk[],
    /** Length in code points. */
    readonly length: number,
    joined: string | null,
    /** Largest chunk in code points ({@link MAX_CHUNK}; smaller in tests). */
    private readonly max: number,
  ) {
    this.joined = joined;
  }

  /** The empty text. */
  static readonly EMPTY = new Rope([], 0, "", MAX_CHUNK);

  /**
   * A rope holding `text`, in chunks of at most `maxChunk` code points
   * (tests use tiny ones to exercise the chunk boundaries). O(text).
   */
  static from(text: string, maxChunk: number = MAX_CHUNK): Rope {
    const max = Math.max(2, Math.floor(maxChunk));
    const out: Chunk[] = [];
    const length = codePointLength(text);
    pushText(out, text, length, false, max);
    return new Rope(out, length, text, max);
  }

  /** The whole text (joined once, then cached). */
  toString(): string {
    if (this.joined === null) this.joined = this.chunks.map((c) => c.text).join("");
    return this.joined;
  }

  /** How many chunks the text is in (for tests and benchmarks). */
  get chunkCount(): number {
    return this.chunks.length;
  }

  /** Code points `start..end` (clamped to the text). */
  slice(start: number, end: number = this.length): string {
    const from = Math.max(0, Math.min(start, this.length));
    const to = Math.max(from, Math.min(end, this.length));
    if (to === from) return "";
    const parts: string[] = [];
    let pos = 0; // code point offset of chunk i
    for (const c of this.chunks) {
      const next = pos + c.length;
      if (next > from) {
        parts.push(sliceChunk(c, Math.max(0, from - pos), Math.min(c.length, to - pos)));
        if (next >= to) break;
      }
      pos = next;
    }
    return parts.join("");
  }

  /**
   * The text after `op`. Shares every chunk `op` only retains.
   *
   * # Errors
   * Throws `OperationError` if `op` does not span this text.
   */
  apply(op: TextOperation): Rope {
    if (op.baseLength !== this.length) {
      throw new OperationError(
        `cannot apply: operation spans ${op.baseLength}, document has ${this.length}`,
      );
    }
    const src = this.chunks;
    const max = this.max;
    // Pieces smaller than this are merged into their neighbour as the op passes.
    const small = max / 4;
    const out: Chunk[] = [];
    // The chunk being rebuilt (pieces of edited chunks and inserts).
    let acc = "";
    let accLen = 0;
    let accBmp = true;
    const flush = (): void => {
      pushText(out, acc, accLen, accBmp, max);
      acc = "";
      accLen = 0;
      accBmp = true;
    };
    const add = (text: string, length: number, bmp: boolean): void => {
      acc += text;
      accLen += length;
      accBmp &&= bmp;
      if (accLen >= 2 * max) flush();
    };
    let ci = 0; // current source chunk
    let off = 0; // code points of it already consumed
    for (const c of op.ops) {
      if (typeof c === "string") {
        const bmp = !hasSurrogates(c);
        add(c, bmp ? c.length : codePointLength(c), bmp);
        continue;
      }
      let n = Math.abs(c);
      const keep = c > 0;
      while (n > 0) {
        const ch = src[ci] as Chunk;
        const avail = ch.length - off;
        const take = Math.min(n, avail);
        if (keep) {
          if (off === 0 && take === avail && (accLen === 0 || accLen + avail > max)) {
            // A whole chunk kept as it is: share it (after what was being rebuilt).
            if (accLen > 0) {
              if (accLen < small && avail >= small) {
                add(ch.text, avail, ch.bmp); // merge a small piece into its neighbour
                n -= take;
                ci++;
                continue;
              }
              flush();
            }
            out.push(ch);
          } else {
            add(sliceChunk(ch, off, off + take), take, ch.bmp);
          }
        }
        n -= take;
        off += take;
        if (off === ch.length) {
          ci++;
          off = 0;
        }
      }
    }
    flush();
    return new Rope(out, op.targetLength, null, max);
  }

  /**
   * The inverse of `op` on this text (what `op.invert(text)` gives, without
   * joining the text): deletes become inserts of the text they removed.
   *
   * # Errors
   * Throws `OperationError` if `op` does not span this text.
   */
  invert(op: TextOperation): TextOperation {
    if (op.baseLength !== this.length) {
      throw new OperationError(
        `cannot invert: operation spans ${op.baseLength}, document has ${this.length}`,
      );
    }
    const b = new OperationBuilder();
    let pos = 0;
    for (const c of op.ops) {
      if (typeof c === "string") {
        b.delete(codePointLength(c));
      } else if (c > 0) {
        b.retain(c);
        pos += c;
      } else {
        b.insert(this.slice(pos, pos - c));
        pos -= c;
      }
    }
    return b.build();
  }
}
