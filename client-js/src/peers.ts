/**
 * How peers look, for any editor adapter: a valid colour, a readable text
 * colour on it, and the name shown. No editor dependency.
 *
 * @module
 */

import type { Peer } from "./connection.js";

/** Colour for a peer without a valid one. */
const FALLBACK_COLOR = "#888888";

/** `#abc` or `#aabbcc` as lowercase `#aabbcc`; anything else is the fallback grey. */
export function normalizeColor(color: string | null | undefined): string {
  const m = /^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/.exec(color ?? "");
  if (!m) return FALLBACK_COLOR;
  const hex = (m[1] as string).toLowerCase();
  return hex.length === 3 ? `#${hex[0]}${hex[0]}${hex[1]}${hex[1]}${hex[2]}${hex[2]}` : `#${hex}`;
}

/** Black or white, whichever reads better on `color` (a `#aabbcc`). */
export function textColorOn(color: string): string {
  const n = parseInt(color.slice(1), 16);
  const r = (n >> 16) & 255;
  const g = (n >> 8) & 255;
  const b = n & 255;
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#000000" : "#ffffff";
}

/** The name shown for a peer. */
export function peerName(peer: Peer): string {
  const name = peer.user?.name.trim();
  return name ? name : "Anonymous";
}
