/**
 * Browser end-to-end tests with CodeMirror 6 (`?editor=codemirror`): the same
 * two-page collaboration suite as Monaco's (`collab-suite.ts`).
 */
import { collabSuite } from "./collab-suite.js";

collabSuite("codemirror");
