/** The OT client state machine: pure transitions and their effects. */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ClientProtocolError,
  TextOperation,
  applyClient,
  applyServer,
  editorText,
  joinRevision,
  opRefused,
  pendingEdits,
  receiveCommitted,
  requestReload,
  resumeWithOps,
  resumeWithText,
  serverAck,
  synchronized,
  transformRemoteSelection,
  cursor,
  type ClientState,
  type OpComponent,
  type Transition,
} from "../src/index.js";

const op = (json: OpComponent[]) => TextOperation.fromJSON(json);

/** Reads a state without letting `assert.equal` narrow `h.state` for the rest of a test. */
const look = (s: ClientState): { kind: string; rev: number; text: string } => ({
  kind: s.kind,
  rev: s.rev,
  text: s.text.toString(),
});

/** Follows a client's editor through transitions, checking the machine's view of it. */
class Harness {
  editor: string;
  state: ClientState;
  sent: { rev: number; seq: number; op: OpComponent[] }[] = [];

  constructor(rev: number, text: string) {
    this.state = synchronized(rev, text);
    this.editor = text;
  }

  /** A local edit, applied to the editor first as an editor does. */
  type(json: OpComponent[]): Transition {
    const o = op(json);
    this.editor = o.apply(this.editor);
    return this.run(applyClient(this.state, o));
  }

  run(t: Transition): Transition {
    this.state = t.state;
    if (t.apply) this.editor = t.apply.apply(this.editor);
    if (t.send) this.sent.push({ rev: t.send.rev, seq: t.send.seq, op: t.send.op.toJSON() });
    assert.equal(
      editorText(this.state),
      this.editor,
      "the machine's editor text matches the editor",
    );
    return t;
  }
}

test("synchronized -> awaitingConfirm sends the op with seq 1", () => {
  const h = new Harness(4, "abc");
  const t = h.type([3, "d"]);
  assert.equal(look(h.state).kind, "awaitingConfirm");
  assert.deepEqual(h.sent, [{ rev: 4, seq: 1, op: [3, "d"] }]);
  assert.equal(t.apply, undefined);
  assert.equal(pendingEdits(h.state), 1);
});

test("later edits are buffered and composed; the sent op is never touched", () => {
  const h = new Harness(0, "");
  h.type(["a"]);
  h.type([1, "b"]);
  assert.equal(look(h.state).kind, "awaitingWithBuffer");
  h.type([2, "c"]);
  assert.equal(h.sent.length, 1);
  assert.ok(h.state.kind === "awaitingWithBuffer");
  assert.deepEqual(h.state.outstanding.op.toJSON(), ["a"]);
  assert.deepEqual(h.state.buffer.op.toJSON(), [1, "bc"]);
  assert.equal(pendingEdits(h.state), 3);
});

test("ack sends the buffer as the next op, based on the acked revision", () => {
  const h = new Harness(0, "");
  h.type(["a"]);
  h.type([1, "b"]);
  h.run(serverAck(h.state, 1, 1));
  assert.equal(look(h.state).kind, "awaitingConfirm");
  assert.deepEqual(h.sent[1], { rev: 1, seq: 2, op: [1, "b"] });
  assert.equal(look(h.state).text, "a");
  h.run(serverAck(h.state, 2, 2));
  assert.equal(look(h.state).kind, "synchronized");
  assert.equal(look(h.state).text, "ab");
  assert.equal(pendingEdits(h.state), 0);
});

test("remote op while awaiting with buffer: pending ops go first at the same position", () => {
  const h = new Harness(0, "xy");
  h.type([1, "A", 1]);
  h.type([2, "B", 1]);
  const t = h.run(applyServer(h.state, 1, op([1, "R", 1])));
  assert.equal(h.editor, "xABRy");
  assert.deepEqual(t.apply?.toJSON(), [3, "R", 1]);
  assert.equal(look(h.state).rev, 1);
  assert.equal(look(h.state).text, "xRy");
  // The server, which had R first, transforms our ops the same way.
  h.run(serverAck(h.state, 1, 2));
  assert.deepEqual(h.sent[1], { rev: 2, seq: 2, op: [2, "B", 2] });
});

test("ordering errors are protocol errors", () => {
  const h = new Harness(5, "abc");
  assert.throws(() => applyServer(h.state, 7, op([3])), ClientProtocolError);
  assert.throws(() => applyServer(h.state, 6, op([4])), ClientProtocolError);
  h.type(["x", 3]);
  assert.throws(() => serverAck(h.state, 2, 6), ClientProtocolError, "never sent");
  assert.throws(() => serverAck(h.state, 1, 9), ClientProtocolError, "gap");
});

