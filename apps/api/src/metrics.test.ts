import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { AddressInfo } from "node:net";
import { jobCatalog, Queues, WorkerDirectory } from "@hybrid/queue";
import { sdV1Model } from "@hybrid/testing";
import { useTestRedis } from "@hybrid/testing/vitest";
import express, { Router } from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiMetrics, UNMATCHED_ROUTE } from "./metrics.ts";

const { url, prefix, redis } = useTestRedis("api-metrics");
const queues = new Queues(url, prefix);
const directory = new WorkerDirectory(redis, prefix);

const sd = sdV1Model({ id: "sd-m" });

/** A small app shaped like ours: metrics first, routes in routers, a 404 for the rest. */
function appWith(metrics: ApiMetrics) {
  const app = express();
  app.use(metrics.router());
  const vae = Router();
  vae.post("/v1/vae/:model/decode", (_req, res) => {
    res.status(200).end("ok");
  });
  vae.get("/v1/boom/:id", () => {
    throw new Error("boom");
  });
  vae.post("/v1/text-to-image/:model", (req, res) => {
    res.setHeader("x-cache", req.query.hit ? "HIT" : "MISS").end("img");
  });
  app.use(vae);
  app.use((_req, res) => {
    res.status(404).json({ code: "not_found" });
  });
  app.use((_err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ code: "internal" });
  });
  return app;
}

async function serve(metrics: ApiMetrics) {
  const server = appWith(metrics).listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, close: () => new Promise((r) => server.close(r)) };
}

/** The value of the sample `name{labels...}` in exposition text (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

beforeAll(async () => {
  await directory.announce({
    workerId: "w1",
    hostname: "h",
    pid: 1,
    startedAt: new Date().toISOString(),
    models: [sd],
  });
  // Nobody serves this queue: the job stays waiting.
  await queues.queue(jobCatalog.queue("decode", sd.id)).add("decode", { x: 1 });
});

// Before the Redis fixture's own afterAll (hooks run last-registered first) deletes the keys.
afterAll(() => queues.close());

describe("ApiMetrics", () => {
  it("labels requests by route pattern and status, never by raw URL", async () => {
    const metrics = new ApiMetrics({ queues, directory, redis });
    const { base, close } = await serve(metrics);
    try {
      for (const model of ["a", "b", "c"]) {
        const r = await fetch(`${base}/v1/vae/${model}/decode`, { method: "POST" });
        expect(r.status).toBe(200);
        await r.text();
      }
      await (await fetch(`${base}/v1/boom/123`)).text();
      await (await fetch(`${base}/no/such/${randomUUID()}`)).text();
      await (await fetch(`${base}/v1/text-to-image/m?hit=1`, { method: "POST" })).text();
      await (await fetch(`${base}/v1/text-to-image/m`, { method: "POST" })).text();
      await (await fetch(`${base}/v1/text-to-image/m`, { method: "POST" })).text();
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain");
      const text = await res.text();

      const decode = { method: "POST", route: "/v1/vae/:model/decode", status: "200" };
      expect(sample(text, "hybrid_api_requests_total", decode)).toBe(3);
      expect(sample(text, "hybrid_api_request_duration_seconds_count", decode)).toBe(3);
      expect(sample(text, "hybrid_api_requests_total", { route: "/v1/boom/:id", status: "500" })).toBe(1);
      expect(sample(text, "hybrid_api_requests_total", { route: UNMATCHED_ROUTE, status: "404" })).toBe(1);
      expect(text).not.toContain("/v1/vae/a/decode");
      expect(text).not.toContain("/no/such");
      // The scrape itself is not counted.
      expect(text).not.toContain('route="/metrics"');
      expect(sample(text, "hybrid_api_result_cache_total", { result: "hit" })).toBe(1);
      expect(sample(text, "hybrid_api_result_cache_total", { result: "miss" })).toBe(2);
    } finally {
      await close();
    }
  });

  it("reads queue counts, live workers and default Node metrics on scrape", async () => {
    const metrics = new ApiMetrics({ queues, directory, redis });
    const text = await metrics.registry.metrics();
    const queue = jobCatalog.queue("decode", sd.id);
    expect(sample(text, "hybrid_queue_jobs", { queue, state: "waiting" })).toBe(1);
    expect(sample(text, "hybrid_queue_jobs", { queue, state: "active" })).toBe(0);
    expect(sample(text, "hybrid_queue_jobs", { queue, state: "delayed" })).toBe(0);
    expect(
      sample(text, "hybrid_queue_jobs", { queue: jobCatalog.queue("encode", sd.id), state: "waiting" }),
    ).toBe(0);
    expect(sample(text, "hybrid_queue_jobs", { queue: jobCatalog.webhookQueue, state: "waiting" })).toBe(0);
    // sd-m makes no images: no generate queue for it.
    expect(text).not.toContain(`queue="${jobCatalog.queue("generate", sd.id)}"`);
    expect(sample(text, "hybrid_workers_live")).toBe(1);
    expect(sample(text, "hybrid_model_workers", { model: sd.id })).toBe(1);
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).toContain("nodejs_eventloop_lag_seconds");
  });

  it("counts webhook attempts by outcome", async () => {
    const metrics = new ApiMetrics({ queues, directory, redis });
    const worker = new EventEmitter();
    metrics.observeWebhooks(worker as never);
    worker.emit("completed", {});
    worker.emit("failed", { finishedOn: undefined }, new Error("503"));
    worker.emit("failed", { finishedOn: undefined }, new Error("503"));
    worker.emit("failed", { finishedOn: Date.now() }, new Error("503"));
    const text = await metrics.registry.metrics();
    expect(sample(text, "hybrid_api_webhook_deliveries_total", { outcome: "delivered" })).toBe(1);
    expect(sample(text, "hybrid_api_webhook_deliveries_total", { outcome: "retry" })).toBe(2);
    expect(sample(text, "hybrid_api_webhook_deliveries_total", { outcome: "failed" })).toBe(1);
  });
});
