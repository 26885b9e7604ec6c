/**
 * tandem-client: the browser client library of Tandem.
 *
 * Layout (each module has one job; only `connection` does I/O):
 *
 * * `ot/text-operation`: {@link TextOperation}, the ot.js operation counted in
 *   code points: apply, compose, transform, invert, JSON.
 * * `ot/selection`: cursors and how operations move them.
 * * `ot/diff`: an operation from one text to another (for rebasing).
 * * `ot/split`: cutting an op that is over the server's limits into parts.
 * * `client/state`: the OT client state machine (Synchronized /
 *   AwaitingConfirm / AwaitingWithBuffer), immutable, pure transitions.
 * * `client/resync`: resuming after a reconnect, reloading, rebasing.
 * * `client/undo`: undo/redo of one's own edits only.
 * * `protocol`: the wire messages of PROTOCOL.md, typed and validated.
 * * `connection`: join, resume, backoff, close codes, presence; over an
 *   injected WebSocket factory.
 * * `transport`: the socket and clock interfaces, the browser WebSocket
 *   adapter, the backoff.
 * * `unicode`: UTF-16 <-> code point offsets at the editor boundary.
 *
 * @module
 */

export * from "./unicode.js";
export * from "./ot/text-operation.js";
export * from "./ot/selection.js";
export * from "./ot/diff.js";
export * from "./ot/split.js";
export { Rope, MAX_CHUNK } from "./ot/rope.js";
export {
  applyClient,
  applyServer,
  serverAck,
  receiveCommitted,
  opRefused,
  retryInFlight,
  dropPending,
  withLimits,
  NO_LIMITS,
  synchronized,
  editorLength,
  editorText,
  pendingOperation,
  pendingEdits,
  joinRevision,
  transformRemoteSelection,
  ClientProtocolError,
  type ClientState,
  type StateBase,
  type Synchronized,
  type AwaitingConfirm,
  type AwaitingWithBuffer,
  type Reloading,
  type Resyncing,
  type Outstanding,
  type Buffered,
  type CommittedOp,
  type OutgoingOp,
  type Transition,
  type Dropped,
} from "./client/state.js";
export { resumeWithOps, resumeWithText, requestReload } from "./client/resync.js";
export * from "./client/offline.js";
export * from "./client/undo.js";
export * from "./protocol.js";
export * from "./transport.js";
export * from "./connection.js";
export * from "./peers.js";
