/** UTF-16 <-> code point conversion at the editor boundary. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  OffsetMap,
  codePointLength,
  codePointToUtf16,
  hasSurrogates,
  isWellFormed,
  sliceCodePoints,
  utf16ToCodePoint,
} from "../src/index.js";
import { PROPERTY_PARAMS, docArb } from "./support/arbitraries.js";

/** Naive: count code points in the UTF-16 prefix, rounding a split pair down. */
function naiveToCodePoint(s: string, off: number): number {
  let cp = 0;
  let i = 0;
  for (const ch of s) {
    if (i + ch.length > off) break;
    i += ch.length;
    cp++;
  }
  return cp;
}

function naiveToUtf16(s: string, cp: number): number {
  return [...s].slice(0, cp).join("").length;
}

test("examples", () => {
  const s = "a😀b👍🏽c";
  assert.equal(s.length, 9);
  assert.equal(codePointLength(s), 6);
  assert.equal(utf16ToCodePoint(s, 3), 2); // after the grinning face
  assert.equal(utf16ToCodePoint(s, 2), 1); // inside it: rounded down
  assert.equal(codePointToUtf16(s, 2), 3);
  assert.equal(codePointToUtf16(s, 99), 9);
  assert.equal(sliceCodePoints(s, 1, 4), "😀b👍");
  assert.ok(hasSurrogates(s));
  assert.ok(!hasSurrogates("漢字 e\u0301"));
  assert.ok(isWellFormed(s));
  assert.ok(!isWellFormed("a\ud83d"));
  assert.ok(!isWellFormed("\ude00b"));
});

test("fast path: no surrogates means identical offsets", () => {
  const s = "plain ascii and 漢字";
  for (let i = 0; i <= s.length; i++) {
    assert.equal(utf16ToCodePoint(s, i), i);
    assert.equal(codePointToUtf16(s, i), i);
  }
});

test("property: conversions agree with the naive model, and OffsetMap with both", () => {
  fc.assert(
    fc.property(docArb(40), fc.nat(100), (s, k) => {
      const off = k % (s.length + 1);
      const cp = k % (codePointLength(s) + 1);
      const map = new OffsetMap(s);
      assert.equal(utf16ToCodePoint(s, off), naiveToCodePoint(s, off));
      assert.equal(map.toCodePoint(off), naiveToCodePoint(s, off));
      assert.equal(codePointToUtf16(s, cp), naiveToUtf16(s, cp));
      assert.equal(map.toUtf16(cp), naiveToUtf16(s, cp));
      assert.equal(map.toCodePoint(map.toUtf16(cp)), cp, "round trip");
      assert.equal(map.codePointLength, [...s].length);
    }),
    PROPERTY_PARAMS,
  );
});
