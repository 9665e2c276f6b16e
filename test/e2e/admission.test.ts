// Admission per API key (issue 13): caps are atomic (item 6) — a key's `max_queued` and a
// queue's backlog limit are counted and reserved in one Redis script each, so a burst of parallel
// submissions admits exactly the limit, not every request that counted before any of them was
// created; and the result cache is per key (item 11): one key's seeded generation never answers
// another key's request.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../scripts/lib.ts";
import { latents } from "./fixtures.ts";
import { decodeRequest, pollJob } from "./jobs-client.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

const run = promisify(execFile);
const MAX_QUEUED = 5;
const MAX_BACKLOG = 8;
const PARALLEL = 50;

let tmp: string;
let stack: Stack;
let queues: Queues;
const keys = { capped: "", free: "" };

const asyncAs = (key: string) => ({ Authorization: `Bearer ${key}`, Prefer: "respond-async" });
const small = (seed: number) => ({
  tensor: latents([1, 4, 8, 8], "float32", seed).tensor,
  output_type: "pt" as const,
});
const decodeQueue = () => queues.queue(jobCatalog.queue("decode", "sd-v1-tiny"));

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "e2e-caps-"));
  const keysFile = join(tmp, "keys.json");
  for (const [name, flags] of [
    ["capped", ["--max-queued", String(MAX_QUEUED)]],
    ["free", []],
  ] as const) {
    const { stdout } = await run(
      process.execPath,
      ["--conditions=source", "--import", "tsx", "apps/api/src/keys-cli.ts", "create", name, ...flags],
      { cwd: repoRoot, env: { ...process.env, API_KEYS_FILE: keysFile } },
    );
    keys[name] = stdout.trimEnd().split("\n").at(-1)!;
  }
  stack = await startStack({}, { api: { API_KEYS_FILE: keysFile, MAX_QUEUE_BACKLOG: String(MAX_BACKLOG) } });
  queues = new Queues(REDIS_URL, stack.prefix);
});
afterAll(async () => {
  await queues?.close();
  await stack?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Sends `PARALLEL` async decodes at once (the queue paused, so none finishes meanwhile). */
async function burst(
  key: string,
): Promise<{ admitted: JobObject[]; refused: { status: number; code: string }[] }> {
  await decodeQueue().pause();
  const answers = await Promise.all(
    Array.from({ length: PARALLEL }, async (_, i) => {
      const res = await decodeRequest(stack.baseUrl, small(i + 1), asyncAs(key));
      return { status: res.status, body: (await res.json()) as JobObject & { code: string } };
    }),
  );
  return {
    admitted: answers.filter((a) => a.status === 202).map((a) => a.body),
    refused: answers.filter((a) => a.status !== 202).map((a) => ({ status: a.status, code: a.body.code })),
  };
}

/** Resumes the queue; every admitted job succeeds. */
async function drain(admitted: JobObject[], key: string): Promise<void> {
  await decodeQueue().resume();
  for (const job of admitted) {
    const done = await pollJob(stack.baseUrl, job.id, (j) => j.status === "succeeded", 60_000, {
      Authorization: `Bearer ${key}`,
    });
    expect(done.status).toBe("succeeded");
  }
}

describe("caps under a burst of parallel submissions", () => {
  it(`admits exactly max_queued=${MAX_QUEUED} of ${PARALLEL} at once; the rest get 429 too_many_queued`, async () => {
    const { admitted, refused } = await burst(keys.capped);
    expect(admitted).toHaveLength(MAX_QUEUED);
    expect(refused).toHaveLength(PARALLEL - MAX_QUEUED);
    expect(
      refused.every((r) => r.status === 429 && r.code === "too_many_queued"),
      JSON.stringify(refused),
    ).toBe(true);
    // Refused submissions left nothing in the queue: only the admitted jobs wait there.
    expect(await decodeQueue().getWaitingCount()).toBe(MAX_QUEUED);
    await drain(admitted, keys.capped);
    // Their ends free the cap.
    const again = await decodeRequest(stack.baseUrl, small(99), asyncAs(keys.capped));
    expect(again.status).toBe(202);
    await drain([(await again.json()) as JobObject], keys.capped);
  });

  it(`admits exactly MAX_QUEUE_BACKLOG=${MAX_BACKLOG} of ${PARALLEL} at once; the rest get 429 overloaded`, async () => {
    const { admitted, refused } = await burst(keys.free);
    expect(admitted).toHaveLength(MAX_BACKLOG);
    expect(refused).toHaveLength(PARALLEL - MAX_BACKLOG);
    expect(
      refused.every((r) => r.status === 429 && r.code === "overloaded"),
      JSON.stringify(refused),
    ).toBe(true);
    expect(await decodeQueue().getWaitingCount()).toBe(MAX_BACKLOG);
    await drain(admitted, keys.free);
    const again = await decodeRequest(stack.baseUrl, small(98), asyncAs(keys.free));
    expect(again.status).toBe(202);
  });
});

describe("the result cache", () => {
  it("answers a key only from its own earlier requests", async () => {
    const seeded = {
      inputs: "a cat only one key asked for",
      parameters: { width: 64, height: 64, num_inference_steps: 2, seed: 4242 },
    };
    const post = (key: string) =>
      fetch(`${stack.baseUrl}/v1/text-to-image/sd-tiny`, {
        method: "POST",
        headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
        body: JSON.stringify(seeded),
      });
    const first = await post(keys.free);
    expect([first.status, first.headers.get("x-cache")]).toEqual([200, "MISS"]);
    const image = Buffer.from(await first.arrayBuffer());
    const again = await post(keys.free);
    expect([again.status, again.headers.get("x-cache")]).toEqual([200, "HIT"]);
    expect(Buffer.from(await again.arrayBuffer()).equals(image)).toBe(true);
    // The same request by another key runs a job of its own: nothing of the first key's shows.
    const other = await post(keys.capped);
    expect([other.status, other.headers.get("x-cache")]).toEqual([200, "MISS"]);
    expect(other.headers.get("x-job-id")).not.toBeNull();
    expect(Buffer.from(await other.arrayBuffer()).equals(image)).toBe(true);
  });
});
