/**
 * Randomized convergence: several real `Connection`s against an in-memory
 * server (test/support/dummy-server.ts), with random delivery order (every
 * link is FIFO, links interleave at random), lost messages (links cut with
 * frames in flight, both ways), server-initiated closes, reconnects with
 * backoff on a fake clock, a short server history (so resumes get the full
 * text and old ops get `unknown_rev`), undo, and cursor updates.
 *
 * After every step each client's editor text must equal what its state
 * machine says (server text + pending ops). At the end the network is
 * drained and every client must hold exactly the server's text, with no edit
 * lost or applied twice: each client's inserted characters are unique, so a
 * duplicate or a loss shows in the final text.
 *
 * All randomness comes from a seeded generator; a failing seed is printed and
 * reproduces the run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Connection,
  TextOperation,
  cursor,
  editorText,
  emptyUndoManager,
  pendingEdits,
  recordLocalEdit,
  transformUndo,
  undo,
  type UndoManager,
} from "../src/index.js";
import { DummyServer, SimNetwork, type Link } from "./support/dummy-server.js";
import { FakeClock } from "./support/fake-clock.js";
import { Rng } from "./support/random.js";

interface SimClient {
  readonly name: string;
  conn: Connection;
  doc: string;
  loaded: boolean;
  undo: UndoManager;
}

interface Stats {
  /** Resumes whose catch-up list held the client's own op (rule 3). */
  ownCatchUps: number;
  textJoins: number;
  opsJoins: number;
  duplicates: number;
  unknownRev: number;
  undos: number;
  commits: number;
}

const ALPHABET = ["a", "b", "😀", "漢", "\n", "e\u0301", "👍🏽"];

function randomEdit(rng: Rng, doc: string): TextOperation {
  const n = [...doc].length;
  const at = rng.int(n + 1);
  const text = Array.from({ length: 1 + rng.int(3) }, () => rng.pick(ALPHABET)).join("");
  const r = rng.next();
  if (r < 0.6 || n === at) return TextOperation.replace(n, at, 0, text);
  const del = 1 + rng.int(Math.min(4, n - at));
  return TextOperation.replace(n, at, del, r < 0.85 ? "" : text);
}

function simulate(
  seed: number,
  options: { clients: number; steps: number; window: number },
  stats: Stats,
): void {
  const rng = new Rng(seed);
  const server = new DummyServer("", options.window);
  const net = new SimNetwork(server);
  const clock = new FakeClock();
  const clients: SimClient[] = [];
  for (let i = 0; i < options.clients; i++) {
    const c: SimClient = {
      name: `user${i}`,
      conn: null as unknown as Connection,
      doc: "",
      loaded: false,
      undo: emptyUndoManager(),
    };
    c.conn = new Connection({
      url: "ws://sim",
      socketFactory: net.factory(c.name),
      clock,
      random: () => rng.next(),
      document: {
        load(text) {
          c.doc = text;
          c.loaded = true;
        },
        apply(op) {
          c.doc = op.apply(c.doc);
          c.undo = transformUndo(c.undo, op);
        },
      },
    });
    c.conn.start();
    clients.push(c);
  }
  const check = (where: string): void => {
    for (const c of clients) {
      const state = c.conn.state;
      if (state) assert.equal(c.doc, editorText(state), `${c.name} editor vs state (${where})`);
    }
  };
  const withFrames = (pick: (l: Link) => boolean): Link[] =>
    net.live().filter((l) => l.opened && pick(l));

  for (let step = 0; step < options.steps; step++) {
    const r = rng.next();
    const loaded = clients.filter((c) => c.loaded);
    if (r < 0.28 && loaded.length > 0) {
      const c = rng.pick(loaded);
      const op = randomEdit(rng, c.doc);
      c.undo = recordLocalEdit(c.undo, op, c.doc);
      c.doc = op.apply(c.doc);
      c.conn.submit(op);
    } else if (r < 0.32 && loaded.length > 0) {
      const c = rng.pick(loaded);
      const u = undo(c.undo, c.doc);
      if (u) {
        stats.undos++;
        c.undo = u.manager;
        c.doc = u.op.apply(c.doc);
        c.conn.submit(u.op);
      }
    } else if (r < 0.52) {
      const links = withFrames((l) => l.toServer.length > 0);
      if (links.length > 0) rng.pick(links).deliverToServer();
    } else if (r < 0.78) {
      const links = withFrames((l) => l.toClient.length > 0);
      if (links.length > 0) rng.pick(links).deliverToClient();
    } else if (r < 0.84) {
      const pending = net.live().filter((l) => !l.opened);
      if (pending.length > 0) rng.pick(pending).open();
    } else if (r < 0.87) {
      const links = net.live();
      if (links.length > 0) rng.pick(links).cut(1006);
    } else if (r < 0.88) {
      const links = net.live().filter((l) => l.opened);
      if (links.length > 0) rng.pick(links).session.close(rng.pick([4409, 1001, 1013, 4408]));
    } else if (r < 0.94) {
      clock.runNext();
    } else if (loaded.length > 0) {
      const c = rng.pick(loaded);
      c.conn.setSelection(cursor(rng.int([...c.doc].length + 1)));
    }
    check(`step ${step}`);
  }

  // Quiesce: deliver everything, let reconnect timers fire, until all are in sync.
  for (let round = 0; ; round++) {
    assert.ok(round < 500, "did not converge");
    net.flush();
    check("quiesce");
    const settled = clients.every(
      (c) =>
        c.conn.status.kind === "connected" &&
        c.conn.state?.kind === "synchronized" &&
        pendingEdits(c.conn.state) === 0,
    );
    if (settled && net.live().every((l) => l.toServer.length === 0 && l.toClient.length === 0))
      break;
    if (!clock.runNext()) assert.fail("stuck: nothing in flight and no timer");
  }
  for (const c of clients) {
    assert.equal(c.doc, server.text, `${c.name} converged`);
    assert.equal(c.conn.revision, server.rev);
  }
  // The server's history replays to its text.
  let replay = "";
  for (const h of server.history) replay = h.op.apply(replay);
  assert.equal(replay, server.text);

  for (const line of server.log) {
    if (line.startsWith("dup")) stats.duplicates++;
    if (line.startsWith("unknown_rev")) stats.unknownRev++;
    if (line.startsWith("commit")) stats.commits++;
    if (/^join \S+ text$/.test(line)) stats.textJoins++;
    if (line.startsWith("join") && line.includes("ops from")) stats.opsJoins++;
    if (line.endsWith("with own")) stats.ownCatchUps++;
  }
}

