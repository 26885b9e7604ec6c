/**
 * The wire protocol, version 1 (PROTOCOL.md), as TypeScript types.
 *
 * Every WebSocket frame is one JSON object with a `type`. Outgoing messages
 * are typed objects turned into text by {@link encodeClientMessage} (plain
 * `JSON.stringify`, never string templates). Incoming frames are untrusted:
 * {@link parseServerMessage} checks every field it uses and returns a
 * discriminated union with operations already parsed into
 * {@link TextOperation}s (validated, but not yet checked against a document
 * length: the state machine does that).
 *
 * ```text
 * client -> server  {"type":"join","client":null,"rev":null,"user":{"name":"Ada","color":"#c33"}}
 *                   {"type":"op","rev":41,"seq":7,"op":[5,"abc",-3,2]}
 *                   {"type":"presence","rev":41,"selection":{"ranges":[{"anchor":3,"head":3}]}}
 *                   {"type":"language","language":"rust"}
 * server -> client  {"type":"joined","client":"c1","rev":41,"language":"rust","permission":"write","peers":[],"text":"…",
 *                    "limits":{"max_message_bytes":1048576,"max_document_chars":8388608,"max_insert_chars":1048576,"max_op_components":20000}}
 *                   {"type":"ack","seq":7,"rev":42}
 *                   {"type":"op","rev":43,"client":"c2","op":[…]}
 *                   {"type":"error","code":"unknown_rev","message":"…","seq":8}
 * ```
 *
 * @module
 */

import { OperationError, TextOperation, type OperationJSON } from "./ot/text-operation.js";
import { parseSelection, type Selection } from "./ot/selection.js";
import { isWellFormed } from "./unicode.js";

/** The protocol version these types describe. */
export const PROTOCOL_VERSION = 1;

/** What a user may do with a document. */
export type Permission = "read" | "write" | "admin";

/** The stable error codes of PROTOCOL.md rule 5. */
export const ERROR_CODES = [
  "bad_message",
  "bad_op",
  "unknown_rev",
  "forbidden",
  "unauthenticated",
  "not_found",
  "too_large",
  "rate_limited",
  "unavailable",
] as const;

/** One of {@link ERROR_CODES}. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** WebSocket close codes of PROTOCOL.md rule 6 (plus the standard ones the client acts on). */
export const CloseCode = {
  /** Standard: normal closure. */
  Normal: 1000,
  /** Standard: the server is shutting down (reconnect). */
  GoingAway: 1001,
  /**
   * Standard: a message was over the server's `max_message_bytes` (the
   * reason says the limit). Reconnect, and send smaller messages.
   */
  MessageTooBig: 1009,
  /** Standard: the server is overloaded, try again later (reconnect). */
  TryAgainLater: 1013,
  ProtocolViolation: 4400,
  Unauthenticated: 4401,
  Forbidden: 4403,
  NotFound: 4404,
  Idle: 4408,
  /** The document moved to another node (reconnect). */
  Moved: 4409,
  RateLimited: 4429,
} as const;

/**
 * What the server accepts (`joined.limits`); characters are code points.
 * A server that does not announce them has {@link DEFAULT_LIMITS}.
 */
export interface ServerLimits {
  /** Largest message, in UTF-8 bytes of the whole JSON text; more is closed with 1009. */
  readonly maxMessageBytes: number;
  /** Largest document; an op that would make it longer is refused with `too_large`. */
  readonly maxDocumentChars: number;
  /** Most characters one op may insert. */
  readonly maxInsertChars: number;
  /** Most components in one op. */
  readonly maxOpComponents: number;
}

/** The limits of a server whose `joined` has no `limits` (the server's defaults). */
export const DEFAULT_LIMITS: ServerLimits = Object.freeze({
  maxMessageBytes: 1_048_576,
  maxDocumentChars: 8_388_608,
  maxInsertChars: 1_048_576,
  maxOpComponents: 20_000,
});

/** The user a client announces in `join`. */
export interface JoinUser {
  readonly name: string;
  /** A colour the user chose; null lets the server assign the least-used one. */
  readonly color: string | null;
}

