/**
 * Unsaved edits across reloads: the offline store (`client/offline.ts`),
 * `Connection`'s `saved` option and `pending` event, submit before `joined`,
 * and a randomized run of pages that reload at any moment against the
 * in-memory server: every edit lands exactly once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Connection,
  TextOperation,
  editorText,
  memoryStore,
  restoreSession,
  saveSession,
  storageStore,
  synchronized,
  ALIVE_MS,
  applyClient,
  type OfflineStore,
  type OpComponent,
  type SavedSession,
  type StorageLike,
} from "../src/index.js";
import { DummyServer, SimNetwork } from "./support/dummy-server.js";
import { FakeClock } from "./support/fake-clock.js";
import { ScriptedSockets } from "./support/scripted-socket.js";
import { Rng } from "./support/random.js";

const op = (json: OpComponent[]) => TextOperation.fromJSON(json);

/** Web Storage in memory, counting writes per key. */
class MemoryStorage implements StorageLike {
  readonly map = new Map<string, string>();
  readonly writes = new Map<string, number>();
  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
    this.writes.set(key, (this.writes.get(key) ?? 0) + 1);
  }
  removeItem(key: string): void {
    this.map.delete(key);
  }
  get length(): number {
    return this.map.size;
  }
  key(i: number): string | null {
    return [...this.map.keys()][i] ?? null;
  }
}

function pendingSession(): SavedSession {
  let s = applyClient(synchronized(3, "abc"), op([3, "d"])).state; // in flight, seq 1
  s = applyClient(s, op([4, "e"])).state; // buffered
  const saved = saveSession(s, "c1", "write");
  assert.ok(saved);
  return JSON.parse(JSON.stringify(saved)) as SavedSession;
}

test("saveSession/restoreSession round trip; nothing pending saves nothing", () => {
  assert.equal(saveSession(synchronized(1, "x"), "c1", "write"), null);
  const saved = pendingSession();
  assert.equal(saved.client, "c1");
  assert.equal(saved.rev, 3);
  assert.equal(saved.text, "abc");
  assert.deepEqual(saved.outstanding, { seq: 1, op: [3, "d"], edits: 1 });
  assert.deepEqual(saved.buffer, { op: [4, "e"], edits: 1 });
  const state = restoreSession(saved);
  assert.equal(state.kind, "awaitingWithBuffer");
  assert.equal(editorText(state), "abcde");
  assert.equal(state.nextSeq, 2);
  // Never joined: everything waits to be rebased, nothing counts as sent.
  const fresh = restoreSession({ ...saved, client: null });
  assert.equal(fresh.kind, "reloading");
  assert.equal(editorText(fresh), "abcde");
});

