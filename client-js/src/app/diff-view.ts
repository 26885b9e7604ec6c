/**
 * The history panel's read-only diff: a Monaco diff editor whose two
 * texts are replaced, never edited.
 *
 * Monaco computes a diff asynchronously (debounced, in a worker) and, when
 * the result comes back, lays it over the models as they are then. If a
 * model's text was replaced while the diff was computed (`setValue`), the
 * line ranges of the result belong to the old text, and Monaco throws
 * ("startLineNumber 5 cannot be after endLineNumberExclusive 4") and stops
 * updating the view. So each new text gets a new model, both models get a
 * new view model (`createViewModel`, owned and disposed here, which cancels
 * its diff still in flight), and a model the diff editor shows is never
 * changed.
 *
 * @module
 */

import * as monaco from "monaco-editor";

/** The two texts of a {@link DiffView}. */
export interface DiffTexts {
  readonly original: string;
  readonly modified: string;
}

/** Options of a {@link DiffView}. */
export interface DiffViewOptions {
  /** The language of new models (asked each time a text is replaced). */
  readonly language: () => string;
  readonly dark: boolean;
}

/** A read-only diff of two texts; see the module doc. */
export class DiffView {
  readonly editor: monaco.editor.IStandaloneDiffEditor;
  private original: monaco.editor.ITextModel;
  private modified: monaco.editor.ITextModel;
  private viewModel: monaco.editor.IDiffEditorViewModel;
  private disposed = false;

  constructor(
    host: HTMLElement,
    texts: DiffTexts,
    private readonly options: DiffViewOptions,
  ) {
    this.editor = monaco.editor.createDiffEditor(host, {
      readOnly: true,
      originalEditable: false,
      automaticLayout: true,
      renderSideBySide: true,
      useInlineViewWhenSpaceIsLimited: true,
      scrollBeyondLastLine: false,
      fontSize: 13,
      theme: options.dark ? "vs-dark" : "vs",
    });
    this.original = this.createModel(texts.original);
    this.modified = this.createModel(texts.modified);
    this.viewModel = this.editor.createViewModel({
      original: this.original,
      modified: this.modified,
    });
    this.editor.setModel(this.viewModel);
  }

  /** The texts shown now. */
  get texts(): DiffTexts {
    return { original: this.original.getValue(), modified: this.modified.getValue() };
  }

  /** Shows new texts (a side not given, or unchanged, keeps its model). */
  show(texts: Partial<DiffTexts>): void {
    if (this.disposed) return;
    const replace = (model: monaco.editor.ITextModel, text: string | undefined) =>
      text === undefined || model.getValue() === text ? null : this.createModel(text);
    const original = replace(this.original, texts.original);
    const modified = replace(this.modified, texts.modified);
    if (!original && !modified) return;
    const old = { original: this.original, modified: this.modified, viewModel: this.viewModel };
    this.original = original ?? old.original;
    this.modified = modified ?? old.modified;
    this.viewModel = this.editor.createViewModel({
      original: this.original,
      modified: this.modified,
    });
    this.editor.setModel(this.viewModel);
    // Only now that the editor no longer shows them (Monaco reports a
    // model disposed under it as a bug).
    old.viewModel.dispose();
    if (original) old.original.dispose();
    if (modified) old.modified.dispose();
  }

  /** Disposes the diff editor, its view model and both models. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.editor.dispose();
    this.viewModel.dispose();
    this.original.dispose();
    this.modified.dispose();
  }

  private createModel(text: string): monaco.editor.ITextModel {
    return monaco.editor.createModel(text, this.options.language());
  }
}
