/**
 * Rejoining: catch-up after a reconnect, reloads, and rebasing unsent edits.
 *
 * After a reconnect the client sends `join` with its client id and the
 * revision it has applied ({@link joinRevision}). The `joined` answer has
 * either:
 *
 * * `ops`, the committed ops it missed, in order ({@link resumeWithOps}). An
 *   entry whose `client` is our own id is our op in flight, committed before
 *   the connection dropped: it acknowledges it (PROTOCOL.md rule 3). Every
 *   other entry is a remote op. Whatever is still in flight afterwards is
 *   resent with the same `seq` (transformed to the new revision, which keeps
 *   it the same change); the server ignores it if it had it already.
 * * `text`, the full document ({@link resumeWithText}), when the server can no
 *   longer serve our revision, or when we asked for it (`rev: null`, after a
 *   refusal with `unknown_rev` or a protocol error).
 *
 * # What happens to unsent edits on a full text
 *
 * The client diffs the text it knew against the new one (`ot/diff.ts`) and
 * transforms its pending change through that diff, its own change first,
 * exactly as if the diff were one remote op. Inserted text is always kept;
 * deletes and replacements of text that others also changed merge the way
 * concurrent ops do; the diff is line based, so edits in untouched lines land
 * exactly where they were made. The editor receives one op that turns what it
 * shows into the new text plus the rebased edits.
 *
 * One case needs more care: an op in flight when the connection dropped may
 * or may not have been committed, and a full text does not say which
 * (rebasing an op that is already in the text would apply it twice). The
 * client then resends that op unchanged, with its old `rev` and its `seq`
 * ({@link Resyncing}), and lets the server decide: an `ack` (a duplicate,
 * rule 3) means it is in the text, so only the later edits are rebased; an
 * `error` means it was not committed (rule 4), so it is rebased with them.
 * Remote ops that arrive meanwhile are queued and applied afterwards. If the
 * server instead commits the old op now, after the text it sent, the
 * committed form is unknown to the client, which then reloads once more
 * knowing the op is in. This relies on the server checking (`client`, `seq`)
 * for duplicates before it refuses a revision as too old.
 *
 * @module
 */

import { TextOperation } from "../ot/text-operation.js";
import { diffOperation } from "../ot/diff.js";
import { Rope } from "../ot/rope.js";
import {
  applyServer,
  ClientProtocolError,
  freeze,
  receiveCommitted,
  sendIfAny,
  type Buffered,
  type ClientState,
  type CommittedOp,
  type OutgoingOp,
  type Outstanding,
  type Reloading,
  type Resyncing,
  type StateBase,
  type Transition,
} from "./state.js";

/**
 * `joined` with `ops`: catch up on the committed ops in `entries` (revisions
 * `state.rev + 1` up to `rev`), then resend the op still in flight, if any.
 *
 * # Errors
 * Throws {@link ClientProtocolError} if the entries leave a gap, or if the
 * client had asked for the full text.
 */
export function resumeWithOps(
  state: ClientState,
  rev: number,
  entries: readonly CommittedOp[],
  ownClient: string,
): Transition {
  if (state.kind === "reloading" || state.kind === "resyncing") {
    throw new ClientProtocolError("asked for the full text, got a catch-up list");
  }
  entries.forEach((e, i) => {
    if (e.rev !== state.rev + 1 + i) {
      throw new ClientProtocolError(
        `catch-up entry ${i} has revision ${e.rev}, expected ${state.rev + 1 + i}`,
      );
    }
  });
  if (rev !== state.rev + entries.length) {
    throw new ClientProtocolError(
      `catch-up ends at ${state.rev + entries.length}, joined says ${rev}`,
    );
  }
  let current: ClientState = state;
  let apply: TextOperation | undefined;
  for (const entry of entries) {
    const t = receiveCommitted(current, entry, ownClient);
    apply = composeEffects(apply, t.apply);
    current = t.state;
  }
  const out: { state: ClientState; apply?: TextOperation; send?: OutgoingOp } = { state: current };
  if (apply && !apply.isNoop()) out.apply = apply;
  if ("outstanding" in current && current.outstanding) {
    const o = current.outstanding;
    out.send = { rev: current.rev, seq: o.seq, op: o.op };
  }
  return out;
}

/**
 * `joined` with the full `text` at revision `rev`: load it, keeping unsent
 * local edits by rebasing them (see the module doc).
 */
export function resumeWithText(state: ClientState, rev: number, text: string): Transition {
  switch (state.kind) {
    case "synchronized":
      if (rev === state.rev && sameText(state.text, text)) return { state };
      return rebase(state, null, rev, text);
    case "awaitingConfirm":
    case "awaitingWithBuffer":
      if (rev === state.rev && sameText(state.text, text)) return resumeWithOps(state, rev, [], "");
      return enterResync(
        state,
        state.outstanding,
        state.kind === "awaitingWithBuffer" ? state.buffer : null,
        rev,
        text,
      );
    case "resyncing":
      return enterResync(state, state.outstanding, state.buffer, rev, text);
    case "reloading":
      if (state.outstanding) return enterResync(state, state.outstanding, state.buffer, rev, text);
      return rebase(state, state.buffer, rev, text);
  }
}

