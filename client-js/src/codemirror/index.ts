/**
 * tandem-client/codemirror: the CodeMirror 6 binding. The only part of the
 * client that imports `@codemirror/*` (peer dependencies: state, view,
 * commands).
 *
 * * `binding`: {@link CodeMirrorBinding}, a Connection driving one view.
 * * `cursors`: peers' cursors and name labels as decorations.
 * * `convert`: changes <-> operations in code points.
 *
 * @module
 */

export {
  CodeMirrorBinding,
  PRESENCE_INTERVAL_MS,
  type CodeMirrorBindingOptions,
} from "./binding.js";
export { remoteCursors, setPeers, type PeerCursor } from "./cursors.js";
export { changesToOperation, operationToChanges, toCodePoint, toUtf16 } from "./convert.js";
export { normalizeColor, peerName, textColorOn } from "../peers.js";
