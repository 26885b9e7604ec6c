/** Cursor and selection transform: ot.js semantics for one's own ops, "stay" for others'. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  TextOperation,
  cursor,
  parseSelection,
  transformIndex,
  transformSelection,
  type OpComponent,
} from "../src/index.js";
import { PROPERTY_PARAMS, docOpArb } from "./support/arbitraries.js";

const op = (json: OpComponent[]) => TextOperation.fromJSON(json);

test("insert exactly at the cursor: own op pushes it after, someone else's does not", () => {
  const ins = op([2, "xyz", 3]);
  assert.equal(transformIndex(ins, 2, true), 5);
  assert.equal(transformIndex(ins, 2, false), 2);
  // Strictly before the cursor, both push; strictly after, neither.
  assert.equal(transformIndex(ins, 3, false), 6);
  assert.equal(transformIndex(ins, 1, true), 1);
});

test("code points: an emoji insert moves a cursor by one", () => {
  assert.equal(transformIndex(op(["😀", 2]), 1, false), 2);
  assert.equal(transformIndex(op(["👍🏽", 2]), 0, true), 2);
});

test("deletes: a cursor inside moves to the start, after moves back", () => {
  const del = op([1, -3, 2]);
  assert.equal(transformIndex(del, 0, false), 0);
  assert.equal(transformIndex(del, 2, false), 1);
  assert.equal(transformIndex(del, 4, false), 1);
  assert.equal(transformIndex(del, 6, false), 3);
});

test("replace at the cursor: insert before the deleted range", () => {
  const rep = op([1, "X", -2, 1]);
  assert.equal(transformIndex(rep, 3, false), 2);
  assert.equal(transformIndex(rep, 1, false), 1);
  assert.equal(transformIndex(rep, 1, true), 2);
});

test("selections transform each end; out-of-range offsets are clamped", () => {
  const sel = {
    ranges: [
      { anchor: 1, head: 4 },
      { anchor: 9, head: 9 },
    ],
  };
  assert.deepEqual(transformSelection(sel, op([1, "ab", 3]), false), {
    ranges: [
      { anchor: 1, head: 6 },
      { anchor: 6, head: 6 },
    ],
  });
  assert.deepEqual(transformSelection(cursor(0), op(["a"]), true), cursor(1));
});

test("parseSelection validates", () => {
  assert.deepEqual(parseSelection({ ranges: [{ anchor: 1, head: 2, x: 1 }] }), {
    ranges: [{ anchor: 1, head: 2 }],
  });
  assert.equal(parseSelection({ ranges: [{ anchor: -1, head: 2 }] }), null);
  assert.equal(parseSelection({ ranges: [{ anchor: 1.5, head: 2 }] }), null);
  assert.equal(parseSelection({ ranges: "x" }), null);
  assert.equal(parseSelection(null), null);
});

/** Naive model: an index counts the surviving characters before it plus the inserts before it. */
function naiveIndex(o: TextOperation, index: number, ownOp: boolean): number {
  const c = Math.min(index, o.baseLength);
  let pos = 0;
  let out = 0;
  for (const x of o.ops) {
    if (typeof x === "string") {
      if (pos < c || (pos === c && ownOp)) out += [...x].length;
    } else if (x > 0) {
      out += Math.max(0, Math.min(pos + x, c) - pos);
      pos += x;
    } else pos -= x;
  }
  return out;
}

test("property: transformIndex stays in bounds and matches the naive model", () => {
  fc.assert(
    fc.property(docOpArb, fc.nat(40), fc.boolean(), ({ op: o }, index, own) => {
      const moved = transformIndex(o, index, own);
      assert.ok(moved >= 0 && moved <= o.targetLength, `${moved} out of [0, ${o.targetLength}]`);
      assert.equal(moved, naiveIndex(o, index, own));
      if (!own) assert.ok(moved <= transformIndex(o, index, true));
    }),
    PROPERTY_PARAMS,
  );
});
