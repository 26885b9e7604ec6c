/**
 * Browser end-to-end tests with Monaco: the two-page collaboration suite
 * (`collab-suite.ts`).
 */
import { collabSuite } from "./collab-suite.js";

collabSuite("monaco");
