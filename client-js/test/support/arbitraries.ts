/** fast-check generators for documents and operations, with astral and combining characters. */
import fc from "fast-check";
import { OperationBuilder, TextOperation } from "../../src/index.js";

/** Characters chosen to break UTF-16 assumptions: astral, modifiers, combining, newlines, CJK. */
export const CHARS = ["a", "b", "c", " ", "\n", "😀", "👍", "🏽", "漢", "字", "e", "\u0301", "\r"];

/** A string from {@link CHARS}. */
export const textArb = (maxLength = 6): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...CHARS), { maxLength }).map((cs) => cs.join(""));

/** A document of up to `maxLength` characters. */
export const docArb = (maxLength = 24): fc.Arbitrary<string> => textArb(maxLength);

/** A random operation on a document of `length` characters (shrinks towards retain-all). */
export function opArb(length: number): fc.Arbitrary<TextOperation> {
  const step = fc.tuple(
    fc.constantFrom("retain", "insert", "delete"),
    fc.integer({ min: 1, max: 6 }),
    textArb(4),
  );
  return fc.array(step, { maxLength: 8 }).map((steps) => {
    const b = new OperationBuilder();
    let left = length;
    for (const [kind, n, s] of steps) {
      if (kind === "insert") {
        b.insert(s);
      } else {
        const m = Math.min(n, left);
        if (kind === "retain") b.retain(m);
        else b.delete(m);
        left -= m;
      }
    }
    return b.retain(left).build();
  });
}

/** A document and an operation on it. */
export const docOpArb = docArb().chain((doc) => opArb([...doc].length).map((op) => ({ doc, op })));

/** A document and two concurrent operations on it. */
export const docTwoOpsArb = docArb().chain((doc) => {
  const n = [...doc].length;
  return fc.tuple(opArb(n), opArb(n)).map(([a, b]) => ({ doc, a, b }));
});

/** A document and two consecutive operations. */
export const docOpThenOpArb = docOpArb.chain(({ doc, op }) =>
  opArb(op.targetLength).map((next) => ({ doc, a: op, b: next })),
);

/** Fixed seeds: a failure is reproduced by rerunning. */
export const PROPERTY_PARAMS = { seed: 20240611, numRuns: 300 } as const;
