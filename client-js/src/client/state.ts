/**
 * The OT client state machine: immutable states and pure transitions.
 *
 * This is ot.js's `client.js` (Synchronized / AwaitingConfirm /
 * AwaitingWithBuffer) in the style of @codemirror/collab: a state is a frozen
 * value, and every transition returns a {@link Transition}, the new state plus
 * the effects the caller must carry out (send an op, apply an op to the
 * editor, reload). Nothing here does I/O or reads a clock.
 *
 * ```text
 *                 applyClient (send)            applyClient
 *  Synchronized ---------------------> AwaitingConfirm ------------> AwaitingWithBuffer
 *       ^                                |      ^                      |        | applyClient:
 *       +-------- serverAck -------------+      +-- serverAck (send) --+        | compose into buffer
 * ```
 *
 * Invariants:
 * * At most one op is in flight (`outstanding`); it is based on `rev`. Later
 *   local edits are composed into `buffer`, which is based on `rev` plus
 *   `outstanding`. An op that was sent is never composed with anything: its
 *   `seq` stays tied to its content (PROTOCOL.md `op.seq`), and it is only
 *   ever transformed (by remote ops), which keeps it the same change.
 * * `seq` is assigned when an op first becomes outstanding and is kept when
 *   it is resent after a reconnect.
 * * `text` is the server's document at `rev`; the editor shows `text` with
 *   `outstanding` and then `buffer` applied ({@link editorText}). The copy of
 *   the server text is what lets a client rebase its unsent edits when the
 *   server answers a rejoin with a full text (`resync.ts`). It is a
 *   {@link Rope}: a remote op or an ack costs what the op touches, never a
 *   copy of the document.
 * * Remote ops are transformed as `transform(pending, remote)`: our pending
 *   op is the first argument, so at equal positions our insert comes first,
 *   exactly as the server orders them (PROTOCOL.md).
 *
 * * An op is sent only if it fits the state's `limits` (the server's, see
 *   `ot/split.ts`). When a change becomes the op in flight and is too big,
 *   only a prefix that fits is; the rest stays in the buffer, where later
 *   edits compose onto it, and goes (split again if need be) once the prefix
 *   is acked. The prefix's `edits` is 0: the edits count until their last
 *   part is acked.
 *
 * Two more states handle rejoining, see `resync.ts`: `reloading` (the session
 * is being dropped, the next join asks for the full text) and `resyncing` (a
 * full text came back while an op was in flight, and we wait for the server
 * to tell whether that op was committed).
 *
 * @module
 */

import { OperationError, TextOperation } from "../ot/text-operation.js";
import { transformSelection, type Selection } from "../ot/selection.js";
import { splitOperation, type OpLimits } from "../ot/split.js";
import { Rope } from "../ot/rope.js";
// resync.ts and this module call each other's functions (never at load time).
import { resolveResync } from "./resync.js";

/** The op in flight: sent (or to be sent), not yet acknowledged. */
export interface Outstanding {
  /** The client's sequence number for this op, fixed for its lifetime. */
  readonly seq: number;
  /** The op, based on the state's `rev` (transformed as remote ops arrive). */
  readonly op: TextOperation;
  /** How many local edits were composed into it (for "N edits waiting"). */
  readonly edits: number;
}

/** Local edits made while an op was in flight, composed into one op. */
export interface Buffered {
  /** Based on the state's `rev` plus the outstanding op. */
  readonly op: TextOperation;
  /** How many local edits were composed into it. */
  readonly edits: number;
}

/** A committed op received from the server ({@link Resyncing} queues them). */
export interface CommittedOp {
  readonly rev: number;
  readonly client: string;
  readonly op: TextOperation;
}

/** Fields every state has. */
export interface StateBase {
  /** The last server revision this client has applied. */
  readonly rev: number;
  /** The server's document at `rev` (joined only when needed: `text.toString()`). */
  readonly text: Rope;
  /** `text`'s length in code points. */
  readonly length: number;
  /** The `seq` the next new op will get. */
  readonly nextSeq: number;
  /** How big an op in flight may be ({@link NO_LIMITS} unless told). */
  readonly limits: OpLimits;
}

/** Limits that let every op through as it is. */
export const NO_LIMITS: OpLimits = Object.freeze({
  maxOpBytes: Number.MAX_SAFE_INTEGER,
  maxInsertChars: Number.MAX_SAFE_INTEGER,
  maxComponents: Number.MAX_SAFE_INTEGER,
});

/** No local change is waiting: the editor shows the server's `text`. */
export interface Synchronized extends StateBase {
  readonly kind: "synchronized";
}

