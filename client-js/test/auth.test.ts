/**
 * Authentication and permissions on the client side: no reconnect after
 * 4401/4403, readers send no ops, `forbidden` drops what is pending at once
 * (never resent), the state machine's `dropPending`, the app's credential
 * helpers and status line.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Connection,
  TextOperation,
  applyClient,
  applyServer,
  dropPending,
  editorText,
  pendingEdits,
  resumeWithText,
  synchronized,
  type ClientState,
  type ConnectionStatus,
  type OpComponent,
  type Permission,
  type Rejection,
} from "../src/index.js";
import {
  NO_CREDENTIALS,
  TOKEN_KEY,
  linkKey,
  refusedKey,
  resolveCredentials,
  shareUrl,
  withCredentials,
  withoutToken,
  type KeyValueStore,
} from "../src/app/credentials.js";
import { describeStatus } from "../src/app/status.js";
import { FakeClock } from "./support/fake-clock.js";
import { ScriptedSockets } from "./support/scripted-socket.js";
import { Rng } from "./support/random.js";

const op = (json: OpComponent[]) => TextOperation.fromJSON(json);

function setup() {
  const sockets = new ScriptedSockets();
  const clock = new FakeClock();
  const editor = { text: "", loads: 0 };
  const statuses: ConnectionStatus[] = [];
  const rejected: Rejection[] = [];
  const permissions: Permission[] = [];
  const conn = new Connection({
    url: "ws://test/api/documents/d1/ws?token=t",
    socketFactory: sockets.factory,
    clock,
    random: () => 0.5,
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
  conn.on("rejected", (r) => rejected.push(r));
  conn.on("permission", (p) => permissions.push(p));
  /** A local edit, as the editor adapter does it: undone if turned down. */
  const type = (json: OpComponent[]): boolean => {
    const o = op(json);
    const before = editor.text;
    editor.text = o.apply(editor.text);
    const ok = conn.submit(o);
    if (!ok) editor.text = before;
    return ok;
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
  return { sockets, clock, editor, statuses, rejected, permissions, conn, type, joined };
}

const opsSent = (frames: unknown[]) => frames.filter((f) => (f as { type: string }).type === "op");

// ---- no reconnect after 4401 / 4403 --------------------------------------------

for (const [code, error] of [
  [4401, "unauthenticated"],
  [4403, "forbidden"],
] as const) {
  test(`${error} then close ${code} before joined: closed for good, no retry, nothing loaded`, () => {
    const { sockets, clock, conn, editor, statuses } = setup();
    const refused: string[] = [];
    conn.on("refused", (r) => refused.push(`${r.code}:${r.message}`));
    conn.start();
    sockets.last.open();
    sockets.last.take();
    sockets.last.receive({ type: "error", code: error, message: "sign in" });
    sockets.last.serverClose(code, error);
    assert.deepEqual(refused, [`${error}:sign in`]);
    assert.deepEqual(conn.status, { kind: "closed", code, reason: error, waitingEdits: 0 });
    assert.equal(clock.pending, 0, "no reconnect timer");
    assert.equal(sockets.all.length, 1);
    assert.equal(conn.revision, null, "never joined");
    assert.equal(editor.loads, 0);
    assert.deepEqual(
      statuses.map((s) => s.kind),
      ["closed"],
    );
    // Time passing changes nothing.
    while (clock.runNext());
    assert.equal(sockets.all.length, 1);
  });

  test(`close ${code} after joined, edits pending: closed, no retry, nothing resent`, () => {
    const { sockets, clock, conn, type, joined } = setup();
    conn.start();
    sockets.last.open();
    sockets.last.receive(joined(0, { text: "abc" }));
    type([3, "!"]);
    type([4, "?"]);
    sockets.last.take();
    sockets.last.receive({ type: "error", code: error, message: "revoked" });
    sockets.last.serverClose(code, error);
    assert.deepEqual(conn.status, { kind: "closed", code, reason: error, waitingEdits: 2 });
    assert.equal(clock.pending, 0);
    assert.equal(sockets.all.length, 1);
    assert.equal(conn.revision, 0, "it had joined");
  });
}

test("1001, 1013 and 4409 still reconnect, also after a refused op", () => {
  for (const code of [1001, 1013, 4409]) {
    const { sockets, clock, conn, type, joined } = setup();
    conn.start();
    sockets.last.open();
    sockets.last.receive(joined(0, { text: "" }));
    type(["a"]);
    sockets.last.receive({ type: "error", code: "bad_op", message: "", seq: 1 });
    sockets.last.serverClose(code);
    assert.equal(conn.status.kind, "reconnecting", `close ${code}`);
    clock.runNext();
    assert.equal(sockets.all.length, 2, `close ${code}`);
  }
});

