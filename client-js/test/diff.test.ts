/** diffOperation: always exact, and keeps unchanged lines as retains. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { diffOperation, TextOperation } from "../src/index.js";
import { PROPERTY_PARAMS, docArb } from "./support/arbitraries.js";

test("examples", () => {
  assert.deepEqual(diffOperation("", "").toJSON(), []);
  assert.deepEqual(diffOperation("abc", "abc").toJSON(), [3]);
  assert.deepEqual(diffOperation("", "x").toJSON(), ["x"]);
  assert.deepEqual(diffOperation("x😀y", "x👍y").toJSON(), [1, "👍", -1, 1]);
  // Surrogate pairs sharing a high half are never split.
  assert.deepEqual(diffOperation("😀", "😁").toJSON(), ["😁", -1]);
});

test("line diff: edits far apart stay separate, the lines between are retained", () => {
  const from = "one\ntwo\nthree\nfour\nfive\n";
  const to = "ONE\ntwo\nthree\nfour\nfive!\n";
  const d = diffOperation(from, to);
  assert.equal(d.apply(from), to);
  assert.deepEqual(d.toJSON(), ["ONE", -3, 20, "!", 1]);
});

test("a rebased insert in an untouched line keeps its place", () => {
  const base = "a\nb\nc\nd\n";
  const server = "A\nb\nc\nD\n";
  const mine = TextOperation.replace(8, 4, 0, "mine "); // before "c"
  const d = diffOperation(base, server);
  const [rebased] = TextOperation.transform(mine, d);
  assert.equal(rebased.apply(server), "A\nb\nmine c\nD\n");
});

test("property: apply(diff(a, b), a) == b", () => {
  fc.assert(
    fc.property(docArb(30), docArb(30), (a, b) => {
      assert.equal(diffOperation(a, b).apply(a), b);
    }),
    PROPERTY_PARAMS,
  );
});

test("property: a small edit of a longer text diffs to the same effect", () => {
  fc.assert(
    fc.property(docArb(60), fc.nat(60), fc.nat(3), docArb(4), (a, at, del, ins) => {
      const n = [...a].length;
      const pos = at % (n + 1);
      const op = TextOperation.replace(n, pos, Math.min(del, n - pos), ins);
      const b = op.apply(a);
      const d = diffOperation(a, b);
      assert.equal(d.apply(a), b);
    }),
    PROPERTY_PARAMS,
  );
});

test("large inputs fall back to a single block and stay exact", () => {
  const a = Array.from({ length: 3000 }, (_, i) => `line ${i}\n`).join("");
  const b = Array.from({ length: 3000 }, (_, i) => `LINE ${i * 7}\n`).join("");
  assert.equal(diffOperation(a, b).apply(a), b);
});
