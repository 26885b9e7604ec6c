/**
 * TextOperation: the ot.js operation type, counted in code points.
 *
 * An operation walks over a whole document from start to end. Its JSON form is
 * the ot.js one (and PROTOCOL.md's):
 *
 * ```text
 * [5, "abc", -3, 2]
 *   5      retain 5 characters
 *   "abc"  insert "abc"
 *   -3     delete 3 characters
 *   2      retain 2 characters       (5 + 3 + 2 = 10: the document's length)
 * ```
 *
 * Unlike ot.js, every count is in Unicode code points, not UTF-16 code units:
 * "😀" is 1 character, "👍🏽" is 2 (thumbs up + skin tone modifier), "é" written
 * as "e\u0301" is 2. This matches the server, which counts Rust `char`s.
 *
 * Operations are immutable and always in canonical form, the form the ot.js
 * builder produces: adjacent components of the same kind are merged, there
 * are no zero or empty components, and where an insert and a delete touch the
 * insert comes first. Two operations with the same components are `equals`.
 * The algorithms (transform, compose, invert) are ot.js's, so their results
 * match ot.js and the `operational-transform` crate =0.6.1 component for
 * component; `tests/vectors/ot.json` pins that down for both implementations.
 *
 * @module
 */

import {
  advanceCodePoints as advance,
  codePointLength,
  hasSurrogates,
  isWellFormed,
  sliceCodePoints,
} from "../unicode.js";

/** One component of an operation's JSON form: see the module doc. */
export type OpComponent = number | string;

/** The JSON form of an operation, as sent on the wire. */
export type OperationJSON = OpComponent[];

/** Thrown for an operation that is malformed or does not fit a document. */
export class OperationError extends Error {
  override readonly name = "OperationError";
}

function isRetain(c: OpComponent | undefined): c is number {
  return typeof c === "number" && c > 0;
}

function isDelete(c: OpComponent | undefined): c is number {
  return typeof c === "number" && c < 0;
}

function isInsert(c: OpComponent | undefined): c is string {
  return typeof c === "string";
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new OperationError(`${what} count must be a non-negative safe integer, got ${n}`);
  }
}

/**
 * Builds a canonical {@link TextOperation} component by component, the way
 * ot.js's chained `retain`/`insert`/`delete` calls do. Zero counts and empty
 * strings are skipped; lengths are checked to stay safe integers.
 */
export class OperationBuilder {
  private readonly ops: OpComponent[] = [];
  private base = 0;
  private target = 0;

  /** Keeps the next `n` characters. */
  retain(n: number): this {
    checkCount(n, "retain");
    if (n === 0) return this;
    this.base = safeAdd(this.base, n);
    this.target = safeAdd(this.target, n);
    const last = this.ops.length - 1;
    if (isRetain(this.ops[last])) this.ops[last] = (this.ops[last] as number) + n;
    else this.ops.push(n);
    return this;
  }

  /**
   * Inserts `text` at the current position.
   *
   * # Errors
   * Throws {@link OperationError} if `text` holds an unpaired surrogate: it is
   * not a sequence of characters and the server could not accept it.
   */
  insert(text: string): this {
    if (typeof text !== "string") throw new OperationError("insert needs a string");
    if (text === "") return this;
    if (hasSurrogates(text) && !isWellFormed(text)) {
      throw new OperationError("insert contains an unpaired surrogate");
    }
    this.target = safeAdd(this.target, codePointLength(text));
    const ops = this.ops;
    const n = ops.length;
    const last = ops[n - 1];
    if (isInsert(last)) {
      ops[n - 1] = last + text;
    } else if (isDelete(last)) {
      // Delete-then-insert and insert-then-delete have the same effect; like
      // ot.js, always put the insert first so equal effects compare equal.
      const beforeLast = ops[n - 2];
      if (isInsert(beforeLast)) {
        ops[n - 2] = beforeLast + text;
      } else {
        ops[n] = last;
        ops[n - 1] = text;
      }
    } else {
      ops.push(text);
    }
    return this;
  }

  /** Deletes the next `n` characters (`n` is a positive count). */
  delete(n: number): this {
    checkCount(n, "delete");
    if (n === 0) return this;
    this.base = safeAdd(this.base, n);
    const last = this.ops.length - 1;
    if (isDelete(this.ops[last])) this.ops[last] = (this.ops[last] as number) - n;
    else this.ops.push(-n);
    return this;
  }

