/**
 * The connection: drives the OT state machine over a reconnecting WebSocket.
 *
 * This is the only module that does I/O, and it does it through injected
 * parts, so tests run it against an in-memory server with a fake clock:
 * a {@link SocketFactory} (default: the browser's `WebSocket`), a
 * {@link Clock} and a random source (for backoff jitter). The editor is a
 * {@link DocumentSink}: the connection calls `load` once with the text of the
 * first `joined`, and `apply` for every change that does not come from the
 * user (remote ops, rebases, reverts of refused ops). The editor calls
 * {@link Connection.submit} with each of the user's own changes.
 *
 * Lifecycle: `join` on every (re)connect (with our id and revision once we
 * have them), resume from `joined` (`client/resync.ts`), resend the op in
 * flight. A dropped connection is retried with exponential backoff and
 * jitter, 0.5 s doubling up to 8 s. Close codes (PROTOCOL.md rule 6): 4400,
 * 4401, 4403 and 4404 are fatal (status `closed`, no retry: reconnecting
 * would fail the same way); every other close, among them 4409 (the document
 * moved), 1001 (server shutting down), 1013 (try again later), 4408 (idle) and
 * 4429 (rate limited), is retried. An `unknown_rev` refusal reloads the
 * document (join with `rev: null`) and rebases unsent edits onto it.
 *
 * # Permission
 *
 * `joined.permission` says what we may do. A reader sends no ops:
 * {@link Connection.submit} turns every change down (a `rejected` event, the
 * caller undoes it), and edits still pending when a session joins as a
 * reader (the right was taken away while we were disconnected) are dropped
 * and undone, never sent. An op refused with `forbidden` (the right was
 * lowered to read while connected) makes us a reader: it and every edit
 * after it are dropped and undone in one go, and the `permission` event
 * says so; nothing is resent. A session whose right is revoked is closed by
 * the server with 4403, and one without valid credentials with 4401: both
 * are final.
 *
 * # Limits: big edits are split, never lost
 *
 * `joined.limits` says how big a message and an op may be (an older server
 * says nothing: {@link DEFAULT_LIMITS}). The state machine sends an op only
 * if it fits (`ot/split.ts`); a bigger change goes in parts, each acked
 * before the next. The connection never sends the same message into the
 * same refusal:
 *
 * * close 1009 (a frame over the server's `max_message_bytes`; an older
 *   server sends `too_large` without `seq` and closes with 4400): the message
 *   limit is lowered to the one the reason names, or halved, for the rest of
 *   this connection's life; the op in flight, if its frame was too big to
 *   have been read, is split anew under a new `seq`; then it reconnects.
 * * `too_large` for our op: if the server names an op limit (components,
 *   characters inserted), that limit is lowered and the op split anew. If the
 *   document would grow past `max_document_chars`, or the op cannot be split
 *   any smaller, it is dropped as any other refusal.
 * * Every refused op that is dropped, and every local edit {@link
 *   Connection.submit} turns down (one that would make the document longer
 *   than `max_document_chars`: it is never applied), is reported as a
 *   `rejected` event with the text it inserted, so that the user keeps it.
 *
 * Liveness invariant: whenever the connection is not `closed`, either a
 * socket is open or connecting, or a reconnect timer is pending; every path
 * that drops the socket schedules the next attempt.
 *
 * @module
 */

import { OperationError, TextOperation } from "./ot/text-operation.js";
import { selectionsEqual, transformSelection, type Selection } from "./ot/selection.js";
import {
  CloseCode,
  DEFAULT_LIMITS,
  encodeClientMessage,
  parseServerFrame,
  ProtocolError,
  type ClientMessage,
  type ErrorCode,
  type JoinUser,
  type Permission,
  type ServerMessage,
  type ServerLimits,
  type UserInfo,
} from "./protocol.js";
import { insertedText, opStats, splitOperation, type OpLimits } from "./ot/split.js";
import { utf8Length } from "./unicode.js";
import {
  applyClient,
  ClientProtocolError,
  dropPending,
  joinRevision,
  opRefused,
  pendingEdits,
  receiveCommitted,
  retryInFlight,
  serverAck,
  synchronized,
  transformRemoteSelection,
  withLimits,
  type ClientState,
  type OutgoingOp,
  type Transition,
} from "./client/state.js";
import { requestReload, resumeWithOps, resumeWithText } from "./client/resync.js";
import { restoreSession, saveSession, type SavedSession } from "./client/offline.js";
import { Rope } from "./ot/rope.js";
import { editorText } from "./client/state.js";
import {
  JOIN_TIMEOUT_MS,
  OFFLINE_AFTER_ATTEMPTS,
  backoffDelay,
  browserSocketFactory,
  realClock,
  type Clock,
  type SocketFactory,
  type SocketLike,
} from "./transport.js";

