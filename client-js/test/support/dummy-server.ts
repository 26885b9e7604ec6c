/**
 * An in-memory Tandem server and network for the client tests (like
 * @codemirror/collab's DummyServer), following PROTOCOL.md:
 *
 * * ops are ordered by revision; an incoming op based on revision r is
 *   transformed as `transform(incoming, committed)[0]` against every op
 *   committed after r, in order;
 * * (client, seq) is deduplicated before anything else (rule 3): a resend of
 *   a committed op is answered with an `ack` at its original revision;
 * * a `join` that resumes from a revision within `window` gets the catch-up
 *   `ops` (the resuming client's own ops included, under its id); older ones
 *   get the full `text`; an op based on a revision older than `window` is
 *   refused with `unknown_rev` (and nothing changes, rule 4).
 *
 * * with {@link DummyServer.limits} set, it enforces them as the real server
 *   does: a frame over `maxMessageBytes` is answered with `too_large` (no
 *   `seq`) and close 1009 (or 4400, `oldStyle`, as older servers did); an op
 *   with too many components or characters, or one that would make the
 *   document too long, is refused with `too_large` and its `seq`.
 *
 * The network ({@link SimNetwork}) gives each connection a link with two FIFO
 * queues; the test decides when each frame is delivered, when a socket
 * opens, and when a link is cut (both queues are lost).
 */

import {
  TextOperation,
  transformSelection,
  type Selection,
  type SocketFactory,
  type SocketHandlers,
  type SocketLike,
} from "../../src/index.js";

interface HistoryEntry {
  readonly client: string;
  readonly seq: number;
  readonly op: TextOperation;
}

/** The server's side of one connection. */
export interface ServerSession {
  client: string | null;
  user: { id: string; name: string; color: string } | null;
  send(message: object): void;
  /** Closes at once (frames in flight are lost), or after what was sent (`graceful`). */
  close(code: number, reason?: string, graceful?: boolean): void;
}

/** Limits a {@link DummyServer} enforces (and announces in `joined`). */
export interface DummyLimits {
  maxMessageBytes: number;
  maxDocumentChars: number;
  maxInsertChars: number;
  maxOpComponents: number;
}

export class DummyServer {
  text: string;
  /** history[i] made revision i + 1. */
  readonly history: HistoryEntry[] = [];
  /** The document's length at each revision. */
  private readonly lengths: number[];
  private readonly committed = new Map<string, Map<number, number>>();
  private readonly sessions = new Set<ServerSession>();
  private nextClient = 1;
  /** Every op received, with what happened to it (for assertions). */
  readonly log: string[] = [];
  /** Enforced when set; see the module doc. */
  limits: DummyLimits | null = null;
  /** Whether `joined` carries `limits` (older servers did not). */
  announceLimits = true;
  /** Answer a frame that is too big with 4400 and no limit in the reason, as older servers did. */
  oldStyle = false;
  /** Frames refused as too big. */
  readonly tooBig: string[] = [];
  /** Every frame read (not refused as too big). */
  readonly frames: string[] = [];

  constructor(
    text = "",
    /** How many past revisions the server can still transform from or serve. */
    public window = Number.MAX_SAFE_INTEGER,
  ) {
    this.text = text;
    this.lengths = [[...text].length];
  }

  get rev(): number {
    return this.history.length;
  }

  connect(session: ServerSession): void {
    this.sessions.add(session);
  }

  disconnect(session: ServerSession): void {
    if (!this.sessions.delete(session)) return;
    if (session.client !== null) this.broadcast(session, { type: "leave", client: session.client });
  }

