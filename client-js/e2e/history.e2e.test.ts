/**
 * Browser end-to-end test of the history panel: type, open History, slide
 * to an old revision, see it in the diff, restore it; the live editor and
 * the server then have the old text again. Same needs and switches as
 * collab.e2e.test.ts (TANDEM_BIN, TANDEM_CHROMIUM, TANDEM_E2E_SKIP).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";
import {
  CHROMIUM_ARGS,
  EditorPage,
  ServerProcess,
  converged,
  exists,
  serverDocument,
  until,
} from "./support.js";

const CLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = resolve(CLIENT_DIR, process.env["TANDEM_BIN"] ?? "../target/debug/tandem");
const CHROMIUM = process.env["TANDEM_CHROMIUM"] ?? "/usr/bin/chromium";
const STATIC_DIR = join(CLIENT_DIR, "dist");

if (process.env["TANDEM_E2E_SKIP"] === "1") {
  test("history panel end-to-end test", { skip: "TANDEM_E2E_SKIP=1" }, () => {});
} else {
  suite();
}

function suite(): void {
  let tmp = "";
  let server: ServerProcess | null = null;
  let browser: Browser | null = null;
  const docId = `e2e-history-${Date.now().toString(36)}`;
  const baseUrl = (): string => {
    if (!server) throw new Error("no server");
    return server.url;
  };

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
    tmp = mkdtempSync(join(tmpdir(), "tandem-e2e-history-"));
    server = await ServerProcess.start(BIN, {
      port: 0,
      data: join(tmp, "tandem.db"),
      staticDir: STATIC_DIR,
      logFile: join(tmp, "server.log"),
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    server?.kill();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("History: slide to an old revision, see it in the diff, restore it", async () => {
    const created = await fetch(`${baseUrl()}/api/documents`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: docId, language: "plaintext", text: "# history\n" }),
    });
    assert.equal(created.status, 201);
    if (!browser) throw new Error("no browser");
    const p = await EditorPage.open(browser, baseUrl(), docId, {
      name: "Hana",
      color: "#30a46c",
    });

    // An old version, saved.
    await p.caretAtEnd();
    await p.page.keyboard.type("first line\n", { delay: 10 });
    const oldText = await converged(baseUrl, docId, [p]);
    assert.equal(oldText, "# history\nfirst line\n");
    const oldRev = (await serverDocument(baseUrl(), docId)).rev;
    assert.ok(oldRev > 0);

    // Newer edits, saved.
    await p.caretAtEnd();
    await p.page.keyboard.type("second line\nthird line\n", { delay: 10 });
    const newText = await converged(baseUrl, docId, [p]);
    assert.equal(newText, "# history\nfirst line\nsecond line\nthird line\n");

    // Open the panel: the list shows Hana's edits, the slider ends at the current revision.
    await p.page.click("#history");
    await p.page.waitForSelector("#history-panel");
    const current = (await serverDocument(baseUrl(), docId)).rev;
    await until("the slider at the current revision", () =>
      p.page.evaluate((cur) => {
        const s = document.querySelector<HTMLInputElement>("#history-slider");
        return s?.max === String(cur) && s.value === String(cur);
      }, current),
    );
    const authors = await p.page.$$eval(".history-author", (els) =>
      els.map((e) => e.textContent ?? ""),
    );
    assert.ok(authors.includes("Hana"), `Hana in the list: ${authors.join(", ")}`);

    // The live editor keeps working with the panel open.
    await p.caretAtEnd();
    await p.page.keyboard.type("fourth\n", { delay: 10 });
    const latest = await converged(baseUrl, docId, [p]);
    assert.equal(latest, `${newText}fourth\n`);
    const latestRev = (await serverDocument(baseUrl(), docId)).rev;
    await until("the slider's end to follow the live document", () =>
      p.page.evaluate(
        (cur) => document.querySelector<HTMLInputElement>("#history-slider")?.max === String(cur),
        latestRev,
      ),
    );

    // Slide to the old revision: the diff's left side is the old text, the right the current.
    await p.page.evaluate((rev) => {
      const s = document.querySelector<HTMLInputElement>("#history-slider");
      if (!s) throw new Error("no slider");
      s.value = String(rev);
      s.dispatchEvent(new Event("input", { bubbles: true }));
    }, oldRev);
    await until("the old revision in the diff view", () =>
      p.page.evaluate(
        ([rev, old, cur]) => {
          const d = window.tandem?.history?.diffEditor;
          return (
            window.tandem?.history?.shownRev === rev &&
            d?.getOriginalEditor().getValue() === old &&
            d.getModifiedEditor().getValue() === cur
          );
        },
        [oldRev, oldText, latest] as const,
      ),
    );
    assert.match(
      (await p.page.textContent("#history-rev")) ?? "",
      new RegExp(`revision ${oldRev} of`),
    );
    await until("the diff view to show the old text", () =>
      p.page.evaluate(() =>
        (document.querySelector("#history-diff .editor.original .view-lines")?.textContent ?? "")
          .replace(/\u00a0/g, " ")
          .includes("first line"),
      ),
    );

    // Restore: the panel closes, its diff editor is gone, the old text is back everywhere.
    await p.page.click("#history-restore");
    await p.page.waitForSelector("#history-panel", { state: "detached" });
    assert.equal(
      await p.page.evaluate(() => window.tandem?.monaco.editor.getDiffEditors().length),
      0,
    );
    await until("the live editor to have the old text", async () => (await p.text()) === oldText);
    assert.equal(await converged(baseUrl, docId, [p]), oldText);
    const doc = await serverDocument(baseUrl(), docId);
    assert.equal(doc.text, oldText);
    assert.ok(doc.rev > latestRev, "the restore is a new revision");

    // Still editable afterwards.
    await p.caretAtEnd();
    await p.page.keyboard.type("after\n", { delay: 10 });
    assert.equal(await converged(baseUrl, docId, [p]), `${oldText}after\n`);
    assert.deepEqual(p.errors, [], "script errors in the page");
    await p.close();
  });
}