/** One op is in flight. */
export interface AwaitingConfirm extends StateBase {
  readonly kind: "awaitingConfirm";
  readonly outstanding: Outstanding;
}

/** One op is in flight and later edits wait in the buffer. */
export interface AwaitingWithBuffer extends StateBase {
  readonly kind: "awaitingWithBuffer";
  readonly outstanding: Outstanding;
  readonly buffer: Buffered;
}

/**
 * The session must be dropped and the document loaded again (join with
 * `rev: null`). `rev`/`text` are the base the pending changes apply to.
 * `outstanding`, if any, was sent and may or may not have been committed;
 * `buffer` holds changes known not to be committed.
 */
export interface Reloading extends StateBase {
  readonly kind: "reloading";
  readonly outstanding: Outstanding | null;
  readonly buffer: Buffered | null;
}

/**
 * The server sent its full text (`server`) while `outstanding` was in flight.
 * The op was resent as it was (old `rev`, same `seq`), and the client waits
 * for the answer: an `ack` means it was committed, an `error` that it was
 * not. Remote ops that arrive meanwhile are queued; local edits go to
 * `buffer`. `rev`/`text` are still the old base of `outstanding`.
 */
export interface Resyncing extends StateBase {
  readonly kind: "resyncing";
  readonly outstanding: Outstanding;
  readonly buffer: Buffered | null;
  readonly server: { readonly rev: number; readonly text: string };
  readonly queued: readonly CommittedOp[];
}

/** Every state of the client. */
export type ClientState =
  Synchronized | AwaitingConfirm | AwaitingWithBuffer | Reloading | Resyncing;

/** An `op` message to send: `{"type":"op","rev":…,"seq":…,"op":[…]}`. */
export interface OutgoingOp {
  readonly rev: number;
  readonly seq: number;
  readonly op: TextOperation;
}

/** A new state and the effects the caller must carry out, in this order. */
export interface Transition {
  readonly state: ClientState;
  /** Apply this op to the editor (it is based on the editor's current text). */
  readonly apply?: TextOperation;
  /** Send this op to the server (if connected; a resume resends it anyway). */
  readonly send?: OutgoingOp;
  /** Drop the session and join again with `rev: null` (state is {@link Reloading}). */
  readonly reload?: true;
}

/**
 * The server broke the protocol's ordering rules (a gap in revisions, an ack
 * for an op never sent, ops that do not fit). The caller should reload.
 */
export class ClientProtocolError extends Error {
  override readonly name = "ClientProtocolError";
}

/** The state after a first `joined` with the full `text` at revision `rev`. */
export function synchronized(
  rev: number,
  text: string | Rope,
  nextSeq = 1,
  limits: OpLimits = NO_LIMITS,
): Synchronized {
  const rope = typeof text === "string" ? Rope.from(text) : text;
  return freeze({
    kind: "synchronized",
    rev,
    text: rope,
    length: rope.length,
    nextSeq,
    limits,
  });
}

/**
 * The same state under new op limits (from `joined.limits`, or lowered after
 * a refusal). An op already in flight is kept as it is: only changes that
 * become the op in flight from now on are split by them.
 */
export function withLimits(state: ClientState, limits: OpLimits): Transition {
  return { state: freeze({ ...state, limits }) };
}

/** Length in code points of the text the editor shows. */
export function editorLength(state: ClientState): number {
  return pendingTop(state)?.targetLength ?? state.length;
}

/** The text the editor shows: the server text with the pending ops applied. */
export function editorText(state: ClientState): string {
  let text = state.text;
  if ("outstanding" in state && state.outstanding) text = text.apply(state.outstanding.op);
  if ("buffer" in state && state.buffer) text = text.apply(state.buffer.op);
  return text.toString();
}

/** All local changes not yet acknowledged, as one op on `state.text`, or null. */
export function pendingOperation(state: ClientState): TextOperation | null {
  const o = "outstanding" in state ? state.outstanding : null;
  const b = "buffer" in state ? state.buffer : null;
  if (o && b) return o.op.compose(b.op);
  return o?.op ?? b?.op ?? null;
}

/** How many local edits are not yet acknowledged by the server. */
export function pendingEdits(state: ClientState): number {
  const o = "outstanding" in state ? (state.outstanding?.edits ?? 0) : 0;
  const b = "buffer" in state ? (state.buffer?.edits ?? 0) : 0;
  return o + b;
}

/** The revision to put in the next `join`: `null` asks for the full text. */
export function joinRevision(state: ClientState): number | null {
  return state.kind === "reloading" || state.kind === "resyncing" ? null : state.rev;
}

