// Webhooks end to end: a real API + worker deliver to a node:http receiver on 127.0.0.1 (the one
// allowed host); every delivery is checked with the standardwebhooks package's own verifier.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { latents } from "./fixtures.ts";
import { decodeRequest, getJob, readEvents } from "./jobs-client.ts";
import { REDIS_URL, type Stack, startStack } from "./stack.ts";

interface Delivery {
  path: string;
  headers: Record<string, string>;
  raw: string;
  job: JobObject;
}

const secret = `whsec_${randomBytes(32).toString("base64")}`;
const small = () => ({ tensor: latents([1, 4, 8, 8]).tensor, output_type: "pt" as const });
const async = { Prefer: "respond-async" };

/** Polls `check` every 25 ms until it returns something, failing after `timeoutMs`. */
function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  return vi.waitFor(
    async () => {
      const found = await check();
      if (found === undefined) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      return found;
    },
    { timeout: timeoutMs, interval: 25 },
  );
}

let tmp: string;
let server: Server;
let port: number;
const deliveries: Delivery[] = [];
/** Status codes to answer, per path, in order; 200 once a path's list is used up. */
const script = new Map<string, number[]>();
const at = (path: string) => deliveries.filter((d) => d.path === path);

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "e2e-webhooks-"));
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = req.url ?? "";
      const raw = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      deliveries.push({ path, headers, raw, job: JSON.parse(raw) as JobObject });
      res.writeHead(script.get(path)?.shift() ?? 200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("webhooks with WEBHOOK_SECRET", () => {
  let stack: Stack;
  let queues: Queues;
  const hook = (path: string) => ({ "X-Webhook-Url": `http://127.0.0.1:${port}${path}` });

  /** Once every delivery queued for the job is done (so no more can come): their message ids. */
  const settled = (jobId: string) =>
    until(`the webhook deliveries of ${jobId} to finish`, async () => {
      const q = queues.queue(jobCatalog.webhookQueue);
      const mine = (await q.getJobs()).filter((j) => (j.data as { jobId?: string }).jobId === jobId);
      const states = await Promise.all(mine.map((j) => j.getState()));
      return states.every((s) => s === "completed") ? mine.map((j) => j.id).sort() : undefined;
    });

  /** The message ids the job's events (of these names) must have been delivered under. */
  const expectedIds = async (jobId: string, names: string[]) =>
    (await readEvents(stack.baseUrl, jobId)).events
      .filter((e) => names.includes(e.event))
      .map((e) => `msg_${jobId}_${e.id}`)
      .sort();

  beforeAll(async () => {
    stack = await startStack(
      { WEBHOOK_BACKOFF_MS: "200" },
      {
        api: {
          WEBHOOK_SECRET: secret,
          WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
        },
      },
    );
    queues = new Queues(REDIS_URL, stack.prefix);
  });
  afterAll(async () => {
    await queues?.close();
    await stack?.stop();
  });

  it("delivers one signed `completed` call whose body is the job object", async () => {
    const res = await decodeRequest(stack.baseUrl, small(), { ...async, ...hook("/hook/basic") });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobObject;
    await until("the delivery", () => at("/hook/basic").find((d) => d.job.status === "succeeded"));
    expect(await settled(id)).toEqual(await expectedIds(id, ["succeeded"]));

    const [d, ...more] = at("/hook/basic");
    expect(more).toEqual([]);
    expect(d!.headers["webhook-id"]).toMatch(new RegExp(`^msg_${id}_\\d+-\\d+$`));
    expect(d!.headers["webhook-timestamp"]).toMatch(/^\d+$/);
    expect(d!.headers["webhook-signature"]).toMatch(/^v1,/);
    expect(() => new Webhook(secret).verify(d!.raw, d!.headers)).not.toThrow();
    const wrong = `whsec_${randomBytes(32).toString("base64")}`;
    expect(() => new Webhook(wrong).verify(d!.raw, d!.headers)).toThrow();
    expect(() => new Webhook(secret).verify(d!.raw.replace("succeeded", "failed"), d!.headers)).toThrow();
    expect(d!.job).toMatchObject({ id, status: "succeeded", kind: "decode", model: "sd-v1-tiny" });
    expect(d!.job).toEqual(await getJob(stack.baseUrl, id));
  });

  it("retries a failing receiver under the same webhook-id until it answers 2xx", async () => {
    script.set("/hook/retry", [500, 500]);
    const res = await decodeRequest(stack.baseUrl, small(), { ...async, ...hook("/hook/retry") });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobObject;
    await until("three attempts", () => (at("/hook/retry").length >= 3 ? true : undefined));
    expect(await settled(id)).toHaveLength(1);

    const tries = at("/hook/retry");
    expect(tries).toHaveLength(3);
    expect(new Set(tries.map((t) => t.headers["webhook-id"])).size).toBe(1);
    for (const t of tries) {
      expect(() => new Webhook(secret).verify(t.raw, t.headers)).not.toThrow();
      expect(t.job).toMatchObject({ id, status: "succeeded" });
    }
    expect((await getJob(stack.baseUrl, id)).status).toBe("succeeded");
  });

  it("X-Webhook-Events: start,completed delivers `running` then `succeeded`, never `queued`", async () => {
    // A job that runs for a while, so the two deliveries cannot overtake each other.
    const res = await decodeRequest(
      stack.baseUrl,
      { tensor: latents([1, 4, 96, 96]).tensor, output_type: "pt" },
      { ...async, ...hook("/hook/filter"), "X-Webhook-Events": "start,completed" },
    );
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobObject;
    await until("the completed delivery", () => at("/hook/filter").find((d) => d.job.status === "succeeded"));
    expect(await settled(id)).toEqual(await expectedIds(id, ["started", "succeeded"]));

    const got = at("/hook/filter");
    expect(got.map((d) => d.job.status)).toEqual(["running", "succeeded"]);
    for (const d of got) expect(() => new Webhook(secret).verify(d.raw, d.headers)).not.toThrow();
  });

  it("a synchronous request's webhook is delivered too", async () => {
    const res = await decodeRequest(stack.baseUrl, small(), hook("/hook/sync"));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).not.toContain("json");
    await res.arrayBuffer();
    const id = res.headers.get("x-job-id")!;
    expect(id).toBeTruthy();
    await until("the delivery", () => at("/hook/sync").find((d) => d.job.status === "succeeded"));
    expect(await settled(id)).toEqual(await expectedIds(id, ["succeeded"]));
    const [d, ...more] = at("/hook/sync");
    expect(more).toEqual([]);
    expect(d!.job).toMatchObject({ id, status: "succeeded", kind: "decode" });
    expect(() => new Webhook(secret).verify(d!.raw, d!.headers)).not.toThrow();
  });

  it("a generation's JSON `webhook` (+ filter) gets its newest progress (older ones coalesced), then the result", async () => {
    const res = await fetch(`${stack.baseUrl}/v1/text-to-image/sd-tiny`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...async },
      body: JSON.stringify({
        inputs: "a lighthouse",
        parameters: { width: 64, height: 64, num_inference_steps: 3, scheduler: "euler" },
        webhook: `http://127.0.0.1:${port}/hook/generate`,
        webhook_events_filter: ["progress", "completed"],
      }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobObject;
    await until("the delivery", () => at("/hook/generate").find((d) => d.job.status === "succeeded"));
    expect(await settled(id)).toEqual(await expectedIds(id, ["progress", "succeeded"]));
    // Every progress event is queued, but one a newer step superseded before its turn is
    // skipped: the steps sent rise, and the last step is always among them.
    const steps = at("/hook/generate")
      .filter((d) => d.job.status === "running")
      .map((d) => d.job.progress?.step ?? 0)
      .sort();
    expect(steps.at(-1)).toBe(3);
    expect(new Set(steps).size).toBe(steps.length);
    expect(steps.every((s) => s >= 1 && s <= 3)).toBe(true);
    for (const d of at("/hook/generate"))
      expect(() => new Webhook(secret).verify(d.raw, d.headers)).not.toThrow();
    // A JSON webhook is checked like a header one.
    const refused = await fetch(`${stack.baseUrl}/v1/text-to-image/sd-tiny`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ inputs: "x", webhook: `http://127.0.0.2:${port}/hook/generate` }),
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { code: string }).code).toBe("invalid_webhook");
  });

  it("refuses bad webhooks at submit: 400 invalid_webhook, no job, no traffic", async () => {
    const list = async () => {
      const r = await fetch(`${stack.baseUrl}/v1/jobs?limit=100`);
      expect(r.status).toBe(200);
      return ((await r.json()) as { data: JobObject[] }).data.map((j) => j.id);
    };
    const before = await list();
    expect(before.length).toBeGreaterThan(0);
    const seen = deliveries.length;
    const cases: Record<string, string>[] = [
      { "X-Webhook-Url": `http://localhost:${port}/hook/refused` },
      { "X-Webhook-Url": "http://localhost/hook/refused" },
      { "X-Webhook-Url": "https://192.0.2.1/hook/refused" },
      { "X-Webhook-Url": `http://127.0.0.2:${port}/hook/refused` },
      { ...hook("/hook/refused"), "X-Webhook-Events": "bogus" },
      { "X-Webhook-Url": "ftp://x" },
    ];
    for (const headers of cases) {
      for (const prefer of [async, {}]) {
        const res = await decodeRequest(stack.baseUrl, small(), { ...prefer, ...headers });
        expect(res.status, JSON.stringify(headers)).toBe(400);
        expect(res.headers.get("content-type")).toContain("application/json");
        expect(((await res.json()) as { code: string }).code).toBe("invalid_webhook");
        expect(res.headers.get("x-job-id")).toBeNull();
      }
    }
    expect(await list()).toEqual(before);
    expect(at("/hook/refused")).toEqual([]);
    expect(deliveries.length).toBe(seen);
  });
});

describe("webhooks without WEBHOOK_SECRET or API keys", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("answers 400 invalid_webhook saying webhooks are off, and creates no job", async () => {
    const res = await decodeRequest(stack.baseUrl, small(), {
      ...async,
      "X-Webhook-Url": `http://127.0.0.1:${port}/hook/off`,
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; error: string };
    expect(body.code).toBe("invalid_webhook");
    expect(body.error).toMatch(/webhooks are off/i);
    const jobs = (await (await fetch(`${stack.baseUrl}/v1/jobs`)).json()) as { data: unknown[] };
    expect(jobs.data).toEqual([]);
    // Without the header the same request is accepted: only the webhook was refused.
    expect((await decodeRequest(stack.baseUrl, small(), async)).status).toBe(202);
    expect(at("/hook/off")).toEqual([]);
  });
});
