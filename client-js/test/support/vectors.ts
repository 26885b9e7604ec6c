/** Loads the OT vectors shared with the Rust tests: tests/vectors/ot.json. */
import { readFileSync } from "node:fs";

export interface Vectors {
  apply: { name: string; doc: string; op: unknown; result: string }[];
  transform: { name: string; a: unknown; b: unknown; a_prime: unknown; b_prime: unknown }[];
  compose: { name: string; doc: string; a: unknown; b: unknown; result: unknown }[];
  invalid: { name: string; doc_len: number; op: unknown }[];
}

/** client-js/build/test/support/ -> repository root. */
const VECTORS = new URL("../../../../tests/vectors/ot.json", import.meta.url);

export function loadVectors(): Vectors {
  return JSON.parse(readFileSync(VECTORS, "utf8")) as Vectors;
}