/**
 * A local edit (ot.js `applyClient`). `op` must be based on the editor's
 * current text ({@link editorLength}). No-op edits change nothing.
 *
 * # Errors
 * Throws `OperationError` if `op` does not fit the editor's text.
 */
export function applyClient(state: ClientState, op: TextOperation): Transition {
  const expected = editorLength(state);
  if (op.baseLength !== expected) {
    throw new OperationError(
      `local op spans ${op.baseLength} characters, the editor has ${expected}`,
    );
  }
  if (op.isNoop()) return { state };
  switch (state.kind) {
    case "synchronized":
      return sendIfAny(state, { op, edits: 1 }, undefined);
    case "awaitingConfirm":
      return {
        state: freeze({ ...state, kind: "awaitingWithBuffer", buffer: { op, edits: 1 } } as const),
      };
    case "awaitingWithBuffer":
    case "reloading":
    case "resyncing":
      return { state: freeze({ ...state, buffer: addToBuffer(state.buffer, op) }) };
  }
}

function addToBuffer(buffer: Buffered | null, op: TextOperation): Buffered {
  return buffer ? { op: buffer.op.compose(op), edits: buffer.edits + 1 } : { op, edits: 1 };
}

/**
 * Another client's op, committed as revision `rev` (ot.js `applyServer`).
 * Our pending ops are transformed over it, and the returned `apply` is the
 * op transformed over them, ready for the editor.
 *
 * # Errors
 * Throws {@link ClientProtocolError} if `rev` is not the next revision or the
 * op does not fit the server text.
 */
export function applyServer(state: ClientState, rev: number, op: TextOperation): Transition {
  if (state.kind === "reloading") return { state }; // the session is being dropped
  if (state.kind === "resyncing") {
    const expected = state.server.rev + state.queued.length + 1;
    if (rev !== expected)
      throw new ClientProtocolError(`expected revision ${expected}, got ${rev}`);
    // The author does not matter once queued: it is not us (our op is resolved by ack or error).
    return { state: freeze({ ...state, queued: [...state.queued, { rev, client: "", op }] }) };
  }
  if (rev !== state.rev + 1) {
    throw new ClientProtocolError(`expected revision ${state.rev + 1}, got ${rev}`);
  }
  if (op.baseLength !== state.length) {
    throw new ClientProtocolError(
      `remote op spans ${op.baseLength}, the document has ${state.length}`,
    );
  }
  const text = state.text.apply(op);
  const base = { rev, text, length: op.targetLength };
  switch (state.kind) {
    case "synchronized":
      return { state: freeze({ ...state, ...base }), apply: op };
    case "awaitingConfirm": {
      const [o, op1] = TextOperation.transform(state.outstanding.op, op);
      return {
        state: freeze({ ...state, ...base, outstanding: { ...state.outstanding, op: o } }),
        apply: op1,
      };
    }
    case "awaitingWithBuffer": {
      const [o, op1] = TextOperation.transform(state.outstanding.op, op);
      const [b, op2] = TextOperation.transform(state.buffer.op, op1);
      return {
        state: freeze({
          ...state,
          ...base,
          outstanding: { ...state.outstanding, op: o },
          buffer: { ...state.buffer, op: b },
        }),
        apply: op2,
      };
    }
  }
}

/**
 * The server acknowledged our op `seq` as revision `rev` (ot.js `serverAck`).
 * A duplicate ack for an op already confirmed (possible after a resend,
 * PROTOCOL.md rule 3) changes nothing.
 *
 * # Errors
 * Throws {@link ClientProtocolError} for an ack of an op never sent, or at a
 * revision that leaves a gap.
 */
export function serverAck(state: ClientState, seq: number, rev: number): Transition {
  if (state.kind === "reloading") return { state };
  if (state.kind === "synchronized" || seq !== state.outstanding.seq) {
    if (seq < state.nextSeq && (state.kind === "synchronized" || seq < state.outstanding.seq)) {
      return { state }; // a duplicate ack of an op confirmed before
    }
    throw new ClientProtocolError(`ack for op ${seq}, which is not in flight`);
  }
  if (state.kind === "resyncing") return resolveResync(state, { committedAt: rev });
  if (rev !== state.rev + 1) {
    throw new ClientProtocolError(`ack of op ${seq} as revision ${rev}, expected ${state.rev + 1}`);
  }
  const committed = state.outstanding.op;
  const base = {
    rev,
    text: state.text.apply(committed),
    length: committed.targetLength,
    nextSeq: state.nextSeq,
    limits: state.limits,
  };
  // The buffer (split if it is too big) becomes the op in flight.
  return sendIfAny(base, state.kind === "awaitingWithBuffer" ? state.buffer : null, undefined);
}

