/**
 * The discrete-event core: a virtual clock and a queue of timed callbacks. Nothing here sleeps;
 * a simulated day runs in seconds because time only moves when the next event is taken.
 */

/** Virtual time is milliseconds since the start of the simulated day (may be negative before it). */
export const EPOCH_MS = Date.parse("2026-11-27T00:00:00.000Z");
export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

export const isoAt = (t: number): string => new Date(EPOCH_MS + t).toISOString();

/**
 * A deterministic random source (mulberry32), so every run with one seed sees the same workload and
 * the same jitter; the tests use it too (test/support/harness.ts).
 */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Handler = () => void | Promise<void>;

interface Entry {
  at: number;
  seq: number;
  run: Handler;
}

/**
 * Events ordered by (time, insertion order): two events at one instant run in the order they were
 * scheduled, which keeps a run reproducible. Handlers may be async (the replication plane is); the
 * loop awaits each one before taking the next, so a handler sees virtual time stand still while it
 * runs (Lambda run time is negligible next to copy durations of minutes).
 */
export class Engine {
  private heap: Entry[] = [];
  private seq = 0;
  private t: number;

  constructor(start = 0) {
    this.t = start;
  }

  get now(): number {
    return this.t;
  }

  at(time: number, run: Handler): void {
    const e: Entry = { at: Math.max(time, this.t), seq: this.seq++, run };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as Entry;
      if (before(parent, e)) break;
      h[i] = parent;
      i = p;
    }
    h[i] = e;
  }

  after(delay: number, run: Handler): void {
    this.at(this.t + delay, run);
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && before(h[r] as Entry, h[l] as Entry) ? r : l;
      if (before(last, h[c] as Entry)) break;
      h[i] = h[c] as Entry;
      i = c;
    }
    h[i] = last;
    return top;
  }

  /** Runs every event up to and including `until`. */
  async run(until: number): Promise<void> {
    for (;;) {
      const top = this.heap[0];
      if (!top || top.at > until) break;
      this.pop();
      this.t = top.at;
      const r = top.run();
      if (r !== undefined) await r;
    }
    this.t = until;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