// ---- readers ------------------------------------------------------------------

test("a reader: every change is turned down locally, nothing is sent; presence is", () => {
  const { sockets, conn, editor, type, joined, rejected, permissions } = setup();
  conn.start();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(4, { text: "hello", permission: "read" }));
  assert.equal(conn.permission, "read");
  assert.deepEqual(permissions, ["read"]);
  assert.equal(type([5, " world"]), false);
  assert.equal(editor.text, "hello");
  assert.equal(conn.waitingEdits, 0);
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]?.code, "forbidden");
  assert.equal(rejected[0]?.local, true);
  assert.equal(rejected[0]?.text, " world");
  assert.equal(conn.setLanguage("rust"), false);
  conn.setSelection({ ranges: [{ anchor: 1, head: 3 }] });
  assert.deepEqual(s.take(), [
    { type: "presence", rev: 4, selection: { ranges: [{ anchor: 1, head: 3 }] } },
  ]);
  // Remote ops still arrive.
  s.receive({ type: "op", rev: 5, client: "c2", op: [5, "!"] });
  assert.equal(editor.text, "hello!");
  assert.equal(conn.state?.kind, "synchronized");
});

test("forbidden for our op: it and the buffer are undone at once, never resent, and we are a reader", () => {
  const { sockets, clock, conn, editor, type, joined, rejected, permissions } = setup();
  conn.start();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(0, { text: "abc" }));
  type([3, "1"]);
  type([4, "2"]);
  type([5, "3"]);
  assert.deepEqual(opsSent(s.take()), [{ type: "op", rev: 0, seq: 1, op: [3, "1"] }]);
  // A colleague's op arrives first; then our op is refused.
  s.receive({ type: "op", rev: 1, client: "c2", op: ["X", 3] });
  assert.equal(editor.text, "Xabc123");
  s.receive({ type: "error", code: "forbidden", message: "write access is needed", seq: 1 });
  assert.equal(editor.text, "Xabc", "all our pending edits are undone, the colleague's stays");
  assert.equal(conn.waitingEdits, 0);
  assert.equal(conn.state?.kind, "synchronized");
  assert.equal(conn.permission, "read");
  assert.deepEqual(permissions, ["write", "read"]);
  assert.equal(rejected.length, 1, "one refusal for all of them");
  assert.equal(rejected[0]?.text, "123");
  assert.equal(rejected[0]?.local, false);
  assert.match(rejected[0]?.message ?? "", /read/);
  assert.deepEqual(s.take(), [], "nothing resent");
  assert.equal(s.closedWith, null, "the session goes on (as a reader)");
  assert.equal(clock.pending, 0);
  assert.equal(conn.status.kind, "connected");
  // Later typing is turned down without a round trip.
  assert.equal(type([4, "z"]), false);
  assert.deepEqual(s.take(), []);
  // A duplicate forbidden (another seq) changes nothing more.
  s.receive({ type: "error", code: "forbidden", message: "", seq: 2 });
  assert.equal(rejected.length, 2, "only the local refusal of 'z' was added");
  assert.deepEqual(permissions, ["write", "read"]);
  assert.equal(editor.text, "Xabc");
});

test("forbidden for language (no seq) changes nothing else", () => {
  const { sockets, conn, editor, type, joined, rejected } = setup();
  conn.start();
  const s = sockets.last;
  s.open();
  s.receive(joined(0, { text: "abc" }));
  type([3, "!"]);
  s.take();
  s.receive({ type: "error", code: "forbidden", message: "write access is needed" });
  assert.equal(editor.text, "abc!");
  assert.equal(conn.waitingEdits, 1);
  assert.equal(conn.permission, "write");
  assert.equal(rejected.length, 0);
  s.receive({ type: "ack", seq: 1, rev: 1 });
  assert.equal(conn.waitingEdits, 0);
});

test("rejoining as a reader (downgraded while away, catch-up): pending edits are undone, not sent", () => {
  const { sockets, clock, conn, editor, type, joined, rejected } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(3, { text: "abc" }));
  type([3, "!"]);
  sockets.last.serverClose(1006);
  type(["<", 4]);
  clock.runNext();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(4, { permission: "read", ops: [{ rev: 4, client: "c2", op: [3, "?"] }] }));
  assert.equal(editor.text, "abc?");
  assert.deepEqual(opsSent(s.take()), []);
  assert.equal(conn.waitingEdits, 0);
  assert.equal(conn.permission, "read");
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]?.text, "<!");
  assert.equal(conn.status.kind, "connected");
});

