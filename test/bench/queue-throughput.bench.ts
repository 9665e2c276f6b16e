// `pnpm bench:queue`: the most jobs a second one API + Redis + BullMQ dispatch when the model run
// answers at once — the ceiling on how many GPUs one Redis (and one API process) can feed. A real
// API process takes sync decodes of 1x4x64x64 float32 latents from N concurrent clients; in this
// process, "echo workers" serve the decode queue of a fake sd-v1 model they announce in the
// worker directory. They are the real worker (`startWorker` of @hybrid/worker: job runner,
// lifecycle, reply channel, cancels, heartbeats) with a model run that returns a small uint8
// tensor at once in place of the model.
// Redis commands per job come from `INFO commandstats` before and after (a redis-server of the
// bench's own, so nobody else's commands count), and a short MONITOR pass tells the commands
// clients send from those Lua scripts run inside Redis.
//
// Settings (env): BENCH_QUEUE_CLIENTS (64), BENCH_QUEUE_SECONDS (10), BENCH_QUEUE_WORKERS (4) ×
// BENCH_QUEUE_CONCURRENCY (16) echo workers, BENCH_QUEUE_RESULT_SIDE (16: a 16x16x3 uint8 answer),
// BENCH_DECODE_MS ("25,100": per-decode GPU times the GPU count is printed for),
// BENCH_QUEUE_MONITOR_SECONDS (2; 0 skips the MONITOR pass). Redis: REDIS_URL, else its own.
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { hostname, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { encodeFromFloat32 } from "@hybrid/protocol";
import { catalogSettingsOf } from "@hybrid/queue";
import { createLogger, SharedEnv } from "@hybrid/service";
import { sdV1Model } from "@hybrid/testing";
import { type Answer, type Runs, startWorker, WorkerMetrics } from "@hybrid/worker";
import type { Redis } from "ioredis";
import { z } from "zod";
import { freePort, startApp, stop, waitFor } from "../../scripts/lib.ts";
import { pythonQuery } from "../e2e/diffusers-client.ts";
import {
  benchRedis,
  callsDelta,
  commandCalls,
  fmt,
  infoClient,
  ownCpuMs,
  pct,
  processCpuMs,
  redisCpuMs,
  sleep,
} from "./bench-utils.ts";

const CLIENTS = Number(process.env.BENCH_QUEUE_CLIENTS ?? 64);
const SECONDS = Number(process.env.BENCH_QUEUE_SECONDS ?? 10);
const WORKERS = Number(process.env.BENCH_QUEUE_WORKERS ?? 4);
const CONCURRENCY = Number(process.env.BENCH_QUEUE_CONCURRENCY ?? 16);
const SIDE = Number(process.env.BENCH_QUEUE_RESULT_SIDE ?? 16);
const DECODE_MS = (process.env.BENCH_DECODE_MS ?? "25,100").split(",").map(Number);
const MONITOR_SECONDS = Number(process.env.BENCH_QUEUE_MONITOR_SECONDS ?? 2);
const WARMUP_MS = 1500;

const redisServer = await benchRedis();
const prefix = `bench-queue-${randomUUID().slice(0, 8)}`;
// The settings API and workers share, at their defaults (retention, attempts, payload TTL).
const shared = z.object(SharedEnv).parse({ REDIS_URL: redisServer.url, QUEUE_PREFIX: prefix });
const model = sdV1Model({ id: "echo-sd-v1", operations: ["decode"] });
const answer = Buffer.alloc(SIDE * SIDE * 3, 7);
// The model work: a decode that answers at once (the other kinds are never asked for).
const echoDecode = async (): Promise<Answer> => ({
  bytes: answer,
  contentType: "tensor/binary",
  shape: [1, SIDE, SIDE, 3],
  dtype: "uint8",
});
const unused = async (): Promise<Answer> => {
  throw new Error("the echo worker only decodes");
};
const runs: Runs = { decode: echoDecode, encode: unused, generate: unused };

const log = createLogger("echo-worker", "warn");
// Each echo worker stands for one worker process: connections, stores and BullMQ worker of its own.
const echo = await Promise.all(
  Array.from({ length: WORKERS }, (_, i) =>
    startWorker({
      redisUrl: redisServer.url,
      prefix,
      workerId: `echo-${hostname()}-${process.pid}-${i}`,
      models: [model],
      runs,
      log,
      metrics: new WorkerMetrics(),
      catalog: catalogSettingsOf(shared),
      payloadTtlSeconds: shared.PAYLOAD_TTL_SECONDS,
      capacity: { concurrency: CONCURRENCY, maxBatchSize: 1 },
      shutdownGraceMs: 5000,
      heartbeatSeconds: 5,
      healthPort: 0,
    }),
  ),
);

const port = await freePort();
const noKeysFile = join(tmpdir(), `${prefix}-no-keys.json`);
writeFileSync(noKeysFile, '{ "keys": [] }\n');
const api = startApp("api", {
  REDIS_URL: redisServer.url,
  QUEUE_PREFIX: prefix,
  PORT: String(port),
  HOST: "127.0.0.1",
  // A keys file with no keys: the service runs open, as in the e2e stack.
  API_KEYS_FILE: noKeysFile,
  LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warn",
});
const baseUrl = `http://127.0.0.1:${port}`;
await waitFor(
  async () => {
    if (api.exitCode !== null) throw new Error("the API exited during start-up");
    return fetch(`${baseUrl}/health/ready`).then(
      (r) => r.ok,
      () => false,
    );
  },
  60_000,
  "the API to become ready",
);

const body = encodeFromFloat32(
  Float32Array.from({ length: 4 * 64 * 64 }, (_, i) => Math.sin(i * 0.37) * 2),
  "float32",
);
const url = `${baseUrl}/v1/vae/${model.id}/decode?${pythonQuery({
  output_type: "pt",
  partial_postprocess: true,
  shape: [1, 4, 64, 64],
  dtype: "float32",
})}`;

/** Sync clients until `stopAt`; answers (and their latencies) from `measureFrom` on are kept. */
async function drive(measureFrom: number, stopAt: number) {
  const latencies: number[] = [];
  let errors = 0;
  const loop = async () => {
    while (performance.now() < stopAt) {
      const t = performance.now();
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { "Content-Type": "tensor/binary", Accept: "tensor/binary" },
          body,
        });
        const bytes = await res.arrayBuffer();
        const at = performance.now();
        if (res.status !== 200 || bytes.byteLength !== answer.length) {
          if (errors++ < 3)
            console.error(`answer ${res.status}: ${Buffer.from(bytes).toString().slice(0, 200)}`);
        } else if (at >= measureFrom && at <= stopAt) latencies.push(at - t);
      } catch (e) {
        if (errors++ < 3) console.error(`request failed: ${(e as Error).message}`);
      }
    }
  };
  return { done: Promise.all(Array.from({ length: CLIENTS }, loop)), latencies, errors: () => errors };
}