  /** The operation built so far. The builder must not be used afterwards. */
  build(): TextOperation {
    return new TextOperation(INTERNAL, this.ops, this.base, this.target);
  }
}

function safeAdd(a: number, b: number): number {
  const sum = a + b;
  if (!Number.isSafeInteger(sum)) throw new OperationError("operation length overflows");
  return sum;
}

/** Guards the constructor: only the builder makes operations (canonical form). */
const INTERNAL: unique symbol = Symbol("TextOperation.internal");

/** An immutable ot.js text operation counted in code points. */
export class TextOperation {
  /** The canonical components (see the module doc). Do not mutate. */
  readonly ops: readonly OpComponent[];
  /** Length (in characters) of the documents this operation applies to. */
  readonly baseLength: number;
  /** Length (in characters) of the document it produces. */
  readonly targetLength: number;

  /** @internal Use {@link OperationBuilder}, {@link TextOperation.fromJSON} or the helpers. */
  constructor(
    guard: typeof INTERNAL,
    ops: OpComponent[],
    baseLength: number,
    targetLength: number,
  ) {
    if (guard !== INTERNAL)
      throw new OperationError("use OperationBuilder or TextOperation.fromJSON");
    this.ops = ops;
    this.baseLength = baseLength;
    this.targetLength = targetLength;
    Object.freeze(ops);
    Object.freeze(this);
  }

  /** A new builder. */
  static builder(): OperationBuilder {
    return new OperationBuilder();
  }

  /** The operation that keeps a document of `length` characters unchanged. */
  static identity(length: number): TextOperation {
    return new OperationBuilder().retain(length).build();
  }

  /**
   * The operation that, on a document of `docLength` characters, deletes
   * `deleteCount` characters at `offset` and inserts `text` there.
   *
   * # Errors
   * Throws {@link OperationError} if the range does not fit the document.
   */
  static replace(
    docLength: number,
    offset: number,
    deleteCount: number,
    text: string,
  ): TextOperation {
    checkCount(docLength, "document length");
    checkCount(offset, "offset");
    checkCount(deleteCount, "delete");
    if (offset + deleteCount > docLength) {
      throw new OperationError(`range ${offset}+${deleteCount} is past the end (${docLength})`);
    }
    return new OperationBuilder()
      .retain(offset)
      .insert(text)
      .delete(deleteCount)
      .retain(docLength - offset - deleteCount)
      .build();
  }

  /**
   * Parses and validates an operation from untrusted JSON (already decoded
   * with `JSON.parse`). Accepts only an array of non-zero safe integers and
   * strings without unpaired surrogates; merges non-canonical input (like
   * `[1, 2]` or `[-1, "a"]`) into canonical form and drops empty strings, as
   * ot.js does.
   *
   * `JSON.parse` has already turned `1.0` into `1`, and cannot tell `-0`
   * from `0` (`-0` is rejected as zero); huge integers such as 2^63 lose
   * precision and are rejected as unsafe.
   *
   * # Errors
   * Throws {@link OperationError} for anything else, and if `baseLength` is
   * given and the operation's retains plus deletes differ from it (which
   * includes a delete past the end of the document).
   */
  static fromJSON(json: unknown, baseLength?: number): TextOperation {
    if (!Array.isArray(json)) throw new OperationError("operation must be a JSON array");
    const b = new OperationBuilder();
    for (const c of json as unknown[]) {
      if (typeof c === "string") {
        b.insert(c);
      } else if (typeof c === "number") {
        if (!Number.isSafeInteger(c) || c === 0) {
          throw new OperationError(`operation component ${String(c)} is not a non-zero integer`);
        }
        if (c > 0) b.retain(c);
        else b.delete(-c);
      } else {
        throw new OperationError(`operation component of type ${c === null ? "null" : typeof c}`);
      }
    }
    const op = b.build();
    if (baseLength !== undefined && op.baseLength !== baseLength) {
      throw new OperationError(
        `operation spans ${op.baseLength} characters but the document has ${baseLength}`,
      );
    }
    return op;
  }

  /** The JSON form (a fresh array), e.g. `[5, "abc", -3, 2]`. */
  toJSON(): OperationJSON {
    return this.ops.slice();
  }

  /** The JSON form as a string, for debugging and test messages. */
  toString(): string {
    return JSON.stringify(this.ops);
  }

  /** True if applying this operation changes nothing (`[]` or `[n]`). */
  isNoop(): boolean {
    return this.ops.length === 0 || (this.ops.length === 1 && isRetain(this.ops[0]));
  }

