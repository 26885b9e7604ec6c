/**
 * The editor page's status line, as a pure function of the connection's
 * state (unit-tested in Node): it says "Connected" only when nothing of ours
 * waits for the server.
 *
 * | state | text | class |
 * |---|---|---|
 * | joined, nothing pending | Connected | `connected` |
 * | joined, edits in flight, acks coming | Saving 2 edits… | `saving` |
 * | joined, no ack for {@link STALLED_AFTER_MS} | Not saved: 2 edits waiting for the server | `unsaved` |
 * | a change was refused (until dismissed) | Not saved: … | `unsaved` |
 * | reconnecting, offline (edits pending) | Offline: 2 edits not yet saved · … | the status kind |
 * | reconnecting, nothing pending; closed | Reconnecting…, Disconnected (…) | the status kind |
 * | closed with 4401 / 4403 | Not signed in / No access | `closed` |
 *
 * @module
 */

import type { ConnectionStatus } from "../connection.js";

/** Edits that have waited this long for an ack are shown as not saved. */
export const STALLED_AFTER_MS = 4000;

/** What the status line shows besides the connection status. */
export interface StatusFacts {
  /** Our edits the server has not acknowledged. */
  readonly waiting: number;
  /** How long the op in flight has waited for its ack (0 if none). */
  readonly stalledMs: number;
  /** A refusal the user has not dismissed yet, in a few words; null if none. */
  readonly refused: string | null;
}

/** The status line: its text and its class (`status <kind>`). */
export interface StatusView {
  readonly text: string;
  readonly kind:
    "connecting" | "connected" | "saving" | "unsaved" | "reconnecting" | "offline" | "closed";
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** See the module doc. */
export function describeStatus(s: ConnectionStatus, facts: StatusFacts): StatusView {
  const { waiting } = facts;
  switch (s.kind) {
    case "connecting":
      return { text: "Connecting…", kind: "connecting" };
    case "connected":
      if (facts.refused !== null) return { text: `Not saved: ${facts.refused}`, kind: "unsaved" };
      if (waiting > 0 && facts.stalledMs >= STALLED_AFTER_MS) {
        return {
          text: `Not saved: ${plural(waiting, "edit")} waiting for the server`,
          kind: "unsaved",
        };
      }
      if (waiting > 0) return { text: `Saving ${plural(waiting, "edit")}…`, kind: "saving" };
      return { text: "Connected", kind: "connected" };
    case "reconnecting":
      return {
        text: waiting
          ? `Offline: ${plural(waiting, "edit")} not yet saved · reconnecting…`
          : "Reconnecting…",
        kind: "reconnecting",
      };
    case "offline":
      return {
        text: `Offline: ${plural(waiting, "edit")} not yet saved · retrying in ${Math.ceil(s.retryInMs / 1000)} s`,
        kind: "offline",
      };
    case "closed":
      if (s.code === 4401 || s.code === 4403) {
        const what = s.code === 4401 ? "Not signed in" : "No access";
        return {
          text: `${what}${waiting ? ` · ${plural(waiting, "edit")} not saved` : ""}`,
          kind: "closed",
        };
      }
      return {
        text: `Disconnected (${s.reason || s.code})${waiting ? ` · ${plural(waiting, "edit")} not saved` : ""}`,
        kind: "closed",
      };
  }
}
