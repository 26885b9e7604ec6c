/**
 * Real editing traces (josephg/editing-traces, CC BY 4.0, vendored in the
 * repository's tests/data/traces/, see its CREDITS.md): replaying a recorded
 * session keystroke by keystroke through the state machine, as remote ops,
 * must produce the recorded final text. Positions in the traces count code
 * points, like Tandem. The traces are part of the repository, so a missing
 * one fails the test instead of skipping it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { TextOperation, applyServer, synchronized, type ClientState } from "../src/index.js";

/** The repository's tests/data/traces (client-js/build/test/ -> ../../../tests/data/traces). */
const TRACES = new URL("../../../tests/data/traces/sequential/", import.meta.url);

interface Trace {
  startContent: string;
  endContent: string;
  txns: { patches: [number, number, string][] }[];
}

for (const name of ["sveltecomponent", "clownschool_flat"]) {
  const file = new URL(`${name}.json.gz`, TRACES);
  test(`trace ${name} replays to its final text`, () => {
    assert.ok(existsSync(file), `vendored trace missing: ${fileURLToPath(file)}`);
    const trace = JSON.parse(gunzipSync(readFileSync(file)).toString("utf8")) as Trace;
    let state: ClientState = synchronized(0, trace.startContent);
    for (const txn of trace.txns) {
      for (const [pos, del, ins] of txn.patches) {
        const op = TextOperation.replace(state.length, pos, del, ins);
        state = applyServer(state, state.rev + 1, op).state;
      }
    }
    assert.equal(state.text.toString(), trace.endContent);
  });
}
