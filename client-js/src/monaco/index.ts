/**
 * tandem-client/monaco: the Monaco editor binding. The only part of the
 * client that imports `monaco-editor`.
 *
 * * `binding`: {@link MonacoBinding}, a Connection driving one editor.
 * * `cursors`: peers' cursors and name labels as decorations.
 * * `shadow`, `convert`: the pure UTF-16 <-> code point machinery the
 *   binding uses (no Monaco import; unit-tested in Node).
 *
 * @module
 */

export { MonacoBinding, PRESENCE_INTERVAL_MS, type MonacoBindingOptions } from "./binding.js";
export { RemoteCursors, normalizeColor, peerName, textColorOn } from "./cursors.js";
export { ShadowText, ShadowMismatch, type TextChange } from "./shadow.js";
export {
  changesToOperation,
  operationToEdits,
  caretAfter,
  simpleEdit,
  continueGroup,
  UNDO_GROUP_PAUSE_MS,
  type LocalEdit,
  type Utf16Edit,
  type SimpleEdit,
  type UndoGroup,
} from "./convert.js";