test("random runs converge (3 clients, unlimited history)", () => {
  const stats: Stats = {
    ownCatchUps: 0,
    textJoins: 0,
    opsJoins: 0,
    duplicates: 0,
    unknownRev: 0,
    undos: 0,
    commits: 0,
  };
  for (let seed = 1; seed <= 40; seed++) {
    try {
      simulate(seed, { clients: 3, steps: 400, window: Number.MAX_SAFE_INTEGER }, stats);
    } catch (e) {
      assert.fail(`seed ${seed}: ${(e as Error).stack ?? String(e)}`);
    }
  }
  console.log(JSON.stringify(stats));
  assert.ok(stats.commits > 500, `only ${stats.commits} commits`);
  assert.ok(stats.opsJoins > 0, "no resume with a catch-up list");
  assert.ok(stats.ownCatchUps > 0, "no resume acknowledged an op through the catch-up list");
  assert.ok(stats.undos > 0);
});

test("random runs converge with a short server history (full-text rejoins, unknown_rev)", () => {
  const stats: Stats = {
    ownCatchUps: 0,
    textJoins: 0,
    opsJoins: 0,
    duplicates: 0,
    unknownRev: 0,
    undos: 0,
    commits: 0,
  };
  for (let seed = 101; seed <= 140; seed++) {
    try {
      simulate(seed, { clients: 3, steps: 400, window: 1 + (seed % 4) }, stats);
    } catch (e) {
      assert.fail(`seed ${seed}: ${(e as Error).stack ?? String(e)}`);
    }
  }
  console.log(JSON.stringify(stats));
  assert.ok(stats.unknownRev > 0, "no op was ever refused as too old");
  assert.ok(stats.textJoins > 0, "no resume was answered with the full text");
  assert.ok(stats.duplicates > 0, "no resent op was ever found committed already");
  assert.ok(stats.commits > 500, `only ${stats.commits} commits`);
});

test("random runs converge with many clients", () => {
  const stats: Stats = {
    ownCatchUps: 0,
    textJoins: 0,
    opsJoins: 0,
    duplicates: 0,
    unknownRev: 0,
    undos: 0,
    commits: 0,
  };
  for (let seed = 201; seed <= 210; seed++) {
    try {
      simulate(seed, { clients: 6, steps: 800, window: 8 }, stats);
    } catch (e) {
      assert.fail(`seed ${seed}: ${(e as Error).stack ?? String(e)}`);
    }
  }
});
