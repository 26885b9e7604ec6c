/** TextOperation: unit tests and fast-check properties (fixed seeds). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { OperationBuilder, TextOperation, type OpComponent } from "../src/index.js";
import { PROPERTY_PARAMS, docOpArb, docOpThenOpArb, docTwoOpsArb } from "./support/arbitraries.js";

/** The naive model: an operation applied to an array of code points. */
function naiveApply(doc: string, ops: readonly OpComponent[]): string {
  const chars = [...doc];
  const out: string[] = [];
  let i = 0;
  for (const c of ops) {
    if (typeof c === "string") out.push(c);
    else if (c > 0) {
      out.push(...chars.slice(i, i + c));
      i += c;
    } else i -= c;
  }
  assert.equal(i, chars.length, "op spans the whole document");
  return out.join("");
}

/** Canonical form: no empty or zero parts, no two of a kind in a row, never delete then insert. */
function assertCanonical(op: TextOperation): void {
  let prev = "";
  for (const c of op.ops) {
    const kind = typeof c === "string" ? "insert" : c > 0 ? "retain" : "delete";
    assert.notEqual(c, 0);
    assert.notEqual(c, "");
    assert.notEqual(kind, prev, `two ${kind}s in a row in ${op}`);
    assert.ok(!(prev === "delete" && kind === "insert"), `delete before insert in ${op}`);
    prev = kind;
  }
}

test("lengths count code points", () => {
  const op = TextOperation.fromJSON([1, "😀👍🏽", -1, 2]);
  assert.equal(op.baseLength, 4);
  assert.equal(op.targetLength, 6);
  assert.equal(op.apply("a😀bc"), "a😀👍🏽bc");
});

test("the builder normalises like ot.js", () => {
  const op = new OperationBuilder()
    .retain(2)
    .retain(0)
    .delete(1)
    .insert("x")
    .insert("")
    .insert("y")
    .delete(2)
    .retain(1)
    .build();
  assert.deepEqual(op.toJSON(), [2, "xy", -3, 1]);
  assert.deepEqual(TextOperation.fromJSON([1, 2, -1, "a", "", -1]).toJSON(), [3, "a", -2]);
});

test("fromJSON rejects lone surrogates and negative zero", () => {
  assert.throws(() => TextOperation.fromJSON(["\ud800"]), { name: "OperationError" });
  assert.throws(() => TextOperation.fromJSON(["a\udc00"]), { name: "OperationError" });
  assert.throws(() => TextOperation.fromJSON([-0]), { name: "OperationError" });
  assert.throws(() => TextOperation.fromJSON([Number.NaN]), { name: "OperationError" });
  assert.throws(() => TextOperation.fromJSON([Infinity]), { name: "OperationError" });
});

test("apply, compose and transform check lengths", () => {
  const op = TextOperation.fromJSON([2]);
  assert.throws(() => op.apply("abc"), { name: "OperationError" });
  assert.throws(
    () => op.apply("😀"),
    { name: "OperationError" },
    "one code point, two UTF-16 units",
  );
  assert.throws(() => op.compose(TextOperation.fromJSON([3])), { name: "OperationError" });
  assert.throws(() => TextOperation.transform(op, TextOperation.fromJSON([3])), {
    name: "OperationError",
  });
});

test("lengths that overflow safe integers are refused", () => {
  assert.throws(() => TextOperation.fromJSON([Number.MAX_SAFE_INTEGER, 1]), {
    name: "OperationError",
  });
});

test("replace builds the canonical op", () => {
  assert.deepEqual(TextOperation.replace(5, 1, 2, "X").toJSON(), [1, "X", -2, 2]);
  assert.deepEqual(TextOperation.replace(0, 0, 0, "").toJSON(), []);
  assert.throws(() => TextOperation.replace(3, 2, 2, ""), { name: "OperationError" });
});

test("isNoop and equals", () => {
  assert.ok(TextOperation.fromJSON([]).isNoop());
  assert.ok(TextOperation.fromJSON([4]).isNoop());
  assert.ok(!TextOperation.fromJSON(["a"]).isNoop());
  assert.ok(TextOperation.fromJSON([1, "a"]).equals(TextOperation.fromJSON([1, "a"])));
  assert.ok(!TextOperation.fromJSON([1, "a"]).equals(TextOperation.fromJSON(["a", 1])));
});

test("operations are immutable", () => {
  const op = TextOperation.fromJSON([1, "a"]);
  assert.throws(() => (op.ops as OpComponent[]).push(3));
  const json = op.toJSON();
  json.push(5);
  assert.deepEqual(op.toJSON(), [1, "a"]);
});

test("property: apply agrees with the naive code point model and lengths", () => {
  fc.assert(
    fc.property(docOpArb, ({ doc, op }) => {
      const out = op.apply(doc);
      assert.equal(out, naiveApply(doc, op.ops));
      assert.equal([...out].length, op.targetLength);
      assertCanonical(op);
    }),
    PROPERTY_PARAMS,
  );
});

test("property: TP1 convergence, a' and b' canonical", () => {
  fc.assert(
    fc.property(docTwoOpsArb, ({ doc, a, b }) => {
      const [aPrime, bPrime] = TextOperation.transform(a, b);
      assert.equal(bPrime.apply(a.apply(doc)), aPrime.apply(b.apply(doc)));
      assert.ok(a.compose(bPrime).equals(b.compose(aPrime)), "composed ops are equal too");
      assertCanonical(aPrime);
      assertCanonical(bPrime);
    }),
    { ...PROPERTY_PARAMS, numRuns: 500 },
  );
});

test("property: compose equals sequential apply", () => {
  fc.assert(
    fc.property(docOpThenOpArb, ({ doc, a, b }) => {
      const ab = a.compose(b);
      assert.equal(ab.apply(doc), b.apply(a.apply(doc)));
      assert.equal(ab.baseLength, a.baseLength);
      assert.equal(ab.targetLength, b.targetLength);
      assertCanonical(ab);
    }),
    PROPERTY_PARAMS,
  );
});

test("property: invert undoes", () => {
  fc.assert(
    fc.property(docOpArb, ({ doc, op }) => {
      const inverse = op.invert(doc);
      assert.equal(inverse.apply(op.apply(doc)), doc);
      assert.equal(inverse.baseLength, op.targetLength);
    }),
    PROPERTY_PARAMS,
  );
});

test("property: JSON round trip", () => {
  fc.assert(
    fc.property(docOpArb, ({ op }) => {
      const again = TextOperation.fromJSON(
        JSON.parse(JSON.stringify(op)) as unknown,
        op.baseLength,
      );
      assert.ok(again.equals(op));
    }),
    PROPERTY_PARAMS,
  );
});

test("property: ot.js tie-breaking, a's insert first at the same position", () => {
  fc.assert(
    fc.property(fc.nat(10), fc.nat(10), (pos, extra) => {
      const n = pos + extra;
      const doc = "x".repeat(n);
      const a = TextOperation.replace(n, pos, 0, "A");
      const b = TextOperation.replace(n, pos, 0, "B");
      const [aPrime, bPrime] = TextOperation.transform(a, b);
      const out = bPrime.apply(a.apply(doc));
      assert.equal(out, aPrime.apply(b.apply(doc)));
      assert.equal(out, "x".repeat(pos) + "AB" + "x".repeat(extra));
    }),
    PROPERTY_PARAMS,
  );
});
