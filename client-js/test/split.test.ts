/** Splitting an op that is over the limits: examples and properties (fixed seeds). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  MIN_OP_LIMITS,
  OperationBuilder,
  TextOperation,
  fitsLimits,
  insertedText,
  isWellFormed,
  opStats,
  splitAll,
  splitOperation,
  utf8Length,
  type OpComponent,
  type OpLimits,
} from "../src/index.js";

const op = (json: OpComponent[]) => TextOperation.fromJSON(json);

/** The size the server counts: UTF-8 bytes of the JSON text. */
const wireBytes = (o: TextOperation): number => Buffer.byteLength(JSON.stringify(o.toJSON()));

const limits = (maxOpBytes: number, maxInsertChars: number, maxComponents: number): OpLimits => ({
  maxOpBytes,
  maxInsertChars,
  maxComponents,
});

const UNLIMITED = limits(Infinity, Infinity, Infinity);

test("the module doc's example", () => {
  const [a, b] = splitOperation(op([3, "hello world", -2, 4]), limits(1000, 5, 100)) ?? [];
  assert.deepEqual(a?.toJSON(), [3, "hello", 6]);
  assert.deepEqual(b?.toJSON(), [8, " world", -2, 4]);
});

test("an op that fits is not split", () => {
  assert.equal(splitOperation(op([3, "abc", -1]), limits(64, 3, 3)), null);
  assert.deepEqual(
    splitAll(op([3, "abc", -1]), limits(64, 3, 3)).map((o) => o.toJSON()),
    [[3, "abc", -1]],
  );
  assert.ok(fitsLimits(op(["x".repeat(60)]), limits(64, 100, 3)), '["x…x"] is 64 bytes');
  assert.ok(!fitsLimits(op(["x".repeat(61)]), limits(64, 100, 3)));
});

test("sizes are the UTF-8 bytes of the JSON text, escapes included", () => {
  const samples = [
    [],
    [5],
    [-3, 2],
    ['a"b\\c\n\t\r\b\f\u0001\u001f'],
    [2, "😀漢é\u2028\u2029\u007f\u0080\u07ff\u0800\uffff", -1],
    [1, "👍🏽", 9007199254740000],
  ];
  for (const json of samples) {
    const o = op(json as OpComponent[]);
    assert.equal(opStats(o).bytes, wireBytes(o), JSON.stringify(json));
  }
  assert.equal(opStats(op([1, "😀a", 2])).insertedChars, 2);
  assert.equal(utf8Length("a😀漢é"), 1 + 4 + 3 + 2);
  assert.equal(utf8Length("\ud800x"), 4, "a lone surrogate is U+FFFD's 3 bytes");
});

test("a surrogate pair is never cut in half", () => {
  // Each emoji is 4 bytes of JSON: room for 1.5 of them must take only one.
  const parts = splitAll(op(["😀😀😀😀"]), limits(64, 1, 3));
  assert.deepEqual(
    parts.map((o) => insertedText(o)),
    ["😀", "😀", "😀", "😀"],
  );
  const bytes = splitAll(op([1, "😀".repeat(40), 1]), limits(80, 1000, 5));
  for (const p of bytes) {
    assert.ok(wireBytes(p) <= 80);
    for (const c of p.ops) if (typeof c === "string") assert.ok(isWellFormed(c));
  }
});

test("too many components: cut between components", () => {
  const o = op([1, "a", 1, "b", 1, "c", 1, "d", 1]);
  const parts = splitAll(o, limits(1000, 1000, 4));
  for (const p of parts) assert.ok(p.ops.length <= 4, p.toString());
  assert.equal(parts.reduce((x, y) => x.compose(y)).toString(), o.toString());
  assert.equal(
    parts.reduce((doc, p) => p.apply(doc), "12345"),
    "1a2b3c4d5",
  );
});

test("limits below the minimum are raised to it", () => {
  const o = op([4503599627370000, "x", -4503599627370, 1]);
  const parts = splitAll(o, limits(1, 0, 0));
  for (const p of parts) assert.ok(fitsLimits(p, MIN_OP_LIMITS), p.toString());
});

test("a 3 MB paste with the default limits goes in a few parts of at most 1 MiB", () => {
  const line = 'fn paste() { let s = "😀 é 漢"; } // 0123456789 abcdefghijklmnopqrstuvwxyz\n';
  const paste = line.repeat(Math.ceil(3_000_000 / Buffer.byteLength(line)));
  const o = new OperationBuilder().retain(5).insert(paste).retain(7).build();
  const lim = limits(1_048_576 - 256, 1_048_576, 20_000);
  const t0 = performance.now();
  const parts = splitAll(o, lim);
  const ms = performance.now() - t0;
  assert.ok(parts.length >= 3 && parts.length <= 4, `${parts.length} parts`);
  for (const p of parts) assert.ok(wireBytes(p) <= lim.maxOpBytes);
  const base = "01234abcdefg";
  assert.equal(
    parts.reduce((doc, p) => p.apply(doc), base),
    o.apply(base),
  );
  assert.ok(ms < 2000, `splitting took ${ms} ms`);
});

