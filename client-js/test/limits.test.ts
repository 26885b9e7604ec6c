/**
 * Big edits are split, never lost (issue 10): the state machine sends parts
 * that fit the limits; the connection learns lower limits from close 1009
 * and `too_large` and never resends the same message into the same
 * refusal; a change too big for the document is refused before it is
 * applied, its text handed back. Against a scripted server, then randomized
 * against the in-memory server enforcing small limits.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Connection,
  DEFAULT_LIMITS,
  MIN_MESSAGE_BYTES,
  OperationBuilder,
  TextOperation,
  applyClient,
  cursor,
  editorText,
  opStats,
  parseServerMessage,
  pendingEdits,
  retryInFlight,
  serverAck,
  synchronized,
  withLimits,
  type ClientState,
  type ConnectionStatus,
  type OpComponent,
  type OpLimits,
  type Rejection,
  type SocketFactory,
  type Transition,
} from "../src/index.js";
import { describeStatus, STALLED_AFTER_MS } from "../src/app/status.js";
import { DummyServer, SimNetwork } from "./support/dummy-server.js";
import { FakeClock } from "./support/fake-clock.js";
import { Rng } from "./support/random.js";
import { ScriptedSockets } from "./support/scripted-socket.js";

const op = (json: OpComponent[]) => TextOperation.fromJSON(json);
const bytesOf = (frame: unknown): number => Buffer.byteLength(JSON.stringify(frame));

interface OpFrame {
  type: "op";
  rev: number;
  seq: number;
  op: OpComponent[];
  selection?: unknown;
}

function setup() {
  const sockets = new ScriptedSockets();
  const clock = new FakeClock();
  const editor = { text: "" };
  const rejected: Rejection[] = [];
  const conn = new Connection({
    url: "ws://test/api/documents/d1/ws",
    socketFactory: sockets.factory,
    clock,
    random: () => 0.5,
    user: { name: "Ada", color: "#c33" },
    document: {
      load(text) {
        editor.text = text;
      },
      apply(o) {
        editor.text = o.apply(editor.text);
      },
    },
  });
  conn.on("rejected", (r) => rejected.push(r));
  /** A local edit, as the editor adapter does it (undone if turned down). */
  const type = (o: TextOperation): boolean => {
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
  const limits = (maxMessageBytes: number, maxDocumentChars = 100_000) => ({
    max_message_bytes: maxMessageBytes,
    max_document_chars: maxDocumentChars,
    max_insert_chars: 1_048_576,
    max_op_components: 20_000,
  });
  /** Acks every op frame the last socket sends until none is left; returns them. */
  const ackAll = (rev: number): OpFrame[] => {
    const frames: OpFrame[] = [];
    for (;;) {
      const sent = sockets.last.take().filter((f) => (f as OpFrame).type === "op") as OpFrame[];
      if (sent.length === 0) return frames;
      assert.equal(sent.length, 1, "one op in flight");
      const f = sent[0] as OpFrame;
      frames.push(f);
      sockets.last.receive({ type: "ack", seq: f.seq, rev: ++rev });
    }
  };
  return { sockets, clock, editor, rejected, conn, type, joined, limits, ackAll };
}

/** A paste of `chars` characters, multibyte and astral mixed in. */
function bigText(chars: number): string {
  const unit = [...'let 😀 = "é漢";\n'];
  return Array.from({ length: chars }, (_, i) => unit[i % unit.length]).join("");
}

const composeAll = (frames: OpFrame[]): TextOperation =>
  frames.map((f) => op(f.op)).reduce((a, b) => a.compose(b));

// ---- the state machine -------------------------------------------------------

