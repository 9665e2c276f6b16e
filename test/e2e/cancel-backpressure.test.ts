import type { JobObject } from "@hybrid/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latents } from "./fixtures.ts";
import { decodeRequest, finished, getJob, pollJob, readEvents } from "./jobs-client.ts";
import { type Stack, startStack } from "./stack.ts";

// One worker running one job at a time and taking none ahead (PREFETCH=0: the jobs behind it wait
// in the queue, where positions and the backlog count them), and room for two waiting jobs per queue.
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({}, { api: { MAX_QUEUE_BACKLOG: "2" }, worker: { PREFETCH: "0" } });
});
afterAll(async () => {
  await stack?.stop();
});

const ASYNC = { Prefer: "respond-async" };
const long = (seed: number) => ({
  tensor: latents([2, 4, 160, 160], "float32", seed).tensor,
  output_type: "pt" as const,
});
const small = { tensor: latents([1, 4, 8, 8]).tensor, output_type: "pt" as const };

async function submit(args: Parameters<typeof decodeRequest>[1]): Promise<JobObject> {
  const res = await decodeRequest(stack.baseUrl, args, ASYNC);
  expect(res.status, (await res.clone().text()).slice(0, 200)).toBe(202);
  return (await res.json()) as JobObject;
}

const cancel = (id: string) => fetch(`${stack.baseUrl}/v1/jobs/${id}/cancel`, { method: "POST" });

describe("a full queue, then cancels", () => {
  let running: JobObject;
  let next: JobObject;
  let last: JobObject;

  it("refuses work beyond the backlog with 429 and a Retry-After in whole seconds", async () => {
    running = await submit(long(1));
    await pollJob(stack.baseUrl, running.id, (j) => j.status === "running");
    next = await submit(small);
    last = await submit(long(2));
    expect([next.queue_position, last.queue_position]).toEqual([0, 1]);
    const refused = await decodeRequest(stack.baseUrl, small, ASYNC);
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ code: "overloaded" });
    const retryAfter = refused.headers.get("retry-after") ?? "";
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    // The sync path is held to the same limit.
    expect((await decodeRequest(stack.baseUrl, small)).status).toBe(429);
  });

  it("cancels a queued job at once", async () => {
    const res = await cancel(last.id);
    expect(res.status).toBe(202);
    const body = (await res.json()) as JobObject;
    expect(body.status).toBe("canceled");
    expect(body.error?.code).toBe("canceled");
    expect((await getJob(stack.baseUrl, last.id)).status).toBe("canceled");
    const events = (await readEvents(stack.baseUrl, last.id)).events;
    expect(events.map((e) => e.event)).toEqual(["queued", "canceled"]);
    const result = await fetch(`${stack.baseUrl}/v1/jobs/${last.id}/result`);
    expect(result.status).toBe(409);
    expect(await result.json()).toMatchObject({ code: "canceled" });
    // Its place in the queue is free again.
    expect((await getJob(stack.baseUrl, next.id)).queue_position).toBe(0);
  });

  it("cancels a running job at its next checkpoint, and its worker takes the next job", async () => {
    const res = await cancel(running.id);
    expect(res.status).toBe(202);
    const stopped = await pollJob(stack.baseUrl, running.id, finished);
    expect(stopped.status).toBe("canceled");
    const events = (await readEvents(stack.baseUrl, running.id)).events.map((e) => e.event);
    expect(events).toEqual(["queued", "started", "canceled"]);
    // The one worker is free again and runs the next job (no wall-clock bound on how soon:
    // a loaded machine stretches it, and the 10 s poll already fails a worker that stays stuck).
    const after = await pollJob(stack.baseUrl, next.id, finished, 10_000);
    expect(after.status).toBe("succeeded");
    // The canceled run's result was discarded.
    const result = await fetch(`${stack.baseUrl}/v1/jobs/${running.id}/result`);
    expect(result.status).toBe(409);
  });

  it("leaves a finished job as it is (200), and 404s an unknown one", async () => {
    const res = await cancel(next.id);
    expect(res.status).toBe(200);
    expect(((await res.json()) as JobObject).status).toBe("succeeded");
    expect((await cancel("no-such-job")).status).toBe(404);
  });
});
