/**
 * The Monaco binding's pure parts: the shadow text and the conversions
 * between Monaco's UTF-16 changes and code point operations. Imported from
 * their modules, not from `src/monaco/index.ts`, which loads Monaco itself
 * (a browser library); the binding is tested in a browser by `npm run e2e`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  TextOperation,
  codePointLength,
  utf16ToCodePoint,
  codePointToUtf16,
} from "../src/index.js";
import { ShadowMismatch, ShadowText, type TextChange } from "../src/monaco/shadow.js";
import {
  caretAfter,
  changesToOperation,
  continueGroup,
  operationToEdits,
  simpleEdit,
  UNDO_GROUP_PAUSE_MS,
  type Utf16Edit,
} from "../src/monaco/convert.js";
import { CHARS, PROPERTY_PARAMS, opArb } from "./support/arbitraries.js";

/** Monaco models here always have LF line ends: no CR. */
const MODEL_CHARS = CHARS.filter((c) => c !== "\r");
const modelText = (maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...MODEL_CHARS), { maxLength }).map((cs) => cs.join(""));

/** Monaco's 1-based line and column of a UTF-16 offset in `text`. */
function positionAt(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return { line, column: offset - (before.lastIndexOf("\n") + 1) + 1 };
}

/** A content change as Monaco reports it, replacing [start, end) of `text`. */
function change(text: string, start: number, end: number, insert: string): TextChange {
  const s = positionAt(text, start);
  const e = positionAt(text, end);
  return {
    range: {
      startLineNumber: s.line,
      startColumn: s.column,
      endLineNumber: e.line,
      endColumn: e.column,
    },
    rangeOffset: start,
    rangeLength: end - start,
    text: insert,
  };
}

/** Applies Monaco-style changes (old coordinates, any order) to a string. */
function applyChanges(text: string, changes: readonly TextChange[]): string {
  const sorted = [...changes].sort((a, b) => b.rangeOffset - a.rangeOffset);
  let out = text;
  for (const c of sorted)
    out = out.slice(0, c.rangeOffset) + c.text + out.slice(c.rangeOffset + c.rangeLength);
  return out;
}

