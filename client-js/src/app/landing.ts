/**
 * The landing page, `/`: start a new document, open one by id, or pick one
 * of the server's recent documents.
 *
 * @module
 */

import { pageCredentials, withCredentials, type Credentials } from "./credentials.js";
import { h, isDocumentId, randomDocumentId, timeAgo } from "./dom.js";

/** A document as `GET /api/documents` lists it. */
interface ListedDocument {
  id: string;
  rev: number;
  language: string;
  updated_ms?: number;
}

function parseList(json: unknown): ListedDocument[] {
  const docs = (json as { documents?: unknown })?.documents;
  if (!Array.isArray(docs)) throw new Error("unexpected answer from /api/documents");
  return docs.filter(
    (d): d is ListedDocument =>
      typeof d === "object" &&
      d !== null &&
      typeof (d as ListedDocument).id === "string" &&
      typeof (d as ListedDocument).rev === "number",
  );
}

function open(id: string): void {
  location.assign(`/d/${encodeURIComponent(id)}`);
}

/** Renders the landing page into `root`; `notice` is shown above (e.g. a bad id). */
export function renderLanding(root: HTMLElement, notice: string | null): void {
  document.title = "Tandem";
  document.body.className = "landing-page";
  const newButton = h(
    "button",
    { id: "new-document", class: "primary", type: "button" },
    "New document",
  );
  newButton.addEventListener("click", () => open(randomDocumentId()));

  const idInput = h("input", {
    id: "open-id",
    placeholder: "document id",
    "aria-label": "Document id",
    pattern: "[A-Za-z0-9._\\-]{1,128}",
    maxlength: "128",
    autocomplete: "off",
    spellcheck: "false",
  });
  const openForm = h(
    "form",
    { class: "open-form" },
    idInput,
    h("button", { type: "submit" }, "Open"),
  );
  openForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const id = idInput.value.trim();
    if (isDocumentId(id)) open(id);
    else idInput.setCustomValidity("1-128 characters of A-Z a-z 0-9 . _ -");
    idInput.reportValidity();
  });
  idInput.addEventListener("input", () => idInput.setCustomValidity(""));

  const list = h("ul", { id: "recent", class: "recent" }, h("li", { class: "muted" }, "Loading…"));
  const main = h(
    "main",
    { class: "landing" },
    h("h1", {}, h("span", { class: "logo-dot a" }), h("span", { class: "logo-dot b" }), "Tandem"),
    h(
      "p",
      { class: "tagline" },
      "Edit code together, in real time. Share the link; everyone types at once.",
    ),
    ...(notice ? [h("p", { class: "notice", role: "alert" }, notice)] : []),
    h("div", { class: "actions" }, newButton, openForm),
    h("h2", {}, "Recent documents"),
    list,
  );
  root.replaceChildren(main);
  void loadRecent(list, pageCredentials(null));
}

async function loadRecent(list: HTMLElement, credentials: Credentials): Promise<void> {
  let docs: ListedDocument[];
  try {
    const res = await fetch(withCredentials("/api/documents?limit=50", credentials), {
      headers: { accept: "application/json" },
    });
    if (res.status === 401) {
      list.replaceChildren(
        h(
          "li",
          { class: "muted" },
          "Sign in to see the documents: open this page with ?token=<your token>.",
        ),
      );
      return;
    }
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    docs = parseList(await res.json());
  } catch (e) {
    // A failure is not "no documents": say what happened.
    list.replaceChildren(
      h("li", { class: "muted" }, `Could not load the documents (${(e as Error).message}).`),
    );
    return;
  }
  if (docs.length === 0) {
    list.replaceChildren(h("li", { class: "muted" }, "No documents yet. Start one!"));
    return;
  }
  docs.sort((a, b) => (b.updated_ms ?? 0) - (a.updated_ms ?? 0));
  list.replaceChildren(
    ...docs.map((d) =>
      h(
        "li",
        {},
        h("a", { href: `/d/${encodeURIComponent(d.id)}` }, d.id),
        h(
          "span",
          { class: "meta" },
          `${d.language} · revision ${d.rev}` + (d.updated_ms ? ` · ${timeAgo(d.updated_ms)}` : ""),
        ),
      ),
    ),
  );
}