/** A user as the server knows it (`id` may be absent for anonymous users). */
export interface UserInfo {
  readonly id: string | null;
  readonly name: string;
  readonly color: string;
}

// ---- client -> server -----------------------------------------------------

/** `join`: the first message on every connection. */
export interface JoinMessage {
  readonly type: "join";
  /** Our earlier id when resuming, else null. */
  readonly client: string | null;
  /** The last revision we applied when resuming; null asks for the full text. */
  readonly rev: number | null;
  readonly user: JoinUser | null;
  /**
   * Extension: we read batched frames, a JSON array of messages in one
   * frame ({@link parseServerFrame}). A server that does not batch ignores it.
   */
  readonly batch?: boolean;
}

/** `op`: submit an operation based on revision `rev`. */
export interface OpMessage {
  readonly type: "op";
  readonly rev: number;
  readonly seq: number;
  readonly op: OperationJSON;
  readonly selection?: Selection;
}

/** `presence`: our cursors in the document at revision `rev`; null clears them. */
export interface PresenceMessage {
  readonly type: "presence";
  readonly rev: number;
  readonly selection: Selection | null;
}

/** `language`: change the document's language (a Monaco language id). */
export interface LanguageMessage {
  readonly type: "language";
  readonly language: string;
}

/** Every message a client sends. */
export type ClientMessage = JoinMessage | OpMessage | PresenceMessage | LanguageMessage;

/** The text of a client message: `JSON.stringify` of the typed object. */
export function encodeClientMessage(message: ClientMessage): string {
  return JSON.stringify(message);
}

// ---- server -> client -----------------------------------------------------

/** A peer listed in `joined.peers`. */
export interface PeerInfo {
  readonly client: string;
  readonly user: UserInfo | null;
  /** Its cursors at `joined.rev`, if the server sent them. */
  readonly selection: Selection | null;
}

/** A committed op, as listed in `joined.ops` and sent as `op`. */
export interface CommittedOpMessage {
  readonly rev: number;
  readonly client: string;
  readonly op: TextOperation;
}

interface JoinedCommon {
  readonly type: "joined";
  readonly client: string;
  readonly rev: number;
  readonly language: string | null;
  readonly permission: Permission;
  readonly peers: readonly PeerInfo[];
  /** `joined.limits`, with {@link DEFAULT_LIMITS} for what the server left out. */
  readonly limits: ServerLimits;
}

/** `joined` with the full text. */
export interface JoinedTextMessage extends JoinedCommon {
  readonly text: string;
  readonly ops?: undefined;
}

/** `joined` with the ops after the revision we resumed from. */
export interface JoinedOpsMessage extends JoinedCommon {
  readonly ops: readonly CommittedOpMessage[];
  readonly text?: undefined;
}

/** `ack`: our op `seq` is durable as revision `rev`. */
export interface AckMessage {
  readonly type: "ack";
  readonly seq: number;
  readonly rev: number;
}

/** `op`: another client's op, committed as `rev`. */
export interface RemoteOpMessage extends CommittedOpMessage {
  readonly type: "op";
}

/** `presence`: a peer's cursors at the revision we have just reached. */
export interface RemotePresenceMessage {
  readonly type: "presence";
  readonly client: string;
  readonly user: UserInfo | null;
  readonly selection: Selection | null;
}

/** `peer`: a peer joined. */
export interface PeerMessage {
  readonly type: "peer";
  readonly client: string;
  readonly user: UserInfo | null;
}

/** `leave`: a peer left. */
export interface LeaveMessage {
  readonly type: "leave";
  readonly client: string;
}

/** `language`: the document's language changed (by `client`). */
export interface LanguageChangedMessage {
  readonly type: "language";
  readonly language: string;
  readonly client: string | null;
}

/** `error`: a request was refused and nothing changed. */
export interface ErrorMessage {
  readonly type: "error";
  readonly code: ErrorCode;
  readonly message: string;
  /** Set when the error answers an `op`. */
  readonly seq: number | null;
}

