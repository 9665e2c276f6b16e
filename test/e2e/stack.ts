// A real stack for end-to-end tests: the machine's Redis (or REDIS_URL, which may name a Redis
// Cluster), workers and one API process started from source, under a key prefix of their own.
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateDefaultModels } from "@hybrid/model-tools";
import { createRedis } from "@hybrid/queue";
import { TEST_REDIS_URL, uniquePrefix } from "@hybrid/testing";
import { Cluster } from "ioredis";
import { freePort, repoRoot, startApp, stop, waitFor } from "../../scripts/lib.ts";

export const REDIS_URL = TEST_REDIS_URL;
/** Generated once per checkout; node_modules/.cache is ignored by git. */
export const TEST_MODELS_DIR = join(repoRoot, "node_modules", ".cache", "hybrid-test-models");

export interface StackOptions {
  /** Settings of the API only. */
  api?: Record<string, string>;
  /** Settings of the workers only. */
  worker?: Record<string, string>;
  /** Keep the API's output (JSON log lines) in `apiLog()` instead of passing it through. */
  captureApiLog?: boolean;
}

export interface Stack {
  baseUrl: string;
  prefix: string;
  api: ChildProcess;
  /** The first worker. */
  worker: ChildProcess;
  workers: ChildProcess[];
  /** Starts one more worker with the stack's settings; resolves once it serves its queues. */
  addWorker(env?: Record<string, string>): Promise<ChildProcess>;
  /** What the API wrote so far (with `captureApiLog`). */
  apiLog(): string;
  stop(): Promise<void>;
}

/**
 * Every key matching `pattern`, by the node holding it (`host:port`): one Redis, or each master
 * of a cluster (a SCAN sees only the keys of the node it runs on).
 */
export async function keysByNode(url: string, pattern: string): Promise<Map<string, string[]>> {
  const redis = createRedis(url, "command", { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    const nodes = redis instanceof Cluster ? redis.nodes("master") : [redis];
    const out = new Map<string, string[]>();
    for (const node of nodes) {
      const keys: string[] = [];
      let cursor = "0";
      do {
        const [next, batch] = await node.scan(cursor, "MATCH", pattern, "COUNT", 500);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== "0");
      out.set(`${node.options.host}:${node.options.port}`, keys);
    }
    return out;
  } finally {
    redis.disconnect();
  }
}

/** Deletes everything a test stack left under its prefix (queues, events, payloads). */
async function dropPrefix(url: string, prefix: string): Promise<void> {
  const redis = createRedis(url, "command", { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    // One DEL per key: on a cluster, keys of one node may still sit in different slots.
    for (const keys of (await keysByNode(url, `${prefix}:*`)).values())
      await Promise.all(keys.map((k) => redis.del(k)));
  } finally {
    redis.disconnect();
  }
}

/** Resolves once the process has written `text` to stdout. */
function printed(child: ChildProcess, text: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${timeoutMs} ms`)), timeoutMs);
    child.stdout?.on("data", (d: Buffer) => {
      seen = (seen + d.toString()).slice(-10_000);
      if (seen.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", () => reject(new Error("the process exited during start-up")));
  });
}

export async function startStack(env: Record<string, string> = {}, opts: StackOptions = {}): Promise<Stack> {
  await generateDefaultModels(TEST_MODELS_DIR);
  const prefix = uniquePrefix("e2e");
  const port = await freePort();
  const common = { REDIS_URL, QUEUE_PREFIX: prefix, MODELS_DIR: TEST_MODELS_DIR, LOG_LEVEL: "warn", ...env };
  const workerEnv = { ...common, HEARTBEAT_SECONDS: "1", GENERATE_DEFAULT_MODELS: "false", ...opts.worker };
  const workers = [startApp("worker", workerEnv)];
  // A keys file with no keys: a developer's ./keys.json must not switch auth on here (and a
  // named keys file must exist, or the API refuses to start).
  const noKeys = join(tmpdir(), `${prefix}-no-keys.json`);
  writeFileSync(noKeys, '{ "keys": [] }\n');
  const api = startApp(
    "api",
    { ...common, PORT: String(port), HOST: "127.0.0.1", API_KEYS_FILE: noKeys, ...opts.api },
    opts.captureApiLog ? "pipe" : "inherit",
  );
  let log = "";
  api.stdout?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  api.stderr?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const stack: Stack = {
    baseUrl,
    prefix,
    api,
    worker: workers[0]!,
    workers,
    apiLog: () => log,
    addWorker: async (extra = {}) => {
      // "worker ready" is logged at info once its queues are served.
      const w = startApp("worker", { ...workerEnv, LOG_LEVEL: "info", ...extra }, "pipe");
      workers.push(w);
      await printed(w, "worker ready", 60_000);
      return w;
    },
    stop: async () => {
      await Promise.all([stop(api), ...workers.map((w) => stop(w))]);
      await dropPrefix(common.REDIS_URL, prefix).catch(() => {});
    },
  };
  try {
    await waitFor(
      async () => {
        if (api.exitCode !== null || workers[0]!.exitCode !== null)
          throw new Error("a service exited during start-up");
        return fetch(`${baseUrl}/health/ready`).then(
          (r) => r.ok,
          () => false,
        );
      },
      120_000,
      "the stack to become ready",
    );
  } catch (e) {
    await stack.stop();
    throw e;
  }
  return stack;
}