test("rejoining as a reader with the full text: no resend, the editor shows the server's text", () => {
  const { sockets, clock, conn, editor, type, joined, rejected } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(3, { text: "abc" }));
  type([3, "!"]);
  sockets.last.serverClose(1006);
  clock.runNext();
  const s = sockets.last;
  s.open();
  s.take();
  // Whether or not our op made it, the server's text is what counts now.
  s.receive(joined(9, { permission: "read", text: "ABC!" }));
  assert.equal(editor.text, "ABC!");
  assert.deepEqual(opsSent(s.take()), []);
  assert.equal(conn.state?.kind, "synchronized");
  assert.equal(conn.revision, 9);
  assert.equal(rejected.length, 1);
});

test("forbidden while resyncing (the resent op): nothing is sent again", () => {
  const { sockets, clock, conn, editor, type, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(3, { text: "abc" }));
  type([3, "!"]);
  sockets.last.serverClose(1006);
  clock.runNext();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(5, { text: "xabcy" }));
  // The op in flight is resent as it was, to learn whether it was committed.
  assert.deepEqual(opsSent(s.take()), [{ type: "op", rev: 3, seq: 1, op: [3, "!"] }]);
  type(["<", 4]);
  s.receive({ type: "error", code: "forbidden", message: "", seq: 1 });
  assert.deepEqual(opsSent(s.take()), []);
  assert.equal(editor.text, "xabcy");
  assert.equal(conn.state?.kind, "synchronized");
  assert.equal(conn.revision, 5);
});

test("upgraded again (a later joined says write): typing works", () => {
  const { sockets, clock, conn, editor, type, joined, permissions } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "", permission: "read" }));
  assert.equal(type(["a"]), false);
  sockets.last.serverClose(1001);
  clock.runNext();
  const s = sockets.last;
  s.open();
  s.take();
  s.receive(joined(0, { ops: [], permission: "write" }));
  assert.equal(type(["a"]), true);
  assert.deepEqual(opsSent(s.take()), [{ type: "op", rev: 0, seq: 1, op: ["a"] }]);
  assert.equal(editor.text, "a");
  assert.deepEqual(permissions, ["read", "write"]);
});

// ---- dropPending ------------------------------------------------------------

test("dropPending: back to the server's text, from every state", () => {
  const s0 = synchronized(2, "abc");
  assert.equal(dropPending(s0).op, null);
  assert.equal(dropPending(s0).transition.state, s0);

  const s1 = applyClient(s0, op([3, "d"])).state;
  const s2 = applyClient(s1, op(["<", 4])).state;
  const s3 = applyServer(s2, 3, op([1, "X", 2])).state;
  assert.equal(editorText(s3), "<aXbcd");
  const d = dropPending(s3);
  assert.equal(d.transition.state.kind, "synchronized");
  assert.equal(d.edits, 2);
  assert.equal(d.transition.apply?.apply(editorText(s3)), "aXbc");
  assert.equal(editorText(d.transition.state), "aXbc");
  assert.equal(d.transition.send, undefined);

  // Resyncing: the server's full text wins.
  const r = resumeWithText(s2, 7, "zzz").state;
  assert.equal(r.kind, "resyncing");
  const dr = dropPending(r);
  assert.equal(dr.transition.state.kind, "synchronized");
  assert.equal(dr.transition.state.rev, 7);
  assert.equal(dr.transition.apply?.apply(editorText(r)), "zzz");
  assert.equal(dr.transition.send, undefined);
});

test("dropPending on random histories: the editor ends on the server's text, nothing to send", () => {
  const rng = new Rng(1107);
  for (let round = 0; round < 300; round++) {
    let state: ClientState = synchronized(0, "hello");
    let shown = "hello";
    let server = "hello";
    let rev = 0;
    for (let step = 0; step < 8; step++) {
      const n = [...shown].length;
      if (rng.chance(0.5)) {
        const at = rng.int(n + 1);
        const o = op([
          ...(at ? [at] : []),
          rng.pick(["a", "bc", "😀", "x😀y"]),
          ...(n - at ? [n - at] : []),
        ]);
        const t = applyClient(state, o);
        state = t.state;
        shown = o.apply(shown);
      } else {
        const m = [...server].length;
        const at = rng.int(m + 1);
        const o = op([...(at ? [at] : []), "R", ...(m - at ? [m - at] : [])]);
        server = o.apply(server);
        rev++;
        const t = applyServer(state, rev, o);
        state = t.state;
        if (t.apply) shown = t.apply.apply(shown);
      }
    }
    assert.equal(editorText(state), shown);
    const d = dropPending(state);
    const after = d.transition.apply ? d.transition.apply.apply(shown) : shown;
    assert.equal(after, server);
    assert.equal(editorText(d.transition.state), server);
    assert.equal(pendingEdits(d.transition.state), 0);
    assert.equal(d.transition.send, undefined);
  }
});

