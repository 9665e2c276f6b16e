// `pnpm start` as a new user meets it: it names its queue prefix, warns about workers it did not
// start on that prefix, waits quietly for a Redis that is not there yet, and Ctrl-C (SIGINT to
// the whole process group, as a terminal sends it) exits 0 without pnpm's ELIFECYCLE line.
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WorkerDirectory } from "@hybrid/queue";
import { sdV1Model, uniquePrefix } from "@hybrid/testing";
import { useTestRedis } from "@hybrid/testing/vitest";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, repoRoot, startRedisServer, stop } from "../../scripts/lib.ts";
import { TEST_MODELS_DIR } from "./stack.ts";

// The services write under the fixture's prefix: its keys are deleted after the file.
const { url: redisUrl, prefix: ownPrefix, redis } = useTestRedis("e2e-start");
const started: ChildProcess[] = [];
afterAll(async () => {
  for (const c of started) if (c.exitCode === null && c.pid) process.kill(-c.pid, "SIGKILL");
});

/** `pnpm start` in a process group of its own (a terminal's foreground job), its output collected. */
function pnpmStart(env: Record<string, string>) {
  // A keys file with no keys: a developer's ./keys.json must not switch auth on here (and a
  // named keys file must exist, or the API refuses to start).
  const noKeys = join(tmpdir(), `${env.QUEUE_PREFIX}-no-keys.json`);
  writeFileSync(noKeys, '{ "keys": [] }\n');
  const child = spawn("pnpm", ["start"], {
    cwd: repoRoot,
    detached: true,
    env: {
      ...process.env,
      MODELS_DIR: TEST_MODELS_DIR,
      API_KEYS_FILE: noKeys,
      LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child);
  let text = "";
  child.stdout?.on("data", (d: Buffer) => {
    text += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    text += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  /** Ctrl-C: SIGINT to every process of the group (pnpm, the script, the services). */
  const ctrlC = () => process.kill(-child.pid!, "SIGINT");
  return { output: () => text, exited, ctrlC };
}

const long = { timeout: 120_000, interval: 200 };

describe("pnpm start", () => {
  it("names its queue prefix, warns of workers it did not start there, and Ctrl-C exits 0 quietly", async () => {
    const prefix = ownPrefix;
    // Another checkout's worker, alive on the same Redis and prefix.
    await new WorkerDirectory(redis, prefix).announce({
      workerId: "elsewhere",
      hostname: "other-checkout",
      pid: 4242,
      startedAt: new Date().toISOString(),
      models: [sdV1Model({ id: "theirs" })],
    });
    const run = pnpmStart({ REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, PORT: String(await freePort()) });
    await expect.poll(run.output, long).toContain("is ready on");
    expect(run.output()).toContain(`Queue prefix: ${prefix} (QUEUE_PREFIX)`);
    expect(run.output()).toMatch(/WARNING: 1 worker this command did not start already serve/);
    expect(run.output()).toContain("other-checkout pid 4242");

    run.ctrlC();
    expect(await run.exited).toBe(0);
    expect(run.output()).not.toContain("ELIFECYCLE");
  }, 180_000);

  it("waits quietly for a Redis that does not answer yet, then goes on", async () => {
    const port = await freePort();
    const prefix = uniquePrefix("e2e-start");
    const run = pnpmStart({
      REDIS_URL: `redis://127.0.0.1:${port}`,
      QUEUE_PREFIX: prefix,
      PORT: String(await freePort()),
    });
    await expect.poll(run.output, long).toContain(`No Redis answers at REDIS_URL=redis://127.0.0.1:${port}`);
    const redisServer = await startRedisServer(port);
    try {
      await expect.poll(run.output, long).toContain(`Queue prefix: ${prefix} (QUEUE_PREFIX)`);
      const text = run.output();
      expect(text.split("No Redis answers")).toHaveLength(2);
      expect(text).not.toContain("Unhandled error event");
      run.ctrlC();
      expect(await run.exited).toBe(0);
    } finally {
      await stop(redisServer);
    }
  }, 180_000);
});
