import { SimEbs } from "../aws.js";
import { type Engine, MINUTE, SECOND } from "../engine.js";
import type { Workload } from "../model.js";
import type { Policy } from "./policy.js";

/** A CopySnapshot call waiting for its next try. */
interface Pending {
  j: number;
  v: number;
  /** Earliest virtual time of the next try. */
  due: number;
}

/**
 * The naive policy of the CloudBees fork and the public samples: copy every snapshot the moment
 * its event arrives; on a quota or throttling error try again 60 s later, forever. Nothing is ever
 * skipped, so when copies cannot keep up its backlog grows without end.
 *
 * Simulating it literally would cost one event per retry (tens of millions a day at N=1000), so
 * retries are kept in 60 one-second buckets by the second of the minute they fall on (a retry is
 * rounded up to the next whole second, at most 1 s late). At each bucket's tick its due calls run
 * in arrival order while a call can succeed; the rest of them would all be refused at that
 * instant, so they are charged to AWS's error counters in one step and stay where they are, due
 * again 60 s later.
 */
export class NaivePolicy implements Policy {
  readonly name = "naive";
  readonly aws: SimEbs;
  private readonly buckets: Array<{ items: Pending[]; head: number; tick: number | undefined }>;
  private pending = 0;

  constructor(
    readonly w: Workload,
    private readonly engine: Engine,
  ) {
    this.aws = new SimEbs(w, engine, (copy) => {
      // The copySnapshot event means nothing to a policy that never waits for its copies.
      void copy;
    });
    this.buckets = Array.from({ length: 60 }, () => ({ items: [], head: 0, tick: undefined }));
  }

  onSnapshotEvent(j: number, v: number): void {
    const r = this.aws.requestCopy(j, v);
    if (typeof r === "string") this.retryLater({ j, v, due: 0 });
  }

  onCopyEvent(): void {}

  private retryLater(p: Pending): void {
    const due = Math.ceil((this.engine.now + MINUTE) / SECOND) * SECOND;
    p.due = due;
    const phase = Math.floor(due / SECOND) % 60;
    const b = this.buckets[(phase + 60) % 60];
    if (!b) throw new Error(`no bucket for phase ${phase}`);
    b.items.push(p);
    this.pending++;
    if (b.tick === undefined) {
      b.tick = due;
      this.engine.at(due, () => this.tick(b));
    }
  }

  private tick(b: { items: Pending[]; head: number; tick: number | undefined }): void {
    const now = this.engine.now;
    // Items are appended in due order, so the due ones are a prefix (from head).
    let end = b.head;
    let hi = b.items.length;
    while (end < hi) {
      const mid = (end + hi) >> 1;
      if ((b.items[mid] as Pending).due <= now) end = mid + 1;
      else hi = mid;
    }
    while (b.head < end && this.aws.canSucceed()) {
      const p = b.items[b.head] as Pending;
      const r = this.aws.requestCopy(p.j, p.v);
      if (typeof r === "string") throw new Error(`naive: call refused after canSucceed: ${r}`);
      b.head++;
      this.pending--;
    }
    if (b.head < end) this.aws.refuseMany(end - b.head);
    if (b.head > 1024 && b.head * 2 > b.items.length) {
      b.items = b.items.slice(b.head);
      b.head = 0;
    }
    if (b.head < b.items.length) {
      b.tick = now + MINUTE;
      this.engine.at(b.tick, () => this.tick(b));
    } else {
      b.tick = undefined;
    }
  }

  openWork(): number {
    return this.pending + this.aws.active;
  }

  superseded(): number {
    return 0;
  }
}
