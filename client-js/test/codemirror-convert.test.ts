/** CodeMirror change sets <-> operations in code points (no DOM needed). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ChangeSet, Text } from "@codemirror/state";
import {
  changesToOperation,
  operationToChanges,
  toCodePoint,
  toUtf16,
} from "../src/codemirror/index.js";
import { hasSurrogates } from "../src/index.js";
import { PROPERTY_PARAMS, docOpArb } from "./support/arbitraries.js";

/** CodeMirror keeps LF only: documents and inserts without CR. */
const noCr = (s: string): boolean => !s.includes("\r");

test("an op becomes changes that give the same text, and back", () => {
  fc.assert(
    fc.property(docOpArb, ({ doc, op }) => {
      fc.pre(noCr(doc) && op.ops.every((c) => typeof c !== "string" || noCr(c)));
      const text = Text.of(doc.split("\n"));
      for (const astral of hasSurrogates(doc) ? [true] : [false, true]) {
        const changes = ChangeSet.of(operationToChanges(op, text, astral), text.length);
        assert.equal(changes.apply(text).toString(), op.apply(doc));
        const back = changesToOperation(changes, text, astral);
        assert.equal(back.apply(doc), op.apply(doc));
        assert.equal(back.baseLength, op.baseLength);
      }
    }),
    PROPERTY_PARAMS,
  );
});

test("positions convert between UTF-16 and code points", () => {
  const text = Text.of(["a😀b", "👍🏽c"]);
  assert.equal(toUtf16(text, 2, true), 3); // after "a😀"
  assert.equal(toCodePoint(text, 3, true), 2);
  assert.equal(toUtf16(text, 4, true), 5); // after the newline
  assert.equal(toCodePoint(text, text.length, true), 7);
  assert.equal(toUtf16(Text.of(["abc"]), 2, false), 2);
});
