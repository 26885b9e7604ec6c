/**
 * Who the user is to their colleagues: a name and a colour, remembered in
 * localStorage and sent in every `join`.
 *
 * @module
 */

import type { JoinUser } from "../protocol.js";

const NAME_KEY = "tandem.name";
const COLOR_KEY = "tandem.color";
/** Set to "1" when the colour in `tandem.color` was chosen by the user (older pages stored a random one). */
const COLOR_CHOSEN_KEY = "tandem.colorChosen";
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

/**
 * The remembered user. The colour is sent only if the user chose one
 * (`tandem.color`); otherwise it is null and the server gives this session
 * the colour least used among the people in the document, so that two
 * people never look alike.
 */
export function loadUser(): JoinUser {
  const s = storage();
  const name = cleanName(s?.getItem(NAME_KEY) ?? "");
  const chosen = s?.getItem(COLOR_CHOSEN_KEY) === "1" ? (s?.getItem(COLOR_KEY) ?? "") : "";
  return { name, color: /^#[0-9a-f]{6}$/.test(chosen) ? chosen : null };
}

/** Remembers the name (an empty one is forgotten). */
export function saveName(name: string): void {
  const s = storage();
  if (!s) return;
  if (name) s.setItem(NAME_KEY, name);
  else s.removeItem(NAME_KEY);
}