/** Close codes after which reconnecting cannot help (PROTOCOL.md rule 6). */
const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.ProtocolViolation,
  CloseCode.Unauthenticated,
  CloseCode.Forbidden,
  CloseCode.NotFound,
]);

/**
 * Bytes of an op message kept for everything but the op: `type`, `rev`,
 * `seq` and the braces (at most about 70). A selection rides along only if
 * the whole message still fits.
 */
export const OP_MESSAGE_HEADROOM = 256;

/** The message limit is never lowered below this (a server that small could not even send `joined`). */
export const MIN_MESSAGE_BYTES = 1024;

/** The op limits of the state machine under a server's limits. */
export function opLimitsFor(limits: ServerLimits): OpLimits {
  return {
    maxOpBytes: limits.maxMessageBytes - OP_MESSAGE_HEADROOM,
    maxInsertChars: limits.maxInsertChars,
    maxComponents: limits.maxOpComponents,
  };
}

/**
 * A change that is not in the document, and whose text the user must be
 * given back: refused before it was applied (`local`: nothing changed
 * anywhere), or refused by the server and reverted in the editor.
 */
export interface Rejection {
  /** `too_large` for a change over the document's limit; else the server's code. */
  readonly code: ErrorCode;
  /** What happened, for people. */
  readonly message: string;
  /** The text the change inserted (its inserts, joined), which is not in the document. */
  readonly text: string;
  /** True if it was refused before it was applied or sent. */
  readonly local: boolean;
}

/** The editor side, in code points. */
export interface DocumentSink {
  /** Replace the whole content (once, on the first `joined`). */
  load(text: string): void;
  /** Apply a change that is not the user's: based on the current content. */
  apply(op: TextOperation): void;
}

/** Where the connection is; every change is reported as a `status` event. */
export type ConnectionStatus =
  | { readonly kind: "connecting" }
  | { readonly kind: "connected" }
  | {
      readonly kind: "reconnecting";
      readonly attempt: number;
      readonly retryInMs: number;
      readonly waitingEdits: number;
    }
  | {
      readonly kind: "offline";
      readonly attempt: number;
      readonly retryInMs: number;
      readonly waitingEdits: number;
    }
  | {
      readonly kind: "closed";
      readonly code: number;
      readonly reason: string;
      readonly waitingEdits: number;
    };

/** A peer and its cursors, in the editor's current text. */
export interface Peer {
  readonly client: string;
  readonly user: UserInfo | null;
  readonly selection: Selection | null;
}

/** Payloads of the events a {@link Connection} emits. */
export interface ConnectionEvents {
  status: ConnectionStatus;
  joined: { client: string; rev: number; language: string | null; permission: Permission };
  /**
   * What we may do: on every `joined`, and `read` when an op of ours is
   * refused with `forbidden` (the right was lowered while connected).
   */
  permission: Permission;
  /** A peer's cursors changed (or it joined/left): read {@link Connection.peers}. */
  peers: ReadonlyMap<string, Peer>;
  language: { language: string; client: string | null };
  /** The server refused something (PROTOCOL.md `error`); `seq` names the op. */
  refused: { code: ErrorCode; message: string; seq: number | null };
  /** The server broke the protocol; the connection reloads. For logs. */
  protocolError: Error;
  /** A change of ours is not in the document: give its text back to the user. */
  rejected: Rejection;
  /**
   * What waits for the server changed (an edit, an ack, a rebase): save
   * {@link Connection.savedSession} now to survive a reload. The payload is
   * {@link Connection.waitingEdits}. Not emitted while nothing is pending.
   */
  pending: number;
}