/** Applies UTF-16 edits (old coordinates, ascending) to a string. */
function applyEdits(text: string, edits: readonly Utf16Edit[]): string {
  let out = text;
  for (const e of [...edits].reverse()) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

/** Offsets in `text` that are not inside a surrogate pair. */
function boundaries(text: string): number[] {
  const out = [0];
  for (let i = 0; i < text.length;) {
    const cp = text.codePointAt(i) as number;
    i += cp > 0xffff ? 2 : 1;
    out.push(i);
  }
  return out;
}

/** A text and a set of non-overlapping changes on whole characters, as one Monaco event has. */
const eventArb = modelText(30).chain((text) => {
  const b = boundaries(text);
  return fc
    .array(fc.tuple(fc.integer({ min: 0, max: b.length - 1 }), fc.nat(3), modelText(4)), {
      maxLength: 4,
    })
    .map((picks) => {
      const changes: TextChange[] = [];
      let lastEnd = -1;
      for (const [i, len, insert] of [...picks].sort((x, y) => x[0] - y[0])) {
        const start = b[i] as number;
        if (start <= lastEnd) continue;
        const end = b[Math.min(i + len, b.length - 1)] as number;
        changes.push(change(text, start, end, insert));
        lastEnd = end;
      }
      return { text, changes: changes.reverse() }; // Monaco's order: end to start
    });
});

test("shadow: code point conversions agree with the unicode helpers", () => {
  fc.assert(
    fc.property(modelText(30), (text) => {
      const s = new ShadowText(text);
      assert.equal(s.utf16Length, text.length);
      assert.equal(s.codePointLength, codePointLength(text));
      assert.equal(s.isBmp, codePointLength(text) === text.length);
      for (let i = 0; i <= text.length + 1; i++)
        assert.equal(s.toCodePoint(i), utf16ToCodePoint(text, i));
      for (let i = 0; i <= s.codePointLength + 1; i++)
        assert.equal(s.toUtf16(i), codePointToUtf16(text, i));
    }),
    PROPERTY_PARAMS,
  );
});

test("property: one event's changes become one op, its inverse, and the new shadow", () => {
  fc.assert(
    fc.property(eventArb, ({ text, changes }) => {
      const shadow = new ShadowText(text);
      const after = applyChanges(text, changes);
      const { op, inverse } = changesToOperation(shadow, changes);
      assert.equal(op.apply(text), after);
      assert.equal(inverse.apply(after), text);
      assert.equal(shadow.text(), after);
      assert.equal(shadow.utf16Length, after.length);
      assert.equal(shadow.codePointLength, codePointLength(after));
      assert.equal(shadow.lineCount, after.split("\n").length);
      for (let i = 0; i <= after.length; i++)
        assert.equal(shadow.toCodePoint(i), utf16ToCodePoint(after, i));
    }),
    PROPERTY_PARAMS,
  );
});

test("property: an operation becomes UTF-16 edits with the same effect", () => {
  const arb = modelText(24).chain((text) =>
    opArb(codePointLength(text))
      .filter((op) => op.ops.every((c) => typeof c !== "string" || !c.includes("\r")))
      .map((op) => ({ text, op })),
  );
  fc.assert(
    fc.property(arb, ({ text, op }) => {
      const shadow = new ShadowText(text);
      const edits = operationToEdits(shadow, op);
      assert.equal(applyEdits(text, edits), op.apply(text));
      for (let i = 1; i < edits.length; i++)
        assert.ok((edits[i - 1] as Utf16Edit).end < (edits[i] as Utf16Edit).start, "disjoint");
    }),
    PROPERTY_PARAMS,
  );
});

test("typing and deleting an emoji counts one character", () => {
  const shadow = new ShadowText("a\nb");
  const typed = changesToOperation(shadow, [change("a\nb", 1, 1, "😀")]);
  assert.deepEqual(typed.op.toJSON(), [1, "😀", 2]);
  assert.deepEqual(typed.inverse.toJSON(), [1, -1, 2]);
  const text = "a😀\nb";
  assert.equal(shadow.text(), text);
  const deleted = changesToOperation(shadow, [change(text, 1, 3, "")]);
  assert.deepEqual(deleted.op.toJSON(), [1, -1, 2]);
  assert.deepEqual(deleted.inverse.toJSON(), [1, "😀", 2]);
  assert.equal(shadow.text(), "a\nb");
  assert.ok(shadow.isBmp);
});

test("a multi-line paste over a selection spanning lines", () => {
  const text = "one\ntwo\nthree";
  const shadow = new ShadowText(text);
  const c = change(text, 2, 9, "X\nY\nZ");
  const { op, inverse } = changesToOperation(shadow, [c]);
  assert.equal(op.apply(text), "onX\nY\nZhree");
  assert.deepEqual(inverse.toJSON(), [2, "e\ntwo\nt", -5, 4]);
  assert.equal(shadow.text(), "onX\nY\nZhree");
});

test("changes the shadow cannot follow are refused", () => {
  const text = "a😀b";
  assert.throws(() => new ShadowText(text).replace(change(text, 2, 2, "x")), ShadowMismatch);
  assert.throws(() => new ShadowText(text).replace(change(text, 0, 2, "")), ShadowMismatch);
  assert.throws(() => new ShadowText(text).replace(change(text, 0, 0, "\uD83D")), ShadowMismatch);
  assert.throws(
    () => new ShadowText("ab").replace({ ...change("ab", 0, 1, ""), rangeLength: 2 }),
    ShadowMismatch,
  );
  const overlapping = [change("abcd", 0, 2, "x"), change("abcd", 1, 3, "y")];
  assert.throws(() => changesToOperation(new ShadowText("abcd"), overlapping), ShadowMismatch);
  assert.throws(
    () => operationToEdits(new ShadowText("abc"), TextOperation.identity(2)),
    ShadowMismatch,
  );
});

test("caretAfter: after the last insert, or at the last delete", () => {
  assert.equal(caretAfter(TextOperation.fromJSON([2, "ab", 3])), 4);
  assert.equal(caretAfter(TextOperation.fromJSON([2, -3, 1])), 2);
  assert.equal(caretAfter(TextOperation.fromJSON(["😀", 1, -1])), 2);
  assert.equal(caretAfter(TextOperation.identity(4)), null);
});

test("undo groups: typing and backspacing run together; pauses, jumps and newlines split", () => {
  const ins = (at: number, s: string) => simpleEdit(TextOperation.replace(10, at, 0, s));
  const del = (at: number, n: number) => simpleEdit(TextOperation.replace(10, at, n, ""));
  let g = continueGroup(null, ins(3, "a"), 0);
  assert.equal(g.continues, false);
  g = continueGroup(g.group, ins(4, "b"), 100);
  assert.equal(g.continues, true, "typing on");
  assert.equal(continueGroup(g.group, ins(9, "c"), 200).continues, false, "elsewhere");
  assert.equal(
    continueGroup(g.group, ins(5, "c"), 100 + UNDO_GROUP_PAUSE_MS + 1).continues,
    false,
    "after a pause",
  );
  assert.equal(continueGroup(g.group, ins(5, "\n"), 200).continues, false, "newline");
  assert.equal(continueGroup(g.group, ins(5, "pasted"), 200).group, null, "paste");
  let d = continueGroup(null, del(5, 1), 0);
  d = continueGroup(d.group, del(4, 1), 50);
  assert.equal(d.continues, true, "backspace");
  d = continueGroup(d.group, del(4, 1), 90);
  assert.equal(d.continues, true, "delete key");
  assert.equal(continueGroup(d.group, ins(4, "x"), 100).continues, false, "kind changes");
  assert.equal(
    simpleEdit(TextOperation.fromJSON(["a", 1, "b"])),
    null,
    "two inserts are not simple",
  );
});