  /** True if both have the same components (canonical form makes this exact). */
  equals(other: TextOperation): boolean {
    if (this.baseLength !== other.baseLength || this.targetLength !== other.targetLength)
      return false;
    if (this.ops.length !== other.ops.length) return false;
    return this.ops.every((c, i) => c === other.ops[i]);
  }

  /**
   * Applies the operation to `doc`.
   *
   * # Errors
   * Throws {@link OperationError} if `doc`'s length in code points is not
   * {@link baseLength}.
   */
  apply(doc: string): string {
    const bmp = !hasSurrogates(doc);
    const len = bmp ? doc.length : codePointLength(doc);
    if (len !== this.baseLength) {
      throw new OperationError(
        `cannot apply: operation spans ${this.baseLength}, document has ${len}`,
      );
    }
    const parts: string[] = [];
    let pos = 0; // UTF-16 offset in doc
    for (const c of this.ops) {
      if (typeof c === "string") {
        parts.push(c);
      } else if (c > 0) {
        const end = bmp ? pos + c : advance(doc, pos, c);
        parts.push(doc.slice(pos, end));
        pos = end;
      } else {
        pos = bmp ? pos - c : advance(doc, pos, -c);
      }
    }
    return parts.join("");
  }

  /**
   * The operation that undoes this one: `op.invert(doc).apply(op.apply(doc))`
   * is `doc`. Needs the document this operation applies to, for the text of
   * its deletes.
   *
   * # Errors
   * Throws {@link OperationError} if `doc` does not have {@link baseLength}.
   */
  invert(doc: string): TextOperation {
    const len = codePointLength(doc);
    if (len !== this.baseLength) {
      throw new OperationError(
        `cannot invert: operation spans ${this.baseLength}, document has ${len}`,
      );
    }
    const b = new OperationBuilder();
    let pos = 0;
    for (const c of this.ops) {
      if (typeof c === "string") {
        b.delete(codePointLength(c));
      } else if (c > 0) {
        b.retain(c);
        pos = advance(doc, pos, c);
      } else {
        const end = advance(doc, pos, -c);
        b.insert(doc.slice(pos, end));
        pos = end;
      }
    }
    return b.build();
  }

  /**
   * The operation with the effect of this one followed by `next`:
   * `a.compose(b).apply(doc) === b.apply(a.apply(doc))` (ot.js `compose`).
   *
   * # Errors
   * Throws {@link OperationError} unless `next.baseLength` equals this
   * operation's {@link targetLength}.
   */
  compose(next: TextOperation): TextOperation {
    if (this.targetLength !== next.baseLength) {
      throw new OperationError(
        `cannot compose: first produces ${this.targetLength}, second spans ${next.baseLength}`,
      );
    }
    const out = new OperationBuilder();
    const ops1 = this.ops;
    const ops2 = next.ops;
    let i1 = 0;
    let i2 = 0;
    let op1 = ops1[i1++];
    let op2 = ops2[i2++];
    for (;;) {
      if (op1 === undefined && op2 === undefined) break;
      if (isDelete(op1)) {
        out.delete(-op1);
        op1 = ops1[i1++];
        continue;
      }
      if (isInsert(op2)) {
        out.insert(op2);
        op2 = ops2[i2++];
        continue;
      }
      if (op1 === undefined || op2 === undefined) {
        // Unreachable when the lengths match; kept as a guard.
        throw new OperationError("cannot compose: length mismatch");
      }
      if (isRetain(op1) && isRetain(op2)) {
        if (op1 > op2) {
          out.retain(op2);
          op1 = op1 - op2;
          op2 = ops2[i2++];
        } else if (op1 === op2) {
          out.retain(op1);
          op1 = ops1[i1++];
          op2 = ops2[i2++];
        } else {
          out.retain(op1);
          op2 = op2 - op1;
          op1 = ops1[i1++];
        }
      } else if (isInsert(op1) && isDelete(op2)) {
        const len = codePointLength(op1);
        if (len > -op2) {
          op1 = sliceCodePoints(op1, -op2);
          op2 = ops2[i2++];
        } else if (len === -op2) {
          op1 = ops1[i1++];
          op2 = ops2[i2++];
        } else {
          op2 = op2 + len;
          op1 = ops1[i1++];
        }
      } else if (isInsert(op1) && isRetain(op2)) {
        const len = codePointLength(op1);
        if (len > op2) {
          out.insert(sliceCodePoints(op1, 0, op2));
          op1 = sliceCodePoints(op1, op2);
          op2 = ops2[i2++];
        } else if (len === op2) {
          out.insert(op1);
          op1 = ops1[i1++];
          op2 = ops2[i2++];
        } else {
          out.insert(op1);
          op2 = op2 - len;
          op1 = ops1[i1++];
        }
      } else if (isRetain(op1) && isDelete(op2)) {
        if (op1 > -op2) {
          out.delete(-op2);
          op1 = op1 + op2;
          op2 = ops2[i2++];
        } else if (op1 === -op2) {
          out.delete(-op2);
          op1 = ops1[i1++];
          op2 = ops2[i2++];
        } else {
          out.delete(op1);
          op2 = op2 + op1;
          op1 = ops1[i1++];
        }
      } else {
        throw new OperationError("cannot compose: unexpected components");
      }
    }
    return out.build();
  }

