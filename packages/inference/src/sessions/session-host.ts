import { dirname, resolve } from "node:path";
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
  /**
   * Session threads. A pinned model's sessions live in one of them (its home), so it is held once
   * per worker however many there are; other models (VAEs) run on whichever thread is free,
   * loaded in each thread that runs them. @defaultValue 1
   */
  threads: number;
}

/** What a model's loaded sessions run on. */
export interface SessionProviders {
  /** The providers a session runs with; the first is the one its graph runs on. */
  providers: string[];
  /** The providers asked for, `cpu` last. */
  requested: string[];
  /** Why the first provider asked for is not in use (null: it is). */
  fallback: string | null;
}

/** A model directory as the host holds it: its thread and its loaded sessions by graph path. */
export interface HostedModel {
  dir: string;
  /** The thread holding a pinned model; null: any thread runs it (each holding its own copy). */
  thread: number | null;
  sessions: Map<string, SessionProviders>;
}

// Running from TypeScript sources (tests, `pnpm start`), threads need the same loader and
// resolution condition as the main thread; built code runs the .js file as is.
const fromSource = import.meta.url.endsWith(".ts");
const threadFile = new URL(fromSource ? "./session-thread.ts" : "./session-thread.js", import.meta.url).href;

/**
 * The model directory a graph belongs to: optimum's layout puts every graph at
 * `<model>/<component>/model.onnx`, so a pipeline's text encoders, denoiser and VAE (which also
 * serves the VAE endpoints) share one home.
 */
export const modelDirOf = (graph: string): string => dirname(dirname(resolve(graph)));

function homeOf(task: ThreadTask): string {
  switch (task.op) {
    case "generate":
      return resolve(task.files.dir);
    case "batch":
      return modelDirOf(task.tasks[0]!.path);
    default:
      return modelDirOf(task.path);
  }
}

/**
 * The worker threads that own the ONNX sessions. `session.run` blocks its thread for the whole
 * run (hundreds of ms), so it must never run on the main thread, where BullMQ renews locks.
 *
 * A session cannot be shared between threads. A pinned model ({@link pin}: the diffusion
 * pipelines, up to a 12B transformer that does not fit twice) lives in exactly one thread: it is
 * given, at its first task, to the thread holding the fewest pinned models, and every later task
 * of that model goes there. Other models (VAEs: small, and the throughput of many small decodes
 * comes from running them on every thread) run on the least busy thread, each thread loading its
 * own copy when it first runs them.
 * Each thread is a piscina pool of its own (one thread, one task at a time): piscina picks a
 * pool's thread for a task itself, and its `loadBalancer` sees neither the task's data nor a
 * thread identity that survives a restart, so pinning by hand inside one pool would be fragile;
 * a pool per thread keeps piscina's queueing, transfer and restart of a crashed thread.
 */
export class SessionHost {
  private readonly pools: Piscina[];
  private readonly busy: number[];
  private readonly homes = new Map<string, HostedModel>();
  private readonly pinned = new Set<string>();
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
    this.busy = Array.from({ length: threads }, () => 0);
    this.pools = this.busy.map(
      () =>
        new Piscina({
          filename: threadFile,
          minThreads: 1,
          maxThreads: 1,
          // One task per thread at a time: a run already uses all the cores ORT was given.
          concurrentTasksPerWorker: 1,
          idleTimeout: Number.POSITIVE_INFINITY,
          workerData: settings,
          ...(fromSource ? { execArgv: ["--conditions=source", "--import", "tsx"] } : {}),
        }),
    );
  }

  /**
   * Keeps `dir`'s sessions in one thread (call it before its first task): a diffusion pipeline,
   * whose weights must not be held once per thread.
   */
  pin(dir: string): void {
    this.pinned.add(resolve(dir));
  }

  /**
   * The model directory's home, chosen at its first task: for a pinned model, the thread holding
   * the fewest pinned models; for others, none (any thread).
   */
  private home(dir: string): HostedModel {
    let h = this.homes.get(dir);
    if (!h) {
      let thread: number | null = null;
      if (this.pinned.has(dir)) {
        const held = this.busy.map(() => 0);
        for (const m of this.homes.values()) if (m.thread !== null) held[m.thread]!++;
        thread = held.indexOf(Math.min(...held));
      }
      h = { dir, thread, sessions: new Map() };
      this.homes.set(dir, h);
    }
    return h;
  }

  /** The thread a task of `home` runs on: its own, or the least busy one (the first of a tie). */
  private threadFor(home: HostedModel): number {
    if (home.thread !== null) return home.thread;
    return this.busy.indexOf(Math.min(...this.busy));
  }

  /** Session threads with no task right now. */
  get freeThreads(): number {
    return this.busy.filter((b) => b === 0).length;
  }

  /** Whether a thread that may run `task` (its pinned model's home, or any) has no task right now. */
  isFree(task: { path: string }): boolean {
    const home = this.home(modelDirOf(task.path));
    return home.thread === null ? this.freeThreads > 0 : this.busy[home.thread] === 0;
  }

  /** Calls `listener` each time a task ends (a thread may be free); returns the unsubscribe. */
  onFreed(listener: () => void): () => void {
    this.freed.add(listener);
    return () => this.freed.delete(listener);
  }

  /** Every model directory the host has run a task of, with its thread and sessions' providers. */
  get models(): HostedModel[] {
    return [...this.homes.values()];
  }

  private async track<T>(task: ThreadTask, run: (pool: Piscina) => Promise<T>): Promise<T> {
    const thread = this.threadFor(this.home(homeOf(task)));
    this.busy[thread]!++;
    try {
      return await run(this.pools[thread]!);
    } finally {
      this.busy[thread]!--;
      for (const l of this.freed) l();
    }
  }

  /**
   * Runs `task` on its model's thread, its byte arrays moved rather than cloned. A structured
   * clone copies a view's whole backing buffer, and payloads read from Redis are often views into
   * ioredis' shared parser pool (megabytes under load): each is copied once to a buffer of its
   * own size, which is then transferred.
   */
  private post<T>(task: ThreadTask, extra: TransferListItem[] = []): Promise<T> {
    const transferList: TransferListItem[] = [...extra];
    const owned = ownBytes(task, transferList, 3) as ThreadTask;
    return this.track(owned, (pool) =>
      pool.run(owned, transferList.length > 0 ? { transferList: transferList as never } : {}),
    );
  }

  /** Loads a graph's session in its model's thread (once) and describes it. */
  async describe(path: string): Promise<DescribeResult> {
    const task = { op: "describe", path } satisfies ThreadTask;
    const d: DescribeResult = await this.track(task, (pool) => pool.run(task));
    this.home(modelDirOf(path)).sessions.set(resolve(path), {
      providers: d.providers,
      requested: d.requested,
      fallback: d.fallback,
    });
    return d;
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
    await Promise.all(this.pools.map((p) => p.destroy()));
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