interface Snapshot {
  calls: Map<string, number>;
  redisCpu: number;
  apiCpu: number;
  ownCpu: number;
}
const snapshot = async (r: Redis): Promise<Snapshot> => ({
  calls: await commandCalls(r),
  redisCpu: await redisCpuMs(r),
  apiCpu: processCpuMs(api.pid),
  ownCpu: ownCpuMs(),
});

const info = infoClient(redisServer.url);
const load0 = loadavg()[0]!;
let result: {
  jobs: number;
  seconds: number;
  latencies: number[];
  errors: number;
  calls: Map<string, number>;
  redisCpu: number;
  apiCpu: number;
  ownCpu: number;
};
let monitored: { jobs: number; fromClients: Map<string, number>; inLua: Map<string, number> } | undefined;
try {
  // Warm up, then measure a steady window: as many jobs are in flight at its end as at its start.
  const t0 = performance.now();
  const from = t0 + WARMUP_MS;
  const until = from + SECONDS * 1000;
  const run = await drive(from, until);
  await sleep(from - performance.now());
  const before = await snapshot(info);
  await sleep(until - performance.now());
  const after = await snapshot(info);
  await run.done;
  result = {
    jobs: run.latencies.length,
    seconds: SECONDS,
    latencies: run.latencies,
    errors: run.errors(),
    calls: callsDelta(before.calls, after.calls),
    redisCpu: after.redisCpu - before.redisCpu,
    apiCpu: after.apiCpu - before.apiCpu,
    ownCpu: after.ownCpu - before.ownCpu,
  };

  if (MONITOR_SECONDS > 0) {
    // MONITOR shows who sent each command: a client's address, or "lua" for a script's own calls.
    const fromClients = new Map<string, number>();
    const inLua = new Map<string, number>();
    const monitorClient = infoClient(redisServer.url);
    const monitor = await monitorClient.monitor();
    let counting = false;
    monitor.on("monitor", (_time: string, args: string[], source: string) => {
      if (!counting) return;
      const name = String(args[0] ?? "").toLowerCase();
      const into = source.includes("lua") ? inLua : fromClients;
      into.set(name, (into.get(name) ?? 0) + 1);
    });
    const m0 = performance.now();
    const mFrom = m0 + 500;
    const mUntil = mFrom + MONITOR_SECONDS * 1000;
    const pass = await drive(mFrom, mUntil);
    await sleep(mFrom - performance.now());
    counting = true;
    await sleep(mUntil - performance.now());
    counting = false;
    await pass.done;
    monitor.disconnect();
    monitorClient.disconnect();
    monitored = { jobs: pass.latencies.length, fromClients, inLua };
  }
} finally {
  await stop(api);
  await Promise.all(echo.map((w) => w.stop()));
  info.disconnect();
  await redisServer.stop();
}

