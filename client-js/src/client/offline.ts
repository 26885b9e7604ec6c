/**
 * Unsaved edits that survive a reload: a {@link SavedSession} is everything
 * a client needs to resume after the page (or the browser) is gone, and an
 * {@link OfflineStore} keeps them per document and client id.
 *
 * A saved session holds the client id, the revision it had reached, the
 * server's text at that revision, the op in flight with its `seq`, the
 * buffered edits and the next `seq`. Restored, the client joins with the
 * same id and revision, and resends the op in flight under the same `seq`:
 * the server dedupes by (client, seq) (PROTOCOL.md rule 3), so every edit
 * lands exactly once, whether or not the op had been committed before the
 * page went away. The buffer was never sent, so it simply becomes the next op.
 *
 * The store is written as edits are made (the connection's `pending` event),
 * and forgotten once nothing is pending. {@link storageStore} keeps them in
 * `localStorage` (synchronous, so an edit is on disk before the event
 * returns, and readable at start-up before anything renders): the small part
 * (`…:pending`, ids, ops) on every change; the server text (`…:base`) only
 * when the revision has moved since it was last written.
 *
 * A page claims a saved session when it restores it ({@link OfflineStore.claim}),
 * so two tabs of one document never resume the same client id. A live page
 * says so ({@link OfflineStore.heartbeat}, every few seconds, in `…:alive`)
 * and a session whose page beat less than {@link ALIVE_MS} ago is never
 * claimed; a page that goes away ({@link OfflineStore.release}, on
 * `pagehide`) stops beating at once, so a reload resumes its session right
 * away. After a crash the session is claimed by the first page opened once
 * the beat is {@link ALIVE_MS} old.
 *
 * @module
 */

import { TextOperation } from "../ot/text-operation.js";
import type { Permission } from "../protocol.js";
import { Rope } from "../ot/rope.js";
import { freeze, NO_LIMITS, sendIfAny, type ClientState } from "./state.js";
import type { OpLimits } from "../ot/split.js";

/** A page that beat this recently is alive: its session is not claimed. */
export const ALIVE_MS = 10_000;

/** How often a live page should call {@link OfflineStore.heartbeat}. */
export const HEARTBEAT_MS = 3_000;

/** Format version of saved sessions; others are ignored. */
export const SAVED_SESSION_VERSION = 1;

/** What a client needs to resume after a reload (JSON-safe). */
export interface SavedSession {
  readonly version: typeof SAVED_SESSION_VERSION;
  /** Our client id, or null if the session never joined (nothing was sent). */
  readonly client: string | null;
  /** The last server revision applied. */
  readonly rev: number;
  /** The server's text at `rev`. */
  readonly text: string;
  /** The `seq` the next new op gets. */
  readonly nextSeq: number;
  /** The op in flight (maybe committed): its `seq`, ot.js JSON and edit count. */
  readonly outstanding: {
    readonly seq: number;
    readonly op: unknown;
    readonly edits: number;
  } | null;
  /** Edits never sent, composed: ot.js JSON and edit count. */
  readonly buffer: { readonly op: unknown; readonly edits: number } | null;
  /** What we were allowed to do. */
  readonly permission: Permission | null;
}

/** The pending part of a state, or null if nothing is pending (nothing to save). */
export function saveSession(
  state: ClientState,
  client: string | null,
  permission: Permission | null,
): SavedSession | null {
  const o = "outstanding" in state ? state.outstanding : null;
  const b = "buffer" in state ? state.buffer : null;
  if (!o && !b) return null;
  // Resyncing: `rev`/`text` are still the base of the op in flight.
  const session = {
    version: SAVED_SESSION_VERSION,
    client,
    rev: state.rev,
    nextSeq: state.nextSeq,
    outstanding: o ? { seq: o.seq, op: o.op.toJSON(), edits: o.edits } : null,
    buffer: b ? { op: b.op.toJSON(), edits: b.edits } : null,
    permission,
  } as const;
  // `text` is joined only if read: a store rewrites it only when `rev` moved.
  const rope = state.text;
  return Object.defineProperty(session, "text", {
    get: () => rope.toString(),
    enumerable: true,
  }) as SavedSession;
}

