import type { TransferListItem } from "node:worker_threads";
import { Piscina } from "piscina";
import type { SessionSettings } from "./session-cache.ts";
import type {
  BatchTask,
  DescribeResult,
  GenerateResult,
  GenerateTask,
  RunResult,
  ThreadTask,
} from "./thread-protocol.ts";

export interface SessionHostOptions extends SessionSettings {
  /** Session threads; each holds its own copy of every session it has run. @defaultValue 1 */
  threads: number;
}

// Running from TypeScript sources (tests, `pnpm start`), threads need the same loader and
// resolution condition as the main thread; built code runs the .js file as is.
const fromSource = import.meta.url.endsWith(".ts");
const threadFile = new URL(fromSource ? "./session-thread.ts" : "./session-thread.js", import.meta.url).href;

/**
 * The worker threads that own the ONNX sessions. `session.run` blocks its thread for the whole
 * run (hundreds of ms), so it must never run on the main thread, where BullMQ renews locks.
 */
export class SessionHost {
  private readonly pool: Piscina;
  private readonly threads: number;
  private busy = 0;
  private readonly freed = new Set<() => void>();

  constructor(opts: SessionHostOptions) {
    const { threads, providers, intraOpThreads, allowSpinning } = opts;
    // Only the session settings go to the threads: callers pass wider option objects, and not
    // everything in them can be cloned into a thread (functions such as a batching callback).
    const settings: SessionSettings = {
      providers,
      intraOpThreads,
      ...(allowSpinning !== undefined ? { allowSpinning } : {}),
    };
    this.threads = threads;
    this.pool = new Piscina({
      filename: threadFile,
      minThreads: threads,
      maxThreads: threads,
      // One task per thread at a time: a run already uses all the cores ORT was given.
      concurrentTasksPerWorker: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      workerData: settings,
      ...(fromSource ? { execArgv: ["--conditions=source", "--import", "tsx"] } : {}),
    });
  }

  /** Session threads with no task right now (a batcher sends work only to a free one). */
  get freeThreads(): number {
    return Math.max(0, this.threads - this.busy);
  }

  /** Calls `listener` each time a task ends (a thread may be free); returns the unsubscribe. */
  onFreed(listener: () => void): () => void {
    this.freed.add(listener);
    return () => this.freed.delete(listener);
  }

  private async track<T>(p: () => Promise<T>): Promise<T> {
    this.busy++;
    try {
      return await p();
    } finally {
      this.busy--;
      for (const l of this.freed) l();
    }
  }

  /**
   * Runs `task` on a thread, its byte arrays moved rather than cloned. A structured clone copies
   * a view's whole backing buffer, and payloads read from Redis are often views into ioredis'
   * shared parser pool (megabytes under load): each is copied once to a buffer of its own size,
   * which is then transferred.
   */
  private post<T>(task: ThreadTask, extra: TransferListItem[] = []): Promise<T> {
    const transferList: TransferListItem[] = [...extra];
    const owned = ownBytes(task, transferList, 3) as ThreadTask;
    return this.track(() =>
      this.pool.run(owned, transferList.length > 0 ? { transferList: transferList as never } : {}),
    );
  }

  describe(path: string): Promise<DescribeResult> {
    return this.track(() => this.pool.run({ op: "describe", path } satisfies ThreadTask));
  }

  run(task: Exclude<ThreadTask, { op: "describe" | "generate" | "batch" }>): Promise<RunResult> {
    return this.post(task);
  }

  /** Runs same-shaped decodes or encodes as one batch; one answer per task, in order. */
  runBatch(task: BatchTask): Promise<RunResult[]> {
    return this.post(task);
  }

  /** Runs a generation; its progress port is moved to the thread. */
  generate(task: GenerateTask): Promise<GenerateResult> {
    return this.post(task, task.progress ? [task.progress as unknown as TransferListItem] : []);
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

/**
 * A copy of `value` whose byte arrays (down to `depth` levels of plain objects and arrays) are
 * copies of their own exact size, their buffers collected in `transfer`.
 */
function ownBytes(value: unknown, transfer: TransferListItem[], depth: number): unknown {
  if (value instanceof Uint8Array) {
    // Always a copy: the caller may still read its array (a failed batch runs its tasks again).
    const copy = new Uint8Array(value);
    transfer.push(copy.buffer);
    return copy;
  }
  if (depth === 0 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => ownBytes(v, transfer, depth - 1));
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = ownBytes(v, transfer, depth - 1);
  return out;
}
