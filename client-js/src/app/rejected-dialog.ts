/**
 * The dialog that gives a refused change's text back to the user: a change
 * too big for the document is never applied, and one the server refused is
 * undone, but their text is never thrown away silently. It shows why, the
 * text in a read-only text area, and a Copy button.
 *
 * A second refusal while the dialog is open adds its text after the first
 * (the parts of one big paste refused one after the other come out whole).
 *
 * @module
 */

import type { Rejection } from "../connection.js";
import { copyText, h } from "./dom.js";

/** The dialog; append {@link element} to the page once. */
export class RejectedDialog {
  readonly element: HTMLDialogElement;
  private readonly message: HTMLParagraphElement;
  private readonly area: HTMLTextAreaElement;
  private readonly copy: HTMLButtonElement;
  private texts: string[] = [];

  /** `onClose` runs when the user dismisses the dialog. */
  constructor(onClose: () => void) {
    this.message = h("p", { id: "rejected-message", class: "rejected-message" });
    this.area = h("textarea", {
      id: "rejected-text",
      readonly: "",
      rows: "10",
      spellcheck: "false",
      "aria-label": "The text that was not saved",
    });
    this.copy = h("button", { id: "rejected-copy", type: "button", class: "primary" }, "Copy");
    const close = h("button", { id: "rejected-close", type: "button" }, "Close");
    this.element = h(
      "dialog",
      { id: "rejected", class: "rejected-dialog", "aria-labelledby": "rejected-title" },
      h("h2", { id: "rejected-title" }, "Your change was not saved"),
      this.message,
      h("p", { class: "rejected-hint" }, "Your text is below. Copy it to keep it."),
      this.area,
      h("div", { class: "rejected-actions" }, this.copy, close),
    );
    this.copy.addEventListener("click", () => {
      void copyText(this.area.value).then((ok) => {
        this.copy.textContent = ok ? "Copied!" : "Copy failed: select the text and copy it";
        if (!ok) this.area.select();
      });
    });
    close.addEventListener("click", () => this.element.close());
    this.element.addEventListener("close", () => {
      this.texts = [];
      onClose();
    });
    this.area.addEventListener("focus", () => this.area.select());
  }

  /** True while the dialog is shown. */
  get open(): boolean {
    return this.element.open;
  }

  /** Shows `r` (adding its text to what the dialog already holds). */
  show(r: Rejection): void {
    this.texts.push(r.text);
    this.message.textContent = r.message;
    this.area.value = this.texts.join("");
    this.area.hidden = this.area.value === "";
    this.copy.hidden = this.area.value === "";
    this.copy.textContent = "Copy";
    if (!this.element.open) {
      if (typeof this.element.showModal === "function" && this.element.isConnected) {
        this.element.showModal();
      } else {
        this.element.setAttribute("open", "");
      }
    }
  }
}