/** Every message a server sends. */
export type ServerMessage =
  | JoinedTextMessage
  | JoinedOpsMessage
  | AckMessage
  | RemoteOpMessage
  | RemotePresenceMessage
  | PeerMessage
  | LeaveMessage
  | LanguageChangedMessage
  | ErrorMessage;

/** A server frame that is not valid protocol. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

/**
 * Parses and validates one server frame.
 *
 * # Returns
 * The message, or `null` for a well-formed object of a `type` this client
 * does not know (a newer server's addition: ignored, not fatal).
 *
 * # Errors
 * Throws {@link ProtocolError} if the frame is not JSON, not an object, or a
 * known type with a missing or malformed field.
 */
export function parseServerMessage(data: string): ServerMessage | null {
  const json = parseJson(data);
  if (Array.isArray(json)) throw new ProtocolError("frame is not a JSON object");
  return parseServerValue(json);
}

/**
 * Parses and validates one server frame that may be batched: a JSON array of
 * messages (sent to a client that joined with `batch: true`) or one message.
 *
 * # Returns
 * The messages in order; `null` entries are types this client does not know.
 *
 * # Errors
 * Throws {@link ProtocolError} as {@link parseServerMessage} does, for the
 * frame or any message in it, and for an empty array.
 */
export function parseServerFrame(data: string): (ServerMessage | null)[] {
  const json = parseJson(data);
  if (!Array.isArray(json)) return [parseServerValue(json)];
  if (json.length === 0) throw new ProtocolError("batched frame is empty");
  return json.map((m: unknown) => parseServerValue(m));
}

function parseJson(data: string): unknown {
  try {
    return JSON.parse(data) as unknown;
  } catch {
    throw new ProtocolError("frame is not JSON");
  }
}

function parseServerValue(json: unknown): ServerMessage | null {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ProtocolError("frame is not a JSON object");
  }
  const m = json as Record<string, unknown>;
  try {
    switch (m["type"]) {
      case "joined":
        return parseJoined(m);
      case "ack":
        return { type: "ack", seq: seqField(m, "seq"), rev: revField(m, "rev") };
      case "op":
        return { type: "op", ...parseCommitted(m) };
      case "presence":
        return {
          type: "presence",
          client: stringField(m, "client"),
          user: userField(m, "user"),
          selection: selectionField(m, "selection"),
        };
      case "peer":
        return { type: "peer", client: stringField(m, "client"), user: userField(m, "user") };
      case "leave":
        return { type: "leave", client: stringField(m, "client") };
      case "language":
        return {
          type: "language",
          language: stringField(m, "language"),
          client:
            m["client"] === undefined || m["client"] === null ? null : stringField(m, "client"),
        };
      case "error":
        return parseError(m);
      default:
        if (typeof m["type"] !== "string") throw new ProtocolError("message has no type");
        return null;
    }
  } catch (e) {
    if (e instanceof OperationError)
      throw new ProtocolError(`bad operation in ${String(m["type"])}: ${e.message}`);
    throw e;
  }
}