  receive(session: ServerSession, frame: string): void {
    if (this.limits && Buffer.byteLength(frame) > this.limits.maxMessageBytes) {
      this.tooBig.push(frame);
      this.log.push(`too big ${Buffer.byteLength(frame)}`);
      const reason = this.oldStyle
        ? "message too large"
        : `message too big: the limit is ${this.limits.maxMessageBytes} bytes`;
      session.send({ type: "error", code: "too_large", message: reason });
      session.close(
        this.oldStyle ? 4400 : 1009,
        this.oldStyle ? "message too large" : reason,
        true,
      );
      return;
    }
    this.frames.push(frame);
    const msg = JSON.parse(frame) as Record<string, unknown>;
    switch (msg["type"]) {
      case "join":
        return this.join(session, msg);
      case "op":
        return this.op(session, msg);
      case "presence": {
        const rev = msg["rev"] as number;
        let selection = msg["selection"] as Selection | null;
        if (selection) {
          for (const h of this.history.slice(rev))
            selection = transformSelection(selection, h.op, h.client === session.client);
        }
        this.broadcast(session, {
          type: "presence",
          client: session.client,
          user: session.user,
          selection,
        });
        return;
      }
      case "language":
        this.broadcast(null, {
          type: "language",
          language: msg["language"],
          client: session.client,
        });
        return;
      default:
        session.send({ type: "error", code: "bad_message", message: "unknown type" });
    }
  }

  private join(session: ServerSession, msg: Record<string, unknown>): void {
    const client = typeof msg["client"] === "string" ? msg["client"] : `c${this.nextClient++}`;
    session.client = client;
    session.user = { id: client, name: client, color: "#000" };
    const rev = msg["rev"];
    const common = {
      type: "joined",
      client,
      rev: this.rev,
      language: "plaintext",
      permission: "write",
      peers: [...this.sessions]
        .filter((s) => s !== session && s.client !== null)
        .map((s) => ({ client: s.client, user: s.user })),
      ...(this.limits && this.announceLimits
        ? {
            limits: {
              max_message_bytes: this.limits.maxMessageBytes,
              max_document_chars: this.limits.maxDocumentChars,
              max_insert_chars: this.limits.maxInsertChars,
              max_op_components: this.limits.maxOpComponents,
            },
          }
        : {}),
    };
    if (typeof rev === "number" && rev > this.rev) {
      session.send({ type: "error", code: "unknown_rev", message: "revision in the future" });
      return;
    }
    if (typeof rev === "number" && rev >= this.rev - this.window) {
      const ops = this.history
        .slice(rev)
        .map((h, i) => ({ rev: rev + i + 1, client: h.client, op: h.op.toJSON() }));
      const own = ops.filter((o) => o.client === client).length;
      this.log.push(`join ${client} ops from ${rev}${own > 0 ? " with own" : ""}`);
      session.send({ ...common, ops });
    } else {
      this.log.push(`join ${client} text${rev === null ? " (asked)" : ""}`);
      session.send({ ...common, text: this.text });
    }
    this.broadcast(session, { type: "peer", client, user: session.user });
  }

  private op(session: ServerSession, msg: Record<string, unknown>): void {
    const client = session.client as string;
    const seq = msg["seq"] as number;
    const rev = msg["rev"] as number;
    const seen = this.committed.get(client)?.get(seq);
    if (seen !== undefined) {
      this.log.push(`dup ${client}#${seq} -> ${seen}`);
      session.send({ type: "ack", seq, rev: seen });
      return;
    }
    if (!Number.isSafeInteger(rev) || rev > this.rev || rev < this.rev - this.window) {
      this.log.push(`unknown_rev ${client}#${seq} at ${rev}`);
      session.send({ type: "error", code: "unknown_rev", message: "cannot transform", seq });
      return;
    }
    let op: TextOperation;
    try {
      op = TextOperation.fromJSON(msg["op"], this.lengths[rev]);
    } catch (e) {
      this.log.push(`bad_op ${client}#${seq}`);
      session.send({ type: "error", code: "bad_op", message: String(e), seq });
      return;
    }
    const refuse = (message: string): void => {
      this.log.push(`too_large ${client}#${seq}: ${message}`);
      session.send({ type: "error", code: "too_large", message, seq });
    };
    const l = this.limits;
    if (l && op.ops.length > l.maxOpComponents) {
      return refuse(`op has more than ${l.maxOpComponents} components`);
    }
    const inserted = op.ops.reduce<number>(
      (n, c) => n + (typeof c === "string" ? [...c].length : 0),
      0,
    );
    if (l && inserted > l.maxInsertChars) {
      return refuse(`op inserts more than ${l.maxInsertChars} characters`);
    }
    for (const h of this.history.slice(rev)) op = TextOperation.transform(op, h.op)[0];
    if (l && op.targetLength > op.baseLength && op.targetLength > l.maxDocumentChars) {
      return refuse(`the document would exceed ${l.maxDocumentChars} characters`);
    }
    this.text = op.apply(this.text);
    this.history.push({ client, seq, op });
    this.lengths.push(op.targetLength);
    let mine = this.committed.get(client);
    if (!mine) this.committed.set(client, (mine = new Map()));
    mine.set(seq, this.rev);
    this.log.push(`commit ${client}#${seq} -> ${this.rev}`);
    session.send({ type: "ack", seq, rev: this.rev });
    this.broadcast(session, { type: "op", rev: this.rev, client, op: op.toJSON() });
  }

