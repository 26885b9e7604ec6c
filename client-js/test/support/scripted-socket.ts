/** A socket the test plays the server for, frame by frame. */
import type { SocketFactory, SocketHandlers, SocketLike } from "../../src/index.js";

export class ScriptedSocket implements SocketLike {
  readonly sent: unknown[] = [];
  closedWith: { code: number | undefined; reason: string | undefined } | null = null;

  constructor(
    readonly url: string,
    private readonly handlers: SocketHandlers,
  ) {}

  send(data: string): void {
    if (this.closedWith) throw new Error("send after close");
    this.sent.push(JSON.parse(data));
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
  }

  open(): void {
    this.handlers.onOpen();
  }

  receive(message: unknown): void {
    this.handlers.onMessage(typeof message === "string" ? message : JSON.stringify(message));
  }

  serverClose(code: number, reason = ""): void {
    this.handlers.onClose(code, reason);
  }

  /** Frames sent since the last call. */
  take(): unknown[] {
    return this.sent.splice(0);
  }
}

export class ScriptedSockets {
  readonly all: ScriptedSocket[] = [];
  readonly factory: SocketFactory = (url, handlers) => {
    const s = new ScriptedSocket(url, handlers);
    this.all.push(s);
    return s;
  };

  get last(): ScriptedSocket {
    const s = this.all[this.all.length - 1];
    if (!s) throw new Error("no socket opened yet");
    return s;
  }
}