test("state: a change over the limits goes as a prefix; the rest waits, and takes later edits", () => {
  const lim: OpLimits = { maxOpBytes: 200, maxInsertChars: 50, maxComponents: 10 };
  let current: ClientState = synchronized(0, "ab", 1, lim);
  // A function, so that assertions do not narrow the state for the rest of the test.
  const state = (): ClientState => current;
  let editor = "ab";
  const sent: TextOperation[] = [];
  const run = (t: Transition): void => {
    current = t.state;
    if (t.apply) editor = t.apply.apply(editor);
    if (t.send) sent.push(t.send.op);
    assert.equal(editorText(state()), editor);
  };
  const paste = op([1, bigText(180), 1]);
  editor = paste.apply(editor);
  run(applyClient(state(), paste));
  assert.equal(state().kind, "awaitingWithBuffer");
  assert.equal(sent.length, 1);
  assert.ok(opStats(sent[0] as TextOperation).insertedChars <= 50);
  assert.equal(pendingEdits(state()), 1, "one edit, still waiting");
  // Typing at the end composes onto the rest of the paste.
  const typed = TextOperation.replace([...editor].length, [...editor].length, 0, "!");
  editor = typed.apply(editor);
  run(applyClient(state(), typed));
  assert.equal(pendingEdits(state()), 2);
  for (let rev = 1; state().kind !== "synchronized"; rev++) {
    const s = state();
    const seq = "outstanding" in s && s.outstanding ? s.outstanding.seq : -1;
    run(serverAck(s, seq, rev));
    if (state().kind !== "synchronized") assert.ok(pendingEdits(state()) >= 1, "not saved yet");
  }
  assert.equal(state().text.toString(), editor);
  assert.equal(
    sent.reduce((doc, o) => o.apply(doc), "ab"),
    editor,
  );
  for (const o of sent) assert.ok(opStats(o).insertedChars <= 50 && opStats(o).bytes <= 200);
  assert.ok(sent.length >= 4);
});

test("state: retryInFlight splits the op in flight anew under a new seq", () => {
  let t = applyClient(synchronized(3, "abc"), op([3, "x".repeat(500)]));
  assert.equal(t.send?.seq, 1);
  t = withLimits(t.state, { maxOpBytes: 100, maxInsertChars: 1000, maxComponents: 100 });
  t = retryInFlight(t.state, 1);
  assert.equal(t.send?.seq, 2, "a new seq: seq 1 is never reused for other content");
  assert.ok(opStats(t.send.op).bytes <= 100);
  assert.equal(t.state.kind, "awaitingWithBuffer");
  assert.equal(editorText(t.state), "abc" + "x".repeat(500), "nothing changes in the editor");
  assert.equal(t.apply, undefined);
  assert.equal(retryInFlight(t.state, 1).state, t.state, "not in flight: ignored");
});

// ---- the protocol --------------------------------------------------------------

test("joined.limits is parsed; missing or unusable fields take the defaults", () => {
  const base = { type: "joined", client: "c", rev: 0, language: null, permission: "write" };
  const a = parseServerMessage(
    JSON.stringify({
      ...base,
      peers: [],
      text: "",
      limits: {
        max_message_bytes: 2000,
        max_document_chars: 10,
        max_insert_chars: 5,
        max_op_components: 7,
      },
    }),
  );
  assert.ok(a?.type === "joined");
  assert.deepEqual(a.limits, {
    maxMessageBytes: 2000,
    maxDocumentChars: 10,
    maxInsertChars: 5,
    maxOpComponents: 7,
  });
  const b = parseServerMessage(JSON.stringify({ ...base, peers: [], text: "" }));
  assert.ok(b?.type === "joined");
  assert.deepEqual(b.limits, DEFAULT_LIMITS);
  const c = parseServerMessage(
    JSON.stringify({ ...base, text: "", limits: { max_message_bytes: -1, max_op_components: 9 } }),
  );
  assert.ok(c?.type === "joined");
  assert.deepEqual(c.limits, { ...DEFAULT_LIMITS, maxOpComponents: 9 });
});

// ---- the connection --------------------------------------------------------------

test("joined.limits: a big paste goes in parts that fit, each acked before the next", () => {
  const { sockets, conn, editor, type, joined, limits, ackAll } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.take();
  sockets.last.receive(joined(0, { text: "", limits: limits(2000) }));
  const paste = op([bigText(3000)]);
  type(paste);
  const first = sockets.last.take() as OpFrame[];
  assert.equal(first.length, 1);
  assert.ok(bytesOf(first[0]) <= 2000, `${bytesOf(first[0])} bytes`);
  // Typing while the parts go out: it composes onto what waits.
  type(TextOperation.replace(3000, 3000, 0, "END"));
  assert.equal(conn.waitingEdits, 2);
  sockets.last.sent.unshift(first[0]); // put it back for ackAll
  const frames = ackAll(0);
  assert.ok(frames.length >= 3, `${frames.length} parts`);
  for (const f of frames) assert.ok(bytesOf(f) <= 2000, `${bytesOf(f)} bytes`);
  assert.deepEqual(
    frames.map((f) => f.seq),
    frames.map((_, i) => i + 1),
  );
  assert.equal(composeAll(frames).apply(""), editor.text);
  assert.equal(editor.text, bigText(3000) + "END");
  assert.equal(conn.waitingEdits, 0);
});

