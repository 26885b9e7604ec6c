/** Connection: join/resume, backoff, close codes, reload, presence; against a scripted server. */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BACKOFF_MAX_MS,
  Connection,
  JOIN_TIMEOUT_MS,
  TextOperation,
  backoffDelay,
  cursor,
  type ConnectionStatus,
  type OpComponent,
} from "../src/index.js";
import { FakeClock } from "./support/fake-clock.js";
import { ScriptedSockets } from "./support/scripted-socket.js";
import { Rng } from "./support/random.js";

const op = (json: OpComponent[]) => TextOperation.fromJSON(json);

function setup(random: () => number = () => 0.5) {
  const sockets = new ScriptedSockets();
  const clock = new FakeClock();
  const editor = { text: "", loads: 0 };
  const statuses: ConnectionStatus[] = [];
  const conn = new Connection({
    url: "ws://test/api/documents/d1/ws",
    socketFactory: sockets.factory,
    clock,
    random,
    user: { name: "Ada", color: "#c33" },
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
  conn.on("status", (s) => statuses.push(s));
  /** A local edit, as the editor adapter does it. */
  const type = (json: OpComponent[]) => {
    const o = op(json);
    editor.text = o.apply(editor.text);
    conn.submit(o);
  };
  const joined = (rev: number, rest: Record<string, unknown>) => ({
    type: "joined",
    client: "c1",
    rev,
    language: "plaintext",
    permission: "write",
    peers: [],
    ...rest,
  });
  return { sockets, clock, editor, statuses, conn, type, joined };
}

test("first join: fresh client, full text, connected", () => {
  const { sockets, conn, editor, statuses, joined } = setup();
  conn.start();
  assert.equal(sockets.all.length, 1);
  assert.equal(sockets.last.url, "ws://test/api/documents/d1/ws");
  sockets.last.open();
  assert.deepEqual(sockets.last.take(), [
    { type: "join", client: null, rev: null, user: { name: "Ada", color: "#c33" }, batch: true },
  ]);
  sockets.last.receive(joined(7, { text: "hello" }));
  assert.equal(editor.text, "hello");
  assert.equal(conn.status.kind, "connected");
  assert.deepEqual(
    statuses.map((s) => s.kind),
    ["connected"],
  );
  assert.equal(conn.clientId, "c1");
  assert.equal(conn.revision, 7);
  assert.equal(conn.permission, "write");
});

test("a batched frame is taken as its messages, in order", () => {
  const { sockets, conn, editor, type, joined } = setup();
  conn.start();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(0, { text: "ab" }));
  type([2, "c"]);
  type([3, "d"]);
  s.take();
  // Another's op, then our ack (transformed over it), then another op: each
  // is handled as if it came alone, so the buffer leaves on the ack, based
  // on its revision, and the last op is transformed over it.
  s.receive([
    { type: "op", rev: 1, client: "c2", op: ["X", 2] },
    { type: "ack", seq: 1, rev: 2 },
    { type: "op", rev: 3, client: "c2", op: [4, "Y"] },
  ]);
  assert.equal(editor.text, "XabcdY");
  assert.equal(conn.revision, 3);
  assert.deepEqual(s.take(), [{ type: "op", rev: 2, seq: 2, op: [4, "d"] }]);
  // A gap inside a batch is a protocol error like anywhere else: reload.
  let errors = 0;
  conn.on("protocolError", () => errors++);
  s.receive([
    { type: "ack", seq: 2, rev: 4 },
    { type: "op", rev: 6, client: "c2", op: [6, "Z"] },
  ]);
  assert.equal(errors, 1);
  assert.notEqual(s.closedWith, null);
});

test("one op in flight; the buffer goes out on ack; remote ops reach the editor", () => {
  const { sockets, conn, editor, type, joined } = setup();
  conn.start();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(0, { text: "ab" }));
  type([2, "c"]);
  type([3, "d"]);
  assert.deepEqual(s.take(), [{ type: "op", rev: 0, seq: 1, op: [2, "c"] }]);
  assert.equal(conn.waitingEdits, 2);
  s.receive({ type: "op", rev: 1, client: "c2", op: ["X", 2] });
  assert.equal(editor.text, "Xabcd");
  s.receive({ type: "ack", seq: 1, rev: 2 });
  assert.deepEqual(s.take(), [{ type: "op", rev: 2, seq: 2, op: [4, "d"] }]);
  s.receive({ type: "ack", seq: 2, rev: 3 });
  assert.equal(conn.waitingEdits, 0);
  assert.equal(conn.state?.kind, "synchronized");
});