/** Options of a {@link Connection}. */
export interface ConnectionOptions {
  /** The WebSocket URL, e.g. `wss://host/api/documents/ID/ws?token=…`. */
  url: string;
  document: DocumentSink;
  user?: JoinUser | null;
  socketFactory?: SocketFactory;
  clock?: Clock;
  /** Random numbers in [0, 1) for jitter. */
  random?: () => number;
  /**
   * A session saved by an earlier page ({@link Connection.savedSession}):
   * resume it (same client id, revision and `seq`s; its unsaved edits are
   * resent and land once). `document.load` is called with its text and
   * edits at {@link Connection.start}, before any connection, followed by
   * a `pending` event (save it again: claiming took it out of the store).
   */
  saved?: SavedSession | null;
}

type Listener<K extends keyof ConnectionEvents> = (payload: ConnectionEvents[K]) => void;

/** One client's live session with one document. See the module doc. */
export class Connection {
  private opts: Required<Omit<ConnectionOptions, "user" | "saved">> & { user: JoinUser | null };
  /** The editor was loaded from a saved session (or has edits from before `joined`). */
  private preloaded = false;
  /** The last `pending` event said something was pending. */
  private pendingReported = false;
  private readonly listeners = new Map<keyof ConnectionEvents, Set<Listener<never>>>();
  private machine: ClientState | null = null;
  private socket: SocketLike | null = null;
  /** Bumped per socket: events of older sockets are ignored. */
  private generation = 0;
  private joinedOnSocket = false;
  private attempt = 0;
  private timer: unknown = null;
  private disposed = false;
  private currentStatus: ConnectionStatus = { kind: "connecting" };
  private id: string | null = null;
  private currentPermission: Permission | null = null;
  private currentLanguage: string | null = null;
  private readonly peerMap = new Map<string, Peer>();
  /** Our cursors in the editor's text, and whether the server has them. */
  private localSelection: Selection | null = null;
  private selectionDirty = false;
  /** `joined.limits` of the latest session. */
  private announced: ServerLimits = DEFAULT_LIMITS;
  /** Limits learned from refusals (1009, `too_large`); they outlive reconnects. */
  private learned: { -readonly [K in keyof ServerLimits]: number } = {
    maxMessageBytes: Infinity,
    maxDocumentChars: Infinity,
    maxInsertChars: Infinity,
    maxOpComponents: Infinity,
  };
  /** Bytes of each op frame sent on the current socket, by `seq`. */
  private sentOps = new Map<number, number>();
  /** The biggest frame sent on the current socket. */
  private biggestFrame = 0;
  /** A `too_large` without `seq` on the current socket: a frame was too big. */
  private tooBigNotice: string | null = null;