/**
 * A committed op from the ordered stream, whoever made it: an `op` message or
 * an entry of `joined.ops`. One whose `client` is ours is the ack of our op in
 * flight (PROTOCOL.md rule 3); any other is a remote op.
 */
export function receiveCommitted(
  state: ClientState,
  entry: CommittedOp,
  ownClient: string,
): Transition {
  if (entry.client === ownClient) {
    if ("outstanding" in state && state.outstanding)
      return serverAck(state, state.outstanding.seq, entry.rev);
    if (entry.rev <= state.rev || state.kind === "reloading") return { state }; // seen before
    throw new ClientProtocolError(`own op at revision ${entry.rev} while none is in flight`);
  }
  return applyServer(state, entry.rev, entry.op);
}

/** Error codes after which resending the same op later may succeed. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set(["rate_limited", "unavailable"]);

/**
 * The server refused our op `seq` with `code` (PROTOCOL.md rule 4: nothing
 * changed on the server). What happens to the op depends on the code:
 *
 * * `rate_limited`, `unavailable`: nothing here; the op stays in flight and
 *   the caller resends it later (by reconnecting: a resume resends it).
 * * `unknown_rev`: the op is kept, as an uncommitted change, and the client
 *   reloads ({@link Reloading}); after the reload it is rebased on the new text.
 * * anything else (`bad_op`, `too_large`, `forbidden`, …; the connection
 *   handles `forbidden` with {@link dropPending} instead): the op can never
 *   be committed, so it is dropped: `apply` reverts it in the editor, and the
 *   buffer, transformed past that revert, becomes the next op.
 *
 * An error for a `seq` not in flight is ignored.
 */
export function opRefused(state: ClientState, seq: number, code: string): Transition {
  if (!("outstanding" in state) || !state.outstanding || seq !== state.outstanding.seq)
    return { state };
  if (state.kind === "reloading") return { state };
  if (state.kind === "resyncing") return resolveResync(state, { committedAt: null });
  if (TRANSIENT_CODES.has(code)) return { state };
  const buffer = state.kind === "awaitingWithBuffer" ? state.buffer : null;
  if (code === "unknown_rev") {
    const { outstanding, ...rest } = state;
    const pending = buffer
      ? { op: outstanding.op.compose(buffer.op), edits: outstanding.edits + buffer.edits }
      : { op: outstanding.op, edits: outstanding.edits };
    return {
      state: freeze({ ...rest, kind: "reloading", outstanding: null, buffer: pending } as const),
      reload: true,
    };
  }
  // Drop the refused op: revert it in the editor, keep later edits.
  const revert = state.text.invert(state.outstanding.op);
  if (!buffer) return sendIfAny(state, null, revert);
  const [b, revert1] = TextOperation.transform(buffer.op, revert);
  return sendIfAny(state, { op: b, edits: buffer.edits }, revert1);
}

/** What {@link dropPending} took out of the editor. */
export interface Dropped {
  /** The new state (Synchronized, or the state unchanged when nothing was dropped) and the revert to apply. */
  readonly transition: Transition;
  /** The dropped changes as one op on the server text they were based on, or null if none. */
  readonly op: TextOperation | null;
  /** How many local edits it held. */
  readonly edits: number;
}

/**
 * Drops every local change not yet committed, for a client that may no
 * longer write (joined as a reader, or an op refused with `forbidden`):
 * `apply` takes them out of the editor, which then shows the server's text,
 * and nothing is sent. In {@link Resyncing} the op in flight is taken as not
 * committed; if it was, the server's text already holds it, so the editor
 * still ends on the server's text. In {@link Reloading} nothing is known of
 * the server's text yet: the state is returned unchanged (drop again once
 * joined).
 */
export function dropPending(state: ClientState): Dropped {
  let current = state;
  let apply: TextOperation | undefined;
  if (current.kind === "resyncing") {
    const t = resolveResync(current, { committedAt: null });
    current = t.state;
    apply = t.apply;
  }
  if (current.kind !== "awaitingConfirm" && current.kind !== "awaitingWithBuffer") {
    if (current === state) return { transition: { state }, op: null, edits: 0 };
    return {
      transition: apply && !apply.isNoop() ? { state: current, apply } : { state: current },
      op: null,
      edits: 0,
    };
  }
  const pending = pendingOperation(current) as TextOperation;
  const edits = pendingEdits(current);
  const revert = current.text.invert(pending);
  apply = apply ? apply.compose(revert) : revert;
  const next = freeze({
    rev: current.rev,
    text: current.text,
    length: current.length,
    nextSeq: current.nextSeq,
    limits: current.limits,
    kind: "synchronized",
  } as const);
  return {
    transition: apply.isNoop() ? { state: next } : { state: next, apply },
    op: pending,
    edits,
  };
}

