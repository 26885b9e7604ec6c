/**
 * Transport pieces of the connection: the socket and clock interfaces it is
 * given (so tests can replace both), the browser `WebSocket` adapter, and the
 * reconnect backoff.
 *
 * @module
 */

/** First reconnect delay; doubles per failed attempt. */
export const BACKOFF_BASE_MS = 500;
/** Longest reconnect delay: long enough not to hammer a server that is down, short enough to feel live. */
export const BACKOFF_MAX_MS = 8_000;
/** After this many failed attempts in a row the status says `offline` rather than `reconnecting`. */
export const OFFLINE_AFTER_ATTEMPTS = 3;
/** A socket that has not delivered `joined` this long after opening is given up and retried. */
export const JOIN_TIMEOUT_MS = 15_000;

/**
 * The delay before reconnect attempt `attempt` (0-based): `min(8 s, 0.5 s *
 * 2^attempt)`, of which a random half is dropped ("equal jitter"), so that
 * clients a server dropped together do not come back together.
 */
export function backoffDelay(attempt: number, random: () => number): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Callbacks a socket reports to. */
export interface SocketHandlers {
  onOpen(): void;
  /** One text frame. */
  onMessage(data: string): void;
  /** The socket closed (or failed to open: browsers report 1006). */
  onClose(code: number, reason: string): void;
}

/** The little the connection needs from a WebSocket. */
export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** Opens a socket to `url` that reports to `handlers`. */
export type SocketFactory = (url: string, handlers: SocketHandlers) => SocketLike;

/**
 * A {@link SocketFactory} over the browser's `WebSocket`. Sending on a socket
 * that is no longer open does nothing (the browser would log an error): the
 * close is on its way, and the connection resends what matters on resume.
 */
export const browserSocketFactory: SocketFactory = (url, handlers) => {
  const ws = new WebSocket(url);
  ws.onopen = () => handlers.onOpen();
  ws.onmessage = (ev: MessageEvent) => {
    // The protocol is text frames only; a binary frame is a violation.
    handlers.onMessage(typeof ev.data === "string" ? ev.data : "");
  };
  ws.onclose = (ev: CloseEvent) => handlers.onClose(ev.code, ev.reason);
  return {
    send: (data) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(data);
    },
    close: (code, reason) => ws.close(code, reason),
  };
};

/** Timers, injectable for tests. */
export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real timers. */
export const realClock: Clock = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
};