  private broadcast(except: ServerSession | null, message: object): void {
    for (const s of this.sessions) if (s !== except && s.client !== null) s.send(message);
  }
}

/** One socket: a client end, a server session and the frames in flight. */
export class Link implements SocketLike {
  readonly toServer: string[] = [];
  readonly toClient: string[] = [];
  opened = false;
  closed = false;
  /** A graceful close from the server: delivered after what it sent before. */
  private closing: { code: number; reason: string } | null = null;
  readonly session: ServerSession;

  constructor(
    readonly network: SimNetwork,
    readonly owner: string,
    private readonly handlers: SocketHandlers,
  ) {
    const link = this;
    this.session = {
      client: null,
      user: null,
      send(message: object) {
        if (!link.closed && !link.closing) link.toClient.push(JSON.stringify(message));
      },
      close(code: number, reason = "", graceful = false) {
        if (!graceful) {
          link.cut(code, reason);
          return;
        }
        // The server reads nothing more; the client hears the close after the rest.
        link.closing = { code, reason };
        link.toServer.length = 0;
        if (link.toClient.length === 0) link.cut(code, reason);
      },
    };
  }

  // SocketLike (the client's end)
  send(data: string): void {
    if (!this.opened) throw new Error("send on a socket that is not open");
    if (!this.closed && !this.closing) this.toServer.push(data);
  }

  close(): void {
    // The client closed: the server sees it, in-flight frames are lost.
    if (this.closed) return;
    this.closed = true;
    this.toServer.length = 0;
    this.toClient.length = 0;
    this.network.server.disconnect(this.session);
  }

  /** The socket finishes opening. */
  open(): void {
    if (this.closed || this.opened) return;
    this.opened = true;
    this.network.server.connect(this.session);
    this.handlers.onOpen();
  }

  /** The network or the server cuts the link; the client hears `code`. */
  cut(code = 1006, reason = ""): void {
    if (this.closed) return;
    this.close();
    this.handlers.onClose(code, reason);
  }

  deliverToServer(): boolean {
    const frame = this.toServer.shift();
    if (frame === undefined) return false;
    this.network.server.receive(this.session, frame);
    return true;
  }

  deliverToClient(): boolean {
    const frame = this.toClient.shift();
    if (frame === undefined) return false;
    this.handlers.onMessage(frame);
    if (this.closing && this.toClient.length === 0)
      this.cut(this.closing.code, this.closing.reason);
    return true;
  }
}

/** All links to one {@link DummyServer}. */
export class SimNetwork {
  readonly links: Link[] = [];

  constructor(readonly server: DummyServer) {}

  /** A socket factory for the connection of client `owner`. */
  factory(owner: string): SocketFactory {
    return (_url, handlers) => {
      const link = new Link(this, owner, handlers);
      this.links.push(link);
      return link;
    };
  }

  /** Links that are not closed. */
  live(): Link[] {
    return this.links.filter((l) => !l.closed);
  }

  /** Delivers every frame and opens every socket until nothing moves. */
  flush(limit = 100_000): void {
    for (let i = 0; i < limit; i++) {
      let moved = false;
      for (const l of this.live()) {
        if (!l.opened) {
          l.open();
          moved = true;
        }
        while (!l.closed && l.deliverToServer()) moved = true;
        while (!l.closed && l.deliverToClient()) moved = true;
      }
      if (!moved) return;
    }
    throw new Error("network did not settle");
  }
}
