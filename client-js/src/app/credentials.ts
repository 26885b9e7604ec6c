/**
 * The credentials the web app passes to the server (docs: README,
 * "Authentication"): a sign-in token (`?token=<jwt>`) and a document's share
 * link (`?link=<token>`), read from the page's URL and kept for the tab's
 * session in sessionStorage, so that a reload or a trip to the landing page
 * keeps them. The token is taken out of the visible URL (it is the user's
 * own, and an address bar gets copied); a link stays, so that the page's
 * URL can still be shared.
 *
 * Every request the app makes carries them: the WebSocket URL and each REST
 * call ({@link withCredentials}).
 *
 * The pure parts (no DOM) are unit-tested in Node.
 *
 * @module
 */

/** What the app sends with every request; null where there is none. */
export interface Credentials {
  /** A sign-in token (JWT), for every document. */
  readonly token: string | null;
  /** A share link's token, for one document. */
  readonly link: string | null;
}

/** No credentials (an open server needs none). */
export const NO_CREDENTIALS: Credentials = Object.freeze({ token: null, link: null });

/** sessionStorage keys: the token, and a link per document id. */
export const TOKEN_KEY = "tandem.token";
export const linkKey = (id: string): string => `tandem.link.${id}`;

/** The least a key-value store must do (sessionStorage; a Map in tests). */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

function nonEmpty(v: string | null | undefined): string | null {
  return v ? v : null;
}

/**
 * The credentials of a page whose query is `search` (`?token=…&link=…`), for
 * document `id` (null on the landing page, which has no link): the URL's
 * win, and are stored; what the URL lacks comes from `store`.
 */
export function resolveCredentials(
  search: string,
  id: string | null,
  store: KeyValueStore | null,
): Credentials {
  const query = new URLSearchParams(search);
  const get = (key: string): string | null => {
    try {
      return nonEmpty(store?.getItem(key));
    } catch {
      return null;
    }
  };
  const put = (key: string, value: string): void => {
    try {
      store?.setItem(key, value);
    } catch {
      // Storage full or refused: the credentials still hold for this page.
    }
  };
  let token = nonEmpty(query.get("token"));
  if (token) put(TOKEN_KEY, token);
  else token = get(TOKEN_KEY);
  let link: string | null = null;
  if (id !== null) {
    link = nonEmpty(query.get("link"));
    if (link) put(linkKey(id), link);
    else link = get(linkKey(id));
  }
  return { token, link };
}

/**
 * `url` (absolute, or a path such as `/api/documents/x/revisions?limit=5`)
 * with the credentials added to its query, after what it already has.
 */
export function withCredentials(url: string, credentials: Credentials): string {
  const params: string[] = [];
  if (credentials.token) params.push(`token=${encodeURIComponent(credentials.token)}`);
  if (credentials.link) params.push(`link=${encodeURIComponent(credentials.link)}`);
  if (params.length === 0) return url;
  const hash = url.indexOf("#");
  const base = hash < 0 ? url : url.slice(0, hash);
  const fragment = hash < 0 ? "" : url.slice(hash);
  const sep = !base.includes("?") ? "?" : base.endsWith("?") || base.endsWith("&") ? "" : "&";
  return `${base}${sep}${params.join("&")}${fragment}`;
}

/**
 * The query `search` without its `token` (the link and everything else
 * stay), as `?…` or "" when nothing is left.
 */
export function withoutToken(search: string): string {
  const query = new URLSearchParams(search);
  if (!query.has("token")) return search;
  query.delete("token");
  const rest = query.toString();
  return rest ? `?${rest}` : "";
}

/**
 * What to forget after the server said "unauthenticated" (close 4401) for
 * `credentials`: a token there was is what it refused (a valid token with a
 * stale link is still signed in), else the link. Returns the storage key.
 */
export function refusedKey(id: string, credentials: Credentials): string | null {
  if (credentials.token) return TOKEN_KEY;
  if (credentials.link) return linkKey(id);
  return null;
}

/** Forgets the credential the server refused ({@link refusedKey}), so that the next page does not send it again. */
export function forgetRefused(id: string, credentials: Credentials): void {
  const key = refusedKey(id, credentials);
  if (key === null) return;
  try {
    window.sessionStorage.removeItem(key);
  } catch {
    // nothing kept, nothing to forget
  }
}

/** The page's shareable address for document `id`: with its link, never with a token. */
export function shareUrl(origin: string, id: string, credentials: Credentials): string {
  const base = `${origin}/d/${encodeURIComponent(id)}`;
  return credentials.link ? `${base}?link=${encodeURIComponent(credentials.link)}` : base;
}

/**
 * The credentials of this page (document `id`, or null for the landing
 * page), kept in sessionStorage; the token is taken out of the address bar.
 */
export function pageCredentials(id: string | null): Credentials {
  let store: KeyValueStore | null = null;
  try {
    store = window.sessionStorage;
  } catch {
    store = null;
  }
  const credentials = resolveCredentials(location.search, id, store);
  const search = withoutToken(location.search);
  // Only once it is kept: a reload must still find it.
  let kept = false;
  try {
    kept = credentials.token !== null && store?.getItem(TOKEN_KEY) === credentials.token;
  } catch {
    kept = false;
  }
  if (search !== location.search && kept) {
    history.replaceState(history.state, "", `${location.pathname}${search}${location.hash}`);
  }
  return credentials;
}