test("storageStore: save, claim once, never one's own; base rewritten only when rev moves", () => {
  const storage = new MemoryStorage();
  let clock = 1_000_000;
  const now = () => clock;
  const page1 = storageStore(storage, () => 0.25, now);
  const saved = pendingSession();
  page1.save("doc/1", saved);
  page1.save("doc/1", { ...saved, buffer: { op: [4, "ef"], edits: 2 } });
  const baseKey = [...storage.map.keys()].find((k) => k.endsWith(":base")) as string;
  assert.ok(baseKey.startsWith("tandem.offline.doc%2F1.c1"), baseKey);
  assert.equal(storage.writes.get(baseKey), 1, "same rev: the text is not written again");
  page1.save("doc/1", { ...saved, rev: 4 });
  assert.equal(storage.writes.get(baseKey), 2);
  assert.equal(page1.claim("doc/1"), null, "a page does not claim its own session");

  const page2 = storageStore(storage, Math.random, now);
  assert.equal(page2.claim("other"), null);
  assert.equal(page2.claim("doc/1"), null, "page 1 is alive: its session is not taken");
  clock += ALIVE_MS - 1;
  page1.heartbeat("doc/1");
  clock += ALIVE_MS - 1;
  assert.equal(page2.claim("doc/1"), null, "a beat keeps it");
  page1.release("doc/1"); // page 1 goes away (pagehide)
  assert.equal(page1.claim("doc/1")?.rev, 4, "back from the bfcache, a page claims it again");
  page1.save("doc/1", { ...saved, rev: 4 });
  page1.release("doc/1");
  const claimed = page2.claim("doc/1");
  assert.ok(claimed);
  assert.equal(claimed.client, "c1");
  assert.equal(claimed.rev, 4);
  assert.equal(claimed.text, "abc");
  assert.equal(storageStore(storage, Math.random, now).claim("doc/1"), null, "claimed once");
  assert.equal(storage.map.size, 0);

  // Forgetting: nothing pending removes the records (the beat stays while the page lives).
  page1.save("doc/1", saved);
  page1.save("doc/1", null);
  assert.deepEqual(
    [...storage.map.keys()].filter((k) => !k.endsWith(":alive")),
    [],
  );
  storage.map.clear();
  // A crashed page (no release): its session is claimed once its beat is old.
  const crashed = storageStore(storage, Math.random, now);
  crashed.save("doc/2", saved);
  assert.equal(page2.claim("doc/2"), null);
  clock += ALIVE_MS;
  assert.equal(page2.claim("doc/2")?.client, "c1");
  storage.map.clear();
  // A corrupt record is dropped, not thrown.
  storage.setItem("tandem.offline.d.x:pending", "{not json");
  storage.setItem("tandem.offline.d.x:base", "{}");
  assert.equal(storageStore(storage).claim("d"), null);
  assert.equal(storage.map.size, 0);
});

function scripted(saved: SavedSession | null = null) {
  const sockets = new ScriptedSockets();
  const editor = { text: "", loads: 0 };
  const conn = new Connection({
    url: "ws://test",
    socketFactory: sockets.factory,
    clock: new FakeClock(),
    random: () => 0.5,
    saved,
    document: {
      load(text) {
        editor.text = text;
        editor.loads++;
      },
      apply(o) {
        editor.text = o.apply(editor.text);
      },
    },
  });
  const type = (json: OpComponent[]) => {
    const o = op(json);
    editor.text = o.apply(editor.text);
    return conn.submit(o);
  };
  return { sockets, editor, conn, type };
}

test("submit before joined queues (never throws) and is rebased onto the first text", () => {
  const { sockets, editor, conn, type } = scripted();
  conn.start();
  assert.equal(type(["hi "]), true);
  assert.equal(conn.waitingEdits, 1);
  const s = sockets.last;
  s.open();
  assert.deepEqual(s.take(), [{ type: "join", client: null, rev: null, user: null, batch: true }]);
  s.receive({
    type: "joined",
    client: "c9",
    rev: 5,
    language: null,
    permission: "write",
    peers: [],
    text: "world",
  });
  assert.equal(editor.loads, 0, "the editor gets an apply, not a load");
  assert.equal(editor.text, "hi world");
  assert.deepEqual(s.take(), [{ type: "op", rev: 5, seq: 1, op: ["hi ", 5] }]);
});

test("a restored session loads its text, resumes its id and rev, and its op lands once", () => {
  const saved = pendingSession(); // "abc" at rev 3, [3,"d"] seq 1 in flight, [4,"e"] buffered
  // The op in flight was committed (rev 4) before the page went away.
  const a = scripted(saved);
  const pendingEvents: number[] = [];
  a.conn.on("pending", (n) => pendingEvents.push(n));
  a.conn.start();
  assert.equal(a.editor.loads, 1);
  assert.equal(a.editor.text, "abcde");
  a.sockets.last.open();
  assert.deepEqual(a.sockets.last.take(), [
    { type: "join", client: "c1", rev: 3, user: null, batch: true },
  ]);
  a.sockets.last.receive({
    type: "joined",
    client: "c1",
    rev: 4,
    language: null,
    permission: "write",
    peers: [],
    ops: [{ rev: 4, client: "c1", op: [3, "d"] }],
  });
  assert.deepEqual(a.sockets.last.take(), [{ type: "op", rev: 4, seq: 2, op: [4, "e"] }]);
  a.sockets.last.receive({ type: "ack", seq: 2, rev: 5 });
  assert.equal(a.editor.text, "abcde");
  assert.equal(a.conn.savedSession(), null);
  assert.equal(pendingEvents.at(-1), 0, "the last event says nothing is pending");

  // It was not committed: resent with the same seq and content.
  const b = scripted(saved);
  b.conn.start();
  b.sockets.last.open();
  b.sockets.last.take();
  b.sockets.last.receive({
    type: "joined",
    client: "c1",
    rev: 3,
    language: null,
    permission: "write",
    peers: [],
    ops: [],
  });
  assert.deepEqual(b.sockets.last.take(), [{ type: "op", rev: 3, seq: 1, op: [3, "d"] }]);
});