test("close 1009: the limit the reason names; the op goes again in parts, never the same message", () => {
  const { sockets, clock, conn, editor, type, joined, ackAll } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.take();
  sockets.last.receive(joined(0, { text: "" })); // an older server: no limits, 1 MiB assumed
  type(op([bigText(5000)]));
  const [refused] = sockets.last.take() as OpFrame[];
  assert.ok(refused && bytesOf(refused) > 5000);
  sockets.last.serverClose(1009, "message too big: the limit is 2000 bytes");
  assert.equal(conn.status.kind, "reconnecting");
  assert.equal(conn.limits.maxMessageBytes, 2000);
  assert.equal(conn.waitingEdits, 1, "nothing lost");
  clock.runNext();
  sockets.last.open();
  assert.deepEqual(sockets.last.take(), [
    { type: "join", client: "c1", rev: 0, user: { name: "Ada", color: "#c33" }, batch: true },
  ]);
  sockets.last.receive(joined(0, { ops: [] }));
  const frames = ackAll(0);
  assert.ok(frames.length >= 5);
  for (const f of frames) {
    assert.ok(bytesOf(f) <= 2000);
    assert.notDeepEqual(f, refused);
    assert.ok(f.seq > refused.seq, "new seqs: the refused one was never read");
  }
  assert.equal(composeAll(frames).apply(""), editor.text);
  assert.equal(conn.waitingEdits, 0);
});

test("close 1009 without a reason: the limit is halved, below the frame that was too big", () => {
  const { sockets, clock, conn, type, joined, ackAll } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "" }));
  sockets.last.take();
  type(op(["y".repeat(6000)]));
  const [refused] = sockets.last.take() as OpFrame[];
  sockets.last.serverClose(1009, "");
  assert.equal(conn.limits.maxMessageBytes, Math.floor(bytesOf(refused) / 2));
  clock.runNext();
  sockets.last.open();
  sockets.last.take();
  sockets.last.receive(joined(0, { ops: [] }));
  const frames = ackAll(0);
  assert.equal(frames.length, 3);
  for (const f of frames) assert.ok(bytesOf(f) < bytesOf(refused) / 2);
});

test("an older server (too_large without seq, then 4400) is not fatal: the op is split", () => {
  const { sockets, clock, conn, type, joined, ackAll } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "" }));
  type(op(["z".repeat(4000)]));
  sockets.last.take();
  sockets.last.receive({ type: "error", code: "too_large", message: "message too large" });
  sockets.last.serverClose(4400, "message too large");
  assert.equal(conn.status.kind, "reconnecting", "not closed for good");
  clock.runNext();
  sockets.last.open();
  sockets.last.take();
  sockets.last.receive(joined(0, { ops: [] }));
  const frames = ackAll(0);
  assert.ok(frames.length >= 2);
  for (const f of frames) assert.ok(bytesOf(f) <= 2100);
  assert.equal(composeAll(frames).apply(""), "z".repeat(4000));
});

test("a 1009 after the op in flight was small enough to be read keeps it (same seq)", () => {
  const { sockets, clock, conn, type, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "" }));
  type(op(["small"]));
  sockets.last.take();
  sockets.last.serverClose(1009, "message too big: the limit is 2000 bytes");
  clock.runNext();
  sockets.last.open();
  sockets.last.take();
  sockets.last.receive(joined(0, { ops: [] }));
  assert.deepEqual(sockets.last.take(), [{ type: "op", rev: 0, seq: 1, op: ["small"] }]);
});

test("the message limit never goes below the minimum", () => {
  const { sockets, clock, conn, type, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "" }));
  type(op(["q".repeat(1500)]));
  sockets.last.serverClose(1009, "message too big: the limit is 10 bytes");
  assert.equal(conn.limits.maxMessageBytes, MIN_MESSAGE_BYTES);
  clock.runNext();
  sockets.last.open();
  sockets.last.take();
  sockets.last.receive(joined(0, { ops: [] }));
  const [f] = sockets.last.take() as OpFrame[];
  assert.ok(f && bytesOf(f) <= MIN_MESSAGE_BYTES && f.seq === 2);
});

