/**
 * Browser end-to-end test of authentication, against a server started with
 * `--auth jwt`: alice (a token from `tandem token`) creates a document and
 * two share links; the read link's page is read-only (banner, keyboard
 * typing changes nothing in the editor nor on the server, no op is sent,
 * no restore in History); the write link's page types and its text reaches
 * the server; once alice revokes the write link, that page says its access
 * was revoked and does not reconnect, while the read-only page still
 * follows alice's typing; a page without credentials shows the sign-in
 * page, one with a token that has no right the "no access" page. A writer
 * lowered to read while connected has its refused edits undone at once and
 * turns read-only, sending nothing more. Same needs
 * and switches as collab.e2e.test.ts (TANDEM_BIN, TANDEM_CHROMIUM,
 * TANDEM_E2E_SKIP).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";
import {
  CHROMIUM_ARGS,
  EditorPage,
  ServerProcess,
  exists,
  serverDocument,
  until,
} from "./support.js";

const CLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = resolve(CLIENT_DIR, process.env["TANDEM_BIN"] ?? "../target/debug/tandem");
const CHROMIUM = process.env["TANDEM_CHROMIUM"] ?? "/usr/bin/chromium";
const STATIC_DIR = join(CLIENT_DIR, "dist");
const SECRET = "e2e-auth-secret-0123456789abcdef";
const READ_ONLY_TEXT = "Read-only: you can view this document but not edit it";

/** Counts the page's sockets and the ops it sends (installed before the app runs). */
function countSockets(): void {
  const w = window as unknown as { __sockets: number; __opsSent: number };
  w.__sockets = 0;
  w.__opsSent = 0;
  const Native = window.WebSocket;
  class Counting extends Native {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      w.__sockets++;
    }
    override send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
      try {
        if (typeof data === "string" && (JSON.parse(data) as { type?: string }).type === "op")
          w.__opsSent++;
      } catch {
        // not JSON: not ours to count
      }
      super.send(data);
    }
  }
  window.WebSocket = Counting;
}

if (process.env["TANDEM_E2E_SKIP"] === "1") {
  test("authentication end-to-end test", { skip: "TANDEM_E2E_SKIP=1" }, () => {});
} else {
  suite();
}

