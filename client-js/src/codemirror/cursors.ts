/**
 * Peers' cursors and selections in a CodeMirror 6 view: a state field of
 * decorations (the selection tinted in the peer's colour, a caret bar at its
 * head with the name above the main one), replaced by a `setPeers` effect
 * and mapped through every change in between.
 *
 * @module
 */

import { StateEffect, StateField, type Extension, type Range } from "@codemirror/state";
import { Decoration, EditorView, WidgetType, type DecorationSet } from "@codemirror/view";
import { normalizeColor, textColorOn } from "../peers.js";

/** One peer's ranges, already in UTF-16 positions of the view's document. */
export interface PeerCursor {
  readonly name: string;
  readonly color: string;
  readonly ranges: readonly { readonly anchor: number; readonly head: number }[];
}

class CaretWidget extends WidgetType {
  constructor(
    readonly color: string,
    readonly name: string | null,
  ) {
    super();
  }

  override eq(other: CaretWidget): boolean {
    return other.color === this.color && other.name === this.name;
  }

  toDOM(): HTMLElement {
    const caret = document.createElement("span");
    caret.className = "tandem-caret";
    caret.style.borderColor = this.color;
    if (this.name !== null) {
      const label = document.createElement("span");
      label.className = "tandem-peer-label";
      label.textContent = this.name;
      label.style.backgroundColor = this.color;
      label.style.color = textColorOn(this.color);
      caret.append(label);
    }
    return caret;
  }

  override ignoreEvent(): boolean {
    return true;
  }
}

/** Replaces the peers' decorations. */
export const setPeers = StateEffect.define<readonly PeerCursor[]>();

function decorations(peers: readonly PeerCursor[], docLength: number): DecorationSet {
  const out: Range<Decoration>[] = [];
  const clamp = (n: number): number => Math.max(0, Math.min(n, docLength));
  for (const p of peers) {
    const color = normalizeColor(p.color);
    p.ranges.forEach((r, i) => {
      const from = clamp(Math.min(r.anchor, r.head));
      const to = clamp(Math.max(r.anchor, r.head));
      if (from < to) {
        out.push(
          Decoration.mark({
            class: "tandem-selection",
            attributes: { style: `background-color:${color}40` },
          }).range(from, to),
        );
      }
      out.push(
        Decoration.widget({
          widget: new CaretWidget(color, i === 0 ? p.name : null),
          side: 1,
        }).range(clamp(r.head)),
      );
    });
  }
  return Decoration.set(out, true);
}

const peersField = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(deco, tr) {
    let next = deco.map(tr.changes);
    for (const e of tr.effects) if (e.is(setPeers)) next = decorations(e.value, tr.newDoc.length);
    return next;
  },
  provide: (f) => EditorView.decorations.from(f),
});

const theme = EditorView.baseTheme({
  ".tandem-caret": {
    position: "relative",
    borderLeft: "2px solid",
    marginLeft: "-1px",
    marginRight: "-1px",
    pointerEvents: "none",
  },
  ".tandem-peer-label": {
    position: "absolute",
    bottom: "100%",
    left: "-2px",
    font: "600 11px/15px system-ui, sans-serif",
    padding: "0 4px",
    borderRadius: "3px 3px 3px 0",
    whiteSpace: "nowrap",
    opacity: "0.92",
  },
  ".tandem-selection": { borderRadius: "2px" },
});

/** The extension that draws peers' cursors (dispatch {@link setPeers} to update them). */
export function remoteCursors(): Extension {
  return [peersField, theme];
}