test("too_large naming the op's components: the limit is lowered and the op split anew", () => {
  const { sockets, conn, editor, type, joined, ackAll } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "0123456789" }));
  sockets.last.take();
  // Ten cursors typing at once: 20 components.
  const b = new OperationBuilder();
  for (let i = 0; i < 10; i++) b.retain(1).insert("ab");
  type(b.build());
  const [refused] = sockets.last.take() as OpFrame[];
  assert.ok(refused);
  sockets.last.receive({
    type: "error",
    code: "too_large",
    message: "op has more than 8 components",
    seq: refused.seq,
  });
  assert.equal(editor.text, "0ab1ab2ab3ab4ab5ab6ab7ab8ab9ab", "not undone");
  assert.equal(conn.limits.maxOpComponents, 8);
  const frames = ackAll(0);
  for (const f of frames) assert.ok(f.op.length <= 8 && f.seq > refused.seq);
  assert.equal(composeAll(frames).apply("0123456789"), editor.text);
});

test("too_large naming the characters inserted: lowered, split anew", () => {
  const { sockets, conn, type, joined, ackAll } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "" }));
  sockets.last.take();
  type(op(["w".repeat(300)]));
  sockets.last.take();
  sockets.last.receive({
    type: "error",
    code: "too_large",
    message: "op inserts more than 100 characters",
    seq: 1,
  });
  const frames = ackAll(0);
  assert.equal(frames.length, 3);
  assert.equal(composeAll(frames).apply(""), "w".repeat(300));
  assert.deepEqual(
    frames.map((f) => f.seq),
    [2, 3, 4],
  );
});

test("too_large for the document: undone, its text handed back, never sent again", () => {
  const { sockets, conn, editor, rejected, type, joined } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "abc" }));
  sockets.last.take();
  type(op([3, "xyz"]));
  type(op([6, "!"])); // waits in the buffer
  sockets.last.take();
  sockets.last.receive({
    type: "error",
    code: "too_large",
    message: "the document would exceed 5 characters",
    seq: 1,
  });
  assert.equal(editor.text, "abc!", "the refused op is undone, the later edit kept");
  assert.equal(rejected.length, 1);
  assert.deepEqual(
    { code: rejected[0]?.code, text: rejected[0]?.text, local: rejected[0]?.local },
    { code: "too_large", text: "xyz", local: false },
  );
  assert.equal(conn.limits.maxDocumentChars, 5);
  // The later edit goes out on its own; the refused op never again.
  assert.deepEqual(sockets.last.take(), [{ type: "op", rev: 0, seq: 2, op: [3, "!"] }]);
});

test("a change that would make the document too long is refused before it is applied", () => {
  const { sockets, conn, editor, rejected, type, joined, limits } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.take();
  sockets.last.receive(joined(0, { text: "abc", limits: limits(1_048_576, 10) }));
  assert.equal(type(op([3, "12345678"])), false);
  assert.equal(editor.text, "abc");
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]?.local, true);
  assert.equal(rejected[0]?.text, "12345678");
  assert.match(rejected[0]?.message ?? "", /at most 10/);
  assert.deepEqual(sockets.last.take(), [], "nothing sent");
  assert.equal(conn.state?.kind, "synchronized");
  assert.equal(conn.waitingEdits, 0);
  assert.equal(type(op([3, "1234567"])), true, "up to the limit is fine");
  assert.equal(type(op([-1, 9])), true, "an edit that does not lengthen it always is");
});

test("a selection rides along only if the message still fits", () => {
  const { sockets, conn, type, joined, limits } = setup();
  conn.start();
  sockets.last.open();
  sockets.last.receive(joined(0, { text: "x".repeat(100), limits: limits(2000) }));
  // 40 cursors: about 1,500 bytes of selection.
  const many = { ranges: Array.from({ length: 40 }, (_, i) => ({ anchor: i, head: i + 50 })) };
  conn.setSelection(many);
  sockets.last.take();
  // The op fits (1,741 bytes of the 1,744 an op may have), the op with the selection does not.
  type(op(["s".repeat(1735), 100]));
  const [f] = sockets.last.take() as OpFrame[];
  assert.ok(f && f.selection === undefined && bytesOf(f) <= 2000, JSON.stringify(f).slice(0, 80));
  // Once acked, the moved cursors go as presence.
  sockets.last.receive({ type: "ack", seq: f.seq, rev: 1 });
  const moved = {
    ranges: many.ranges.map((r) => ({ anchor: r.anchor + 1735, head: r.head + 1735 })),
  };
  assert.deepEqual(sockets.last.take(), [{ type: "presence", rev: 1, selection: moved }]);
});

