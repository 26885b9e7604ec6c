/**
 * Helpers for the browser end-to-end tests: the server process, Chromium
 * pages with the app, and polling for convergence (no fixed sleeps).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Browser, BrowserContext, Page } from "playwright-core";

/** Chromium flags: headless, no sandbox (root in CI), nothing fetched from outside. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
];

/** Polls `check` until it returns a value other than undefined/false, or fails with `what`. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One run of the tandem binary. */
export class ServerProcess {
  private constructor(
    private readonly proc: ChildProcess,
    readonly port: number,
    private readonly exited: Promise<number | null>,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Starts `bin serve` on `port` (0: any) and reads the port from its first
   * line. stderr goes to `logFile`; `args` are more flags for `serve`.
   */
  static async start(
    bin: string,
    opts: { port: number; data: string; staticDir: string; logFile: string; args?: string[] },
  ): Promise<ServerProcess> {
    const log = createWriteStream(opts.logFile, { flags: "a" });
    const proc = spawn(
      bin,
      [
        "serve",
        "--bind",
        `127.0.0.1:${opts.port}`,
        "--data",
        opts.data,
        "--static-dir",
        opts.staticDir,
        ...(opts.args ?? []),
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TANDEM_LOG: "info" } },
    );
    proc.stderr?.pipe(log);
    const exited = new Promise<number | null>((resolve) =>
      proc.on("exit", (code) => resolve(code)),
    );
    const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("the server printed no address in 20 s")),
        20_000,
      );
      lines.once("line", (line) => {
        clearTimeout(timer);
        const m = /^tandem listening on http:\/\/[^:]+:(\d+)/.exec(line);
        if (m) resolve(Number(m[1]));
        else reject(new Error(`unexpected first line from the server: ${line}`));
      });
      proc.once("error", (e) => reject(e));
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited with ${code}: ${tail(opts.logFile)}`));
      });
    });
    lines.on("line", () => {}); // keep draining stdout
    return new ServerProcess(proc, port, exited);
  }

  /** Sends `signal` and waits for the process to end. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 15_000));
    const r = await Promise.race([this.exited, timeout]);
    if (r === "timeout") {
      this.proc.kill("SIGKILL");
      throw new Error(`the server did not stop within 15 s of ${signal}`);
    }
    return r;
  }

  /** Kills the process if it is still running (for cleanup). */
  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
  }
}

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** A browser page showing one document, as one named user. */
export class EditorPage {
  readonly errors: string[] = [];

  private constructor(
    readonly name: string,
    readonly context: BrowserContext,
    readonly page: Page,
  ) {}

  static async open(
    browser: Browser,
    baseUrl: string,
    docId: string,
    /** `color`: a chosen colour (null: the server assigns one). */
    user: { name: string; color: string | null },
    options: {
      width?: number;
      height?: number;
      dark?: boolean;
      clipboard?: boolean;
      /** Runs in the page before its scripts (e.g. to wrap `WebSocket`). */
      init?: () => void;
      /** The page URL's query, e.g. `?link=…` or `?token=…`. */
      query?: string;
      /** Wait until connected (default); false for a page the server refuses. */
      connect?: boolean;
      /** The editor the page shows (`?editor=codemirror`); Monaco by default. */
      editor?: "monaco" | "codemirror";
    } = {},
  ): Promise<EditorPage> {
    const context = await browser.newContext({
      viewport: { width: options.width ?? 1000, height: options.height ?? 640 },
      colorScheme: options.dark ? "dark" : "light",
    });
    if (options.clipboard) {
      // The real clipboard: navigator.clipboard in the page, Ctrl+V in the editor.
      await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: baseUrl });
    }
    if (options.init) await context.addInitScript(options.init);
    await context.addInitScript((u: { name: string; color: string | null }) => {
      try {
        // Only on the first load of the app: a reload keeps what the page stored.
        if (location.protocol !== "http:" || sessionStorage.getItem("tandem.e2e.init")) return;
        sessionStorage.setItem("tandem.e2e.init", "1");
        localStorage.setItem("tandem.name", u.name);
        if (u.color) {
          localStorage.setItem("tandem.color", u.color);
          localStorage.setItem("tandem.colorChosen", "1");
        }
      } catch {
        // about:blank has no storage
      }
    }, user);
    const page = await context.newPage();
    const p = new EditorPage(user.name, context, page);
    page.on("pageerror", (e) => p.errors.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      const text = m.text();
      // The browser logs failed socket attempts while the server restarts.
      if (/WebSocket connection to|ERR_CONNECTION_REFUSED|Failed to load resource/.test(text))
        return;
      p.errors.push(`console.error: ${text}`);
    });
    const query =
      options.editor === "codemirror"
        ? `${options.query ? `${options.query}&` : "?"}editor=codemirror`
        : (options.query ?? "");
    await page.goto(`${baseUrl}/d/${encodeURIComponent(docId)}${query}`);
    if (options.connect === false) return p;
    await p.waitConnected();
    // Suggestions pop up on a timer and Enter would accept them: keep typing deterministic.
    await page.evaluate(() =>
      window.tandem?.editor.updateOptions({
        quickSuggestions: false,
        suggestOnTriggerCharacters: false,
        wordBasedSuggestions: "off",
        acceptSuggestionOnEnter: "off",
        parameterHints: { enabled: false },
      }),
    );
    return p;
  }

  async waitConnected(timeoutMs = 20_000): Promise<void> {
    await until(
      `${this.name} connected`,
      () => this.page.evaluate(() => window.tandem?.connection.status.kind === "connected"),
      timeoutMs,
    );
  }

  /** The text the page's editor shows (Monaco or CodeMirror). */
  text(): Promise<string> {
    return this.page.evaluate(() => window.tandem?.ui.getValue() ?? "");
  }

  /** Connection state: status, edits waiting, revision. */
  state(): Promise<{ status: string; waiting: number; rev: number | null }> {
    return this.page.evaluate(() => {
      const c = window.tandem?.connection;
      return {
        status: c?.status.kind ?? "none",
        waiting: c?.waitingEdits ?? -1,
        rev: c?.revision ?? null,
      };
    });
  }

  /** Focuses the editor and puts the caret at (line, column), 1-based. */
  async caretAt(lineNumber: number, column: number): Promise<void> {
    await this.page.evaluate(
      ([l, c]) => window.tandem?.ui.setCaret(l as number, c as number),
      [lineNumber, column],
    );
  }

  /** Focuses the editor and puts the caret at the end of the document. */
  async caretAtEnd(): Promise<void> {
    await this.page.evaluate(() => window.tandem?.ui.setCaretAtEnd());
  }

  /** Selects from (line, column) to (line, column), 1-based. */
  async select(l1: number, c1: number, l2: number, c2: number): Promise<void> {
    await this.page.evaluate(
      ([a, b, c, d]) => window.tandem?.ui.setSelection(a!, b!, c!, d!),
      [l1, c1, l2, c2],
    );
  }

  /** Pastes `text` at the caret as the editor's paste command does (no clipboard needed). */
  async paste(text: string): Promise<void> {
    await this.page.evaluate((t) => window.tandem?.ui.paste(t), text);
  }

  async close(): Promise<void> {
    await this.context.close();
  }
}

/** The document as the server has it (REST); `query` carries credentials (`?token=…`). */
export async function serverDocument(
  baseUrl: string,
  id: string,
  query = "",
): Promise<{ id: string; rev: number; language: string; text: string }> {
  const res = await fetch(`${baseUrl}/api/documents/${encodeURIComponent(id)}${query}`);
  if (!res.ok) throw new Error(`GET document ${id}: ${res.status}`);
  return (await res.json()) as { id: string; rev: number; language: string; text: string };
}

/**
 * Waits until every page is connected with nothing waiting and shows the
 * same text as the server; returns that text.
 */
export async function converged(
  baseUrl: () => string,
  id: string,
  pages: readonly EditorPage[],
  timeoutMs = 30_000,
): Promise<string> {
  return until(
    "the editors and the server to agree",
    async () => {
      const states = await Promise.all(pages.map((p) => p.state()));
      if (states.some((s) => s.status !== "connected" || s.waiting !== 0)) return undefined;
      const texts = await Promise.all(pages.map((p) => p.text()));
      const server = await serverDocument(baseUrl(), id);
      return texts.every((t) => t === server.text) ? server.text : undefined;
    },
    timeoutMs,
  );
}

/** True if `path` exists. */
export function exists(path: string): boolean {
  return existsSync(path);
}

export { join };