// ---- the app's credentials ----------------------------------------------------

function memoryStore(): KeyValueStore & { map: Map<string, string> } {
  const map = new Map<string, string>();
  return {
    map,
    getItem: (k) => map.get(k) ?? null,
    setItem: (k, v) => void map.set(k, v),
    removeItem: (k) => void map.delete(k),
  };
}

test("credentials: from the URL, kept for the session, a link per document", () => {
  const store = memoryStore();
  assert.deepEqual(resolveCredentials("", "d", store), NO_CREDENTIALS);
  assert.deepEqual(resolveCredentials("?token=T1&x=1", "d", store), { token: "T1", link: null });
  assert.equal(store.map.get(TOKEN_KEY), "T1");
  // A reload (the token taken out of the URL) keeps it.
  assert.deepEqual(resolveCredentials("?x=1", "d", store), { token: "T1", link: null });
  assert.deepEqual(resolveCredentials("?link=L1", "d", store), { token: "T1", link: "L1" });
  assert.equal(store.map.get(linkKey("d")), "L1");
  assert.deepEqual(resolveCredentials("", "d", store), { token: "T1", link: "L1" });
  assert.deepEqual(resolveCredentials("", "other", store), { token: "T1", link: null });
  assert.deepEqual(resolveCredentials("", null, store), { token: "T1", link: null });
  // A new token in the URL replaces the old one.
  assert.deepEqual(resolveCredentials("?token=T2", "d", store), { token: "T2", link: "L1" });
  // No storage at all (or one that throws): the URL still counts.
  assert.deepEqual(resolveCredentials("?link=L", "d", null), { token: null, link: "L" });
  const broken: KeyValueStore = {
    getItem: () => {
      throw new Error("denied");
    },
    setItem: () => {
      throw new Error("denied");
    },
    removeItem: () => {},
  };
  assert.deepEqual(resolveCredentials("?token=T", "d", broken), { token: "T", link: null });
});

test("credentials: added to every URL; the token leaves the address bar, the link stays", () => {
  const both = { token: "a.b+c", link: "l/1" };
  assert.equal(
    withCredentials("/api/documents/x/revisions", NO_CREDENTIALS),
    "/api/documents/x/revisions",
  );
  assert.equal(
    withCredentials("/api/documents/x/revisions", both),
    "/api/documents/x/revisions?token=a.b%2Bc&link=l%2F1",
  );
  assert.equal(
    withCredentials("/api/documents/x/text?rev=3", { token: "t", link: null }),
    "/api/documents/x/text?rev=3&token=t",
  );
  assert.equal(
    withCredentials("ws://h:1/api/documents/x/ws", { token: null, link: "L" }),
    "ws://h:1/api/documents/x/ws?link=L",
  );
  assert.equal(withCredentials("/a?#f", { token: "t", link: null }), "/a?token=t#f");
  assert.equal(withoutToken("?token=T&link=L"), "?link=L");
  assert.equal(withoutToken("?token=T"), "");
  assert.equal(withoutToken("?link=L"), "?link=L");
  assert.equal(withoutToken(""), "");
  assert.equal(shareUrl("http://h", "d", both), "http://h/d/d?link=l%2F1");
  assert.equal(shareUrl("http://h", "d", { token: "secret", link: null }), "http://h/d/d");
  assert.equal(refusedKey("d", { token: "t", link: "l" }), TOKEN_KEY);
  assert.equal(refusedKey("d", { token: null, link: "l" }), linkKey("d"));
  assert.equal(refusedKey("d", NO_CREDENTIALS), null);
});

test("status line: 4401 and 4403 say what happened", () => {
  const facts = { waiting: 0, stalledMs: 0, refused: null };
  const closed = (code: number, waitingEdits = 0): ConnectionStatus => ({
    kind: "closed",
    code,
    reason: "x",
    waitingEdits,
  });
  assert.deepEqual(describeStatus(closed(4401), facts), { text: "Not signed in", kind: "closed" });
  assert.deepEqual(describeStatus(closed(4403), { ...facts, waiting: 2 }), {
    text: "No access · 2 edits not saved",
    kind: "closed",
  });
  assert.equal(describeStatus(closed(1000), facts).text, "Disconnected (x)");
});