// ---- the status line -------------------------------------------------------------

test("status: 'Connected' only when nothing waits", () => {
  const connected: ConnectionStatus = { kind: "connected" };
  const view = (waiting: number, stalledMs = 0, refused: string | null = null) =>
    describeStatus(connected, { waiting, stalledMs, refused });
  assert.deepEqual(view(0), { text: "Connected", kind: "connected" });
  assert.deepEqual(view(1, 100), { text: "Saving 1 edit…", kind: "saving" });
  assert.deepEqual(view(3, STALLED_AFTER_MS), {
    text: "Not saved: 3 edits waiting for the server",
    kind: "unsaved",
  });
  assert.deepEqual(view(0, 0, "a change too big for this document"), {
    text: "Not saved: a change too big for this document",
    kind: "unsaved",
  });
  const reconnecting: ConnectionStatus = {
    kind: "reconnecting",
    attempt: 1,
    retryInMs: 500,
    waitingEdits: 2,
  };
  assert.match(
    describeStatus(reconnecting, { waiting: 2, stalledMs: 0, refused: null }).text,
    /Offline: 2 edits not yet saved/,
  );
});

// ---- randomized: clients against a server with small limits ------------------

const PIECES = ["a", "b", "😀", "漢", "\n", "é", "👍🏽", '"', "\\", "\t"];

function randomEdit(rng: Rng, doc: string): TextOperation {
  const n = [...doc].length;
  const at = rng.int(n + 1);
  const big = rng.chance(0.15);
  const len = big ? 200 + rng.int(2500) : 1 + rng.int(3);
  const text = Array.from({ length: len }, () => rng.pick(PIECES)).join("");
  if (rng.chance(0.1) && n > 0) {
    // Several cursors at once: many components.
    const b = new OperationBuilder();
    let pos = 0;
    for (let i = 0; i < 1 + rng.int(30) && pos < n; i++) {
      const step = 1 + rng.int(Math.max(1, Math.floor(n / 10)));
      b.retain(Math.min(step, n - pos)).insert(rng.pick(PIECES));
      pos += Math.min(step, n - pos);
    }
    return b.retain(n - pos).build();
  }
  if (rng.chance(0.7) || n === at) return TextOperation.replace(n, at, 0, text);
  return TextOperation.replace(
    n,
    at,
    1 + rng.int(Math.min(400, n - at)),
    rng.chance(0.5) ? "" : text,
  );
}