  /**
   * Transforms two concurrent operations on the same document (ot.js
   * `TextOperation.transform`): returns `[a', b']` such that
   * `b'.apply(a.apply(doc)) === a'.apply(b.apply(doc))`.
   *
   * Ties: where both insert at the same position, `a`'s insert ends up
   * first. The server calls `transform(incoming, committed)`, and a client
   * calls `transform(pending, remote)`: see PROTOCOL.md.
   *
   * # Errors
   * Throws {@link OperationError} unless both have the same `baseLength`.
   */
  static transform(a: TextOperation, b: TextOperation): [TextOperation, TextOperation] {
    if (a.baseLength !== b.baseLength) {
      throw new OperationError(
        `cannot transform: base lengths ${a.baseLength} and ${b.baseLength} differ`,
      );
    }
    const aPrime = new OperationBuilder();
    const bPrime = new OperationBuilder();
    const ops1 = a.ops;
    const ops2 = b.ops;
    let i1 = 0;
    let i2 = 0;
    let op1 = ops1[i1++];
    let op2 = ops2[i2++];
    for (;;) {
      if (op1 === undefined && op2 === undefined) break;
      if (isInsert(op1)) {
        aPrime.insert(op1);
        bPrime.retain(codePointLength(op1));
        op1 = ops1[i1++];
        continue;
      }
      if (isInsert(op2)) {
        aPrime.retain(codePointLength(op2));
        bPrime.insert(op2);
        op2 = ops2[i2++];
        continue;
      }
      if (op1 === undefined || op2 === undefined) {
        throw new OperationError("cannot transform: length mismatch");
      }
      let minl: number;
      if (isRetain(op1) && isRetain(op2)) {
        if (op1 > op2) {
          minl = op2;
          op1 = op1 - op2;
          op2 = ops2[i2++];
        } else if (op1 === op2) {
          minl = op2;
          op1 = ops1[i1++];
          op2 = ops2[i2++];
        } else {
          minl = op1;
          op2 = op2 - op1;
          op1 = ops1[i1++];
        }
        aPrime.retain(minl);
        bPrime.retain(minl);
      } else if (isDelete(op1) && isDelete(op2)) {
        // Both delete the same characters: neither primed op deletes them.
        if (-op1 > -op2) {
          op1 = op1 - op2;
          op2 = ops2[i2++];
        } else if (op1 === op2) {
          op1 = ops1[i1++];
          op2 = ops2[i2++];
        } else {
          op2 = op2 - op1;
          op1 = ops1[i1++];
        }
      } else if (isDelete(op1) && isRetain(op2)) {
        if (-op1 > op2) {
          minl = op2;
          op1 = op1 + op2;
          op2 = ops2[i2++];
        } else if (-op1 === op2) {
          minl = op2;
          op1 = ops1[i1++];
          op2 = ops2[i2++];
        } else {
          minl = -op1;
          op2 = op2 + op1;
          op1 = ops1[i1++];
        }
        aPrime.delete(minl);
      } else if (isRetain(op1) && isDelete(op2)) {
        if (op1 > -op2) {
          minl = -op2;
          op1 = op1 + op2;
          op2 = ops2[i2++];
        } else if (op1 === -op2) {
          minl = op1;
          op1 = ops1[i1++];
          op2 = ops2[i2++];
        } else {
          minl = op1;
          op2 = op2 + op1;
          op1 = ops1[i1++];
        }
        bPrime.delete(minl);
      } else {
        throw new OperationError("cannot transform: unexpected components");
      }
    }
    return [aPrime.build(), bPrime.build()];
  }
}
