/** A manual clock for the connection: time only moves when a test says so. */
import type { Clock } from "../../src/index.js";

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  now = 0;
  private nextId = 1;
  private timers: Timer[] = [];

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ id, at: this.now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }

  /** Number of timers waiting. */
  get pending(): number {
    return this.timers.length;
  }

  /** Delays (from now) of the waiting timers, soonest first. */
  delays(): number[] {
    return this.timers.map((t) => t.at - this.now).sort((a, b) => a - b);
  }

  /** Moves to the soonest timer and runs it; false if none. */
  runNext(): boolean {
    if (this.timers.length === 0) return false;
    let first = this.timers[0] as Timer;
    for (const t of this.timers)
      if (t.at < first.at || (t.at === first.at && t.id < first.id)) first = t;
    this.timers = this.timers.filter((t) => t !== first);
    this.now = Math.max(this.now, first.at);
    first.fn();
    return true;
  }

  /** Runs every timer due within `ms` from now, in order, and moves time on. */
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const due = this.timers
        .filter((t) => t.at <= until)
        .sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.now = due.at;
      due.fn();
    }
    this.now = until;
  }
}