/**
 * The state a saved session resumes from. With a client id it is the state
 * it was in (AwaitingConfirm or AwaitingWithBuffer: the op in flight is
 * resent under its `seq` once joined); without one nothing was ever sent,
 * so everything waits in a {@link Reloading} buffer and is rebased on the
 * text the first `joined` brings.
 *
 * # Errors
 * Throws `OperationError` if the saved ops do not fit the saved text (a
 * corrupt record: the caller drops it).
 */
export function restoreSession(saved: SavedSession, limits: OpLimits = NO_LIMITS): ClientState {
  const text = Rope.from(saved.text);
  const base = { rev: saved.rev, text, length: text.length, nextSeq: saved.nextSeq, limits };
  const o = saved.outstanding
    ? {
        seq: saved.outstanding.seq,
        op: TextOperation.fromJSON(saved.outstanding.op, text.length),
        edits: saved.outstanding.edits,
      }
    : null;
  const b = saved.buffer
    ? {
        op: TextOperation.fromJSON(saved.buffer.op, o ? o.op.targetLength : text.length),
        edits: saved.buffer.edits,
      }
    : null;
  if (saved.client === null) {
    // Never joined: nothing was sent. Rebased on the first `joined`'s text.
    const pending = o && b ? { op: o.op.compose(b.op), edits: o.edits + b.edits } : (o ?? b);
    return freeze({ ...base, kind: "reloading", outstanding: null, buffer: pending });
  }
  if (o && b) return freeze({ ...base, kind: "awaitingWithBuffer", outstanding: o, buffer: b });
  if (o) return freeze({ ...base, kind: "awaitingConfirm", outstanding: o });
  // Only edits never sent: they become the op in flight (a new `seq`).
  return sendIfAny(base, b, undefined).state;
}

/** True if `x` looks like a {@link SavedSession} of this version. */
export function isSavedSession(x: unknown): x is SavedSession {
  if (typeof x !== "object" || x === null) return false;
  const s = x as Record<string, unknown>;
  return (
    s["version"] === SAVED_SESSION_VERSION &&
    (s["client"] === null || typeof s["client"] === "string") &&
    Number.isSafeInteger(s["rev"]) &&
    typeof s["text"] === "string" &&
    Number.isSafeInteger(s["nextSeq"])
  );
}

/** Where saved sessions are kept, per document and client id. */
export interface OfflineStore {
  /** Saves (or, with null, forgets) this page's session of `doc`. */
  save(doc: string, session: SavedSession | null): void;
  /**
   * Takes a saved session of `doc` left by a page that is gone, if any: it
   * is no longer offered to other pages (this page saves it again under
   * its own key as it goes on).
   */
  claim(doc: string): SavedSession | null;
  /** This page is alive and holds its session of `doc` (call every {@link HEARTBEAT_MS}). */
  heartbeat(doc: string): void;
  /** This page is going away (`pagehide`): its saved session may be claimed at once. */
  release(doc: string): void;
}

/** The part of the Web Storage API used (`localStorage`, or a stand-in in tests). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  readonly length: number;
  key(index: number): string | null;
}

const PREFIX = "tandem.offline.";

/**
 * An {@link OfflineStore} over Web Storage. Keys:
 * `tandem.offline.<doc>.<slot>:pending` and `…:base`, where `slot` is the
 * client id (or `new-<random>` before the first `joined`). Storage errors
 * (quota, disabled) are swallowed: the edits then live in memory only, as
 * before, and `save` returns normally.
 */
