import { randomUUID } from "node:crypto";
import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latents, pngOf } from "./fixtures.ts";
import { answer, decodeRequest, finished, getJob, pollJob, readEvents } from "./jobs-client.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const ASYNC = { Prefer: "respond-async" };
const small = { tensor: latents([1, 4, 8, 8]).tensor, output_type: "pt" as const, partial_postprocess: true };
/** Over a second on the tiny model: long enough to be seen queued or running. */
const long = { tensor: latents([2, 4, 160, 160], "float32", 7).tensor, output_type: "pt" as const };

async function accepted(res: Response): Promise<JobObject> {
  expect(res.status, (await res.clone().text()).slice(0, 200)).toBe(202);
  const job = (await res.json()) as JobObject;
  expect(res.headers.get("location")).toBe(`/v1/jobs/${job.id}`);
  expect(res.headers.get("x-job-id")).toBe(job.id);
  return job;
}

async function resultOf(id: string) {
  return answer(await fetch(`${stack.baseUrl}/v1/jobs/${id}/result`));
}

describe("async submit → poll → result", () => {
  it.each([
    ["uint8 tensor", small],
    [
      "png image",
      {
        tensor: latents([1, 4, 8, 8], "float16", 3).tensor,
        output_type: "pil" as const,
        image_format: "png" as const,
      },
    ],
    ["float16 tensor", { tensor: latents([1, 4, 16, 16], "bfloat16", 4).tensor, output_type: "pt" as const }],
  ])("a decode (%s) answers exactly what the sync call answers", async (_name, args) => {
    const sync = await answer(await decodeRequest(stack.baseUrl, args));
    expect(sync.status).toBe(200);
    const job = await accepted(await decodeRequest(stack.baseUrl, args, ASYNC));
    expect(job).toMatchObject({
      kind: "decode",
      model: "sd-v1-tiny",
      status: expect.stringMatching(/queued|running|succeeded/),
    });
    const done = await pollJob(stack.baseUrl, job.id, finished);
    expect(done.status).toBe("succeeded");
    expect(done.completed_at).not.toBeNull();
    expect(done.metrics.run_ms).toBeGreaterThanOrEqual(0);
    expect(done.metrics.queue_ms).toBeGreaterThanOrEqual(0);
    const got = await resultOf(job.id);
    expect(got).toEqual(sync);
    // An async result is not consumed by reading it.
    expect((await resultOf(job.id)).bytes.equals(sync.bytes)).toBe(true);
  });

  it("an encode answers exactly what the sync call answers", async () => {
    const png = await pngOf(64, 48);
    const url = `${stack.baseUrl}/v1/vae/sd-v1-tiny/encode?scaling_factor=0.18215`;
    const sync = await answer(await fetch(url, { method: "POST", headers: { Accept: "*/*" }, body: png }));
    expect(sync.status).toBe(200);
    expect(sync.shape).toBe("[1, 4, 6, 8]");
    const job = await accepted(
      await fetch(url, { method: "POST", headers: { Accept: "*/*", ...ASYNC }, body: png }),
    );
    expect(job.kind).toBe("encode");
    await pollJob(stack.baseUrl, job.id, finished);
    expect(await resultOf(job.id)).toEqual(sync);
  });

  it("a job that fails on the worker reports its error, and its result answers what sync would have", async () => {
    // PNG magic bytes, then garbage: it passes the API's sniffing and fails in the worker.
    const bad = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      Buffer.alloc(64, 7),
    ]);
    const url = `${stack.baseUrl}/v1/vae/sd-v1-tiny/encode`;
    const sync = await fetch(url, { method: "POST", body: bad });
    const syncBody = (await sync.json()) as { code: string };
    expect(sync.status).toBe(400);
    const job = await accepted(await fetch(url, { method: "POST", headers: ASYNC, body: bad }));
    const done = await pollJob(stack.baseUrl, job.id, finished);
    expect(done.status).toBe("failed");
    expect(done.error?.code).toBe(syncBody.code);
    const res = await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/result`);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(syncBody);
  });

  it("answers 409 for the result of a job still running, and the result once done", async () => {
    const job = await accepted(await decodeRequest(stack.baseUrl, long, ASYNC));
    const early = await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/result`);
    expect(early.status).toBe(409);
    expect(await early.json()).toMatchObject({ code: "job_not_finished" });
    await pollJob(stack.baseUrl, job.id, finished);
    const late = await resultOf(job.id);
    expect(late.status).toBe(200);
    expect(late.shape).toBe("[2, 3, 1280, 1280]");
  });
});

