// A stack (a redis-server of its own, one API, one worker) started from any checkout of this
// repository, so a bench can run the same load against two commits side by side. Processes are
// started by command inside that tree (its own tsx, its own sources, the env names both the
// Foundation commit b57d47f and main read), never through this tree's modules.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startRedisServer, stop, waitFor } from "../../scripts/lib.ts";

/** Writes a keys file with no keys at `path` (the API then runs open) and returns the path. */
function emptyKeysFile(path: string): string {
  writeFileSync(path, '{ "keys": [] }\n');
  return path;
}

export interface TreeStack {
  /** A short name for reports. */
  name: string;
  /** The checkout it runs from. */
  root: string;
  baseUrl: string;
  redisUrl: string;
  api: ChildProcess;
  worker: ChildProcess;
  /** The stack's redis-server (its CPU is part of what a request costs). */
  redis: ChildProcess;
  stop(): Promise<void>;
}

export interface TreeStackOptions {
  name: string;
  root: string;
  /** `MODELS` of the worker (`id=/abs/dir,...`): both trees serve the very same model files. */
  models: string;
  /** `LOG_LEVEL` of both processes. @defaultValue "warn" */
  logLevel?: string;
  /** More settings of the API. */
  api?: Record<string, string>;
  /** More settings of the worker. */
  worker?: Record<string, string>;
}

/**
 * Runs `apps/<app>/src/index.ts` of the tree at `root` from source, as its own `pnpm start` does.
 * With `BENCH_CPU_PROF=<dir>` in the environment each process writes a V8 CPU profile of its
 * main thread to `<dir>/<stack>-<app>/` when it stops (open it in Chrome's DevTools): how the two
 * trees of a side-by-side run were compared function by function.
 */
function startTreeApp(
  name: string,
  root: string,
  app: "api" | "worker",
  env: Record<string, string>,
): ChildProcess {
  const profDir = process.env.BENCH_CPU_PROF;
  const prof = profDir ? ["--cpu-prof", `--cpu-prof-dir=${join(profDir, `${name}-${app}`)}`] : [];
  return spawn(
    process.execPath,
    [...prof, "--conditions=source", "--import", "tsx", `apps/${app}/src/index.ts`],
    {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
}

/** Starts the stack and resolves once the API says it is ready (the worker may still be loading). */
export async function startTreeStack(opts: TreeStackOptions): Promise<TreeStack> {
  const redisPort = await freePort();
  const redis = await startRedisServer(redisPort);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const port = await freePort();
  const common = { REDIS_URL: redisUrl, QUEUE_PREFIX: "bench", LOG_LEVEL: opts.logLevel ?? "warn" };
  const worker = startTreeApp(opts.name, opts.root, "worker", {
    ...common,
    MODELS: opts.models,
    GENERATE_DEFAULT_MODELS: "false",
    ...opts.worker,
  });
  const api = startTreeApp(opts.name, opts.root, "api", {
    ...common,
    PORT: String(port),
    HOST: "127.0.0.1",
    // A keys file with no keys: a developer's ./keys.json must not switch auth on here (a named
    // keys file must exist: APIs from before that rule read a missing one the same way).
    API_KEYS_FILE: emptyKeysFile(join(tmpdir(), `load-bench-${port}-no-keys.json`)),
    ...opts.api,
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const stack: TreeStack = {
    name: opts.name,
    root: opts.root,
    baseUrl,
    redisUrl,
    api,
    worker,
    redis,
    stop: async () => {
      await Promise.all([stop(api), stop(worker)]);
      await stop(redis, 2000);
    },
  };
  try {
    await waitFor(
      async () => {
        if (api.exitCode !== null || worker.exitCode !== null)
          throw new Error(`${opts.name}: a service exited during start-up`);
        return fetch(`${baseUrl}/health/ready`).then(
          (r) => r.ok,
          () => false,
        );
      },
      120_000,
      `the ${opts.name} stack to become ready`,
    );
  } catch (e) {
    await stack.stop();
    throw e;
  }
  return stack;
}

/** Resident set size of a process, in MB (from /proc); NaN where /proc is absent. */
export function rssMb(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
