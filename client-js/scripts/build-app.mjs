// Builds the web app the server serves: dist/index.html plus dist/assets/.
//
// * Monaco's workers (the editor worker and the CSS, HTML, JSON and
//   TypeScript language workers) are separate ES module bundles: Monaco
//   starts each from a blob that `import()`s the URL our
//   `MonacoEnvironment.getWorkerUrl` returns.
// * The app (src/app/main.ts) is one ES module bundle with its CSS (Monaco's
//   included) and the codicon font emitted beside it (loader `file`).
// * Every file name carries a content hash and every URL is absolute
//   (`/assets/...`), so a new build is never mixed with cached old files.
//   The worker URLs reach the app through `define` (TANDEM_WORKERS), the
//   app's URLs reach index.html through the template.
// * Each asset that compresses gets a gzipped copy (NAME.gz) beside it,
//   which the server sends with `Content-Encoding: gzip`.
//
// Usage: node scripts/build-app.mjs [--dev]   (--dev: no minification)
import * as esbuild from "esbuild";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const assets = join(dist, "assets");
const dev = process.argv.includes("--dev");

/** Worker entry points: name -> module inside monaco-editor's ESM build. */
const WORKERS = {
  "editor.worker": "monaco-editor/editor/editor.worker.js",
  "json.worker": "monaco-editor/languages/features/json/json.worker.js",
  "css.worker": "monaco-editor/languages/features/css/css.worker.js",
  "html.worker": "monaco-editor/languages/features/html/html.worker.js",
  "ts.worker": "monaco-editor/languages/features/typescript/ts.worker.js",
};

const common = {
  absWorkingDir: root,
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: !dev,
  legalComments: "linked",
  outdir: assets,
  publicPath: "/assets/",
  metafile: true,
  logLevel: "warning",
};

/** The output (relative to assets/) built from `entry`, per the metafile. */
function outputOf(metafile, entry) {
  for (const [file, out] of Object.entries(metafile.outputs)) {
    if (out.entryPoint === entry) return { file: relative(assets, join(root, file)), out };
  }
  throw new Error(`no output for ${entry}`);
}

await rm(assets, { recursive: true, force: true });
await rm(join(dist, "index.html"), { force: true });
await mkdir(assets, { recursive: true });

const workers = await esbuild.build({
  ...common,
  entryPoints: Object.entries(WORKERS).map(([out, input]) => ({ in: input, out })),
  entryNames: "[name]-[hash]",
});
const workerUrls = {};
for (const [file, out] of Object.entries(workers.metafile.outputs)) {
  if (!out.entryPoint || !file.endsWith(".js")) continue;
  const name = Object.keys(WORKERS).find((w) =>
    relative(assets, join(root, file)).startsWith(`${w}-`),
  );
  if (name) workerUrls[name] = `/assets/${relative(assets, join(root, file))}`;
}
for (const name of Object.keys(WORKERS)) {
  if (!workerUrls[name]) throw new Error(`worker ${name} was not built`);
}

const app = await esbuild.build({
  ...common,
  entryPoints: [{ in: "src/app/main.ts", out: "app" }],
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  sourcemap: "linked",
  loader: { ".ttf": "file" },
  define: { TANDEM_WORKERS: JSON.stringify(workerUrls) },
});
const { file: appJs, out: appOut } = outputOf(app.metafile, "src/app/main.ts");
const appCss = appOut.cssBundle ? relative(assets, join(root, appOut.cssBundle)) : null;

const template = await readFile(join(root, "app", "index.html"), "utf8");
const tags = [
  appCss ? `<link rel="stylesheet" href="/assets/${appCss}" />` : "",
  `<script type="module" src="/assets/${appJs}"></script>`,
]
  .filter(Boolean)
  .join("\n    ");
if (!template.includes("<!-- tandem:assets -->"))
  throw new Error("template lacks the assets marker");
await writeFile(join(dist, "index.html"), template.replace("<!-- tandem:assets -->", tags));

// A gzipped copy beside each asset that shrinks; the server sends it to
// browsers that accept gzip, so nothing is compressed per request.
let gzipped = 0;
for (const name of await readdir(assets)) {
  if (!/\.(js|css|map|ttf|txt|json|svg)$/.test(name)) continue;
  const raw = await readFile(join(assets, name));
  const gz = gzipSync(raw, { level: 9 });
  if (gz.length > raw.length * 0.9) continue;
  await writeFile(join(assets, `${name}.gz`), gz);
  gzipped += 1;
}

const sizes = Object.entries({ ...workers.metafile.outputs, ...app.metafile.outputs })
  .filter(([f]) => !f.endsWith(".map") && !f.endsWith(".LEGAL.txt"))
  .map(([f, o]) => `  ${relative(dist, join(root, f))}  ${(o.bytes / 1024).toFixed(0)} KiB`);
console.log(`web app: dist/index.html\n${sizes.join("\n")}\n  (${gzipped} gzipped copies)`);
