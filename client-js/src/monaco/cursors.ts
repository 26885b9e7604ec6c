/**
 * Peers' cursors and selections in a Monaco editor: a decoration per range
 * (the selection tinted in the peer's colour, a caret bar at its head) and a
 * name label above each peer's main caret (a content widget). The CSS for
 * each colour is injected once, in one `<style>` element that `dispose()`
 * removes.
 *
 * @module
 */

import * as monaco from "monaco-editor/editor";

import type { Peer } from "../connection.js";
import { normalizeColor, peerName, textColorOn } from "../peers.js";

export { normalizeColor, peerName, textColorOn };

/** A peer's name tag, placed above (or below, on the first line) its caret. */
class Label implements monaco.editor.IContentWidget {
  readonly allowEditorOverflow = false;
  readonly suppressMouseDown = true;
  readonly node: HTMLDivElement;
  position: monaco.IPosition | null = null;

  constructor(private readonly id: string) {
    this.node = document.createElement("div");
    this.node.className = "tandem-peer-label";
  }

  getId(): string {
    return this.id;
  }

  getDomNode(): HTMLElement {
    return this.node;
  }

  getPosition(): monaco.editor.IContentWidgetPosition | null {
    if (!this.position) return null;
    return {
      position: this.position,
      preference: [
        monaco.editor.ContentWidgetPositionPreference.ABOVE,
        monaco.editor.ContentWidgetPositionPreference.BELOW,
      ],
    };
  }
}

/** Renders peers' cursors into one editor; see the module doc. */
export class RemoteCursors {
  private readonly decorations: monaco.editor.IEditorDecorationsCollection;
  private readonly labels = new Map<string, Label>();
  private readonly style: HTMLStyleElement;
  private readonly styled = new Set<string>();
  private disposed = false;

  constructor(private readonly editor: monaco.editor.ICodeEditor) {
    this.decorations = editor.createDecorationsCollection();
    this.style = document.createElement("style");
    this.style.dataset["tandem"] = "remote-cursors";
    this.style.textContent = BASE_CSS;
    document.head.appendChild(this.style);
  }

  /**
   * Shows exactly `peers`. `toPosition` turns a code point offset of the
   * editor's current text into a Monaco position.
   */
  render(peers: Iterable<Peer>, toPosition: (offset: number) => monaco.IPosition): void {
    if (this.disposed) return;
    const decorations: monaco.editor.IModelDeltaDecoration[] = [];
    const seen = new Set<string>();
    for (const peer of peers) {
      const ranges = peer.selection?.ranges ?? [];
      if (ranges.length === 0) continue;
      const color = normalizeColor(peer.user?.color);
      const key = this.ensureStyle(color);
      const name = peerName(peer);
      const hover = { value: name };
      for (const r of ranges) {
        const head = toPosition(r.head);
        const anchor = toPosition(r.anchor);
        const caret = `tandem-caret tandem-caret-${key}`;
        if (r.head === r.anchor) {
          decorations.push({
            range: monaco.Range.fromPositions(head, head),
            options: {
              beforeContentClassName: caret,
              hoverMessage: hover,
              stickiness: monaco.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges,
              overviewRuler: { color, position: monaco.editor.OverviewRulerLane.Center },
            },
          });
        } else {
          const forward = r.head > r.anchor;
          decorations.push({
            range: forward
              ? monaco.Range.fromPositions(anchor, head)
              : monaco.Range.fromPositions(head, anchor),
            options: {
              className: `tandem-selection tandem-selection-${key}`,
              ...(forward ? { afterContentClassName: caret } : { beforeContentClassName: caret }),
              hoverMessage: hover,
              stickiness: monaco.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges,
              overviewRuler: { color, position: monaco.editor.OverviewRulerLane.Center },
            },
          });
        }
      }
      const first = ranges[0];
      if (first) {
        seen.add(peer.client);
        let label = this.labels.get(peer.client);
        const fresh = !label;
        label ??= new Label(`tandem.peer.${peer.client}`);
        label.node.textContent = name;
        label.node.dataset["client"] = peer.client;
        label.node.style.background = color;
        label.node.style.color = textColorOn(color);
        label.position = toPosition(first.head);
        if (fresh) {
          this.labels.set(peer.client, label);
          this.editor.addContentWidget(label);
        } else {
          this.editor.layoutContentWidget(label);
        }
      }
    }
    for (const [client, label] of this.labels) {
      if (seen.has(client)) continue;
      this.editor.removeContentWidget(label);
      this.labels.delete(client);
    }
    this.decorations.set(decorations);
  }

  /** Removes every decoration, label and the injected CSS. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.decorations.clear();
    for (const label of this.labels.values()) this.editor.removeContentWidget(label);
    this.labels.clear();
    this.style.remove();
  }

  /** Injects the rules for `color` (once) and returns its class suffix. */
  private ensureStyle(color: string): string {
    const key = color.slice(1);
    if (!this.styled.has(key)) {
      this.styled.add(key);
      // `color` is validated hex (normalizeColor), safe inside CSS.
      this.style.textContent +=
        `.tandem-selection-${key}{background-color:${color}40;}` +
        `.tandem-caret-${key}{border-color:${color};}`;
    }
    return key;
  }
}

const BASE_CSS = `
.tandem-caret{position:absolute;height:100%;border-left:2px solid;margin-left:-1px;box-sizing:border-box;pointer-events:none;z-index:2;}
.tandem-selection{border-radius:2px;}
.tandem-peer-label{font:600 11px/15px system-ui,sans-serif;padding:0 4px;border-radius:3px 3px 3px 0;white-space:nowrap;pointer-events:none;opacity:.92;transform:translateX(-1px);}
`;
