// The whole service on a Redis Cluster: a local 3-master cluster of redis-server processes, a
// stack pointed at it (REDIS_URL=redis+cluster://...), and the same requests answered by a stack
// on a single redis-server, byte for byte. Keys of a job, an owner, a queue must each share a
// slot there (a cross-slot transaction or script fails), so this runs every kind of Redis work
// the service does: sync and async jobs, SSE, generation and its result cache, webhooks, cancel,
// API keys' rate limits and caps, idempotency keys, listing. Skipped, with a printed reason, where
// there is no redis-server binary.
import { type ChildProcess, execFile, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { JobObject } from "@hybrid/protocol";
import { jobCatalog, Queues } from "@hybrid/queue";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  freePort,
  type RedisCluster,
  repoRoot,
  startRedisCluster,
  startRedisServer,
  stop,
} from "../../scripts/lib.ts";
import { isPng, latents } from "./fixtures.ts";
import { answer, decodeRequest, getJob, pollJob, readEvents } from "./jobs-client.ts";
import { keysByNode, type Stack, startStack } from "./stack.ts";

const probe = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
const haveRedisServer = !probe.error && probe.status === 0;
if (!haveRedisServer)
  // biome-ignore lint/suspicious/noConsole: a skipped suite must say why in the test output
  console.warn(
    `Redis Cluster tests skipped: no redis-server binary to start a cluster with (${probe.error?.message ?? probe.stderr.trim()})`,
  );

const run = promisify(execFile);