export function storageStore(
  storage: StorageLike,
  random: () => number = Math.random,
  now: () => number = Date.now,
): OfflineStore {
  /** This page's slot per document, and the revision of the base written there. */
  const slots = new Map<string, { slot: string; baseRev: number | null }>();
  const key = (doc: string, slot: string, part: "pending" | "base" | "alive"): string =>
    `${PREFIX}${encodeURIComponent(doc)}.${slot}:${part}`;
  const forget = (doc: string, slot: string): void => {
    storage.removeItem(key(doc, slot, "pending"));
    storage.removeItem(key(doc, slot, "base"));
    storage.removeItem(key(doc, slot, "alive"));
  };
  const beat = (doc: string, slot: string): void => {
    storage.setItem(key(doc, slot, "alive"), String(now()));
  };
  return {
    save(doc, session) {
      try {
        const slotName = session?.client ?? null;
        let mine = slots.get(doc);
        const wanted =
          slotName ?? mine?.slot ?? `new-${Math.floor(random() * 2 ** 48).toString(36)}`;
        if (mine && mine.slot !== wanted) {
          forget(doc, mine.slot); // the session got its client id: move it
          mine = undefined;
        }
        if (!mine) {
          mine = { slot: wanted, baseRev: null };
          slots.set(doc, mine);
          beat(doc, mine.slot);
        }
        if (!session) {
          forget(doc, mine.slot);
          mine.baseRev = null;
          return;
        }
        const pending = {
          version: session.version,
          client: session.client,
          rev: session.rev,
          nextSeq: session.nextSeq,
          outstanding: session.outstanding,
          buffer: session.buffer,
          permission: session.permission,
        };
        if (mine.baseRev !== session.rev) {
          // Base first: a pending record never points at a missing base.
          const base = JSON.stringify({ rev: session.rev, text: session.text });
          storage.setItem(key(doc, mine.slot, "base"), base);
          mine.baseRev = session.rev;
        }
        storage.setItem(key(doc, mine.slot, "pending"), JSON.stringify(pending));
      } catch {
        // Quota or disabled storage: the edits stay in memory only.
      }
    },
    claim(doc) {
      const prefix = `${PREFIX}${encodeURIComponent(doc)}.`;
      const found: string[] = [];
      for (let i = 0; i < storage.length; i++) {
        const k = storage.key(i);
        if (k && k.startsWith(prefix) && k.endsWith(":pending")) found.push(k);
      }
      for (const k of found.sort()) {
        const slot = k.slice(prefix.length, -":pending".length);
        if (slots.get(doc)?.slot === slot) continue; // our own
        const alive = Number(storage.getItem(key(doc, slot, "alive")) ?? "0");
        if (now() - alive < ALIVE_MS) continue; // another live page's
        try {
          const pending = JSON.parse(storage.getItem(k) ?? "null") as Record<string, unknown>;
          const base = JSON.parse(storage.getItem(key(doc, slot, "base")) ?? "null") as {
            rev: unknown;
            text: unknown;
          } | null;
          forget(doc, slot);
          const session = { ...pending, text: base?.text };
          if (base && base.rev === pending["rev"] && isSavedSession(session)) {
            restoreSession(session); // throws if corrupt
            return session;
          }
        } catch {
          forget(doc, slot);
        }
      }
      return null;
    },
    heartbeat(doc) {
      const mine = slots.get(doc);
      try {
        if (mine) beat(doc, mine.slot);
      } catch {
        // storage unavailable
      }
    },
    release(doc) {
      const mine = slots.get(doc);
      // Forgotten as ours too: this page, back from the back/forward cache,
      // claims it again like any other.
      slots.delete(doc);
      try {
        if (mine) storage.removeItem(key(doc, mine.slot, "alive"));
      } catch {
        // storage unavailable
      }
    },
  };
}

/** An {@link OfflineStore} in memory (tests; or where storage is unavailable). */
export function memoryStore(): OfflineStore & { readonly sessions: Map<string, SavedSession> } {
  const sessions = new Map<string, SavedSession>();
  const own = new Map<string, string>();
  return {
    sessions,
    save(doc, session) {
      const k = own.get(doc);
      if (k) sessions.delete(k);
      if (!session) {
        own.delete(doc);
        return;
      }
      const next = `${doc}\u0000${session.client ?? "new"}`;
      own.set(doc, next);
      sessions.set(next, session);
    },
    heartbeat() {},
    release() {},
    claim(doc) {
      for (const [k, s] of sessions) {
        if (k.startsWith(`${doc}\u0000`) && own.get(doc) !== k) {
          sessions.delete(k);
          return s;
        }
      }
      return null;
    },
  };
}