/**
 * Pages that reload at random moments (frames to the server delivered or
 * lost, acks lost), each new page resuming what the last one saved, beside a
 * peer typing; every inserted character is unique, so a loss or a duplicate
 * shows in the final text.
 */
test("random reloads: every edit lands exactly once (seeded)", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rng = new Rng(seed);
    const server = new DummyServer("");
    const net = new SimNetwork(server);
    const clock = new FakeClock();
    const storage = new MemoryStorage();
    let store: OfflineStore = memoryStore();
    let next = 0x4e00;
    const typed: string[] = [];
    let doc = "";
    const open = (): Connection => {
      // A new page: its own store over the same browser storage.
      store = storageStore(storage, () => rng.next());
      const saved = store.claim("d");
      const conn: Connection = new Connection({
        url: "ws://sim",
        socketFactory: net.factory("writer"),
        clock,
        random: () => rng.next(),
        saved,
        document: {
          load: (text) => (doc = text),
          apply: (o) => (doc = o.apply(doc)),
        },
      });
      conn.on("pending", () => store.save("d", conn.savedSession()));
      conn.start();
      return conn;
    };
    let conn = open();
    let peerDoc = "";
    const peer = new Connection({
      url: "ws://sim",
      socketFactory: net.factory("peer"),
      clock,
      random: () => rng.next(),
      document: { load: (t) => (peerDoc = t), apply: (o) => (peerDoc = o.apply(peerDoc)) },
    });
    peer.start();
    net.flush();
    for (let step = 0; step < 60; step++) {
      const r = rng.next();
      if (r < 0.5 && conn.state) {
        const ch = String.fromCodePoint(next++);
        typed.push(ch);
        const n = [...doc].length;
        const o = TextOperation.replace(n, rng.int(n + 1), 0, ch);
        doc = o.apply(doc);
        conn.submit(o);
      } else if (r < 0.6 && peer.state) {
        const n = [...peerDoc].length;
        const o = TextOperation.replace(n, rng.int(n + 1), 0, "p");
        peerDoc = o.apply(peerDoc);
        peer.submit(o);
      } else if (r < 0.75) {
        // Reload: some frames reach the server, the rest are lost.
        for (const l of net.live()) if (rng.chance(0.5)) l.deliverToServer();
        store.release("d"); // pagehide
        conn.dispose();
        conn = open();
      } else {
        for (const l of net.live()) {
          if (!l.opened) l.open();
          if (rng.chance(0.7)) l.deliverToServer();
          if (rng.chance(0.7)) l.deliverToClient();
        }
      }
    }
    for (let i = 0; i < 50 && (conn.waitingEdits > 0 || peer.waitingEdits > 0); i++) {
      clock.advance(60_000);
      net.flush();
    }
    net.flush();
    for (const ch of typed) {
      assert.equal(server.text.split(ch).length - 1, 1, `seed ${seed}: ${ch} once`);
    }
    assert.equal(doc, server.text, `seed ${seed}: writer converged`);
    assert.equal(peerDoc, server.text, `seed ${seed}: peer converged`);
  }
});