  constructor(options: ConnectionOptions) {
    this.opts = {
      url: options.url,
      document: options.document,
      user: options.user ?? null,
      socketFactory: options.socketFactory ?? browserSocketFactory,
      clock: options.clock ?? realClock,
      random: options.random ?? Math.random,
    };
    const saved = options.saved;
    if (saved) {
      this.machine = restoreSession(saved, opLimitsFor(DEFAULT_LIMITS));
      this.id = saved.client;
      this.currentPermission = saved.permission;
      this.preloaded = true;
      this.pendingReported = true;
    }
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof ConnectionEvents>(event: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  /** Opens the first connection. */
  start(): void {
    if (this.disposed || this.socket || this.timer !== null) return;
    if (this.preloaded && this.machine && this.generation === 0) {
      // A restored session: show its text and unsaved edits at once.
      this.opts.document.load(editorText(this.machine));
      if (this.currentPermission) this.emit("permission", this.currentPermission);
      // Saved again at once: the store handed it over when it was claimed.
      this.emit("pending", this.waitingEdits);
    }
    this.connect();
  }

  /**
   * Everything needed to resume after a reload (the `saved` option), or
   * null when nothing waits for the server. Its `text` is joined only when
   * read.
   */
  savedSession(): SavedSession | null {
    return this.machine ? saveSession(this.machine, this.id, this.currentPermission) : null;
  }

  /** The current status. */
  get status(): ConnectionStatus {
    return this.currentStatus;
  }

  /** Our client id, once joined. */
  get clientId(): string | null {
    return this.id;
  }

  /** What we may do, once joined. */
  get permission(): Permission | null {
    return this.currentPermission;
  }

  /** The document's language, once joined. */
  get language(): string | null {
    return this.currentLanguage;
  }

  /** The last server revision applied (null before the first `joined`). */
  get revision(): number | null {
    return this.machine?.rev ?? null;
  }

  /** Local edits not yet acknowledged by the server. */
  get waitingEdits(): number {
    return this.machine ? pendingEdits(this.machine) : 0;
  }

  /** The OT state machine's current state (read-only; for tests and debugging). */
  get state(): ClientState | null {
    return this.machine;
  }

  /** Peers and their cursors, in the editor's current text. */
  get peers(): ReadonlyMap<string, Peer> {
    return this.peerMap;
  }

  /**
   * The limits this connection keeps to: the server's (`joined.limits`, or
   * {@link DEFAULT_LIMITS}), lowered by what refusals taught it.
   */
  get limits(): ServerLimits {
    const a = this.announced;
    const l = this.learned;
    return {
      maxMessageBytes: Math.min(a.maxMessageBytes, l.maxMessageBytes),
      maxDocumentChars: Math.min(a.maxDocumentChars, l.maxDocumentChars),
      maxInsertChars: Math.min(a.maxInsertChars, l.maxInsertChars),
      maxOpComponents: Math.min(a.maxOpComponents, l.maxOpComponents),
    };
  }

  /** The `seq` of our op in flight, if any (it changes when an op is acked). */
  get inFlightSeq(): number | null {
    const m = this.machine;
    return m && "outstanding" in m && m.outstanding ? m.outstanding.seq : null;
  }

  /**
   * Why {@link submit} would turn `op` down, or null: an op that makes the
   * document longer than `max_document_chars` would be refused by the
   * server, so it is never applied.
   */
  refusal(op: TextOperation): Rejection | null {
    const max = this.limits.maxDocumentChars;
    if (op.targetLength <= op.baseLength || op.targetLength <= max) return null;
    return {
      code: "too_large",
      message:
        `This change would make the document ${count(op.targetLength)} characters long, ` +
        `and it may have at most ${count(max)}. It was not applied.`,
      text: insertedText(op),
      local: true,
    };
  }

  /**
   * Submits one of the user's own changes, already applied to the editor and
   * based on the editor's text before it.
   *
   * # Returns
   * False if the change was turned down ({@link refusal}): it is not taken,
   * a `rejected` event carries its text, and the caller must undo it in the
   * editor.
   *
   * Before the first `joined` the change is queued, based on an empty
   * document: the first `joined` rebases it onto the server's text (the
   * editor then gets one `apply`, not `load`). It is never an error to
   * submit while connecting, reconnecting or offline.
   *
   * # Errors
   * Throws after {@link dispose}, and if `op` does not fit the text.
   */
  submit(op: TextOperation): boolean {
    if (this.disposed) throw new Error("the connection is disposed");
    if (!this.machine) {
      this.machine = Object.freeze({
        kind: "reloading",
        rev: 0,
        text: Rope.EMPTY,
        length: 0,
        nextSeq: 1,
        limits: opLimitsFor(this.limits),
        outstanding: null,
        buffer: null,
      } as const);
      this.preloaded = true;
    }
    const refused = this.refusal(op) ?? this.readOnlyRefusal(op);
    if (refused) {
      this.emit("rejected", refused);
      return false;
    }
    const t = applyClient(this.machine, op);
    if (this.localSelection) {
      // Our caret follows our typing; the new position rides along with the op.
      const moved = transformSelection(this.localSelection, op, true);
      if (!selectionsEqual(moved, this.localSelection)) this.selectionDirty = true;
      this.localSelection = moved;
    }
    this.transformPeers(op, null);
    this.run(t);
    if (!this.joinedOnSocket) this.refreshWaiting();
    return true;
  }

  /** A reader's change: never sent, never applied. */
  private readOnlyRefusal(op: TextOperation): Rejection | null {
    if (this.currentPermission !== "read") return null;
    return {
      code: "forbidden",
      message: "You can only read this document, so this change was not applied.",
      text: insertedText(op),
      local: true,
    };
  }

  /** Reports our cursors (in the editor's text); sent when the server can place them. */
  setSelection(selection: Selection | null): void {
    if (selectionsEqual(selection, this.localSelection)) return;
    this.localSelection = selection;
    this.selectionDirty = true;
    this.flushPresence();
  }

  /** Changes the document's language; false if not connected or a reader (nothing sent). */
  setLanguage(language: string): boolean {
    if (!this.joinedOnSocket || this.currentPermission === "read") return false;
    this.send({ type: "language", language });
    return true;
  }

  /**
   * Changes the name and colour peers see. The server learns them from
   * `join`, so a joined connection rejoins at once under the same client id,
   * resuming from its revision: pending edits are resent, not lost, and the
   * undo history stays. Without a socket, the next join carries them.
   */
  setUser(user: JoinUser | null): void {
    if (this.disposed) return;
    this.opts = { ...this.opts, user };
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    this.joinedOnSocket = false;
    this.generation++;
    this.clearTimer();
    socket.close(CloseCode.Normal, "user changed");
    this.connect();
  }

  /** Cancels a pending backoff and reconnects now (a "retry now" button). */
  reconnectNow(): void {
    if (this.disposed || this.socket) return;
    this.clearTimer();
    this.connect();
  }

  /** Closes the connection for good and drops every listener. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.clearTimer();
    this.generation++;
    const socket = this.socket;
    this.socket = null;
    this.joinedOnSocket = false;
    socket?.close(CloseCode.Normal, "client closed");
    this.setStatus({
      kind: "closed",
      code: CloseCode.Normal,
      reason: "disposed",
      waitingEdits: this.waitingEdits,
    });
    this.listeners.clear();
  }

  // ---- socket lifecycle ----------------------------------------------------

  private connect(): void {
    this.timer = null;
    const gen = ++this.generation;
    this.joinedOnSocket = false;
    this.sentOps = new Map();
    this.biggestFrame = 0;
    this.tooBigNotice = null;
    const live = (): boolean => gen === this.generation && !this.disposed;
    try {
      this.socket = this.opts.socketFactory(this.opts.url, {
        onOpen: () => live() && this.onOpen(),
        onMessage: (data) => live() && this.onMessage(data),
        onClose: (code, reason) => live() && this.onClose(code, reason),
      });
    } catch {
      this.socket = null;
      this.scheduleReconnect();
      return;
    }
    this.timer = this.opts.clock.setTimeout(() => {
      if (live() && !this.joinedOnSocket) this.dropSocket(CloseCode.Normal, "join timed out");
    }, JOIN_TIMEOUT_MS);
  }

  private onOpen(): void {
    this.send({
      type: "join",
      client: this.id,
      rev: this.machine ? joinRevision(this.machine) : null,
      user: this.opts.user,
      batch: true,
    });
  }

  private onClose(code: number, reason: string): void {
    this.socket = null;
    this.joinedOnSocket = false;
    this.generation++;
    this.clearTimer();
    // An older server answers a frame over its limit with `too_large` and 4400.
    const notice = this.tooBigNotice;
    if (
      code === CloseCode.MessageTooBig ||
      (code === CloseCode.ProtocolViolation && notice !== null)
    ) {
      this.messageTooBig(reason || notice || "");
      this.scheduleReconnect();
      return;
    }
    if (FATAL_CLOSE_CODES.has(code)) {
      this.setStatus({ kind: "closed", code, reason, waitingEdits: this.waitingEdits });
      return;
    }
    this.scheduleReconnect();
  }

  /**
   * A frame of ours was over the server's message limit (close 1009), so the
   * server read nothing from it on. Lowers the limit below that frame (to
   * the one `reason` names, "…the limit is 1048576 bytes", or to half), and
   * if our op in flight was in a frame too big to have been read, splits it
   * anew: the same message is never sent into the same refusal.
   */
  private messageTooBig(reason: string): void {
    const biggest = this.biggestFrame;
    const stated = /(\d+)\s*bytes/.exec(reason);
    const named = stated ? Number(stated[1]) : NaN;
    // Frames above `unread` were certainly not read by the server.
    let limit: number;
    let unread: number;
    if (Number.isSafeInteger(named) && named < biggest) {
      limit = named;
      unread = named;
    } else {
      limit = Math.floor(Math.min(this.limits.maxMessageBytes, biggest) / 2);
      unread = biggest - 1;
    }
    this.learned.maxMessageBytes = Math.min(
      this.learned.maxMessageBytes,
      Math.max(MIN_MESSAGE_BYTES, limit),
    );
    this.applyLimits();
    const seq = this.inFlightSeq;
    const bytes = seq === null ? undefined : this.sentOps.get(seq);
    if (seq !== null && bytes !== undefined && bytes > unread && this.machine) {
      this.run(retryInFlight(this.machine, seq));
    }
  }

  /** Gives the state machine the current limits. */
  private applyLimits(): void {
    if (this.machine) this.machine = withLimits(this.machine, opLimitsFor(this.limits)).state;
  }

  /**
   * Our op `op` was refused with `too_large` and `message`. If the message
   * names an op limit ("op has more than 100 components", "op inserts more
   * than 5000 characters"), lowers it below `op` (to the number named, or to
   * half of `op`'s) and returns true if `op` can now be split, to be sent
   * again in parts; limits only go down, so this ends. The document's limit
   * ("the document would exceed …"), a message that names nothing, or an op
   * that cannot get smaller return false: the op is dropped, and its text
   * handed back to the user.
   */
  private lowerOpLimits(op: TextOperation, message: string): boolean {
    const stats = opStats(op);
    const m = /(\d+)/.exec(message);
    const named = m ? Number(m[1]) : NaN;
    const below = (actual: number): number =>
      Number.isSafeInteger(named) && named < actual ? named : Math.floor(actual / 2);
    const l = this.learned;
    if (/document/i.test(message)) {
      if (Number.isSafeInteger(named)) l.maxDocumentChars = Math.min(l.maxDocumentChars, named);
      return false;
    } else if (/component/i.test(message)) {
      l.maxOpComponents = Math.min(l.maxOpComponents, below(stats.components));
    } else if (/insert|character/i.test(message)) {
      l.maxInsertChars = Math.min(l.maxInsertChars, below(stats.insertedChars));
    } else {
      // Not an op limit we know of. Our op kept to the announced ones, so
      // the document's limit is the likely reason: drop it (text kept).
      return false;
    }
    this.applyLimits();
    return splitOperation(op, opLimitsFor(this.limits)) !== null;
  }

  /** Closes our socket ourselves and schedules the next attempt. */
  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = null;
    this.joinedOnSocket = false;
    this.generation++;
    this.clearTimer();
    socket?.close(code, reason);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.disposed) return;
    const delay = backoffDelay(this.attempt, this.opts.random);
    this.attempt++;
    this.clearTimer();
    this.timer = this.opts.clock.setTimeout(() => this.connect(), delay);
    this.setStatus(this.disconnectedStatus(delay));
  }

