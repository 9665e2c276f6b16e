import { Piscina } from "piscina";
import type { GenerateResult, GenerateTask } from "./diffusion/pipeline.ts";
import type { SessionSettings } from "./session-cache.ts";
import type { DescribeResult, RunResult, ThreadTask } from "./vae-tasks.ts";

export interface SessionHostOptions extends SessionSettings {
  /** Session threads; each holds its own copy of every session it has run. @defaultValue 1 */
  threads: number;
}

// Running from TypeScript sources (tests, `pnpm start`), threads need the same loader and
// resolution condition as the main thread; built code runs the .js file as is.
const fromSource = import.meta.url.endsWith(".ts");
const threadFile = new URL(fromSource ? "./vae-thread.ts" : "./vae-thread.js", import.meta.url).href;

/**
 * The worker threads that own the ONNX sessions. `session.run` blocks its thread for the whole
 * run (hundreds of ms), so it must never run on the main thread, where BullMQ renews locks.
 */
export class SessionHost {
  private readonly pool: Piscina;

  constructor(opts: SessionHostOptions) {
    const { threads, ...settings } = opts;
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

  describe(path: string): Promise<DescribeResult> {
    return this.pool.run({ op: "describe", path } satisfies ThreadTask);
  }

  run(task: Exclude<ThreadTask, { op: "describe" | "generate" }>): Promise<RunResult> {
    return this.pool.run(task);
  }

  /** Runs a generation; its progress port is moved to the thread. */
  generate(task: GenerateTask): Promise<GenerateResult> {
    return this.pool.run(task, task.progress ? { transferList: [task.progress as never] } : {});
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