/**
 * The op in flight `seq` is known not to be committed, and must not be sent
 * again as it is: its frame was over the server's message limit (close
 * 1009, so the server never read it), or it was refused as too big for the
 * op limits. It is joined with the buffer and split anew under the state's
 * `limits` (lower them first, {@link withLimits}), under a new `seq`: a
 * `seq` is never reused for other content. Nothing is lost and nothing
 * changes in the editor.
 *
 * An error for a `seq` not in flight is ignored.
 */
export function retryInFlight(state: ClientState, seq: number): Transition {
  if (!("outstanding" in state) || !state.outstanding || seq !== state.outstanding.seq)
    return { state };
  const o = state.outstanding;
  const pending = (b: Buffered | null): Buffered =>
    b ? { op: o.op.compose(b.op), edits: o.edits + b.edits } : { op: o.op, edits: o.edits };
  switch (state.kind) {
    case "resyncing":
      return resolveResync(state, { committedAt: null });
    case "reloading":
      return { state: freeze({ ...state, outstanding: null, buffer: pending(state.buffer) }) };
    case "awaitingConfirm":
      return sendIfAny(state, pending(null), undefined);
    case "awaitingWithBuffer":
      return sendIfAny(state, pending(state.buffer), undefined);
  }
}

/**
 * Transforms a peer's selection, valid at the server revision this client has
 * reached (PROTOCOL.md `presence`), into the editor's text by passing it
 * through our pending ops. Our ops are not the peer's, so an insert at the
 * peer's cursor leaves it before the insert. `null` while reloading or
 * resyncing, when there is no reliable mapping.
 */
export function transformRemoteSelection(
  state: ClientState,
  selection: Selection,
): Selection | null {
  switch (state.kind) {
    case "synchronized":
      return selection;
    case "awaitingConfirm":
      return transformSelection(selection, state.outstanding.op, false);
    case "awaitingWithBuffer":
      return transformSelection(
        transformSelection(selection, state.outstanding.op, false),
        state.buffer.op,
        false,
      );
    default:
      return null;
  }
}

// ---- helpers shared with resync.ts ----------------------------------------

/** The newest pending op (its target is the editor text), or undefined. */
function pendingTop(state: ClientState): TextOperation | undefined {
  if ("buffer" in state && state.buffer) return state.buffer.op;
  if ("outstanding" in state && state.outstanding) return state.outstanding.op;
  return undefined;
}

/**
 * Builds the state for a base (`rev`, `text`, …) plus the uncommitted
 * `pending` change: Synchronized if there is none, else AwaitingConfirm with
 * `pending` sent as a new op, or, if `pending` is over `base.limits`,
 * AwaitingWithBuffer with a prefix of it sent and the rest in the buffer.
 *
 * @internal
 */
export function sendIfAny(
  base: Pick<StateBase, "rev" | "text" | "length" | "nextSeq" | "limits">,
  pending: Buffered | null,
  apply: TextOperation | undefined,
): Transition {
  const common = {
    rev: base.rev,
    text: base.text,
    length: base.length,
    nextSeq: base.nextSeq,
    limits: base.limits,
  };
  const effects = apply && !apply.isNoop() ? { apply } : {};
  if (!pending || pending.op.isNoop()) {
    return { state: freeze({ ...common, kind: "synchronized" } as const), ...effects };
  }
  const seq = base.nextSeq;
  const split = splitOperation(pending.op, base.limits);
  const send = { rev: base.rev, seq, op: split ? split[0] : pending.op };
  const next = { ...common, nextSeq: seq + 1 };
  if (!split) {
    const outstanding = { seq, op: pending.op, edits: pending.edits };
    return {
      state: freeze({ ...next, kind: "awaitingConfirm", outstanding } as const),
      ...effects,
      send,
    };
  }
  const outstanding = { seq, op: split[0], edits: 0 };
  const buffer = { op: split[1], edits: pending.edits };
  return {
    state: freeze({ ...next, kind: "awaitingWithBuffer", outstanding, buffer } as const),
    ...effects,
    send,
  };
}

/** Freezes a state object (shallowly: its parts are immutable already). @internal */
export function freeze<T extends ClientState>(state: T): T {
  return Object.freeze(state);
}