function simulateLimits(seed: number): {
  tooBig: number;
  refusedTooLarge: number;
  rejected: number;
} {
  const rng = new Rng(seed);
  const server = new DummyServer("");
  server.limits = {
    maxMessageBytes: 1500 + rng.int(3000),
    maxDocumentChars: 4000 + rng.int(6000),
    maxInsertChars: 100 + rng.int(600),
    maxOpComponents: 8 + rng.int(20),
  };
  server.announceLimits = rng.chance(0.5);
  server.oldStyle = !server.announceLimits && rng.chance(0.5);
  const net = new SimNetwork(server);
  const clock = new FakeClock();
  const clients: { name: string; conn: Connection; doc: string; loaded: boolean }[] = [];
  let rejected = 0;
  for (let i = 0; i < 3; i++) {
    const c = { name: `u${i}`, conn: null as unknown as Connection, doc: "", loaded: false };
    // What this client was told was refused: it must never send that again.
    const heardTooBig = new Set<string>();
    const heardRefusedSeqs = new Set<number>();
    const factory: SocketFactory = (url, handlers) => {
      const sentHere: string[] = [];
      const socket = net.factory(c.name)(url, {
        onOpen: () => handlers.onOpen(),
        onMessage: (data) => {
          const m = JSON.parse(data) as { type: string; code?: string; seq?: number };
          if (m.type === "error" && m.code === "too_large" && typeof m.seq === "number")
            heardRefusedSeqs.add(m.seq);
          handlers.onMessage(data);
        },
        onClose: (code, reason) => {
          if (code === 1009 || code === 4400)
            for (const f of sentHere) if (server.tooBig.includes(f)) heardTooBig.add(f);
          handlers.onClose(code, reason);
        },
      });
      return {
        send: (data) => {
          assert.ok(!heardTooBig.has(data), `${c.name} resent a frame refused as too big`);
          const m = JSON.parse(data) as { type: string; seq?: number };
          if (m.type === "op" && m.seq !== undefined)
            assert.ok(!heardRefusedSeqs.has(m.seq), `${c.name} resent refused op ${m.seq}`);
          sentHere.push(data);
          socket.send(data);
        },
        close: (code, reason) => socket.close(code, reason),
      };
    };
    c.conn = new Connection({
      url: "ws://sim",
      socketFactory: factory,
      clock,
      random: () => rng.next(),
      document: {
        load(text) {
          c.doc = text;
          c.loaded = true;
        },
        apply(o) {
          c.doc = o.apply(c.doc);
        },
      },
    });
    c.conn.on("rejected", () => rejected++);
    c.conn.start();
    clients.push(c);
  }
  const check = (): void => {
    for (const c of clients) {
      const s = c.conn.state;
      if (s) assert.equal(c.doc, editorText(s), `${c.name} editor vs state`);
      assert.notEqual(c.conn.status.kind, "closed", `${c.name} gave up`);
    }
  };
  for (let step = 0; step < 300; step++) {
    const r = rng.next();
    const loaded = clients.filter((c) => c.loaded);
    if (r < 0.3 && loaded.length > 0) {
      const c = rng.pick(loaded);
      const o = randomEdit(rng, c.doc);
      const before = c.doc;
      c.doc = o.apply(c.doc);
      if (!c.conn.submit(o)) c.doc = before;
    } else if (r < 0.55) {
      const links = net.live().filter((l) => l.opened && l.toServer.length > 0);
      if (links.length > 0) rng.pick(links).deliverToServer();
    } else if (r < 0.85) {
      const links = net.live().filter((l) => l.opened && l.toClient.length > 0);
      if (links.length > 0) rng.pick(links).deliverToClient();
    } else if (r < 0.92) {
      const pending = net.live().filter((l) => !l.opened);
      if (pending.length > 0) rng.pick(pending).open();
    } else if (r < 0.94) {
      const links = net.live();
      if (links.length > 0) rng.pick(links).cut(1006);
    } else {
      clock.runNext();
    }
    check();
  }
  for (let round = 0; ; round++) {
    assert.ok(round < 2000, "did not converge");
    net.flush();
    check();
    const settled = clients.every(
      (c) => c.conn.status.kind === "connected" && c.conn.state?.kind === "synchronized",
    );
    if (settled) break;
    if (!clock.runNext()) assert.fail("stuck: nothing in flight and no timer");
  }
  for (const c of clients) assert.equal(c.doc, server.text, `${c.name} converged`);
  assert.ok([...server.text].length <= server.limits.maxDocumentChars);
  // (Never the same message into the same refusal: checked as each frame is sent.)
  const refusedOps = server.log.filter((l) => l.startsWith("too_large"));
  // Each client learns the message limit at most a few times.
  assert.ok(server.tooBig.length <= 5 * clients.length, `${server.tooBig.length} frames too big`);
  return { tooBig: server.tooBig.length, refusedTooLarge: refusedOps.length, rejected };
}

test("random runs against small server limits converge, and nothing is refused twice", () => {
  const totals = { tooBig: 0, refusedTooLarge: 0, rejected: 0 };
  for (let seed = 1; seed <= 12; seed++) {
    try {
      const r = simulateLimits(seed);
      totals.tooBig += r.tooBig;
      totals.refusedTooLarge += r.refusedTooLarge;
      totals.rejected += r.rejected;
    } catch (e) {
      assert.fail(`seed ${seed}: ${(e as Error).stack ?? String(e)}`);
    }
  }
  console.log(JSON.stringify(totals));
  assert.ok(totals.tooBig > 0, "no frame was ever too big (the servers that announce nothing)");
  assert.ok(totals.refusedTooLarge > 0, "no op was ever refused as too large");
  assert.ok(totals.rejected > 0, "no change was ever handed back");
});
