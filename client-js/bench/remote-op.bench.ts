/**
 * Benchmark: what a remote op and an ack cost the client on documents of
 * 1 KB, 100 KB and 1 MB (`npm run bench`). The state machine keeps the
 * server's text as a `Rope`; the last row per size is the old way, a string
 * rebuilt by `op.apply(text)`, for comparison. Each op inserts or deletes one
 * character at a pseudo-random place (fixed seed), as a typing peer does.
 */
import { Bench } from "tinybench";
import {
  applyClient,
  applyServer,
  serverAck,
  synchronized,
  TextOperation,
  type ClientState,
} from "../src/index.js";

const SIZES: readonly [string, number][] = [
  ["1 KB", 1_000],
  ["100 KB", 100_000],
  ["1 MB", 1_000_000],
];

/** A deterministic pseudo-random source (LCG), so runs are comparable. */
function lcg(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % n;
  };
}

/** A code-like document of `n` characters. */
function documentOf(n: number): string {
  const line = "  let value = compute(alpha, beta); // a line of code\n";
  return line.repeat(Math.ceil(n / line.length)).slice(0, n);
}

/** One keystroke by a peer: insert or delete a character somewhere. */
function keystroke(length: number, random: (n: number) => number, k: number): TextOperation {
  const pos = random(length);
  return k % 2 === 0
    ? TextOperation.replace(length, pos, 0, "x")
    : TextOperation.replace(length, pos, 1, "");
}

const bench = new Bench({ name: "remote op on the client", time: 500, warmup: true });

for (const [label, size] of SIZES) {
  const text = documentOf(size);
  const random = lcg(size);

  // Synchronized: a peer's op arrives.
  let synced: ClientState = synchronized(0, text);
  let k = 0;
  bench.add(`${label}: remote op (synchronized)`, () => {
    const op = keystroke(synced.length, random, k++);
    synced = applyServer(synced, synced.rev + 1, op).state;
  });

  // One op of ours in flight: the peer's op is transformed against it too.
  let waiting: ClientState = applyClient(
    synchronized(0, text),
    TextOperation.replace(size, size >> 1, 0, "ours"),
  ).state;
  let j = 0;
  bench.add(`${label}: remote op (own op in flight)`, () => {
    const op = keystroke(waiting.length, random, j++);
    waiting = applyServer(waiting, waiting.rev + 1, op).state;
  });

  // Our op acked, and the next one sent: the round trip of one keystroke of ours.
  let mine: ClientState = synchronized(0, text);
  let i = 0;
  bench.add(`${label}: own op sent and acked`, () => {
    const sent = applyClient(mine, keystroke(mine.length, random, i++));
    const out = sent.send;
    mine = out ? serverAck(sent.state, out.seq, mine.rev + 1).state : sent.state;
  });

  // The old way: the whole text rebuilt as a string per op.
  let plain = text;
  let m = 0;
  bench.add(`${label}: string rebuilt per op (before)`, () => {
    plain = keystroke(plain.length, random, m++).apply(plain); // ASCII: length = code points
  });
}

await bench.run();
console.log(bench.name);
console.table(
  bench.tasks.map((t) => {
    const r = t.result;
    const lat = r && "latency" in r ? r.latency : undefined;
    return {
      task: t.name,
      "mean (µs)": lat ? (lat.mean * 1000).toFixed(2) : "n/a",
      "p99 (µs)": lat?.p99 !== undefined ? (lat.p99 * 1000).toFixed(2) : "n/a",
      samples: lat?.samplesCount ?? 0,
    };
  }),
);
