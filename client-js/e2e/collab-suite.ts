/**
 * The two-page collaboration suite, run by `collab.e2e.test.ts` (Monaco) and
 * `collab-codemirror.e2e.test.ts` (`?editor=codemirror`): the real server
 * binary, the built web app (dist/), and two Chromium pages editing one
 * document.
 *
 * Needs: the server (env TANDEM_BIN, default ../target/debug/tandem),
 * Chromium (env TANDEM_CHROMIUM, default /usr/bin/chromium; never
 * downloaded) and `npm run build`. A missing piece fails the run, unless
 * TANDEM_E2E_SKIP=1, which skips it and says so. With TANDEM_SCREENSHOT set
 * to a path, a screenshot of two people editing is saved there.
 */
import { after, before, describe, test } from "node:test";
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
  tail,
  until,
} from "./support.js";

/** client-js/ (this file runs from build/e2e/). */
const CLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = resolve(CLIENT_DIR, process.env["TANDEM_BIN"] ?? "../target/debug/tandem");
const CHROMIUM = process.env["TANDEM_CHROMIUM"] ?? "/usr/bin/chromium";
const STATIC_DIR = join(CLIENT_DIR, "dist");
const SKIP = process.env["TANDEM_E2E_SKIP"] === "1";
const SCREENSHOT = process.env["TANDEM_SCREENSHOT"];

/** Runs the suite with `editor` in every page (skipped, and said so, under TANDEM_E2E_SKIP=1). */
export function collabSuite(editor: "monaco" | "codemirror"): void {
  if (SKIP) {
    console.log(`e2e (${editor}): SKIPPED (TANDEM_E2E_SKIP=1): no browser test ran`);
    test(`browser end-to-end tests (${editor})`, { skip: "TANDEM_E2E_SKIP=1" }, () => {});
    return;
  }
  describe(`collaboration (${editor})`, () => suite(editor));
}

