/**
 * Who the user is to their colleagues: a name and a colour, remembered in
 * localStorage and sent in every `join`.
 *
 * @module
 */

import type { JoinUser } from "../protocol.js";

const NAME_KEY = "tandem.name";
const COLOR_KEY = "tandem.color";
/** The server's limit on names (characters). */
export const MAX_NAME_LENGTH = 64;

/** Colours that read well as a caret and as a tint on light and dark themes. */
export const PALETTE = [
  "#e5484d",
  "#f76b15",
  "#d6a100",
  "#30a46c",
  "#12a594",
  "#0090ff",
  "#6e56cf",
  "#d6409f",
  "#8e4ec6",
  "#3e63dd",
] as const;

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // disabled storage (privacy settings): nothing is remembered
  }
}

/** A name as the server accepts it: trimmed, no control characters, at most 64 characters. */
export function cleanName(name: string): string {
  const chars = [...name.replace(/[\u0000-\u001f\u007f-\u009f]/g, "").trim()];
  return chars.slice(0, MAX_NAME_LENGTH).join("").trim();
}

/** The remembered user, choosing (and remembering) a colour the first time. */
export function loadUser(): JoinUser {
  const s = storage();
  const name = cleanName(s?.getItem(NAME_KEY) ?? "");
  let color = s?.getItem(COLOR_KEY) ?? "";
  if (!/^#[0-9a-f]{6}$/.test(color)) {
    color = PALETTE[Math.floor(Math.random() * PALETTE.length)] as string;
    s?.setItem(COLOR_KEY, color);
  }
  return { name, color };
}

/** Remembers the name (an empty one is forgotten). */
export function saveName(name: string): void {
  const s = storage();
  if (!s) return;
  if (name) s.setItem(NAME_KEY, name);
  else s.removeItem(NAME_KEY);
}