function suite(): void {
  let tmp = "";
  let server: ServerProcess | null = null;
  let browser: Browser | null = null;
  const pages: EditorPage[] = [];
  const docId = `e2e-auth-${Date.now().toString(36)}`;
  const baseUrl = (): string => {
    if (!server) throw new Error("no server");
    return server.url;
  };
  const token = (sub: string, name: string): string =>
    execFileSync(BIN, ["token", "--sub", sub, "--name", name, "--jwt-secret", SECRET], {
      encoding: "utf8",
    }).trim();
  const open = async (
    user: { name: string; color: string },
    query: string,
    connect = true,
  ): Promise<EditorPage> => {
    if (!browser) throw new Error("no browser");
    const p = await EditorPage.open(browser, baseUrl(), docId, user, {
      query,
      connect,
      init: countSockets,
    });
    pages.push(p);
    return p;
  };
  const sockets = (p: EditorPage) =>
    p.page.evaluate(() => {
      const w = window as unknown as { __sockets: number; __opsSent: number };
      return { sockets: w.__sockets, opsSent: w.__opsSent };
    });
  const banner = (p: EditorPage) =>
    p.page.evaluate(() => {
      const b = document.getElementById("access-banner");
      return b && !b.hidden ? { kind: b.dataset["kind"] ?? "", text: b.textContent ?? "" } : null;
    });
  const readOnly = (p: EditorPage) =>
    p.page.evaluate(() => {
      const t = window.tandem;
      return t ? t.editor.getOption(t.monaco.editor.EditorOption.readOnly) : null;
    });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  before(async () => {
    const missing: string[] = [];
    if (!exists(BIN)) missing.push(`the server binary ${BIN} (cargo build, or set TANDEM_BIN)`);
    if (!exists(CHROMIUM)) missing.push(`Chromium at ${CHROMIUM}`);
    if (!exists(join(STATIC_DIR, "index.html")))
      missing.push(`the web app ${STATIC_DIR} (npm run build)`);
    if (missing.length > 0) {
      throw new Error(
        `e2e cannot run, missing: ${missing.join("; ")}. Set TANDEM_E2E_SKIP=1 to skip.`,
      );
    }
    tmp = mkdtempSync(join(tmpdir(), "tandem-e2e-auth-"));
    server = await ServerProcess.start(BIN, {
      port: 0,
      data: join(tmp, "tandem.db"),
      staticDir: STATIC_DIR,
      logFile: join(tmp, "server.log"),
      args: ["--auth", "jwt", "--jwt-secret", SECRET],
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    server?.kill();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("read link: read-only; write link: types; revoked: says so; no token: sign in", async () => {
    const alice = token("alice", "Alice");
    const asAlice = `?token=${encodeURIComponent(alice)}`;
    const api = (path: string) => `${baseUrl()}/api/documents${path}${asAlice}`;

    // Without a token the API refuses: the server really is in JWT mode.
    const anonymous = await fetch(`${baseUrl()}/api/documents/${docId}`);
    assert.equal(anonymous.status, 401);

    const created = await fetch(api(""), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: docId, text: "hello from alice\n" }),
    });
    assert.equal(created.status, 201, await created.text());
    const link = async (permission: "read" | "write") => {
      const res = await fetch(api(`/${docId}/links`), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ permission, expires_in: 600 }),
      });
      const body = await res.text();
      assert.equal(res.status, 201, body);
      return JSON.parse(body) as { id: string; token: string; permission: string };
    };
    const readLink = await link("read");
    const writeLink = await link("write");
    const serverText = async () => (await serverDocument(baseUrl(), docId, asAlice)).text;

    // ---- alice, signed in: the token leaves the address bar, a reload keeps it.
    const a = await open({ name: "Alice", color: "#e5484d" }, asAlice);
    assert.equal(await a.text(), "hello from alice\n");
    assert.equal(await a.page.evaluate(() => location.search), "");
    assert.equal(await a.page.evaluate(() => window.tandem?.connection.permission), "admin");
    assert.equal(await banner(a), null);
    await a.page.reload();
    await a.waitConnected();
    assert.equal(await a.page.evaluate(() => window.tandem?.connection.permission), "admin");

    // ---- the read link: read-only, with the banner; typing changes nothing.
    const r = await open({ name: "Rita", color: "#0090ff" }, `?link=${readLink.token}`);
    assert.equal(await r.page.evaluate(() => window.tandem?.connection.permission), "read");
    assert.match(
      await r.page.evaluate(() => location.search),
      new RegExp(`link=${readLink.token}`),
      "a link stays in the URL: it can be shared",
    );
    const rb = await until("the read-only banner", async () => (await banner(r)) ?? undefined);
    assert.equal(rb.kind, "read");
    assert.equal(rb.text, READ_ONLY_TEXT);
    assert.ok(await r.page.locator("#access-banner").isVisible());
    assert.equal(await readOnly(r), true);
    assert.equal(
      await r.page.evaluate(
        () => (document.getElementById("language") as HTMLSelectElement).disabled,
      ),
      true,
    );
    await r.page.click("#editor .view-lines");
    await r.caretAtEnd();
    await r.page.keyboard.type("reader was here", { delay: 10 });
    await r.page.keyboard.press("Enter");
    await r.page.keyboard.press("Backspace");
    await r.page.keyboard.press("Control+z");
    await sleep(500);
    assert.equal(await r.text(), "hello from alice\n");
    assert.equal(await serverText(), "hello from alice\n");
    assert.equal((await sockets(r)).opsSent, 0, "a reader sends no op");
    assert.equal(await r.page.evaluate(() => window.tandem?.connection.waitingEdits), 0);
    // Its history has no restore.
    await r.page.click("#history");
    await until("the history panel", () =>
      r.page.evaluate(() => window.tandem?.history?.element.dataset["current"] !== undefined),
    );
    assert.equal(await r.page.locator("#history-restore").isVisible(), false);
    await r.page.click("#history-close");

    // ---- the write link: typing reaches the server (and the reader).
    const w = await open({ name: "Walt", color: "#30a46c" }, `?link=${writeLink.token}`);
    assert.equal(await w.page.evaluate(() => window.tandem?.connection.permission), "write");
    assert.equal(await banner(w), null);
    assert.equal(await readOnly(w), false);
    await w.caretAtEnd();
    await w.page.keyboard.type("walt wrote this\n", { delay: 10 });
    const written = "hello from alice\nwalt wrote this\n";
    await until("the writer's text on the server", async () => (await serverText()) === written);
    await until("the writer's text at the reader", async () => (await r.text()) === written);
    await until("the writer's edits acknowledged", async () => (await w.state()).waiting === 0);

    // ---- alice revokes the write link: that page says so, and stays put.
    const revoked = await fetch(api(`/${docId}/links/${writeLink.id}`), { method: "DELETE" });
    assert.equal(revoked.status, 204);
    const wb = await until("the revoked banner", async () => {
      const b = await banner(w);
      return b?.kind === "revoked" ? b : undefined;
    });
    assert.match(wb.text, /Your access to this document was revoked/);
    const ws = await w.state();
    assert.equal(ws.status, "closed");
    assert.equal(
      await w.page.evaluate(() => {
        const s = window.tandem?.connection.status;
        return s?.kind === "closed" ? s.code : null;
      }),
      4403,
    );
    assert.equal(await readOnly(w), true);
    assert.equal(await w.text(), written, "the text last seen stays on the page");
    await w.caretAtEnd();
    await w.page.keyboard.type("after revoke", { delay: 10 });
    await sleep(2500); // longer than the first reconnect backoff
    assert.equal(await w.text(), written);
    assert.equal((await sockets(w)).sockets, 1, "no reconnect after 4403");
    assert.equal(await serverText(), written);
    assert.match((await w.page.locator("#status").textContent()) ?? "", /No access/);

    // ---- the read-only page still works: it follows alice's typing.
    await a.caretAtEnd();
    await a.page.keyboard.type("alice again\n", { delay: 10 });
    const last = `${written}alice again\n`;
    await until("alice's text on the server", async () => (await serverText()) === last);
    await until("alice's text at the reader", async () => (await r.text()) === last);
    assert.equal((await r.state()).status, "connected");
    assert.equal((await banner(r))?.kind, "read");
    assert.equal((await sockets(r)).opsSent, 0);

    // ---- no credentials: the sign-in page, not an empty editor; no retry.
    const anon = await open({ name: "Nobody", color: "#888888" }, "", false);
    const page = await until("the sign-in page", () =>
      anon.page.evaluate(() => {
        const el = document.getElementById("access-page");
        return el ? { reason: el.dataset["reason"], text: el.textContent ?? "" } : undefined;
      }),
    );
    assert.equal(page.reason, "unauthenticated");
    assert.match(page.text, /Sign in to open this document/);
    assert.match(page.text, /missing, invalid or expired, or the link is no longer valid/);
    assert.equal(await anon.page.locator("#editor").count(), 0, "no editor");
    await sleep(1500);
    assert.equal((await sockets(anon)).sockets, 1, "no reconnect after 4401");

    // ---- a revoked link opened afresh is not valid any more: sign in.
    const stale = await open({ name: "Walt", color: "#30a46c" }, `?link=${writeLink.token}`, false);
    await until("the sign-in page for a revoked link", () =>
      stale.page.evaluate(
        () => document.getElementById("access-page")?.dataset["reason"] === "unauthenticated",
      ),
    );

    // ---- signed in, but no right on the document: no access.
    const bob = token("bob", "Bob");
    const b = await open(
      { name: "Bob", color: "#8e4ec6" },
      `?token=${encodeURIComponent(bob)}`,
      false,
    );
    const denied = await until("the no-access page", () =>
      b.page.evaluate(() => {
        const el = document.getElementById("access-page");
        return el ? { reason: el.dataset["reason"], text: el.textContent ?? "" } : undefined;
      }),
    );
    assert.equal(denied.reason, "forbidden");
    assert.match(denied.text, /You don't have access to this document/);

    for (const p of pages) assert.deepEqual(p.errors, [], `${p.name}'s page logged errors`);
    assert.equal(await serverText(), last);
  });

  test("a writer lowered to read while connected: the refused edits are undone at once, the page turns read-only", async () => {
    const alice = token("alice", "Alice");
    const asAlice = `?token=${encodeURIComponent(alice)}`;
    const api = (path: string) => `${baseUrl()}/api/documents${path}${asAlice}`;
    const grant = async (permission: string) => {
      const res = await fetch(api(`/${docId}/access/carol`), {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ permission }),
      });
      assert.ok(res.ok, `PUT access: ${res.status} ${await res.text()}`);
    };
    const serverText = async () => (await serverDocument(baseUrl(), docId, asAlice)).text;
    await grant("write");
    const carol = token("carol", "Carol");
    const c = await open(
      { name: "Carol", color: "#f76b15" },
      `?token=${encodeURIComponent(carol)}`,
    );
    assert.equal(await c.page.evaluate(() => window.tandem?.connection.permission), "write");
    const before = await serverText();
    await c.caretAtEnd();
    await c.page.keyboard.type("carol\n", { delay: 10 });
    const saved = `${before}carol\n`;
    await until("carol's text on the server", async () => (await serverText()) === saved);
    await until("carol's edits acknowledged", async () => (await c.state()).waiting === 0);

    await grant("read");
    const sent = (await sockets(c)).opsSent;
    // Three edits at once: one op in flight and two in the buffer when the refusal comes.
    const pending = await c.page.evaluate(() => {
      for (const ch of ["r", "e", "f"])
        window.tandem?.editor.trigger("keyboard", "type", { text: ch });
      return window.tandem?.connection.waitingEdits;
    });
    assert.equal(pending, 3);
    await until("the read-only banner after the refusal", async () =>
      (await banner(c))?.kind === "read" ? true : undefined,
    );
    await until("the refused edits undone", async () => (await c.text()) === saved);
    assert.equal(await readOnly(c), true);
    const dialog = await until("the refused-change dialog", () =>
      c.page.evaluate(() => {
        const d = document.getElementById("rejected") as HTMLDialogElement | null;
        const t = document.getElementById("rejected-text") as HTMLTextAreaElement | null;
        return d?.open ? (t?.value ?? "") : undefined;
      }),
    );
    assert.equal(dialog, "ref", "the dialog holds the text that was not saved");
    // More typing does nothing now.
    await c.page.keyboard.press("Escape");
    await c.caretAtEnd();
    await c.page.keyboard.type("more", { delay: 10 });
    assert.equal(await c.text(), saved);
    await sleep(1000);
    const after = await sockets(c);
    assert.ok(
      after.opsSent - sent === 1,
      `one op sent, the buffer never (${after.opsSent - sent} sent)`,
    );
    const settled = after.opsSent;
    await sleep(1500);
    assert.equal((await sockets(c)).opsSent, settled, "nothing more is sent");
    assert.equal(after.sockets, 1, "no reconnect");
    assert.equal((await c.state()).status, "connected");
    assert.equal(await serverText(), saved);
    assert.equal(await c.page.evaluate(() => window.tandem?.connection.waitingEdits), 0);
    assert.deepEqual(c.errors, []);
  });
}