describe("Prefer: wait=N", () => {
  it("answers the result itself when the job finishes within N seconds", async () => {
    const res = await decodeRequest(stack.baseUrl, small, { Prefer: "wait=30" });
    expect(res.status).toBe(200);
    expect(res.headers.get("preference-applied")).toBe("wait=30");
    expect(res.headers.get("shape")).toBe("[1, 64, 64, 3]");
  });

  it("answers 202 with the job when it does not, and the job goes on", async () => {
    // With the queue paused no worker takes the job, however fast the machine.
    const queues = new Queues(REDIS_URL, stack.prefix);
    const queue = queues.queue(jobCatalog.queue("decode", "sd-v1-tiny"));
    await queue.pause();
    try {
      const t0 = performance.now();
      const res = await decodeRequest(stack.baseUrl, small, { Prefer: "respond-async, wait=1" });
      const job = await accepted(res);
      expect(res.headers.get("preference-applied")).toBe("wait=1");
      expect(performance.now() - t0).toBeGreaterThan(950);
      expect(job.status).toBe("queued");
      expect(job.queue_position).toBe(0);
      await queue.resume();
      expect((await pollJob(stack.baseUrl, job.id, finished)).status).toBe("succeeded");
    } finally {
      await queue.resume();
      await queues.close();
    }
  });
});