function suite(editor: "monaco" | "codemirror"): void {
  let tmp = "";
  let server: ServerProcess | null = null;
  let browser: Browser | null = null;
  let alice: EditorPage;
  let bob: EditorPage;
  const docId = `e2e-${editor}-${Date.now().toString(36)}`;
  const logFile = (): string => join(tmp, "server.log");
  const baseUrl = (): string => {
    if (!server) throw new Error("no server");
    return server.url;
  };
  const startServer = async (port: number): Promise<ServerProcess> =>
    ServerProcess.start(BIN, {
      port,
      data: join(tmp, "tandem.db"),
      staticDir: STATIC_DIR,
      logFile: logFile(),
    });

  before(async () => {
    // Fail, not skip, when something is missing (TANDEM_E2E_SKIP=1 skips).
    const missing: string[] = [];
    if (!exists(BIN)) missing.push(`the server binary ${BIN} (cargo build, or set TANDEM_BIN)`);
    if (!exists(CHROMIUM)) missing.push(`Chromium at ${CHROMIUM} (apt-get install chromium)`);
    if (!exists(join(STATIC_DIR, "index.html")))
      missing.push(`the web app ${STATIC_DIR} (npm run build)`);
    if (missing.length > 0) {
      throw new Error(
        `e2e cannot run, missing: ${missing.join("; ")}. Set TANDEM_E2E_SKIP=1 to skip.`,
      );
    }
    tmp = mkdtempSync(join(tmpdir(), "tandem-e2e-"));
    server = await startServer(0);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    server?.kill();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** Fails with the pages' script errors since the last check, if any. */
  const noPageErrors = (): void => {
    const errors = [alice, bob].flatMap((p) =>
      p ? p.errors.splice(0).map((e) => `${p.name}: ${e}`) : [],
    );
    assert.deepEqual(errors, [], "script errors in the pages");
  };

  test("the server serves the app and its assets under /assets/", async () => {
    const html = await (await fetch(`${baseUrl()}/d/${docId}`)).text();
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    const assets = urls.filter((u) => !u.startsWith("data:"));
    assert.ok(
      assets.length >= 2,
      `index.html references its script and style: ${assets.join(", ")}`,
    );
    for (const u of assets) {
      assert.match(u, /^\/assets\//, "only absolute /assets/ URLs");
      const res = await fetch(`${baseUrl()}${u}`);
      assert.equal(res.status, 200, u);
    }
  });

  test("two people type at once, with an emoji and multi-line pastes; both end with the server's text", async () => {
    const created = await fetch(`${baseUrl()}/api/documents`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: docId, language: "plaintext", text: "# notes\n\n# end\n" }),
    });
    assert.equal(created.status, 201);
    if (!browser) throw new Error("no browser");
    alice = await EditorPage.open(
      browser,
      baseUrl(),
      docId,
      { name: "Alice", color: "#e5484d" },
      { editor },
    );
    bob = await EditorPage.open(
      browser,
      baseUrl(),
      docId,
      { name: "Bob", color: "#0090ff" },
      { editor },
    );
    assert.equal(await alice.text(), "# notes\n\n# end\n");
    assert.equal(await bob.text(), "# notes\n\n# end\n");

    await alice.caretAt(2, 1);
    await bob.caretAtEnd();
    const aliceTyped = "alice was here 😀 typing along\n";
    const alicePaste = "pasted by alice\n    indented line\nlast line\n";
    const bobTyped = "bob types too 👍🏽 at the end\n";
    const bobPaste = "bob pastes\nthree\nlines\n";
    await Promise.all([
      (async () => {
        await alice.page.keyboard.type(aliceTyped, { delay: 12 });
        await alice.paste(alicePaste);
      })(),
      (async () => {
        await bob.page.keyboard.type(bobTyped, { delay: 9 });
        await bob.paste(bobPaste);
      })(),
    ]);
    const text = await converged(baseUrl, docId, [alice, bob]);
    for (const s of [aliceTyped + alicePaste, bobTyped + bobPaste, "# notes\n", "# end\n"]) {
      assert.ok(text.includes(s), `the text has ${JSON.stringify(s)}:\n${text}`);
    }
    assert.equal(
      text,
      "# notes\n" + aliceTyped + alicePaste + "\n# end\n" + bobTyped + bobPaste,
      "each person's typing stays together where they typed it",
    );
    noPageErrors();
  });

  test("each sees the other's cursor, selection and name", async () => {
    await alice.caretAt(1, 3);
    await bob.caretAt(3, 5);
    const label = (p: EditorPage, name: string) =>
      p.page.evaluate(
        (n) =>
          [...document.querySelectorAll<HTMLElement>(".tandem-peer-label")].some(
            (el) => el.textContent === n && el.offsetParent !== null,
          ),
        name,
      );
    await until("Bob's label on Alice's page", () => label(alice, "Bob"));
    await until("Alice's label on Bob's page", () => label(bob, "Alice"));
    assert.ok(await alice.page.locator(".tandem-caret").count(), "a caret decoration");
    await until("Bob in Alice's list of people", () =>
      alice.page.evaluate(() => document.getElementById("people")?.textContent?.includes("Bob")),
    );
    // A selection shows as a tinted range in the peer's colour.
    await bob.select(1, 1, 1, 8);
    await until("Bob's selection on Alice's page", () =>
      alice.page.evaluate(() => document.querySelectorAll(".tandem-selection").length > 0),
    );
    const tint = await alice.page.evaluate(() => {
      const el = document.querySelector(".tandem-selection");
      return el ? getComputedStyle(el).backgroundColor : "";
    });
    assert.match(tint, /rgba\(0, 144, 255/, "Bob's colour");
    noPageErrors();
  });

  test("a new name reaches the others at once, and one stays one person", async () => {
    const people = (p: EditorPage) =>
      p.page.evaluate(() => {
        const list = document.getElementById("people");
        return { text: list?.textContent ?? "", count: list?.dataset["count"] };
      });
    const rename = async (name: string) => {
      await bob.page.fill("#name", name);
      await bob.page.press("#name", "Enter");
    };
    const id = () => bob.page.evaluate(() => window.tandem?.connection.clientId);
    const before = await id();
    await rename("Robert");
    await until("Robert in Alice's list of people", async () =>
      (await people(alice)).text.includes("Robert"),
    );
    const seen = await people(alice);
    assert.ok(!seen.text.includes("Bob"), `the old name is gone: ${seen.text}`);
    assert.equal(seen.count, "2", "Alice and Robert, no one twice");
    assert.equal(await id(), before, "the same client, not a new one");
    await until("Robert's label on Alice's page", () =>
      alice.page.evaluate(() =>
        [...document.querySelectorAll(".tandem-peer-label")].some(
          (el) => el.textContent === "Robert",
        ),
      ),
    );
    await rename("Bob");
    await until("Bob again in Alice's list", async () =>
      (await people(alice)).text.includes("Bob"),
    );
    noPageErrors();
  });

  test("the language picker is shared", async () => {
    await alice.page.selectOption("#language", "python");
    await until("Bob's editor in Python", () =>
      bob.page.evaluate(
        () =>
          window.tandem?.ui.languageId() === "python" &&
          (document.getElementById("language") as HTMLSelectElement).value === "python",
      ),
    );
    assert.equal((await serverDocument(baseUrl(), docId)).language, "python");
  });

  test("a server restart while both type loses nothing", async () => {
    if (!server) throw new Error("no server");
    await alice.caretAt(2, 1);
    await bob.caretAtEnd();
    const aliceRun =
      "ALICE-" + "abcdefghijklmnopqrstuvwxyz0123456789".repeat(2) + " 😀 end-of-alice\n";
    const bobRun = "BOB-" + "0123456789zyxwvutsrqponmlkjihgfedcba".repeat(2) + " 🎉 end-of-bob\n";
    const typing = Promise.all([
      alice.page.keyboard.type(aliceRun, { delay: 35 }),
      bob.page.keyboard.type(bobRun, { delay: 30 }),
    ]);
    // Some of the typing reaches the server before it goes down.
    await until("the first keystrokes on the server", async () => {
      const t = (await serverDocument(baseUrl(), docId)).text;
      return t.includes("ALICE-abc") && t.includes("BOB-012");
    });
    const port = server.port;
    const code = await server.stop("SIGTERM");
    assert.equal(code, 0, `graceful exit: ${tail(logFile())}`);
    await until("a page to notice the server is gone", async () => {
      const s = await alice.state();
      return s.status === "reconnecting" || s.status === "offline";
    });
    // Alice keeps typing; the indicator counts what waits for the server.
    const statusText = await until("Alice's status to show edits waiting", async () => {
      const t = (await alice.page.locator("#status").textContent()) ?? "";
      return /Offline: \d+ edits? not yet saved/.test(t) ? t : undefined;
    });
    assert.match(statusText, /not yet saved/);
    server = await startServer(port);
    assert.equal(server.port, port, "same port");
    await typing;
    const text = await converged(baseUrl, docId, [alice, bob], 45_000);
    assert.ok(text.includes(aliceRun), `all of Alice's typing survived:\n${text}`);
    assert.ok(text.includes(bobRun), `all of Bob's typing survived:\n${text}`);
    noPageErrors();
  });

  test("Ctrl+Z undoes only one's own last edit, Ctrl+Shift+Z redoes it", async () => {
    await alice.caretAt(1, 1);
    await alice.page.keyboard.press("End");
    await alice.page.keyboard.type(" UNDO_ME");
    const withAlice = await converged(baseUrl, docId, [alice, bob]);
    // Moving the caret by hand ends Bob's run of typing: the newline he typed
    // last, maybe under a second ago, would otherwise be part of this step.
    await bob.caretAtEnd();
    await bob.page.keyboard.press("ArrowLeft");
    await bob.page.keyboard.press("Control+End");
    await bob.page.keyboard.type("KEEP_BOB");
    const withBoth = await converged(baseUrl, docId, [alice, bob]);
    assert.ok(withBoth.includes(" UNDO_ME") && withBoth.endsWith("KEEP_BOB"));

    await alice.page.keyboard.press("Control+z");
    const undone = await converged(baseUrl, docId, [alice, bob]);
    // Our undo ran, not Monaco's own (which would have left a redo on the model).
    assert.deepEqual(
      await alice.page.evaluate(() => [
        window.tandem?.binding.canRedo,
        window.tandem?.ui.kind === "monaco" ? window.tandem.editor.getModel()?.canRedo() : false,
      ]),
      [true, false],
    );
    assert.equal(undone, withBoth.replace(" UNDO_ME", ""), "only Alice's last edit went");
    assert.ok(undone.includes("KEEP_BOB"), "Bob's edit stays");

    // A real keyboard sends "Z" with Shift (CodeMirror matches the key, Monaco the key code).
    await alice.page.keyboard.press("Control+Shift+Z");
    assert.equal(await converged(baseUrl, docId, [alice, bob]), withBoth, "redo brings it back");

    await bob.page.keyboard.press("Control+z");
    const bobUndone = await converged(baseUrl, docId, [alice, bob]);
    assert.equal(bobUndone, withBoth.replace("KEEP_BOB", ""), "Bob's undo takes only his edit");
    assert.ok(withAlice.includes(" UNDO_ME") && bobUndone.includes(" UNDO_ME"));
    noPageErrors();
  });

  test("a colleague's edit above the view does not move what one is looking at", async () => {
    if (!browser) throw new Error("no browser");
    const id = `${docId}-scroll`;
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i + 1}`);
    await fetch(`${baseUrl()}/api/documents`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id, text: lines.join("\n") + "\n" }),
    });
    const reader = await EditorPage.open(
      browser,
      baseUrl(),
      id,
      { name: "Dan", color: "#d6409f" },
      { editor },
    );
    const writer = await EditorPage.open(
      browser,
      baseUrl(),
      id,
      { name: "Eve", color: "#12a594" },
      { editor },
    );
    try {
      const topLine = () => reader.page.evaluate(() => window.tandem?.ui.topLine() ?? "");
      await reader.page.evaluate(() => window.tandem?.ui.scrollToLine(150));
      await until("the reader scrolled to line 150", async () => (await topLine()) === "line 150");
      await writer.caretAt(10, 1);
      await writer.paste("new 1\nnew 2\nnew 3\nnew 4\nnew 5\n");
      await converged(baseUrl, id, [reader, writer]);
      assert.equal(await topLine(), "line 150", "the same line is still at the top");
      assert.deepEqual([...reader.errors, ...writer.errors], []);
    } finally {
      await reader.close();
      await writer.close();
    }
  });

  test("a document with CRLF line ends is shown and saved with LF", async () => {
    if (!browser) throw new Error("no browser");
    const id = `${docId}-crlf`;
    await fetch(`${baseUrl()}/api/documents`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id, text: "one\r\ntwo\r\n😀 three\r\n" }),
    });
    const p = await EditorPage.open(
      browser,
      baseUrl(),
      id,
      { name: "Carol", color: "#6e56cf" },
      { editor },
    );
    try {
      assert.equal(await converged(baseUrl, id, [p]), "one\ntwo\n😀 three\n");
      await p.caretAtEnd();
      await p.page.keyboard.type("four");
      assert.equal(await converged(baseUrl, id, [p]), "one\ntwo\n😀 three\nfour");
      assert.deepEqual(p.errors, []);
    } finally {
      await p.close();
    }
  });

  test(
    "screenshot of two people editing",
    { skip: SCREENSHOT ? false : "set TANDEM_SCREENSHOT=path" },
    async () => {
      if (!browser || !SCREENSHOT) return;
      const id = `demo-${Date.now().toString(36)}`;
      const code = [
        "// Tandem: two people, one file, no lost keystrokes.",
        "export function mergeIntervals(intervals: [number, number][]): [number, number][] {",
        "  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);",
        "  const out: [number, number][] = [];",
        "  for (const [start, end] of sorted) {",
        "    const last = out[out.length - 1];",
        "    if (last && start <= last[1]) last[1] = Math.max(last[1], end);",
        "    else out.push([start, end]);",
        "  }",
        "  return out;",
        "}",
        "",
        "console.log(mergeIntervals([[1, 3], [2, 6], [8, 10]]));",
        "",
      ].join("\n");
      await fetch(`${baseUrl()}/api/documents`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id, language: "typescript", text: code }),
      });
      const size = { width: 900, height: 520, dark: true };
      const a = await EditorPage.open(
        browser,
        baseUrl(),
        id,
        { name: "Ada", color: "#f76b15" },
        { ...size, editor },
      );
      const g = await EditorPage.open(
        browser,
        baseUrl(),
        id,
        { name: "Grace", color: "#30a46c" },
        { ...size, editor },
      );
      await a.caretAt(7, 9);
      await a.page.keyboard.type("/* overlap */ ");
      await g.caretAt(10, 13);
      await g.page.keyboard.type(" // merged");
      await g.select(3, 9, 3, 15);
      await converged(baseUrl, id, [a, g]);
      for (const [p, other] of [
        [a, "Grace"],
        [g, "Ada"],
      ] as const) {
        await until(`${other}'s label`, () =>
          p.page.evaluate(
            (n) =>
              [...document.querySelectorAll(".tandem-peer-label")].some(
                (el) => el.textContent === n,
              ),
            other,
          ),
        );
      }
      await until("Grace's selection on Ada's page", () =>
        a.page.evaluate(() => document.querySelectorAll(".tandem-selection").length > 0),
      );
      await new Promise((r) => setTimeout(r, 300)); // let Monaco finish painting
      const shots = await Promise.all([a.page.screenshot(), g.page.screenshot()]);
      const page = await browser.newPage({
        viewport: { width: 2 * size.width + 12, height: size.height + 12 },
      });
      await page.setContent(
        `<body style="margin:0;background:#111;display:flex;gap:4px;padding:4px">${shots
          .map(
            (s) =>
              `<img style="border:1px solid #333" src="data:image/png;base64,${s.toString("base64")}">`,
          )
          .join("")}</body>`,
      );
      await page.screenshot({ path: SCREENSHOT });
      await page.close();
      await a.close();
      await g.close();
    },
  );
}