test("a duplicate ack of an op confirmed before changes nothing", () => {
  const h = new Harness(0, "");
  h.type(["a"]);
  h.run(serverAck(h.state, 1, 1));
  const before = h.state;
  assert.equal(serverAck(h.state, 1, 1).state, before);
  h.type([1, "b"]);
  assert.equal(serverAck(h.state, 1, 1).state, h.state);
});

test("our own op in the stream is the ack of the op in flight", () => {
  const h = new Harness(0, "");
  h.type(["a"]);
  h.run(receiveCommitted(h.state, { rev: 1, client: "me", op: op(["a"]) }, "me"));
  assert.equal(look(h.state).kind, "synchronized");
  assert.equal(look(h.state).rev, 1);
});

test("resume with ops: our committed op acks, others transform, the buffer is sent at the end", () => {
  const h = new Harness(0, "ab");
  h.type([1, "X", 1]);
  h.type([3, "Y"]);
  const t = h.run(
    resumeWithOps(
      h.state,
      3,
      [
        { rev: 1, client: "other", op: op(["O", 2]) },
        { rev: 2, client: "me", op: op([2, "X", 1]) },
        { rev: 3, client: "other", op: op([4, "Z"]) },
      ],
      "me",
    ),
  );
  assert.equal(look(h.state).kind, "awaitingConfirm");
  assert.equal(look(h.state).text, "OaXbZ");
  assert.equal(h.editor, "OaXbYZ");
  assert.deepEqual(t.send && { rev: t.send.rev, seq: t.send.seq, op: t.send.op.toJSON() }, {
    rev: 3,
    seq: 2,
    op: [4, "Y", 1],
  });
});

test("resume with ops: an op in flight that was not committed is resent with the same seq", () => {
  const h = new Harness(0, "ab");
  h.type([2, "!"]);
  const t = h.run(resumeWithOps(h.state, 1, [{ rev: 1, client: "other", op: op(["<", 2]) }], "me"));
  assert.equal(t.send?.seq, 1);
  assert.equal(t.send?.rev, 1);
  assert.deepEqual(t.send?.op.toJSON(), [3, "!"]);
  assert.throws(() => resumeWithOps(h.state, 5, [], "me"), ClientProtocolError, "gap");
});

test("resume with text while synchronized applies the difference", () => {
  const h = new Harness(1, "one\ntwo\n");
  h.run(resumeWithText(h.state, 9, "one\n2\ntwo\n"));
  assert.equal(h.editor, "one\n2\ntwo\n");
  assert.equal(look(h.state).kind, "synchronized");
  assert.equal(look(h.state).rev, 9);
});

test("resume with text while an op is in flight: resend it as it was, then ack -> only the buffer is rebased", () => {
  const h = new Harness(2, "a\nb\n");
  h.type([2, "X", 2]); // in flight (seq 1), maybe committed
  h.type([5, "Y"]); // buffered
  // The server has our X and someone's Z, and cannot serve revision 2 any more.
  const t = h.run(resumeWithText(h.state, 10, "Z\na\nXb\n"));
  assert.equal(look(h.state).kind, "resyncing");
  assert.equal(joinRevision(h.state), null);
  assert.deepEqual(t.send && [t.send.rev, t.send.seq], [2, 1]);
  assert.equal(h.editor, "a\nXb\nY", "nothing applied until the verdict");
  // A remote op arrives before the verdict: queued.
  h.run(applyServer(h.state, 11, op([7, "W"])));
  // The server says: a duplicate, committed at 7 (before the text it sent).
  const v = h.run(serverAck(h.state, 1, 7));
  assert.equal(h.editor, "Z\na\nXb\nYW");
  assert.equal(look(h.state).kind, "awaitingConfirm");
  assert.equal(look(h.state).rev, 11);
  assert.deepEqual(v.send && [v.send.rev, v.send.seq, v.send.op.toJSON()], [10, 2, [7, "Y"]]);
});

test("resyncing: a refusal means not committed -> everything is rebased", () => {
  const h = new Harness(2, "a\nb\n");
  h.type([2, "X", 2]);
  h.run(resumeWithText(h.state, 10, "Z\na\nb\n"));
  const v = h.run(opRefused(h.state, 1, "unknown_rev"));
  assert.equal(h.editor, "Z\na\nXb\n");
  assert.deepEqual(v.send && [v.send.rev, v.send.seq, v.send.op.toJSON()], [10, 2, [4, "X", 2]]);
});

