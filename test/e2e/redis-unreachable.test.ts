// A first start with no Redis where REDIS_URL points: the API and a worker say once what is
// wrong and what to do, retry quietly, and carry on by themselves once a Redis answers there.
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateDefaultModels } from "@hybrid/model-tools";
import { uniquePrefix } from "@hybrid/testing";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, startApp, startRedisServer, stop } from "../../scripts/lib.ts";
import { TEST_MODELS_DIR } from "./stack.ts";

const children: (ChildProcess | undefined)[] = [];
afterAll(async () => {
  await Promise.all(children.map((c) => stop(c)));
});

/** Everything a process writes (stdout and stderr), as it comes. */
function output(child: ChildProcess): () => string {
  let text = "";
  child.stdout?.on("data", (d: Buffer) => {
    text += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    text += d.toString();
  });
  return () => text;
}

const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");

describe("Redis unreachable at start", () => {
  it("is told once, retried quietly (a line per ten seconds at most), and survived", async () => {
    await generateDefaultModels(TEST_MODELS_DIR);
    const redisPort = await freePort();
    const prefix = uniquePrefix("e2e-noredis");
    const common = {
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      QUEUE_PREFIX: prefix,
      MODELS_DIR: TEST_MODELS_DIR,
      GENERATE_DEFAULT_MODELS: "false",
      LOG_LEVEL: "info",
    };
    // A keys file with no keys (a named keys file must exist, or the API refuses to start).
    const noKeys = join(tmpdir(), `${prefix}-no-keys.json`);
    writeFileSync(noKeys, '{ "keys": [] }\n');
    const api = startApp(
      "api",
      {
        ...common,
        PORT: String(await freePort()),
        HOST: "127.0.0.1",
        API_KEYS_FILE: noKeys,
      },
      "pipe",
    );
    const worker = startApp("worker", { ...common, HEARTBEAT_SECONDS: "1" }, "pipe");
    children.push(api, worker);
    const apiOut = output(api);
    const workerOut = output(worker);

    const long = { timeout: 60_000, interval: 100 };
    await expect.poll(apiOut, long).toContain("redis unreachable: start redis-server, or set REDIS_URL");
    await expect.poll(workerOut, long).toContain("redis unreachable: start redis-server, or set REDIS_URL");
    // Ten seconds of retries (dozens of connections, each reconnecting several times a second):
    // the next line of each is the throttled reminder.
    await expect.poll(apiOut, long).toContain("redis still unreachable");
    await expect.poll(workerOut, long).toContain("redis still unreachable");

    for (const text of [apiOut(), workerOut()]) {
      expect(text).not.toContain("Unhandled error event");
      expect(text).not.toContain("    at ");
      expect(lines(text).filter((l) => l.includes("unreachable")).length).toBeLessThanOrEqual(3);
      // Start-up lines, the first report and a reminder or two: not hundreds.
      expect(lines(text).length).toBeLessThanOrEqual(12);
    }
    expect(api.exitCode).toBeNull();
    expect(worker.exitCode).toBeNull();

    // Redis comes up where REDIS_URL points: both notice by themselves.
    const redis = await startRedisServer(redisPort);
    children.push(redis);
    await expect.poll(apiOut, long).toContain("redis reachable again");
    await expect.poll(workerOut, long).toContain("worker ready");
  }, 120_000);
});