  private disconnectedStatus(retryInMs: number): ConnectionStatus {
    const kind = this.attempt > OFFLINE_AFTER_ATTEMPTS ? "offline" : "reconnecting";
    return { kind, attempt: this.attempt, retryInMs, waitingEdits: this.waitingEdits };
  }

  private refreshWaiting(): void {
    const s = this.currentStatus;
    if (
      (s.kind === "reconnecting" || s.kind === "offline") &&
      s.waitingEdits !== this.waitingEdits
    ) {
      this.setStatus({ ...s, waitingEdits: this.waitingEdits });
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  // ---- messages ------------------------------------------------------------

  private onMessage(data: string): void {
    const gen = this.generation;
    try {
      // A batched frame's messages are handled in order, as separate frames
      // would be; one that drops the socket ends the rest.
      for (const msg of parseServerFrame(data)) {
        if (gen !== this.generation || this.disposed) return;
        if (msg) this.handle(msg);
      }
    } catch (e) {
      if (
        e instanceof ProtocolError ||
        e instanceof ClientProtocolError ||
        e instanceof OperationError
      ) {
        this.protocolFailure(e as Error);
        return;
      }
      throw e;
    }
  }

  /** The server broke the protocol: reload, through a fresh connection. */
  private protocolFailure(error: Error): void {
    this.emit("protocolError", error);
    if (this.machine) this.machine = requestReload(this.machine).state;
    this.dropSocket(CloseCode.ProtocolViolation, "protocol error");
  }

  private handle(msg: ServerMessage): void {
    if (!this.joinedOnSocket && msg.type !== "joined" && msg.type !== "error") {
      if (msg.type === "op" || msg.type === "ack")
        throw new ClientProtocolError(`${msg.type} before joined`);
      return;
    }
    switch (msg.type) {
      case "joined":
        return this.onJoined(msg);
      case "ack":
        return this.run(serverAck(this.requireMachine(), msg.seq, msg.rev));
      case "op": {
        const t = receiveCommitted(this.requireMachine(), msg, this.id ?? "");
        this.run(t, msg.client);
        return;
      }
      case "presence": {
        const selection =
          msg.selection && this.machine
            ? transformRemoteSelection(this.machine, msg.selection)
            : null;
        this.peerMap.set(msg.client, { client: msg.client, user: msg.user, selection });
        this.emit("peers", this.peerMap);
        return;
      }
      case "peer":
        this.peerMap.set(msg.client, { client: msg.client, user: msg.user, selection: null });
        this.emit("peers", this.peerMap);
        return;
      case "leave":
        this.peerMap.delete(msg.client);
        this.emit("peers", this.peerMap);
        return;
      case "language":
        this.currentLanguage = msg.language;
        this.emit("language", { language: msg.language, client: msg.client });
        return;
      case "error":
        return this.onError(msg.code, msg.message, msg.seq);
    }
  }

  private onJoined(msg: Extract<ServerMessage, { type: "joined" }>): void {
    if (this.joinedOnSocket) throw new ClientProtocolError("second joined on one connection");
    const previousId = this.id;
    this.id = msg.client;
    this.joinedOnSocket = true;
    this.clearTimer(); // the join timeout
    this.announced = msg.limits;
    let t: Transition;
    if (!this.machine) {
      if (msg.text === undefined) throw new ClientProtocolError("first joined without text");
      this.machine = synchronized(msg.rev, msg.text, 1, opLimitsFor(this.limits));
      this.opts.document.load(msg.text);
      t = { state: this.machine };
    } else if (msg.ops) {
      this.applyLimits();
      // Entries made by us were recorded under the id we resumed with.
      t = resumeWithOps(this.machine, msg.rev, msg.ops, previousId ?? msg.client);
    } else {
      this.applyLimits();
      t = resumeWithText(this.machine, msg.rev, msg.text);
    }
    this.currentPermission = msg.permission;
    this.currentLanguage = msg.language;
    this.attempt = 0;
    if (msg.permission === "read" && t.send) {
      // A reader sends nothing: what is pending is dropped just below.
      const { send: _unsent, ...rest } = t;
      t = rest;
    }
    this.run(t);
    if (msg.permission === "read") this.dropPendingEdits();
    this.peerMap.clear();
    for (const p of msg.peers) {
      if (p.client === this.id) continue;
      const selection =
        p.selection && this.machine ? transformRemoteSelection(this.machine, p.selection) : null;
      this.peerMap.set(p.client, { client: p.client, user: p.user, selection });
    }
    this.setStatus({ kind: "connected" });
    this.emit("joined", {
      client: msg.client,
      rev: msg.rev,
      language: msg.language,
      permission: msg.permission,
    });
    this.emit("permission", msg.permission);
    this.emit("peers", this.peerMap);
    this.selectionDirty = this.localSelection !== null;
    this.flushPresence();
  }

  private onError(code: ErrorCode, message: string, seq: number | null): void {
    this.emit("refused", { code, message, seq });
    if (code === "too_large" && seq === null) this.tooBigNotice = message;
    if (!this.machine) return;
    if (seq !== null && code === "forbidden") {
      // We may not write (any more): no op of ours will be accepted, so
      // none is resent; all that is pending is undone at once.
      const downgraded = this.currentPermission !== "read";
      this.currentPermission = "read";
      this.dropPendingEdits();
      if (downgraded) this.emit("permission", "read");
      return;
    }
    if (seq !== null) {
      const m = this.machine;
      const inFlight = "outstanding" in m && m.outstanding?.seq === seq ? m.outstanding.op : null;
      // Resyncing and reloading keep the op (it is rebased); the other states drop it.
      const drops =
        inFlight !== null &&
        (m.kind === "awaitingConfirm" || m.kind === "awaitingWithBuffer") &&
        code !== "unknown_rev" &&
        code !== "rate_limited" &&
        code !== "unavailable";
      if (drops && code === "too_large" && this.lowerOpLimits(inFlight, message)) {
        this.run(retryInFlight(this.machine, seq));
        return;
      }
      this.run(opRefused(this.machine, seq, code));
      if (drops) {
        this.emit("rejected", {
          code,
          message: `The server refused this change (${code}${message ? `: ${message}` : ""}); it was undone.`,
          text: insertedText(inFlight),
          local: false,
        });
      }
      const stillInFlight = "outstanding" in this.machine && this.machine.outstanding?.seq === seq;
      if (stillInFlight && (code === "rate_limited" || code === "unavailable")) {
        // The op stays in flight; resending it means resuming, after a backoff.
        this.dropSocket(CloseCode.Normal, code);
      }
      return;
    }
    if (!this.joinedOnSocket && code === "unknown_rev") this.run(requestReload(this.machine));
  }

  /**
   * Drops and undoes every edit not yet committed (we are a reader now) and
   * hands their text back in one `rejected` event.
   */
  private dropPendingEdits(): void {
    if (!this.machine) return;
    const dropped = dropPending(this.machine);
    this.run(dropped.transition);
    if (!dropped.op) return;
    const n = dropped.edits;
    this.emit("rejected", {
      code: "forbidden",
      message:
        n <= 1
          ? "You can only read this document now: your unsaved edit was undone."
          : `You can only read this document now: your ${n} unsaved edits were undone.`,
      text: insertedText(dropped.op),
      local: false,
    });
  }

  /** Carries out a transition's effects, in order: state, editor, network. */
  private run(t: Transition, author: string | null = null): void {
    this.machine = t.state;
    const waiting = pendingEdits(t.state);
    if (waiting > 0 || this.pendingReported) {
      this.pendingReported = waiting > 0;
      this.emit("pending", waiting);
    }
    if (t.apply) {
      this.opts.document.apply(t.apply);
      if (this.localSelection)
        this.localSelection = transformSelection(this.localSelection, t.apply, false);
      this.transformPeers(t.apply, author);
    }
    if (t.reload) {
      this.dropSocket(CloseCode.Normal, "reload");
      return;
    }
    if (t.send && this.joinedOnSocket) this.sendOp(t.send);
    this.flushPresence();
  }

  private sendOp(out: OutgoingOp): void {
    // A selection rides along only when it is valid right after this op,
    // that is when no buffered edit follows it, and if the message still fits.
    const attach =
      this.selectionDirty &&
      this.localSelection !== null &&
      this.machine?.kind === "awaitingConfirm";
    const message = { type: "op", rev: out.rev, seq: out.seq, op: out.op.toJSON() } as const;
    let frame = encodeClientMessage(message);
    let bytes = utf8Length(frame);
    if (attach && this.localSelection) {
      const withSelection = encodeClientMessage({ ...message, selection: this.localSelection });
      const b = utf8Length(withSelection);
      if (b <= this.limits.maxMessageBytes) {
        frame = withSelection;
        bytes = b;
        this.selectionDirty = false;
      }
    }
    this.sentOps.set(out.seq, bytes);
    this.biggestFrame = Math.max(this.biggestFrame, bytes);
    this.socket?.send(frame);
  }

  /** Sends our cursors if they changed and the server can place them (no op pending). */
  private flushPresence(): void {
    if (!this.selectionDirty || !this.joinedOnSocket || this.machine?.kind !== "synchronized")
      return;
    this.selectionDirty = false;
    this.send({ type: "presence", rev: this.machine.rev, selection: this.localSelection });
  }

  /** Moves peers' cursors through a change to the editor; `author`'s moves with its own typing. */
  private transformPeers(op: TextOperation, author: string | null): void {
    let changed = false;
    for (const [client, peer] of this.peerMap) {
      if (!peer.selection) continue;
      const selection = transformSelection(peer.selection, op, client === author);
      this.peerMap.set(client, { ...peer, selection });
      changed = true;
    }
    if (changed) this.emit("peers", this.peerMap);
  }

  private send(message: ClientMessage): void {
    const frame = encodeClientMessage(message);
    this.biggestFrame = Math.max(this.biggestFrame, utf8Length(frame));
    this.socket?.send(frame);
  }

  private requireMachine(): ClientState {
    if (!this.machine) throw new ClientProtocolError("message before the document was loaded");
    return this.machine;
  }

  private setStatus(status: ConnectionStatus): void {
    this.currentStatus = status;
    this.emit("status", status);
  }

  private emit<K extends keyof ConnectionEvents>(event: K, payload: ConnectionEvents[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const l of [...set]) (l as Listener<K>)(payload);
  }
}

/** 8388608 -> "8,388,608". */
function count(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}
