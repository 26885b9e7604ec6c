/** Undo/redo of one's own edits, with remote edits in between. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  TextOperation,
  canRedo,
  canUndo,
  emptyUndoManager,
  isContinuation,
  recordInverse,
  recordLocalEdit,
  redo,
  transformUndo,
  undo,
  type OpComponent,
  type UndoManager,
} from "../src/index.js";
import { PROPERTY_PARAMS, docArb, textArb } from "./support/arbitraries.js";

const op = (json: OpComponent[]) => TextOperation.fromJSON(json);

/** One user's editor with an undo manager; remote edits come from "a colleague". */
class Editor {
  text: string;
  undo: UndoManager = emptyUndoManager();
  constructor(text: string) {
    this.text = text;
  }
  local(json: OpComponent[], compose = false): void {
    const o = op(json);
    this.undo = recordLocalEdit(this.undo, o, this.text, { compose });
    this.text = o.apply(this.text);
  }
  remote(json: OpComponent[]): void {
    const o = op(json);
    this.text = o.apply(this.text);
    this.undo = transformUndo(this.undo, o);
  }
  ctrlZ(): void {
    const r = undo(this.undo, this.text);
    assert.ok(r, "something to undo");
    this.undo = r.manager;
    this.text = r.op.apply(this.text);
  }
  ctrlY(): void {
    const r = redo(this.undo, this.text);
    assert.ok(r, "something to redo");
    this.undo = r.manager;
    this.text = r.op.apply(this.text);
  }
}

test("Ctrl+Z never undoes a colleague's typing", () => {
  const e = new Editor("");
  e.local(["hello"]);
  e.remote(["world ", 5]); // the colleague types before ours
  e.remote([11, "!"]); // and after
  assert.equal(e.text, "world hello!");
  e.ctrlZ();
  assert.equal(e.text, "world !");
  assert.ok(!canUndo(e.undo));
  e.ctrlY();
  assert.equal(e.text, "world hello!");
});

test("undo then redo then undo, with remote edits between each", () => {
  const e = new Editor("abc");
  e.local([1, "X", 2]);
  e.local([4, "Y"]);
  e.remote(["1", 5]);
  e.ctrlZ();
  assert.equal(e.text, "1aXbc");
  e.remote([5, "2"]);
  e.ctrlZ();
  assert.equal(e.text, "1abc2");
  e.ctrlY();
  assert.equal(e.text, "1aXbc2");
  e.remote([6, "3"]);
  e.ctrlY();
  // Y goes back after "c": the redo entry's insert wins the tie with the colleague's "2".
  assert.equal(e.text, "1aXbcY23");
});

test("a new local edit clears redo; composed typing undoes at once", () => {
  const e = new Editor("");
  e.local(["a"]);
  e.local([1, "b"], true);
  e.local([2, "c"], true);
  e.ctrlZ();
  assert.equal(e.text, "");
  assert.ok(canRedo(e.undo));
  e.local(["z"]);
  assert.ok(!canRedo(e.undo));
});

test("an entry the colleague made empty disappears", () => {
  const e = new Editor("ab");
  e.local([-1, 1]); // we delete "a"
  e.remote([-1]); // they delete "b": our undo would still restore "a"
  assert.ok(canUndo(e.undo));
  const f = new Editor("ab");
  f.local([2, "x"]);
  f.remote([2, -1]); // they delete our "x": nothing left to undo
  assert.ok(!canUndo(f.undo));
});

test("the undo stack is capped", () => {
  let m = emptyUndoManager(3);
  let text = "";
  for (let i = 0; i < 5; i++) {
    const o = TextOperation.replace(text.length, text.length, 0, String(i));
    m = recordLocalEdit(m, o, text);
    text = o.apply(text);
  }
  assert.equal(m.undoStack.length, 3);
});

test("recordInverse gives the same stacks as recordLocalEdit", () => {
  let viaEdit = emptyUndoManager();
  let viaInverse = emptyUndoManager();
  let text = "hello world";
  const edits: OpComponent[][] = [
    [5, "!", 6],
    [6, -6],
    ["> ", 6],
    [8, "x"],
  ];
  edits.forEach((json, i) => {
    const o = op(json);
    const compose = i === 3;
    viaEdit = recordLocalEdit(viaEdit, o, text, { compose });
    viaInverse = recordInverse(viaInverse, o.invert(text), { compose });
    text = o.apply(text);
  });
  assert.deepEqual(
    viaInverse.undoStack.map((e) => e.toJSON()),
    viaEdit.undoStack.map((e) => e.toJSON()),
  );
  assert.equal(recordInverse(viaInverse, TextOperation.identity(3)), viaInverse, "no-op");
});

test("isContinuation: typing forwards and backspacing", () => {
  assert.ok(isContinuation(op([2, "a", 3]), op([3, "b", 3])));
  assert.ok(!isContinuation(op([2, "a", 3]), op([4, "b", 2])));
  assert.ok(isContinuation(op([3, -1, 2]), op([2, -1, 2])), "backspace");
  assert.ok(isContinuation(op([3, -1, 2]), op([3, -1, 1])), "delete key");
  assert.ok(!isContinuation(op([3, -1, 2]), op([3, "x", 2])));
  assert.ok(!isContinuation(op(["a", 1, "b"]), op([3, "c"])));
});

test("property: undoing all own edits leaves exactly the colleague's edits", () => {
  // Own edits are inserts of "<n>" markers, the colleague's are of lowercase letters;
  // after undoing everything, no marker is left and every letter survives.
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.nat(1000), fc.nat(1000)), { maxLength: 20 }),
      (steps) => {
        const e = new Editor("");
        let remoteLetters = "";
        steps.forEach(([mine, p], i) => {
          const n = [...e.text].length;
          const at = p % (n + 1);
          if (mine) e.local(TextOperation.replace(n, at, 0, `<${i % 10}>`).toJSON());
          else {
            const letter = String.fromCharCode(97 + (i % 26));
            remoteLetters += letter;
            e.remote(TextOperation.replace(n, at, 0, letter).toJSON());
          }
        });
        while (canUndo(e.undo)) e.ctrlZ();
        assert.ok(!/[<>0-9]/.test(e.text), `markers left in ${e.text}`);
        assert.equal([...e.text].sort().join(""), [...remoteLetters].sort().join(""));
      },
    ),
    PROPERTY_PARAMS,
  );
});

test("property: undo after a colleague's edit elsewhere restores the document plus their edit", () => {
  fc.assert(
    fc.property(docArb(10), textArb(3), (doc, mine) => {
      const e = new Editor(doc);
      const n = [...doc].length;
      e.local(TextOperation.replace(n, n, 0, mine).toJSON());
      e.remote(TextOperation.replace(n + [...mine].length, 0, 0, "START").toJSON());
      if (mine !== "") e.ctrlZ();
      assert.equal(e.text, "START" + doc);
    }),
    PROPERTY_PARAMS,
  );
});
