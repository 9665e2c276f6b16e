import { afterEach, describe, expect, it, vi } from "vitest";
import { Batcher, type BatchSlots } from "./batcher.ts";

/**
 * Threads as plain counters: each run holds one until the test ends it, so the order in which
 * batches form is deterministic (the real session threads are covered in batcher.test.ts).
 */
class Threads implements BatchSlots<string> {
  busy = 0;
  readonly runs: Array<{ tasks: string[]; end: () => void }> = [];
  private readonly listeners = new Set<() => void>();
  constructor(private readonly size: number) {}
  isFree() {
    return this.size - this.busy > 0;
  }
  onFreed(l: () => void) {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  run(tasks: string[]): Promise<string[]> {
    this.busy++;
    return new Promise((resolve) => {
      this.runs.push({
        tasks,
        end: () => {
          this.busy--;
          resolve(tasks.map((t) => `${t}!`));
          for (const l of this.listeners) l();
        },
      });
    });
  }
}

const batcherOn = (threads: Threads, maxBatchSize: number, windowMs: number) =>
  new Batcher<string, string>(
    { maxBatchSize, windowMs },
    threads,
    (t) => threads.run([t]).then((r) => r[0]!),
    (ts) => threads.run(ts),
  );
/** Lets the promise callbacks of ended runs settle. */
const tick = () => new Promise((r) => setTimeout(r, 0));

afterEach(() => {
  vi.useRealTimers();
});

describe("Batcher scheduling", () => {
  it("window 0: runs at once on a free thread; what arrives meanwhile runs together next", async () => {
    const threads = new Threads(1);
    const b = batcherOn(threads, 8, 0);
    const first = b.submit("k", "a", 1);
    const rest = ["b", "c", "d"].map((t) => b.submit("k", t, 1));
    expect(threads.runs.map((r) => r.tasks)).toEqual([["a"]]);
    threads.runs[0]!.end();
    expect(await first).toBe("a!");
    await tick();
    expect(threads.runs.map((r) => r.tasks)).toEqual([["a"], ["b", "c", "d"]]);
    threads.runs[1]!.end();
    expect(await Promise.all(rest)).toEqual(["b!", "c!", "d!"]);
  });

  it("waits up to the window for more while a thread is free, and not once the batch is full", async () => {
    // The window is measured with performance.now() and kept with setTimeout: both faked, so the
    // test steps through it exactly, however loaded the machine.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const threads = new Threads(1);
    const b = batcherOn(threads, 3, 60);
    void b.submit("k", "a", 1);
    void b.submit("k", "b", 1);
    await vi.advanceTimersByTimeAsync(59);
    expect(threads.runs).toHaveLength(0);
    // The batch is full: it leaves at once, before its window ends.
    void b.submit("k", "c", 1);
    expect(threads.runs.map((r) => r.tasks)).toEqual([["a", "b", "c"]]);
    threads.runs[0]!.end();
    void b.submit("k", "d", 1);
    await vi.advanceTimersByTimeAsync(59);
    expect(threads.runs).toHaveLength(1);
    // Alone at the end of its window, it goes.
    await vi.advanceTimersByTimeAsync(1);
    expect(threads.runs.map((r) => r.tasks)).toEqual([["a", "b", "c"], ["d"]]);
    b.close();
  });

  it("counts batch entries, keeps keys apart and serves the oldest group first", async () => {
    const threads = new Threads(1);
    const b = batcherOn(threads, 4, 0);
    void b.submit("x", "x0", 1);
    void b.submit("y", "y1", 1);
    void b.submit("x", "x2", 3);
    void b.submit("x", "x3", 2);
    void b.submit("y", "y4", 1);
    threads.runs[0]!.end();
    await tick();
    // x0 ran alone; then the oldest waiting group is y (y1 came before x2).
    expect(threads.runs.map((r) => r.tasks)).toEqual([["x0"], ["y1", "y4"]]);
    threads.runs[1]!.end();
    await tick();
    threads.runs[2]!.end();
    await tick();
    // x2 (3 entries) and x3 (2) do not fit one batch of 4.
    expect(threads.runs.map((r) => r.tasks)).toEqual([["x0"], ["y1", "y4"], ["x2"], ["x3"]]);
    expect(b.waiting).toBe(0);
  });

  it("runs each task of a failed batch again alone, so one bad task fails only itself", async () => {
    let batchRuns = 0;
    const b = new Batcher<string, string>(
      { maxBatchSize: 4, windowMs: 20 },
      { isFree: () => true, onFreed: () => () => {} },
      async (t) => {
        if (t === "bad") throw new Error("bad input");
        return `${t}!`;
      },
      async () => {
        batchRuns++;
        throw new Error("bad input in the batch");
      },
    );
    const results = await Promise.allSettled(["a", "bad", "c"].map((t) => b.submit("k", t, 1)));
    expect(batchRuns).toBe(1);
    expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual([
      "a!",
      "bad input",
      "c!",
    ]);
  });

  it("a group waits for its own model's thread only: another model's free thread still runs", async () => {
    // Two threads, model x pinned to one and y to the other (tasks name their model first).
    const busy = new Set<string>();
    const listeners = new Set<() => void>();
    const runs: Array<{ tasks: string[]; end: () => void }> = [];
    const run = (tasks: string[]) => {
      const model = tasks[0]![0]!;
      busy.add(model);
      return new Promise<string[]>((resolve) => {
        runs.push({
          tasks,
          end: () => {
            busy.delete(model);
            resolve(tasks.map((t) => `${t}!`));
            for (const l of listeners) l();
          },
        });
      });
    };
    const b = new Batcher<string, string>(
      { maxBatchSize: 8, windowMs: 0 },
      {
        isFree: (t) => !busy.has(t[0]!),
        onFreed: (l) => {
          listeners.add(l);
          return () => listeners.delete(l);
        },
      },
      (t) => run([t]).then((r) => r[0]!),
      (ts) => run(ts),
    );
    const x0 = b.submit("x", "x0", 1);
    const x1 = b.submit("x", "x1", 1);
    const y0 = b.submit("y", "y0", 1);
    // x1 waits for x's thread; y0, which came later, runs at once on y's.
    expect(runs.map((r) => r.tasks)).toEqual([["x0"], ["y0"]]);
    runs[1]!.end();
    expect(await y0).toBe("y0!");
    expect(runs).toHaveLength(2);
    runs[0]!.end();
    expect(await x0).toBe("x0!");
    await tick();
    expect(runs.map((r) => r.tasks)).toEqual([["x0"], ["y0"], ["x1"]]);
    runs[2]!.end();
    expect(await x1).toBe("x1!");
  });
});

describe("Batcher and a task's cancel", () => {
  it("drops a task whose signal aborts while it waits, unrun; one already running is not touched", async () => {
    const threads = new Threads(1);
    // Batches of one: the way every decode and encode waits for its thread when batching is off.
    const b = batcherOn(threads, 1, 0);
    const runningAbort = new AbortController();
    const waitingAbort = new AbortController();
    const running = b.submit("k", "a", 1, runningAbort.signal);
    const dropped = b.submit("k", "b", 1, waitingAbort.signal);
    const next = b.submit("k", "c", 1);
    expect(b.waiting).toBe(2);
    waitingAbort.abort(new Error("canceled"));
    await expect(dropped).rejects.toThrow("canceled");
    expect(b.waiting).toBe(1);
    // Running already: its abort is the caller's to handle (its result is discarded there).
    runningAbort.abort(new Error("canceled"));
    threads.runs[0]!.end();
    expect(await running).toBe("a!");
    await tick();
    threads.runs[1]!.end();
    expect(await next).toBe("c!");
    expect(threads.runs.map((r) => r.tasks)).toEqual([["a"], ["c"]]);
  });

  it("refuses a task whose signal aborted before it came", async () => {
    const threads = new Threads(1);
    const b = batcherOn(threads, 4, 0);
    await expect(b.submit("k", "a", 1, AbortSignal.abort(new Error("canceled")))).rejects.toThrow("canceled");
    expect(threads.runs).toHaveLength(0);
    expect(b.waiting).toBe(0);
  });
});
