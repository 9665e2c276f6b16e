// A real stack for end-to-end tests: the machine's Redis (or REDIS_URL), one worker and one API
// process started from source, under a key prefix of their own.
import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { generateDefaultModels } from "@hybrid/inference";
import { Redis } from "ioredis";
import { freePort, repoRoot, startApp, stop, waitFor } from "../../scripts/lib.ts";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
/** Generated once per checkout; node_modules/.cache is ignored by git. */
export const TEST_MODELS_DIR = join(repoRoot, "node_modules", ".cache", "hybrid-test-models");

export interface Stack {
  baseUrl: string;
  prefix: string;
  api: ChildProcess;
  worker: ChildProcess;
  stop(): Promise<void>;
}

/** Deletes everything a test stack left under its prefix (queues, events, payloads). */
async function dropPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

export async function startStack(env: Record<string, string> = {}): Promise<Stack> {
  await generateDefaultModels(TEST_MODELS_DIR);
  const prefix = `e2e-${randomUUID().slice(0, 8)}`;
  const port = await freePort();
  const common = { REDIS_URL, QUEUE_PREFIX: prefix, MODELS_DIR: TEST_MODELS_DIR, LOG_LEVEL: "warn", ...env };
  const worker = startApp("worker", { ...common, HEARTBEAT_SECONDS: "1", GENERATE_DEFAULT_MODELS: "false" });
  const api = startApp("api", { ...common, PORT: String(port), HOST: "127.0.0.1" });
  const baseUrl = `http://127.0.0.1:${port}`;
  const stack: Stack = {
    baseUrl,
    prefix,
    api,
    worker,
    stop: async () => {
      await Promise.all([stop(api), stop(worker)]);
      await dropPrefix(common.REDIS_URL, prefix).catch(() => {});
    },
  };
  try {
    await waitFor(
      async () => {
        if (api.exitCode !== null || worker.exitCode !== null)
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