test("resyncing: committed after the text we got -> reload knowing it is in", () => {
  const h = new Harness(2, "ab");
  h.type([1, "X", 1]);
  h.type([3, "Y"]);
  h.run(resumeWithText(h.state, 10, "Qab"));
  const v = h.run(serverAck(h.state, 1, 11));
  assert.equal(v.reload, true);
  assert.ok(h.state.kind === "reloading");
  assert.equal(h.state.outstanding, null);
  assert.equal(look(h.state).text, "aXb");
  const w = h.run(resumeWithText(h.state, 12, "QaXb"));
  assert.equal(h.editor, "QaXbY");
  assert.deepEqual(w.send?.op.toJSON(), [4, "Y"]);
});

test("unknown_rev refusal: reload, then rebase the refused op onto the new text", () => {
  const h = new Harness(3, "hello");
  h.type([5, " world"]);
  h.type([11, "!"]);
  const t = h.run(opRefused(h.state, 1, "unknown_rev"));
  assert.equal(t.reload, true);
  assert.equal(look(h.state).kind, "reloading");
  assert.equal(joinRevision(h.state), null);
  assert.equal(pendingEdits(h.state), 2);
  h.type([12, "?"]); // typing goes on while reloading
  const r = h.run(resumeWithText(h.state, 20, "well, hello"));
  assert.equal(h.editor, "well, hello world!?");
  assert.deepEqual(r.send && [r.send.rev, r.send.seq, r.send.op.toJSON()], [
    20,
    2,
    [11, " world!?"],
  ]);
});

test("a refused op that can never apply is reverted; later edits survive", () => {
  const h = new Harness(0, "abc");
  h.type([3, "HUGE"]);
  h.type(["<", 7]);
  const t = h.run(opRefused(h.state, 1, "too_large"));
  assert.equal(h.editor, "<abc");
  assert.deepEqual(t.send && [t.send.rev, t.send.seq, t.send.op.toJSON()], [0, 2, ["<", 3]]);
  const h2 = new Harness(0, "abc");
  h2.type([3, "x"]);
  h2.run(opRefused(h2.state, 1, "forbidden"));
  assert.equal(h2.editor, "abc");
  assert.equal(look(h2.state).kind, "synchronized");
});

test("transient refusals keep the op in flight; unknown seqs are ignored", () => {
  const h = new Harness(0, "");
  h.type(["a"]);
  const s = h.state;
  assert.equal(opRefused(s, 1, "rate_limited").state, s);
  assert.equal(opRefused(s, 1, "unavailable").state, s);
  assert.equal(opRefused(s, 7, "bad_op").state, s);
});

test("requestReload keeps an op in flight as maybe-committed", () => {
  const h = new Harness(0, "ab");
  h.type([2, "c"]);
  h.run(requestReload(h.state));
  assert.ok(h.state.kind === "reloading");
  assert.equal(h.state.outstanding?.seq, 1);
  const t = h.run(resumeWithText(h.state, 1, "abc"));
  assert.equal(look(h.state).kind, "resyncing");
  assert.equal(t.send?.seq, 1);
  h.run(serverAck(h.state, 1, 1));
  assert.equal(h.editor, "abc");
  assert.equal(look(h.state).kind, "synchronized");
});

test("a peer's cursor is moved through our pending ops, staying before our insert at it", () => {
  const h = new Harness(0, "abcd");
  h.type([2, "XY", 2]);
  assert.deepEqual(transformRemoteSelection(h.state, cursor(2)), cursor(2));
  assert.deepEqual(transformRemoteSelection(h.state, cursor(3)), cursor(5));
  h.type(["_", 6]);
  assert.deepEqual(transformRemoteSelection(h.state, cursor(3)), cursor(6));
  h.run(requestReload(h.state));
  assert.equal(transformRemoteSelection(h.state, cursor(0)), null);
});

test("local ops must fit the editor text", () => {
  const h = new Harness(0, "abc");
  assert.throws(() => applyClient(h.state, op([2])), { name: "OperationError" });
  h.type([3, "😀"]);
  assert.throws(
    () => applyClient(h.state, op([5])),
    { name: "OperationError" },
    "emoji is one character",
  );
  h.type([4, "x"]);
});