/**
 * Drops the session: the next join asks for the full text. Used on
 * `unknown_rev` at join time and after a protocol error. Keeps every pending
 * change; an op in flight stays "maybe committed" until the server says.
 */
export function requestReload(state: ClientState): Transition {
  const base = {
    rev: state.rev,
    text: state.text,
    length: state.length,
    nextSeq: state.nextSeq,
    limits: state.limits,
  };
  let next: Reloading;
  switch (state.kind) {
    case "synchronized":
      next = { ...base, kind: "reloading", outstanding: null, buffer: null };
      break;
    case "awaitingConfirm":
      next = { ...base, kind: "reloading", outstanding: state.outstanding, buffer: null };
      break;
    case "awaitingWithBuffer":
    case "resyncing":
    case "reloading":
      next = { ...base, kind: "reloading", outstanding: state.outstanding, buffer: state.buffer };
      break;
  }
  return { state: freeze(next), reload: true };
}

/**
 * The server's verdict on the op resent in {@link Resyncing}: `committedAt` is
 * the revision from its ack, or `null` if it was refused.
 *
 * @internal Called by `serverAck` and `opRefused`.
 */
export function resolveResync(
  state: Resyncing,
  verdict: { committedAt: number | null },
): Transition {
  const { outstanding: o, buffer: b, server, queued } = state;
  let t: Transition;
  if (verdict.committedAt === null) {
    const pending = b
      ? { op: o.op.compose(b.op), edits: o.edits + b.edits }
      : { op: o.op, edits: o.edits };
    t = rebase(state, pending, server.rev, server.text);
  } else if (verdict.committedAt <= server.rev) {
    const afterOurs = state.text.apply(o.op);
    t = rebase(
      { text: afterOurs, nextSeq: state.nextSeq, limits: state.limits },
      b,
      server.rev,
      server.text,
    );
  } else {
    const expected = server.rev + queued.length + 1;
    if (verdict.committedAt !== expected) {
      throw new ClientProtocolError(`ack at revision ${verdict.committedAt}, expected ${expected}`);
    }
    const next: Reloading = {
      rev: verdict.committedAt,
      text: state.text.apply(o.op),
      length: o.op.targetLength,
      nextSeq: state.nextSeq,
      limits: state.limits,
      kind: "reloading",
      outstanding: null,
      buffer: b,
    };
    return { state: freeze(next), reload: true };
  }
  let current = t.state;
  let apply = t.apply;
  for (const q of queued) {
    const r = applyServer(current, q.rev, q.op);
    apply = composeEffects(apply, r.apply);
    current = r.state;
  }
  const out: { state: ClientState; apply?: TextOperation; send?: OutgoingOp } = { state: current };
  if (apply && !apply.isNoop()) out.apply = apply;
  if (t.send) out.send = t.send;
  return out;
}

/** Enters {@link Resyncing}: resend `o` as it was and wait for the verdict. */
function enterResync(
  base: StateBase,
  o: Outstanding,
  buffer: Buffered | null,
  rev: number,
  text: string,
): Transition {
  const next: Resyncing = {
    rev: base.rev,
    text: base.text,
    length: base.length,
    nextSeq: base.nextSeq,
    limits: base.limits,
    kind: "resyncing",
    outstanding: o,
    buffer,
    server: { rev, text },
    queued: [],
  };
  return { state: freeze(next), send: { rev: base.rev, seq: o.seq, op: o.op } };
}

/**
 * Moves the uncommitted `pending` change from `base.text` onto the server's
 * `text` at `rev`, and sends it as a new op (new `seq`: its content changed).
 */
function rebase(
  base: Pick<StateBase, "text" | "nextSeq" | "limits">,
  pending: Buffered | null,
  rev: number,
  text: string,
): Transition {
  const diff = diffOperation(base.text.toString(), text);
  const rope = Rope.from(text);
  const newBase = {
    rev,
    text: rope,
    length: rope.length,
    nextSeq: base.nextSeq,
    limits: base.limits,
  };
  if (!pending) return sendIfAny(newBase, null, diff);
  const [rebased, editorOp] = TextOperation.transform(pending.op, diff);
  return sendIfAny(newBase, { op: rebased, edits: pending.edits }, editorOp);
}

function composeEffects(
  a: TextOperation | undefined,
  b: TextOperation | undefined,
): TextOperation | undefined {
  if (!a) return b;
  if (!b) return a;
  return a.compose(b);
}

/** True if `rope` holds `text` (a rejoin's full text: joining the rope once is fine here). */
function sameText(rope: Rope, text: string): boolean {
  return rope.toString() === text;
}
