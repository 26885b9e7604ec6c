/** Rope: agreement with strings (apply, invert, slice) under tiny chunks, and sharing. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Rope, TextOperation } from "../src/index.js";
import { PROPERTY_PARAMS, docOpArb, docOpThenOpArb } from "./support/arbitraries.js";

const chunkArb = fc.integer({ min: 2, max: 7 });

test("apply agrees with the string apply, for any chunk size", () => {
  fc.assert(
    fc.property(docOpThenOpArb, chunkArb, ({ doc, a, b }, max) => {
      const r1 = Rope.from(doc, max).apply(a);
      assert.equal(r1.toString(), a.apply(doc));
      assert.equal(r1.length, a.targetLength);
      const r2 = r1.apply(b);
      assert.equal(r2.toString(), b.apply(a.apply(doc)));
      assert.equal(r2.length, b.targetLength);
    }),
    PROPERTY_PARAMS,
  );
});

test("invert agrees with the string invert; slice with code points", () => {
  fc.assert(
    fc.property(docOpArb, chunkArb, fc.nat(30), fc.nat(30), ({ doc, op }, max, i, j) => {
      const rope = Rope.from(doc, max);
      assert.ok(rope.invert(op).equals(op.invert(doc)));
      const cps = [...doc];
      const [s, e] = i <= j ? [i, j] : [j, i];
      assert.equal(rope.slice(s, e), cps.slice(s, e).join(""));
    }),
    PROPERTY_PARAMS,
  );
});

test("long random edit sequences keep chunks bounded and the text right", () => {
  let rnd = 12345;
  const next = (n: number): number => {
    rnd = (rnd * 1103515245 + 12345) % 2147483648;
    return rnd % n;
  };
  let text = "0123456789😀".repeat(50);
  let rope = Rope.from(text, 16);
  for (let k = 0; k < 2000; k++) {
    const len = rope.length;
    const pos = next(len + 1);
    const del = Math.min(next(5), len - pos);
    const ins = ["", "x", "yz😀", "\n"][next(4)] as string;
    const op = TextOperation.replace(len, pos, del, ins);
    text = op.apply(text);
    rope = rope.apply(op);
  }
  assert.equal(rope.toString(), text);
  // No runaway fragmentation: at most about 4 chunks per 16 code points.
  assert.ok(rope.chunkCount <= Math.ceil(rope.length / 4) + 2, `${rope.chunkCount} chunks`);
});

test("an op on a big text shares the chunks it only retains", () => {
  const rope = Rope.from("a".repeat(1_000_000));
  const op = TextOperation.replace(rope.length, 500_000, 1, "XY");
  const next = rope.apply(op);
  assert.equal(next.length, 1_000_001);
  assert.equal(next.slice(499_999, 500_003), "aXYa");
  assert.ok(next.chunkCount <= rope.chunkCount + 1);
  assert.throws(() => rope.apply(TextOperation.replace(5, 0, 0, "x")), /spans 5/);
});
