/**
 * Small DOM and formatting helpers shared by the app's pages.
 *
 * @module
 */

/** Creates an element with attributes and children (strings become text nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}

/** Document ids the server accepts: 1-128 characters of [A-Za-z0-9._-]. */
export function isDocumentId(id: string): boolean {
  return /^[A-Za-z0-9._-]{1,128}$/.test(id);
}

/** A fresh random document id (10 lowercase letters and digits). */
export function randomDocumentId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let id = "";
  while (id.length < 10) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    // 252 = 7 * 36: dropping larger bytes keeps every character equally likely.
    for (const b of bytes) if (b < 252 && id.length < 10) id += alphabet[b % 36];
  }
  return id;
}

/** "3 minutes ago" style, for the list of documents. */
export function timeAgo(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 45) return "just now";
  const units: [number, string][] = [
    [60, "minute"],
    [3600, "hour"],
    [86400, "day"],
    [2592000, "month"],
    [31536000, "year"],
  ];
  let unit: [number, string] = units[0] as [number, string];
  for (const u of units) if (s >= u[0] * 0.75) unit = u;
  const n = Math.max(1, Math.round(s / unit[0]));
  return `${n} ${unit[1]}${n === 1 ? "" : "s"} ago`;
}

/** Copies `text` to the clipboard; false if the browser refused. */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the old way
  }
  const area = h("textarea", { readonly: "", "aria-hidden": "true" });
  area.value = text;
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