// ---- properties -------------------------------------------------------------

/** Characters that cost 1 to 6 bytes of JSON, astral ones included. */
const CHARS = ["a", "b", " ", "\n", '"', "\\", "\u0001", "é", "漢", "😀", "👍", "🏽", "\u2028"];

const textArb = (maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...CHARS), { maxLength, size: "medium" }).map((cs) => cs.join(""));

/** An insert: mostly short, sometimes long ("huge" against the small limits below). */
const insertArb = fc.oneof(
  { weight: 4, arbitrary: textArb(6) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(textArb(8), fc.integer({ min: 10, max: 60 }))
      .map(([s, n]) => (s === "" ? "x" : s).repeat(n)),
  },
);

/** A document and an op on it with up to 60 steps (so, many components). */
const docOpArb = fc.tuple(textArb(120), fc.integer({ min: 0, max: 60 })).chain(([doc, steps]) => {
  const length = [...doc].length;
  const step = fc.tuple(
    fc.constantFrom("retain", "insert", "delete"),
    fc.integer({ min: 1, max: 12 }),
    insertArb,
  );
  return fc.array(step, { maxLength: steps, size: "max" }).map((list) => {
    const b = new OperationBuilder();
    let left = length;
    for (const [kind, n, s] of list) {
      if (kind === "insert") {
        b.insert(s);
      } else {
        const m = Math.min(n, left);
        if (kind === "retain") b.retain(m);
        else b.delete(m);
        left -= m;
      }
    }
    return { doc, op: b.retain(left).build() };
  });
});

/** Small limits, at or above the minimum the splitter needs. */
const limitsArb = fc.record({
  maxOpBytes: fc.integer({ min: MIN_OP_LIMITS.maxOpBytes, max: 300 }),
  maxInsertChars: fc.integer({ min: MIN_OP_LIMITS.maxInsertChars, max: 24 }),
  maxComponents: fc.integer({ min: MIN_OP_LIMITS.maxComponents, max: 8 }),
});

test("property: every part fits, the parts apply in sequence, and compose to the op", () => {
  let splits = 0;
  let mostParts = 0;
  fc.assert(
    fc.property(docOpArb, limitsArb, ({ doc, op: o }, lim) => {
      const parts = splitAll(o, lim);
      if (parts.length > 1) splits++;
      mostParts = Math.max(mostParts, parts.length);
      let base = o.baseLength;
      let text = doc;
      for (const p of parts) {
        assert.equal(p.baseLength, base, "each part applies to the result of the one before");
        const stats = opStats(p);
        assert.ok(wireBytes(p) <= lim.maxOpBytes, `${wireBytes(p)} bytes: ${p.toString()}`);
        assert.equal(stats.bytes, wireBytes(p));
        assert.ok(stats.insertedChars <= lim.maxInsertChars, p.toString());
        assert.ok(p.ops.length <= lim.maxComponents, p.toString());
        for (const c of p.ops) if (typeof c === "string") assert.ok(isWellFormed(c));
        if (parts.length > 1) assert.ok(!p.isNoop(), "no empty part");
        // Each part is canonical: parsing its JSON gives the same op.
        assert.ok(TextOperation.fromJSON(p.toJSON()).equals(p));
        text = p.apply(text);
        base = p.targetLength;
      }
      assert.equal(text, o.apply(doc), "applying the parts gives the op's result");
      const composed = parts.reduce((x, y) => x.compose(y));
      assert.ok(composed.equals(o), `${composed.toString()} != ${o.toString()}`);
      assert.equal(parts.length === 1, fitsLimits(o, lim), "split only when it does not fit");
    }),
    { seed: 20250110, numRuns: 300 },
  );
  // The generators do reach the interesting cases.
  assert.ok(splits > 100, `only ${splits} of 300 ops were split`);
  assert.ok(mostParts > 100, `at most ${mostParts} parts`);
});

test("property: one split is a prefix that fits and a rest, compose(a, b) == op", () => {
  fc.assert(
    fc.property(docOpArb, limitsArb, ({ doc, op: o }, lim) => {
      const split = splitOperation(o, lim);
      if (!split) return fitsLimits(o, lim);
      const [a, b] = split;
      assert.ok(fitsLimits(a, lim));
      assert.ok(!a.isNoop() && !b.isNoop());
      assert.ok(a.compose(b).equals(o));
      assert.equal(b.apply(a.apply(doc)), o.apply(doc));
      return true;
    }),
    { seed: 77031, numRuns: 400 },
  );
});

test("property: unlimited never splits", () => {
  fc.assert(
    fc.property(docOpArb, ({ op: o }) => splitOperation(o, UNLIMITED) === null),
    { seed: 5, numRuns: 100 },
  );
});
