/**
 * The OT vectors shared with the Rust implementation (tests/vectors/ot.json):
 * both must produce exactly these results, component for component.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { TextOperation, codePointLength } from "../src/index.js";
import { loadVectors } from "./support/vectors.js";

const vectors = loadVectors();

/** A document of `n` characters mixing BMP, astral and combining characters. */
function docOfLength(n: number): string {
  const alphabet = ["p", "q", "😀", "漢", "\n", "\u0301"];
  return Array.from({ length: n }, (_, i) => alphabet[i % alphabet.length]).join("");
}

test("the vectors file has every section and at least 40 cases", () => {
  const total =
    vectors.apply.length +
    vectors.transform.length +
    vectors.compose.length +
    vectors.invalid.length;
  assert.ok(total >= 40, `only ${total} cases`);
  for (const section of [vectors.apply, vectors.transform, vectors.compose, vectors.invalid]) {
    assert.ok(section.length > 0);
  }
});

for (const v of vectors.apply) {
  test(`apply: ${v.name}`, () => {
    const op = TextOperation.fromJSON(v.op, codePointLength(v.doc));
    assert.deepEqual(op.toJSON(), v.op, "the vector's op is in canonical form");
    assert.equal(op.apply(v.doc), v.result);
    assert.equal(op.targetLength, codePointLength(v.result));
  });
}

for (const v of vectors.transform) {
  test(`transform: ${v.name}`, () => {
    const a = TextOperation.fromJSON(v.a);
    const b = TextOperation.fromJSON(v.b);
    const [aPrime, bPrime] = TextOperation.transform(a, b);
    assert.deepEqual(aPrime.toJSON(), v.a_prime, "a'");
    assert.deepEqual(bPrime.toJSON(), v.b_prime, "b'");
    // TP1 on the expected values themselves, so a wrong vector cannot pass.
    const doc = docOfLength(a.baseLength);
    const expectedA = TextOperation.fromJSON(v.a_prime);
    const expectedB = TextOperation.fromJSON(v.b_prime);
    assert.equal(expectedB.apply(a.apply(doc)), expectedA.apply(b.apply(doc)), "TP1");
  });
}

for (const v of vectors.compose) {
  test(`compose: ${v.name}`, () => {
    const a = TextOperation.fromJSON(v.a, codePointLength(v.doc));
    const b = TextOperation.fromJSON(v.b, a.targetLength);
    assert.deepEqual(a.compose(b).toJSON(), v.result);
    const expected = TextOperation.fromJSON(v.result, codePointLength(v.doc));
    assert.equal(expected.apply(v.doc), b.apply(a.apply(v.doc)), "result == sequential apply");
  });
}

for (const v of vectors.invalid) {
  test(`invalid: ${v.name}`, () => {
    assert.throws(() => TextOperation.fromJSON(v.op, v.doc_len), { name: "OperationError" });
  });
}
