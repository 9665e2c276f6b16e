export interface BatchOptions {
  /** Most batch entries (images, or latents of a batch) in one run; 1 turns batching off. */
  maxBatchSize: number;
  /**
   * How long the first task of a batch may wait for more while a session thread is free. 0: no
   * wait at all; tasks that arrive while every thread is busy still run together.
   */
  windowMs: number;
  /** Told the batch entries of every run it starts (1 for a task run alone): for metrics. */
  onRun?: (entries: number, tasks: number) => void;
}

/**
 * Where batches run: whether the thread a task would run on is free now (a model's sessions
 * live in one thread), and a call each time one may have freed.
 */
export interface BatchSlots<T> {
  isFree(task: T): boolean;
  onFreed(listener: () => void): () => void;
}

interface Pending<T, R> {
  task: T;
  entries: number;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
  /** Stops listening to the task's abort signal (once it runs, an abort no longer drops it). */
  release: () => void;
}

interface Group<T, R> {
  items: Pending<T, R>[];
  entries: number;
  /** When its oldest task arrived (performance.now()). */
  since: number;
}

/**
 * Dynamic batching: tasks that could run as one batch (same key: model, shape after the batch
 * axis, dtype, options) wait together until a session thread is free, and then run as one —
 * after at most `windowMs` more when the batch is not full. Oldest group first; each task's
 * promise settles with its own answer. With `maxBatchSize` 1 it batches nothing but is still
 * where tasks wait for a thread: a task whose job is canceled while it waits (a prefetched job,
 * see the worker's PREFETCH) is dropped there, never run, which a task queued inside the thread
 * pool could not be.
 */
export class Batcher<T, R> {
  private readonly groups = new Map<string, Group<T, R>>();
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly opts: BatchOptions,
    private readonly slots: BatchSlots<T>,
    /** Runs one task alone (exactly the path without batching). */
    private readonly runOne: (task: T) => Promise<R>,
    /** Runs tasks as one batch; one answer per task, in order. */
    private readonly runMany: (tasks: T[]) => Promise<R[]>,
  ) {
    this.unsubscribe = slots.onFreed(() => this.pump());
  }

  /**
   * Queues a task of `entries` batch entries under its batch key. If `signal` aborts while the
   * task still waits, it leaves the queue unrun and its promise rejects with the signal's reason.
   */
  submit(key: string, task: T, entries: number, signal?: AbortSignal): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      let g = this.groups.get(key);
      if (!g) {
        g = { items: [], entries: 0, since: performance.now() };
        this.groups.set(key, g);
      }
      const drop = () => {
        const group = this.groups.get(key);
        const at = group ? group.items.indexOf(item) : -1;
        if (!group || at < 0) return;
        group.items.splice(at, 1);
        group.entries -= entries;
        if (group.items.length === 0) this.groups.delete(key);
        reject(signal?.reason);
      };
      const item: Pending<T, R> = {
        task,
        entries,
        resolve,
        reject,
        release: () => signal?.removeEventListener("abort", drop),
      };
      signal?.addEventListener("abort", drop, { once: true });
      g.items.push(item);
      g.entries += entries;
      this.pump();
    });
  }

  /** Tasks waiting for a batch (for tests and metrics). */
  get waiting(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.items.length;
    return n;
  }

  private pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = performance.now();
    let wakeAt = Number.POSITIVE_INFINITY;
    // Map order is insertion order: the group waiting longest goes first.
    for (const [key, g] of this.groups) {
      // Its model's thread is busy: the group waits for it (onFreed pumps again).
      if (!this.slots.isFree(g.items[0]!.task)) continue;
      const due = now - g.since >= this.opts.windowMs;
      if (g.entries < this.opts.maxBatchSize && !due) {
        wakeAt = Math.min(wakeAt, g.since + this.opts.windowMs);
        continue;
      }
      this.dispatch(this.take(key, g));
    }
    if (wakeAt !== Number.POSITIVE_INFINITY)
      this.timer = setTimeout(() => this.pump(), Math.max(0, wakeAt - now));
  }

  /** The oldest tasks of a group up to the batch size (at least one, however large). */
  private take(key: string, g: Group<T, R>): Pending<T, R>[] {
    const out: Pending<T, R>[] = [];
    let entries = 0;
    while (g.items.length > 0) {
      const next = g.items[0]!;
      if (out.length > 0 && entries + next.entries > this.opts.maxBatchSize) break;
      out.push(g.items.shift()!);
      next.release();
      entries += next.entries;
    }
    g.entries -= entries;
    if (g.items.length === 0) this.groups.delete(key);
    // The rest waited as long as the batch that left: they may go as soon as a thread is free.
    return out;
  }

  private dispatch(batch: Pending<T, R>[]): void {
    this.opts.onRun?.(
      batch.reduce((n, p) => n + p.entries, 0),
      batch.length,
    );
    const settle = (p: Pending<T, R>, run: Promise<R>) => void run.then(p.resolve, p.reject);
    if (batch.length === 1) {
      settle(batch[0]!, this.runOne(batch[0]!.task));
      return;
    }
    void this.runMany(batch.map((p) => p.task)).then(
      (results) => {
        for (const [i, p] of batch.entries()) p.resolve(results[i]!);
      },
      // One bad task must not fail the others: each runs again alone and fails on its own.
      () => {
        for (const p of batch) settle(p, this.runOne(p.task));
      },
    );
  }

  close(): void {
    clearTimeout(this.timer);
    this.unsubscribe();
    for (const g of this.groups.values())
      for (const p of g.items) {
        p.release();
        p.reject(new Error("The runtime closed before the task ran."));
      }
    this.groups.clear();
  }
}
