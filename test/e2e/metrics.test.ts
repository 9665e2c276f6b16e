// Prometheus metrics end to end: a real API and worker, decodes through them, then both scraped.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, repoRoot, waitFor } from "../../scripts/lib.ts";
import { latents } from "./fixtures.ts";
import { decodeRequest } from "./jobs-client.ts";
import { type Stack, startStack } from "./stack.ts";

/** Sums the samples of `name` whose labels include `labels` (exposition text, one sample a line). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total = (total ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return res.text();
}

const DECODE_ROUTE = { method: "POST", route: "/v1/vae/:model/decode", status: "200" };
const SD_DECODE = { kind: "decode", model: "sd-v1-tiny" };

describe("/metrics", () => {
  let stack: Stack;
  let workerMetricsUrl: string;
  beforeAll(async () => {
    const healthPort = await freePort();
    workerMetricsUrl = `http://127.0.0.1:${healthPort}/metrics`;
    stack = await startStack({}, { worker: { HEALTH_PORT: String(healthPort) } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("counts decodes on the API and on the worker", async () => {
    const apiUrl = `${stack.baseUrl}/metrics`;
    const before = await scrape(apiUrl);
    const N = 4;
    for (let i = 0; i < N; i++) {
      const res = await decodeRequest(stack.baseUrl, {
        tensor: latents([1, 4, 8, 8], "float32", i + 1).tensor,
        output_type: "pt",
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }

    const api = await scrape(apiUrl);
    const delta = (name: string) =>
      (sample(api, name, DECODE_ROUTE) ?? 0) - (sample(before, name, DECODE_ROUTE) ?? 0);
    expect(delta("hybrid_api_requests_total")).toBe(N);
    expect(delta("hybrid_api_request_duration_seconds_count")).toBe(N);
    expect(api).not.toMatch(/route="\/v1\/vae\/sd-v1-tiny/);
    expect(sample(api, "hybrid_queue_jobs", { queue: "decode-sd-v1-tiny", state: "waiting" })).toBe(0);
    expect(sample(api, "hybrid_queue_jobs", { queue: "decode-sd-v1-tiny", state: "active" })).toBeDefined();
    expect(sample(api, "hybrid_queue_jobs", { queue: "webhooks", state: "waiting" })).toBeDefined();
    expect(sample(api, "hybrid_workers_live")).toBe(1);
    expect(api).toContain("process_resident_memory_bytes");

    // The worker counts a job once BullMQ has recorded its end, which may be just after the API answered.
    let worker = "";
    await waitFor(
      async () => {
        worker = await fetch(workerMetricsUrl).then(
          (r) => (r.ok ? r.text() : ""),
          () => "",
        );
        return (sample(worker, "hybrid_worker_jobs_total", { ...SD_DECODE, outcome: "succeeded" }) ?? 0) >= N;
      },
      10_000,
      "the worker's job counter",
    );
    for (const h of ["queue_wait", "read", "run", "write"])
      expect(sample(worker, `hybrid_worker_job_${h}_seconds_count`, SD_DECODE)).toBeGreaterThanOrEqual(N);
    expect(sample(worker, "hybrid_worker_job_run_seconds_sum", SD_DECODE)).toBeGreaterThan(0);
    expect(sample(worker, "hybrid_worker_jobs_total", { ...SD_DECODE, outcome: "failed" }) ?? 0).toBe(0);
    expect(worker).toContain("nodejs_heap_size_used_bytes");
  });

  it("leaves the worker's health endpoints as they were", async () => {
    const live = await fetch(workerMetricsUrl.replace("/metrics", "/health/live"));
    expect(await live.json()).toMatchObject({ status: "ok" });
    const ready = await fetch(workerMetricsUrl.replace("/metrics", "/health/ready"));
    expect(ready.status).toBe(200);
  });
});

describe("/metrics with API keys on", () => {
  let stack: Stack;
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "e2e-metrics-"));
    const keysFile = join(tmp, "keys.json");
    await promisify(execFile)(
      process.execPath,
      ["--conditions=source", "--import", "tsx", "apps/api/src/keys-cli.ts", "create", "scraper"],
      { cwd: repoRoot, env: { ...process.env, API_KEYS_FILE: keysFile } },
    );
    stack = await startStack({}, { api: { API_KEYS_FILE: keysFile } });
  });
  afterAll(async () => {
    await stack?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  it("is served without a key (scrapers carry none) while the API needs one", async () => {
    expect((await fetch(`${stack.baseUrl}/v1/models`)).status).toBe(401);
    const text = await scrape(`${stack.baseUrl}/metrics`);
    expect(sample(text, "hybrid_workers_live")).toBe(1);
  });
});

describe("/metrics with METRICS_ENABLED=false", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({}, { api: { METRICS_ENABLED: "false" } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("is not served", async () => {
    const res = await fetch(`${stack.baseUrl}/metrics`);
    expect(res.status).toBe(404);
    await res.text();
  });
});