describe("the job resource", () => {
  it("404s an unknown job, and an unknown model is unknown_model even without shape", async () => {
    const res = await fetch(`${stack.baseUrl}/v1/jobs/${randomUUID()}`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: "not_found" });
    const model = await fetch(`${stack.baseUrl}/v1/vae/no-such-model/decode`, {
      method: "POST",
      headers: { "Content-Type": "tensor/binary" },
      body: "x",
    });
    expect(model.status).toBe(404);
    expect(await model.json()).toMatchObject({ code: "unknown_model" });
  });

  it("lists the caller's jobs newest first, page by page", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await accepted(await decodeRequest(stack.baseUrl, small, ASYNC))).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await fetch(`${stack.baseUrl}/v1/jobs?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      const page = (await res.json()) as { data: JobObject[]; next_cursor: string | null };
      expect(page.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.data.map((j) => j.id));
      cursor = page.next_cursor;
    } while (cursor);
    // The five just made come first, newest first, each once; older jobs of this file follow.
    expect(seen.slice(0, 5)).toEqual([...ids].reverse());
    expect(new Set(seen).size).toBe(seen.length);
    const bad = await fetch(`${stack.baseUrl}/v1/jobs?limit=0`);
    expect(bad.status).toBe(400);
  });
});

describe("Idempotency-Key", () => {
  it("returns the original job for the same request, and 422 for a different one", async () => {
    const key = randomUUID();
    const first = await accepted(
      await decodeRequest(stack.baseUrl, small, { ...ASYNC, "Idempotency-Key": key }),
    );
    const again = await accepted(
      await decodeRequest(stack.baseUrl, small, { ...ASYNC, "Idempotency-Key": key }),
    );
    expect(again.id).toBe(first.id);
    // A sync retry with the key gets the original job's answer.
    const sync = await decodeRequest(stack.baseUrl, small, { "Idempotency-Key": key });
    expect(sync.status).toBe(200);
    expect(sync.headers.get("x-job-id")).toBe(first.id);
    const other = { ...small, tensor: latents([1, 4, 8, 8], "float32", 99).tensor };
    const conflict = await decodeRequest(stack.baseUrl, other, { ...ASYNC, "Idempotency-Key": key });
    expect(conflict.status).toBe(422);
    expect(await conflict.json()).toMatchObject({ code: "idempotency_conflict" });
    const list = (await (await fetch(`${stack.baseUrl}/v1/jobs?limit=100`)).json()) as { data: JobObject[] };
    expect(list.data.filter((j) => j.id === first.id)).toHaveLength(1);
  });
});

describe("Idempotency-Key on sync requests", () => {
  it("keeps the answer fetchable, and a retry after it gets the same bytes at once", async () => {
    const key = randomUUID();
    const first = await decodeRequest(stack.baseUrl, small, { "Idempotency-Key": key });
    expect(first.status).toBe(200);
    const firstBytes = Buffer.from(await first.arrayBuffer());
    // Stored by the worker before its reply went out (an API crash cannot lose it): fetchable now.
    const stored = await fetch(`${stack.baseUrl}/v1/jobs/${first.headers.get("x-job-id")}/result`);
    expect(stored.status).toBe(200);
    expect(Buffer.from(await stored.arrayBuffer()).equals(firstBytes)).toBe(true);
    const t0 = performance.now();
    const retry = await decodeRequest(stack.baseUrl, small, { "Idempotency-Key": key });
    const ms = performance.now() - t0;
    expect(retry.status).toBe(200);
    expect(retry.headers.get("x-job-id")).toBe(first.headers.get("x-job-id"));
    expect(Buffer.from(await retry.arrayBuffer()).equals(firstBytes)).toBe(true);
    // No wait for a reply that went by before the retry listened: that grace is 5 s, so 4 s
    // still tells the two apart on a loaded machine.
    expect(ms).toBeLessThan(4000);
  });
});

describe("Server-Sent Events", () => {
  it("streams queued → started → succeeded with rising ids, and ends after the terminal event", async () => {
    const job = await accepted(await decodeRequest(stack.baseUrl, long, ASYNC));
    const { res, events } = await readEvents(stack.baseUrl, job.id);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(events.map((e) => e.event)).toEqual(["queued", "started", "succeeded"]);
    expect(events.map((e) => e.data.status)).toEqual(["queued", "running", "succeeded"]);
    expect(events.every((e) => e.data.id === job.id)).toBe(true);
    // Stream ids are `ms-n`, strictly rising.
    const ids = events.map((e) => e.id!.split("-").map(BigInt) as [bigint, bigint]);
    for (let i = 1; i < ids.length; i++) {
      const [[am, an], [bm, bn]] = [ids[i - 1]!, ids[i]!];
      expect(am < bm || (am === bm && an < bn)).toBe(true);
    }
  });

  it("replays everything to a late reader, and only what follows Last-Event-ID", async () => {
    const job = await accepted(await decodeRequest(stack.baseUrl, small, ASYNC));
    await pollJob(stack.baseUrl, job.id, finished);
    const all = (await readEvents(stack.baseUrl, job.id)).events;
    expect(all.map((e) => e.event)).toEqual(["queued", "started", "succeeded"]);
    const rest = (await readEvents(stack.baseUrl, job.id, { "Last-Event-ID": all[0]!.id! })).events;
    expect(rest.map((e) => e.event)).toEqual(["started", "succeeded"]);
    expect(rest.map((e) => e.id)).toEqual(all.slice(1).map((e) => e.id));
    // A reconnect after the terminal event gets nothing, and the stream ends: readEvents reads
    // to the end, and fails a stream left open (it gives up after 60 s).
    const none = (await readEvents(stack.baseUrl, job.id, { "Last-Event-ID": all.at(-1)!.id! })).events;
    expect(none).toEqual([]);
    expect((await getJob(stack.baseUrl, job.id)).status).toBe("succeeded");
  });
});