function parseJoined(m: Record<string, unknown>): JoinedTextMessage | JoinedOpsMessage {
  const permission = m["permission"] as Permission;
  if (permission !== "read" && permission !== "write" && permission !== "admin") {
    throw new ProtocolError(
      `joined.permission ${JSON.stringify(permission)} is not read, write or admin`,
    );
  }
  const language =
    m["language"] === null || m["language"] === undefined ? null : stringField(m, "language");
  const peersJson = m["peers"] ?? [];
  if (!Array.isArray(peersJson)) throw new ProtocolError("joined.peers is not an array");
  const peers = (peersJson as unknown[]).map((p): PeerInfo => {
    if (typeof p !== "object" || p === null)
      throw new ProtocolError("joined.peers entry is not an object");
    const o = p as Record<string, unknown>;
    return {
      client: stringField(o, "client"),
      user: userField(o, "user"),
      selection: selectionField(o, "selection"),
    };
  });
  const common = {
    type: "joined" as const,
    client: stringField(m, "client"),
    rev: revField(m, "rev"),
    language,
    permission,
    peers,
    limits: parseLimits(m["limits"]),
  };
  const hasText = m["text"] !== undefined && m["text"] !== null;
  const hasOps = m["ops"] !== undefined && m["ops"] !== null;
  if (hasText === hasOps) throw new ProtocolError("joined needs exactly one of text and ops");
  if (hasText) {
    const text = stringField(m, "text");
    if (!isWellFormed(text)) throw new ProtocolError("joined.text has an unpaired surrogate");
    return { ...common, text };
  }
  const opsJson = m["ops"];
  if (!Array.isArray(opsJson)) throw new ProtocolError("joined.ops is not an array");
  const ops = (opsJson as unknown[]).map((e) => {
    if (typeof e !== "object" || e === null)
      throw new ProtocolError("joined.ops entry is not an object");
    return parseCommitted(e as Record<string, unknown>);
  });
  return { ...common, ops };
}

/**
 * `joined.limits` (`{max_message_bytes, max_document_chars, max_insert_chars,
 * max_op_components}`). Missing (an older server) or unusable fields take
 * their {@link DEFAULT_LIMITS} value: a limit is only ever a hint for
 * sending smaller messages, never a reason to give up on a session.
 */
function parseLimits(v: unknown): ServerLimits {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return DEFAULT_LIMITS;
  const o = v as Record<string, unknown>;
  const field = (key: string, fallback: number): number => {
    const n = o[key];
    return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : fallback;
  };
  return {
    maxMessageBytes: field("max_message_bytes", DEFAULT_LIMITS.maxMessageBytes),
    maxDocumentChars: field("max_document_chars", DEFAULT_LIMITS.maxDocumentChars),
    maxInsertChars: field("max_insert_chars", DEFAULT_LIMITS.maxInsertChars),
    maxOpComponents: field("max_op_components", DEFAULT_LIMITS.maxOpComponents),
  };
}

function parseCommitted(m: Record<string, unknown>): CommittedOpMessage {
  return {
    rev: revField(m, "rev"),
    client: stringField(m, "client"),
    op: TextOperation.fromJSON(m["op"]),
  };
}

function parseError(m: Record<string, unknown>): ErrorMessage {
  const code = m["code"];
  if (typeof code !== "string" || !(ERROR_CODES as readonly string[]).includes(code)) {
    throw new ProtocolError(`unknown error code ${JSON.stringify(code)}`);
  }
  const message = typeof m["message"] === "string" ? m["message"] : "";
  const seq = m["seq"] === undefined || m["seq"] === null ? null : seqField(m, "seq");
  return { type: "error", code: code as ErrorCode, message, seq };
}

function stringField(m: Record<string, unknown>, key: string): string {
  const v = m[key];
  if (typeof v !== "string") throw new ProtocolError(`field ${key} is not a string`);
  return v;
}

function revField(m: Record<string, unknown>, key: string): number {
  const v = m[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new ProtocolError(`field ${key} is not a revision`);
  }
  return v;
}

function seqField(m: Record<string, unknown>, key: string): number {
  const v = m[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    throw new ProtocolError(`field ${key} is not a sequence number`);
  }
  return v;
}

function userField(m: Record<string, unknown>, key: string): UserInfo | null {
  const v = m[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "object") throw new ProtocolError(`field ${key} is not a user`);
  const u = v as Record<string, unknown>;
  const id = u["id"];
  return {
    id: typeof id === "string" ? id : typeof id === "number" ? String(id) : null,
    name: typeof u["name"] === "string" ? u["name"] : "",
    color: typeof u["color"] === "string" ? u["color"] : "",
  };
}

function selectionField(m: Record<string, unknown>, key: string): Selection | null {
  const v = m[key];
  if (v === undefined || v === null) return null;
  const s = parseSelection(v);
  if (!s) throw new ProtocolError(`field ${key} is not a selection`);
  return s;
}
