import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latents } from "./fixtures.ts";
import { decodeRequest, finished, pollJob } from "./jobs-client.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

// Three worker processes on one set of queues.
let stack: Stack;
let queues: Queues;
beforeAll(async () => {
  stack = await startStack({}, { worker: { SHUTDOWN_GRACE_MS: "5000" } });
  await Promise.all([stack.addWorker(), stack.addWorker()]);
  queues = new Queues(REDIS_URL, stack.prefix);
});
afterAll(async () => {
  await queues?.close();
  await stack?.stop();
});

/** Submits `n` async decodes at once and waits for all; returns which worker ran each. */
async function burst(n: number): Promise<string[]> {
  const jobs = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const args = { tensor: latents([1, 4, 48, 48], "float32", i + 1).tensor, output_type: "pt" as const };
      const res = await decodeRequest(stack.baseUrl, args, { Prefer: "respond-async" });
      expect(res.status).toBe(202);
      return (await res.json()) as JobObject;
    }),
  );
  const done = await Promise.all(jobs.map((j) => pollJob(stack.baseUrl, j.id, finished, 60_000)));
  expect(done.map((j) => j.status)).toEqual(done.map(() => "succeeded"));
  const queue = queues.queue(jobCatalog.queue("decode", "sd-v1-tiny"));
  return Promise.all(jobs.map(async (j) => (await queue.getJob(j.id))?.processedBy ?? "?"));
}

describe("three workers", () => {
  it("spread a burst of jobs across all of them", async () => {
    const by = await burst(24);
    expect(new Set(by).size).toBe(3);
    expect(by).not.toContain("?");
  });

  it("keep serving when one of them is stopped", async () => {
    const gone = stack.workers[1]!;
    gone.kill("SIGTERM");
    await new Promise<void>((r) => (gone.exitCode !== null ? r() : gone.once("exit", () => r())));
    const by = await burst(16);
    expect(new Set(by).size).toBe(2);
  });
});