describe.skipIf(!haveRedisServer)("on a Redis Cluster of 3 masters", () => {
  let cluster: RedisCluster | undefined;
  let single: ChildProcess | undefined;
  /** On the cluster, with API keys. */
  let stack: Stack | undefined;
  /** On one redis-server, without keys: what the same requests must answer. */
  let reference: Stack | undefined;
  let tmp: string | undefined;
  /** Receives webhooks: the job objects delivered. */
  let receiver: Server | undefined;
  const delivered: JobObject[] = [];
  const keys = { main: "", limited: "", capped: "" };

  const on = () => stack!.baseUrl;
  const as = (name: keyof typeof keys, extra: Record<string, string> = {}) => ({
    Authorization: `Bearer ${keys[name]}`,
    ...extra,
  });
  const asyncAs = (name: keyof typeof keys) => as(name, { Prefer: "respond-async" });
  const small = (seed = 1) => ({
    tensor: latents([1, 4, 8, 8], "float32", seed).tensor,
    output_type: "pt" as const,
  });

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        delivered.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as JobObject);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver!.listen(0, "127.0.0.1", r));
    cluster = await startRedisCluster([await freePort(), await freePort(), await freePort()]);
    const port = await freePort();
    single = await startRedisServer(port);
    tmp = await mkdtemp(join(tmpdir(), "e2e-cluster-"));
    const keysFile = join(tmp, "keys.json");
    const made: [keyof typeof keys, string[]][] = [
      ["main", ["--rate-per-minute", "10000"]],
      ["limited", ["--rate-per-minute", "2"]],
      ["capped", ["--max-queued", "1"]],
    ];
    for (const [name, flags] of made) {
      const { stdout } = await run(
        process.execPath,
        ["--conditions=source", "--import", "tsx", "apps/api/src/keys-cli.ts", "create", name, ...flags],
        { cwd: repoRoot, env: { ...process.env, API_KEYS_FILE: keysFile } },
      );
      keys[name] = stdout.trimEnd().split("\n").at(-1)!;
    }
    [stack, reference] = await Promise.all([
      startStack(
        { REDIS_URL: cluster.url },
        { api: { API_KEYS_FILE: keysFile, WEBHOOK_ALLOWED_HOSTS: "127.0.0.1" } },
      ),
      startStack({ REDIS_URL: `redis://127.0.0.1:${port}` }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([stack?.stop(), reference?.stop()]);
    await Promise.all([cluster?.stop(), stop(single)]);
    if (tmp) await rm(tmp, { recursive: true, force: true });
    await new Promise((r) => receiver?.close(r));
  });

  it("a sync decode answers exactly what it answers on a single Redis", async () => {
    const args = small(11);
    const res = await decodeRequest(on(), args, as("main"));
    const jobId = res.headers.get("x-job-id");
    const got = await answer(res);
    const want = await answer(await decodeRequest(reference!.baseUrl, args));
    expect(got.status, got.bytes.toString().slice(0, 300)).toBe(200);
    expect(want.status).toBe(200);
    expect(got.shape).toBe("[1, 3, 64, 64]");
    expect(got).toEqual(want);
    // The answer came back inline on the API's shard reply channel (SPUBLISH), not stored.
    const queues = new Queues(cluster!.url, stack!.prefix);
    try {
      const job = await queues.queue(jobCatalog.queue("decode", "sd-v1-tiny")).getJob(jobId!);
      expect(job?.returnvalue).toMatchObject({ inline: true });
    } finally {
      await queues.close();
    }
  });

  it("an async job streams its events over SSE to the end, and its result is the sync answer", async () => {
    const args = small(12);
    const sync = await answer(await decodeRequest(on(), args, as("main")));
    expect(sync.status).toBe(200);
    const key = `cluster-${Date.now()}`;
    const res = await decodeRequest(on(), args, { ...asyncAs("main"), "Idempotency-Key": key });
    expect(res.status).toBe(202);
    const job = (await res.json()) as JobObject;
    const { events } = await readEvents(on(), job.id, as("main"));
    expect(events.map((e) => e.event)).toEqual(["queued", "started", "succeeded"]);
    expect(events.every((e) => e.data.id === job.id)).toBe(true);
    expect(await answer(await fetch(`${on()}/v1/jobs/${job.id}/result`, { headers: as("main") }))).toEqual(
      sync,
    );

    // The idempotency key points at the job; the owner's index lists it once.
    const again = await decodeRequest(on(), args, { ...asyncAs("main"), "Idempotency-Key": key });
    expect(((await again.json()) as JobObject).id).toBe(job.id);
    const list = await fetch(`${on()}/v1/jobs?limit=100`, { headers: as("main") });
    const { data } = (await list.json()) as { data: JobObject[] };
    expect(data.filter((j) => j.id === job.id)).toHaveLength(1);
  });

  it("a generation answers exactly what it answers on a single Redis, then from the result cache", async () => {
    const body = JSON.stringify({
      inputs: "a lighthouse at dusk",
      parameters: { width: 128, height: 64, num_inference_steps: 3, seed: 7 },
    });
    const post = (base: string, headers: Record<string, string> = {}) =>
      fetch(`${base}/v1/text-to-image/sd-tiny`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "image/png", ...headers },
        body,
      });
    const res = await post(on(), as("main"));
    expect(res.headers.get("x-cache")).toBe("MISS");
    const got = await answer(res);
    const want = await answer(await post(reference!.baseUrl));
    expect(got.status, got.bytes.toString().slice(0, 300)).toBe(200);
    expect(isPng(got.bytes)).toBe(true);
    expect(got.bytes.equals(want.bytes)).toBe(true);
    // The answer was cached after it was sent: wait for the entry.
    const cached = await vi.waitFor(
      async () => {
        const again = await post(on(), as("main"));
        expect(again.headers.get("x-cache")).toBe("HIT");
        return again;
      },
      { timeout: 5_000, interval: 100 },
    );
    expect((await answer(cached)).bytes.equals(want.bytes)).toBe(true);
  });

  it("delivers a job's webhook through the webhook queue", async () => {
    const { port } = receiver!.address() as { port: number };
    const res = await decodeRequest(on(), small(14), {
      ...asyncAs("main"),
      "X-Webhook-Url": `http://127.0.0.1:${port}/hook`,
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobObject;
    await expect.poll(() => delivered.some((j) => j.id === id), { timeout: 15_000, interval: 50 }).toBe(true);
    expect(delivered.filter((j) => j.id === id).map((j) => j.status)).toEqual(["succeeded"]);
  });

  it("cancels a queued job", async () => {
    const queues = new Queues(cluster!.url, stack!.prefix);
    const queue = queues.queue(jobCatalog.queue("decode", "sd-v1-tiny"));
    await queue.pause();
    try {
      const res = await decodeRequest(on(), small(13), asyncAs("main"));
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as JobObject;
      expect((await getJob(on(), id, as("main"))).queue_position).toBe(0);
      const cancel = await fetch(`${on()}/v1/jobs/${id}/cancel`, { method: "POST", headers: as("main") });
      expect(cancel.status).toBe(202);
      expect(((await cancel.json()) as JobObject).status).toBe("canceled");
      const { events } = await readEvents(on(), id, as("main"));
      expect(events.map((e) => e.event)).toEqual(["queued", "canceled"]);
    } finally {
      await queue.resume();
      await queues.close();
    }
  });

  it("counts an API key's requests and unfinished jobs across the cluster", async () => {
    for (let i = 0; i < 2; i++)
      expect((await decodeRequest(on(), small(), asyncAs("limited"))).status).toBe(202);
    const limited = await decodeRequest(on(), small(), asyncAs("limited"));
    expect(limited.status).toBe(429);
    expect(await limited.json()).toMatchObject({ code: "rate_limited" });

    // About 2 s on the tiny model: still unfinished at the next request.
    const long = { tensor: latents([2, 4, 160, 160]).tensor, output_type: "pt" as const };
    const first = await decodeRequest(on(), long, asyncAs("capped"));
    expect(first.status).toBe(202);
    const { id } = (await first.json()) as JobObject;
    const second = await decodeRequest(on(), small(), asyncAs("capped"));
    expect(second.status).toBe(429);
    expect(await second.json()).toMatchObject({ code: "too_many_queued" });
    await pollJob(on(), id, (j) => j.status === "succeeded", 60_000, as("capped"));
    expect((await decodeRequest(on(), small(), asyncAs("capped"))).status).toBe(202);
  });

  it("spreads the keys over more than one master, all under the stack's prefix", async () => {
    const byNode = await keysByNode(cluster!.url, `${stack!.prefix}:*`);
    const counts = [...byNode.values()].map((k) => k.length);
    expect(counts).toHaveLength(3);
    expect(counts.filter((n) => n > 0).length, `keys per master: ${counts.join(", ")}`).toBeGreaterThan(1);
    const all = [...byNode.values()].flat();
    // Each kind of key is there: queues, job records and events, owner indexes, payloads, the directory.
    for (const part of [
      ":{decode-sd-v1-tiny}:decode-sd-v1-tiny:",
      ":{generate-sd-tiny}:generate-sd-tiny:",
      ":{webhooks}:webhooks:",
      ":job:{",
      ":owner:{",
      ":payload:",
      ":result-cache:",
      ":idempotency:",
      ":ratelimit:",
      ":{directory}:",
    ])
      expect(
        all.some((k) => k.includes(part)),
        part,
      ).toBe(true);
  });
});