const jobs = result.jobs;
const rate = jobs / result.seconds;
const totalCalls = [...result.calls.values()].reduce((a, b) => a + b, 0);
const scripts = (result.calls.get("evalsha") ?? 0) + (result.calls.get("eval") ?? 0);
console.log(
  `\nQueue dispatch ceiling: sync decodes through one API + Redis + BullMQ, the model run answering at once`,
);
console.log(
  `${new Date().toISOString().slice(0, 10)}, ${hostname()}, load ${fmt(load0)} at start; ${CLIENTS} clients, ` +
    `${WORKERS} echo workers × concurrency ${CONCURRENCY}, 64 KiB in, ${answer.length} B out, ` +
    `${redisServer.private ? "a redis-server of its own" : `Redis ${redisServer.url} (shared: others' commands count)`}`,
);
console.log(
  `${jobs} jobs in ${result.seconds} s: ${fmt(rate, 0)} jobs/s, latency p50 ${fmt(pct(result.latencies, 50))} ms, ` +
    `p99 ${fmt(pct(result.latencies, 99))} ms${result.errors ? `, ${result.errors} ERRORS` : ""}`,
);
console.log(
  `Redis commands per job: ${fmt(totalCalls / jobs)} (INFO commandstats, which also counts the commands ` +
    `Lua scripts run; ${fmt(scripts / jobs)} of them are script calls, EVALSHA)`,
);
const top = [...result.calls.entries()].sort((a, b) => b[1] - a[1]);
console.log(
  `  per job: ${top
    .slice(0, 16)
    .map(([k, v]) => `${k} ${fmt(v / jobs, 2)}`)
    .join(", ")}`,
);
if (monitored && monitored.jobs > 0) {
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  const list = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([k, v]) => `${k} ${fmt(v / monitored!.jobs, 2)}`)
      .join(", ");
  console.log(
    `MONITOR pass (${monitored.jobs} jobs, slower while monitored): ${fmt(sum(monitored.fromClients) / monitored.jobs)} ` +
      `commands per job sent by clients, ${fmt(sum(monitored.inLua) / monitored.jobs)} run inside Lua scripts`,
  );
  console.log(`  sent by clients, per job: ${list(monitored.fromClients)}`);
  console.log(`  inside scripts, per job: ${list(monitored.inLua)}`);
}
const redisMs = result.redisCpu / jobs;
const apiMs = result.apiCpu / jobs;
console.log(
  `CPU per job: Redis ${fmt(redisMs, 3)} ms (→ ~${fmt(1000 / redisMs, 0)} jobs/s if Redis had a core to itself), ` +
    `API ${fmt(apiMs, 2)} ms (→ ~${fmt(1000 / apiMs, 0)} jobs/s per API core), ` +
    `this process (clients + echo workers) ${fmt(result.ownCpu / jobs, 2)} ms`,
);
for (const z of DECODE_MS)
  console.log(
    `one API + Redis dispatch ${fmt(rate, 0)} jobs/s (${fmt(totalCalls / jobs, 0)} Redis commands per job); ` +
      `at ${z} ms per decode that feeds ~${fmt((rate * z) / 1000, 1)} GPUs`,
  );
process.exit(0);