test("reconnect: resume from our revision and resend the op in flight with the same seq", () => {
  const { sockets, clock, conn, editor, type, joined, statuses } = setup(() => 0);
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(3, { text: "abc" }));
  type([3, "!"]);
  sockets.last.serverClose(1006);
  assert.equal(conn.status.kind, "reconnecting");
  assert.deepEqual(clock.delays(), [250]);
  type(["<", 4]); // offline typing
  const last = statuses[statuses.length - 1];
  assert.ok(last?.kind === "reconnecting" && last.waitingEdits === 2);
  clock.runNext();
  assert.equal(sockets.all.length, 2);
  const s = sockets.last;
  s.open();
  assert.deepEqual(s.take(), [
    { type: "join", client: "c1", rev: 3, user: { name: "Ada", color: "#c33" }, batch: true },
  ]);
  s.receive(joined(4, { ops: [{ rev: 4, client: "c2", op: [3, "?"] }] }));
  assert.equal(editor.text, "<abc!?");
  assert.deepEqual(s.take(), [{ type: "op", rev: 4, seq: 1, op: [3, "!", 1] }]);
  // The server had it already (rule 3): it acks; then the buffer goes out.
  s.receive({ type: "ack", seq: 1, rev: 5 });
  assert.deepEqual(s.take(), [{ type: "op", rev: 5, seq: 2, op: ["<", 5] }]);
});

test("a new name rejoins at once under the same id and resends the op in flight", () => {
  const { sockets, clock, conn, editor, type, joined, statuses } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(3, { text: "abc" }));
  type([3, "!"]);
  const first = sockets.last;
  first.take();
  conn.setUser({ name: "Ada L.", color: "#c33" });
  assert.deepEqual(first.closedWith, { code: 1000, reason: "user changed" });
  assert.equal(sockets.all.length, 2, "no backoff: the new socket is open at once");
  assert.deepEqual(clock.delays(), [JOIN_TIMEOUT_MS]);
  const s = sockets.last;
  s.open();
  assert.deepEqual(s.take(), [
    { type: "join", client: "c1", rev: 3, user: { name: "Ada L.", color: "#c33" }, batch: true },
  ]);
  s.receive(joined(3, { ops: [] }));
  assert.deepEqual(s.take(), [{ type: "op", rev: 3, seq: 1, op: [3, "!"] }]);
  s.receive({ type: "ack", seq: 1, rev: 4 });
  assert.equal(editor.text, "abc!");
  assert.equal(conn.waitingEdits, 0);
  assert.ok(
    statuses.every((st) => st.kind === "connected"),
    "the rename is not shown as a reconnect",
  );
});

test("resume: our own op in the catch-up list acks it; it is not resent", () => {
  const { sockets, clock, conn, type, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "" }));
  type(["a"]);
  sockets.last.serverClose(1001);
  clock.runNext();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(1, { ops: [{ rev: 1, client: "c1", op: ["a"] }] }));
  assert.deepEqual(s.take(), []);
  assert.equal(conn.state?.kind, "synchronized");
  assert.equal(conn.revision, 1);
});

