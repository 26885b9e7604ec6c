/**
 * CodeMirror 6 changes <-> operations in code points.
 *
 * CodeMirror counts UTF-16 code units; the wire counts code points. While a
 * document has no astral character (`astral` false, the usual case for
 * source code) every offset is the same in both and nothing is scanned; once
 * it has one, offsets are converted by walking the text between the
 * positions involved.
 *
 * @module
 */

import type { ChangeSet, ChangeSpec, Text } from "@codemirror/state";
import { OperationBuilder, type TextOperation } from "../ot/text-operation.js";
import { advanceCodePoints, codePointLength } from "../unicode.js";

/**
 * The op for a CodeMirror change set on `doc` (the text before it).
 * `astral`: `doc` may hold astral characters.
 */
export function changesToOperation(changes: ChangeSet, doc: Text, astral: boolean): TextOperation {
  const b = new OperationBuilder();
  let u16 = 0; // UTF-16 position in `doc` reached
  const span = (from: number, to: number): number =>
    astral ? codePointLength(doc.sliceString(from, to)) : to - from;
  changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
    b.retain(span(u16, fromA));
    b.delete(span(fromA, toA));
    b.insert(inserted.sliceString(0, inserted.length, "\n"));
    u16 = toA;
  });
  b.retain(span(u16, doc.length));
  return b.build();
}

/** CodeMirror change specs (positions in `doc`, applied together) for `op` on `doc`. */
export function operationToChanges(op: TextOperation, doc: Text, astral: boolean): ChangeSpec[] {
  const specs: ChangeSpec[] = [];
  let u16 = 0;
  const advance = (n: number): number => {
    if (!astral) return u16 + n;
    const chunk = doc.sliceString(u16, Math.min(doc.length, u16 + 2 * n));
    return u16 + advanceCodePoints(chunk, 0, n);
  };
  for (const c of op.ops) {
    if (typeof c === "string") {
      specs.push({ from: u16, insert: c });
    } else if (c > 0) {
      u16 = advance(c);
    } else {
      const end = advance(-c);
      specs.push({ from: u16, to: end });
      u16 = end;
    }
  }
  return specs;
}

/** The UTF-16 position of code point offset `cp` in `doc`. */
export function toUtf16(doc: Text, cp: number, astral: boolean): number {
  if (!astral) return Math.min(cp, doc.length);
  return advanceCodePoints(doc.toString(), 0, cp);
}

/** The code point offset of UTF-16 position `pos` in `doc`. */
export function toCodePoint(doc: Text, pos: number, astral: boolean): number {
  return astral ? codePointLength(doc.sliceString(0, pos)) : pos;
}