test("backoff: 0.5 s doubling to 8 s with equal jitter; offline after 3 failures", () => {
  for (let attempt = 0; attempt < 10; attempt++) {
    const ceiling = Math.min(BACKOFF_MAX_MS, 500 * 2 ** attempt);
    assert.equal(
      backoffDelay(attempt, () => 0),
      ceiling / 2,
    );
    assert.equal(
      backoffDelay(attempt, () => 0.999999),
      Math.round(ceiling * 0.9999995),
    );
  }
  const rng = new Rng(7);
  const { sockets, clock, conn, statuses } = setup(() => rng.next());
  conn.start();
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) {
    sockets.last.serverClose(1006); // fails before it even opens
    delays.push(clock.delays()[0] as number);
    clock.runNext();
  }
  delays.forEach((d, i) => {
    const ceiling = Math.min(8000, 500 * 2 ** i);
    assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${i}: ${d}`);
  });
  assert.deepEqual(
    statuses.map((s) => s.kind),
    ["reconnecting", "reconnecting", "reconnecting", "offline", "offline", "offline", "offline"],
  );
});

for (const code of [4400, 4401, 4403, 4404]) {
  test(`close ${code} is fatal: no retry`, () => {
    const { sockets, clock, conn, joined } = setup();
    conn.start();
    sockets.last.open();
    sockets.last.receive(joined(0, { text: "" }));
    sockets.last.serverClose(code, "go away");
    assert.deepEqual(conn.status, { kind: "closed", code, reason: "go away", waitingEdits: 0 });
    assert.equal(clock.pending, 0);
  });
}

for (const code of [4409, 1001, 1013, 4408, 4429, 1006, 1000]) {
  test(`close ${code} reconnects`, () => {
    const { sockets, clock, conn, joined } = setup();
    conn.start();
    sockets.last.open();
    sockets.last.receive(joined(0, { text: "" }));
    sockets.last.serverClose(code);
    assert.equal(conn.status.kind, "reconnecting");
    clock.runNext();
    assert.equal(sockets.all.length, 2);
  });
}

test("unknown_rev on our op: reload with rev null and rebase the unsent text", () => {
  const { sockets, clock, conn, editor, type, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(2, { text: "one\ntwo\n" }));
  type([4, "2", 3, "!", 1]);
  const first = sockets.last;
  first.take();
  first.receive({ type: "error", code: "unknown_rev", message: "too old", seq: 1 });
  assert.deepEqual(first.closedWith, { code: 1000, reason: "reload" });
  assert.equal(conn.status.kind, "reconnecting");
  clock.runNext();
  const s = sockets.last;
  s.open();
  assert.deepEqual(s.take(), [
    { type: "join", client: "c1", rev: null, user: { name: "Ada", color: "#c33" }, batch: true },
  ]);
  s.receive(joined(9, { text: "ONE\none\ntwo\n" }));
  assert.equal(editor.text, "ONE\none\n2two!\n");
  assert.deepEqual(s.take(), [{ type: "op", rev: 9, seq: 2, op: [8, "2", 3, "!", 1] }]);
});

test("unknown_rev at join: reload", () => {
  const { sockets, clock, conn, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(5, { text: "abc" }));
  sockets.last.serverClose(1006);
  clock.runNext();
  sockets.last.open();
  sockets.last.take();
  sockets.last.receive({ type: "error", code: "unknown_rev", message: "in the future" });
  clock.runNext();
  sockets.last.open();
  assert.deepEqual(sockets.last.take(), [
    { type: "join", client: "c1", rev: null, user: { name: "Ada", color: "#c33" }, batch: true },
  ]);
});

test("a malformed frame closes with 4400 and reloads", () => {
  const errors: Error[] = [];
  const { sockets, clock, conn, joined } = setup();
  conn.on("protocolError", (e) => errors.push(e));
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "abc" }));
  sockets.last.receive({ type: "op", rev: 1, client: "c2", op: [1.5] });
  assert.equal(errors.length, 1);
  assert.equal(sockets.last.closedWith?.code, 4400);
  clock.runNext();
  sockets.last.open();
  assert.deepEqual(sockets.last.take(), [
    { type: "join", client: "c1", rev: null, user: { name: "Ada", color: "#c33" }, batch: true },
  ]);
  // A gap in revisions is a protocol error too.
  sockets.last.receive(joined(3, { text: "abc" }));
  sockets.last.receive({ type: "op", rev: 5, client: "c2", op: [3] });
  assert.equal(errors.length, 2);
});

test("join timeout: a socket that never opens is retried", () => {
  const { sockets, clock, conn } = setup();
  conn.start();
  clock.advance(JOIN_TIMEOUT_MS);
  assert.ok(sockets.all[0]?.closedWith);
  assert.equal(conn.status.kind, "reconnecting");
  clock.runNext();
  assert.equal(sockets.all.length, 2);
});

test("presence: sent when synchronized, deferred while an op is pending, moved with our typing", () => {
  const { sockets, conn, type, joined } = setup();
  conn.start();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(1, { text: "abc" }));
  conn.setSelection(cursor(3));
  assert.deepEqual(s.take(), [
    { type: "presence", rev: 1, selection: { ranges: [{ anchor: 3, head: 3 }] } },
  ]);
  conn.setSelection(cursor(3));
  assert.deepEqual(s.take(), [], "unchanged selections are not resent");
  type([3, "d"]); // the op carries the moved cursor
  assert.deepEqual(s.take(), [
    { type: "op", rev: 1, seq: 1, op: [3, "d"], selection: { ranges: [{ anchor: 4, head: 4 }] } },
  ]);
  conn.setSelection(cursor(1));
  assert.deepEqual(s.take(), [], "deferred: no revision describes the editor text now");
  s.receive({ type: "ack", seq: 1, rev: 2 });
  assert.deepEqual(s.take(), [
    { type: "presence", rev: 2, selection: { ranges: [{ anchor: 1, head: 1 }] } },
  ]);
});

test("peers' cursors arrive at the server revision and are moved into the editor text", () => {
  const { sockets, conn, type, joined } = setup();
  conn.start();
  const s = sockets.last;
  s.open();
  s.receive(
    joined(1, {
      text: "abc",
      peers: [{ client: "c2", user: { id: "u2", name: "Bo", color: "#00f" } }],
    }),
  );
  assert.ok(conn.peers.has("c2"));
  type(["XY", 3]);
  s.receive({
    type: "presence",
    client: "c2",
    user: null,
    selection: { ranges: [{ anchor: 0, head: 2 }] },
  });
  assert.deepEqual(conn.peers.get("c2")?.selection, { ranges: [{ anchor: 0, head: 4 }] });
  // Their own typing carries their cursor along; ours does not.
  s.receive({ type: "op", rev: 2, client: "c2", op: [2, "!", 1] });
  assert.deepEqual(conn.peers.get("c2")?.selection, { ranges: [{ anchor: 0, head: 5 }] });
  s.receive({ type: "leave", client: "c2" });
  assert.ok(!conn.peers.has("c2"));
});

test("a refused op is reverted in the editor and reported", () => {
  const refused: string[] = [];
  const { sockets, conn, editor, type, joined } = setup();
  conn.on("refused", (r) => refused.push(r.code));
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "abc" }));
  type([3, "xyz"]);
  sockets.last.receive({ type: "error", code: "too_large", message: "", seq: 1 });
  assert.equal(editor.text, "abc");
  assert.deepEqual(refused, ["too_large"]);
});

test("rate_limited: the op stays in flight and is resent after a backoff", () => {
  const { sockets, clock, conn, type, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "" }));
  type(["a"]);
  sockets.last.receive({ type: "error", code: "rate_limited", message: "", seq: 1 });
  assert.equal(conn.status.kind, "reconnecting");
  clock.runNext();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(0, { ops: [] }));
  assert.deepEqual(s.take(), [{ type: "op", rev: 0, seq: 1, op: ["a"] }]);
});

test("dispose closes and stops retrying", () => {
  const { sockets, clock, conn, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "" }));
  conn.dispose();
  assert.equal(sockets.last.closedWith?.code, 1000);
  assert.equal(conn.status.kind, "closed");
  assert.equal(clock.pending, 0);
  sockets.last.serverClose(1006);
  assert.equal(clock.pending, 0);
  assert.throws(() => conn.submit(op([])), /disposed/);
});
