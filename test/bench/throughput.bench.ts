// `pnpm bench:throughput`: how many decodes a second the service serves, against the same model
// run back to back in one process. 1, 4 and 16 clients (keep-alive request loops) send 1x4x64x64
// float32 latents for a uint8 512x512 answer (`output_type=pt&partial_postprocess=True`) to one
// API + one worker, for the tiny generated VAE and a TAESD-size one; just before each of those
// cells this process runs `session.run` of the same model, sequentially, with ORT's own defaults,
// on the same cores. The ratios come from this one run. Each cell also shows where the
// time goes: the worker's read/run/write phases (its /metrics) and the CPU time per answer of the
// clients, the API, the worker and Redis. Then a grid of worker settings (SESSION_THREADS,
// CONCURRENCY, ORT_INTRA_OP_THREADS, ORT_ALLOW_SPINNING, MAX_BATCH_SIZE) at 16 clients tells
// which serves the most.
//
// Settings (env): BENCH_SECONDS (8) per service cell, BENCH_INPROCESS_SECONDS (3) per in-process
// measurement, BENCH_GRID=small|full|none (small: ~5 min in all on 2 cores; full: ~100 settings,
// ~50 min), BENCH_GRID_SECONDS (6), BENCH_GRID_INPROCESS_SECONDS (2), BENCH_CLIENTS (1,4,16).
// Redis: REDIS_URL, else a redis-server of its own (see bench-utils.ts).
import { cpus, loadavg } from "node:os";
import { jobCatalog, Queues } from "@hybrid/queue";
import { Agent, request } from "undici";
import { freePort } from "../../scripts/lib.ts";
import { type Stack, startStack } from "../e2e/stack.ts";
import {
  benchRedis,
  fmt,
  infoClient,
  ownCpuMs,
  pct,
  processCpuMs,
  redisCpuMs,
  redisPid,
  sleep,
} from "./bench-utils.ts";
import {
  ANSWER_BYTES,
  BENCH_VAES,
  bareSession,
  benchVaesEnv,
  DECODE_BODY,
  DECODE_QUERY,
  ensureBenchVaes,
} from "./decode-workload.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const INPROCESS_SECONDS = Number(process.env.BENCH_INPROCESS_SECONDS ?? 3);
const GRID = process.env.BENCH_GRID ?? "small";
const GRID_SECONDS = Number(process.env.BENCH_GRID_SECONDS ?? 6);
const GRID_INPROCESS_SECONDS = Number(process.env.BENCH_GRID_INPROCESS_SECONDS ?? 2);
const CLIENTS = (process.env.BENCH_CLIENTS ?? "1,4,16").split(",").map(Number);
const GOAL_CLIENTS = 16;
const GOAL = 0.95;

const models = BENCH_VAES;
await ensureBenchVaes();

/** Worker settings, named as the worker's environment variables (apps/worker/src/env.ts). */
interface Setting {
  SESSION_THREADS: number;
  CONCURRENCY: number;
  ORT_INTRA_OP_THREADS: number;
  ORT_ALLOW_SPINNING: boolean;
  MAX_BATCH_SIZE: number;
}
const DEFAULT: Setting = {
  SESSION_THREADS: 1,
  CONCURRENCY: 1,
  ORT_INTRA_OP_THREADS: 0,
  ORT_ALLOW_SPINNING: true,
  MAX_BATCH_SIZE: 1,
};
const label = (s: Setting) =>
  `threads=${s.SESSION_THREADS} conc=${s.CONCURRENCY} intra=${s.ORT_INTRA_OP_THREADS} spin=${s.ORT_ALLOW_SPINNING ? "on" : "off"} batch=${s.MAX_BATCH_SIZE}`;
const envOf = (s: Setting): Record<string, string> =>
  Object.fromEntries(Object.entries(s).map(([k, v]) => [k, String(v)]));

/**
 * The small grid asks, on a few cores: does spinning pay, does a second job in flight help
 * (CONCURRENCY 2), does dynamic batching (MAX_BATCH_SIZE 4, 8), do two sessions side by side
 * beat one run spread over every core (SESSION_THREADS 2 with one ORT thread each), with batching
 * too, and does a deeper prefetch (CONCURRENCY 4) add anything.
 */
function grid(): Setting[] {
  if (GRID === "none") return [];
  if (GRID === "full") {
    const out: Setting[] = [];
    for (const threads of [1, 2])
      for (const conc of [1, 2, 4])
        for (const intra of [0, 1, 2])
          for (const spin of [true, false])
            for (const batch of [1, 4, 8])
              out.push({
                SESSION_THREADS: threads,
                CONCURRENCY: conc,
                ORT_INTRA_OP_THREADS: intra,
                ORT_ALLOW_SPINNING: spin,
                MAX_BATCH_SIZE: batch,
              });
    // More session threads than jobs in flight would leave threads idle.
    return out.filter(
      (s) => s.CONCURRENCY * s.MAX_BATCH_SIZE >= s.SESSION_THREADS && label(s) !== label(DEFAULT),
    );
  }
  const base = DEFAULT;
  return [
    { ...base, ORT_ALLOW_SPINNING: false },
    { ...base, CONCURRENCY: 2 },
    { ...base, MAX_BATCH_SIZE: 4 },
    { ...base, MAX_BATCH_SIZE: 8 },
    { ...base, SESSION_THREADS: 2, CONCURRENCY: 2, ORT_INTRA_OP_THREADS: 1 },
    { ...base, SESSION_THREADS: 2, CONCURRENCY: 2, ORT_INTRA_OP_THREADS: 1, MAX_BATCH_SIZE: 4 },
    { ...base, SESSION_THREADS: 2, CONCURRENCY: 4, ORT_INTRA_OP_THREADS: 1 },
  ];
}

const session = new Map<string, Awaited<ReturnType<typeof bareSession>>>();
for (const m of models) session.set(m.id, await bareSession(m.id));

interface InProcess {
  rps: number;
  p50: number;
  /** This process's CPU per run (ORT's spinning threads included). */
  cpuMs: number;
}

/** `session.run` back to back for `seconds` (at least 3 runs): runs per second. */
async function inProcess(model: string, seconds: number): Promise<InProcess> {
  const s = session.get(model)!;
  await s.run();
  const times: number[] = [];
  const cpu0 = ownCpuMs();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000 || times.length < 3) {
    const t = performance.now();
    await s.run();
    times.push(performance.now() - t);
  }
  const wall = performance.now() - t0;
  return {
    rps: (times.length * 1000) / wall,
    p50: pct(times, 50),
    cpuMs: (ownCpuMs() - cpu0) / times.length,
  };
}

interface ServiceCell {
  rps: number;
  /** Latency percentiles of the requests sent after the first answer (the ramp-up excluded). */
  p50: number;
  p99: number;
  /** How many answers those percentiles are of. */
  steady: number;
  answers: number;
  errors: number;
  /** The worker's mean read / run / write time per job, in ms (its metrics). */
  phases: { read: number; run: number; write: number };
  /** CPU per answer, in ms, of: this process (the clients), the API, the worker, Redis. */
  cpu: { client: number; api: number; worker: number; redis: number };
}

/**
 * `clients` keep-alive request loops (undici) for `seconds`. Throughput is (answers - 1) / (last - first
 * answer time): the ramp-up before the first answer and the cut at the deadline don't count,
 * which matters when a cell holds only a dozen answers of a slow model.
 */
async function service(
  stack: Stack,
  metricsPort: number,
  redisUrl: string,
  model: string,
  clients: number,
  seconds: number,
): Promise<ServiceCell> {
  const url = `${stack.baseUrl}/v1/vae/${model}/decode?${DECODE_QUERY}`;
  const redis = infoClient(redisUrl);
  const abort = new AbortController();
  const done: Array<{ sent: number; at: number; ms: number }> = [];
  let errors = 0;
  const phases0 = await workerPhases(metricsPort, model);
  const cpu0 = {
    client: ownCpuMs(),
    api: processCpuMs(stack.api.pid),
    worker: processCpuMs(stack.worker.pid),
    redis: await redisCpuMs(redis),
  };
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      const t = performance.now();
      try {
        const res = await request(url, {
          method: "POST",
          headers: { "Content-Type": "tensor/binary", Accept: "tensor/binary" },
          body: DECODE_BODY,
          signal: abort.signal,
          dispatcher: client,
        });
        const bytes = await res.body.arrayBuffer();
        const at = performance.now();
        if (res.statusCode !== 200 || bytes.byteLength !== ANSWER_BYTES) errors++;
        else if (at <= deadline) done.push({ sent: t, at, ms: at - t });
      } catch (e) {
        if (!abort.signal.aborted) {
          errors++;
          console.error(`request failed: ${(e as Error).message}`);
        }
      }
    }
  };
  // One keep-alive connection per client loop. undici's request, not fetch: fetch took ~14 ms of
  // CPU per 786 KB answer here, CPU the service under test then lacks on a small machine.
  const client = new Agent({ connections: clients });
  const loops = Array.from({ length: clients }, loop);
  await sleep(deadline - performance.now());
  const cpu1 = {
    client: ownCpuMs(),
    api: processCpuMs(stack.api.pid),
    worker: processCpuMs(stack.worker.pid),
    redis: await redisCpuMs(redis),
  };
  const phases1 = await workerPhases(metricsPort, model);
  // Hanging up withdraws the jobs still waiting (a sync client that leaves cancels its job).
  abort.abort();
  await Promise.all(loops);
  await client.close();
  await drained(redisUrl, stack.prefix, model);
  redis.disconnect();
  const n = done.length;
  const span = n > 1 ? done[n - 1]!.at - done[0]!.at : Number.NaN;
  const per = (k: keyof typeof cpu0) => (cpu1[k] - cpu0[k]) / n;
  const steady = done.filter((d) => n > 0 && d.sent >= done[0]!.at).map((d) => d.ms);
  const phase = (k: "read" | "run" | "write") => {
    const count = phases1[k].count - phases0[k].count;
    return count > 0 ? ((phases1[k].sum - phases0[k].sum) * 1000) / count : Number.NaN;
  };
  return {
    rps: ((n - 1) * 1000) / span,
    p50: pct(steady, 50),
    p99: pct(steady, 99),
    steady: steady.length,
    answers: n,
    errors,
    phases: { read: phase("read"), run: phase("run"), write: phase("write") },
    cpu: { client: per("client"), api: per("api"), worker: per("worker"), redis: per("redis") },
  };
}

type Phase = { sum: number; count: number };

/** The worker's read/run/write histograms (sum in seconds, count) for one model, from its /metrics. */
async function workerPhases(port: number, model: string): Promise<Record<"read" | "run" | "write", Phase>> {
  const out = { read: { sum: 0, count: 0 }, run: { sum: 0, count: 0 }, write: { sum: 0, count: 0 } };
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
    (r) => r.text(),
    () => "",
  );
  const re = /^hybrid_worker_job_(read|run|write)_seconds_(sum|count)\{([^}]*)\} (\S+)$/gm;
  for (const [, phase, field, labels, value] of text.matchAll(re))
    if (labels!.includes(`model="${model}"`))
      out[phase as "read" | "run" | "write"][field as "sum" | "count"] += Number(value);
  return out;
}

/** Waits until the model's queue has nothing waiting or running (the next cell starts idle). */
async function drained(redisUrl: string, prefix: string, model: string): Promise<void> {
  const queues = new Queues(redisUrl, prefix);
  const q = queues.queue(jobCatalog.queue("decode", model));
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    const c = await q.getJobCounts("waiting", "active", "prioritized");
    if ((c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0) === 0) break;
    await sleep(50);
  }
  await queues.close();
  // ORT's threads spin a little after a run: let them settle so neither side slows the other.
  await sleep(200);
}

async function withStack<T>(
  redisUrl: string,
  s: Setting,
  fn: (stack: Stack, metricsPort: number) => Promise<T>,
): Promise<T> {
  const metricsPort = await freePort();
  const stack = await startStack(
    {
      REDIS_URL: redisUrl,
      MODELS: benchVaesEnv(),
      GENERATE_DEFAULT_MODELS: "false",
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warn",
      ...envOf(s),
    },
    { worker: { HEALTH_PORT: String(metricsPort) } },
  );
  try {
    // Warm every path: sessions in the worker's threads, connections, queue event streams.
    for (const m of models)
      for (let i = 0; i < 2 * s.SESSION_THREADS; i++)
        await fetch(`${stack.baseUrl}/v1/vae/${m.id}/decode?${DECODE_QUERY}`, {
          method: "POST",
          headers: { "Content-Type": "tensor/binary" },
          body: DECODE_BODY,
        }).then((r) => r.arrayBuffer());
    return await fn(stack, metricsPort);
  } finally {
    await stack.stop();
  }
}

const redis = await benchRedis();
const info = infoClient(redis.url);
const redisNote = redis.private
  ? "a redis-server of its own"
  : `shared Redis ${redis.url} (pid ${await redisPid(info)}; others' load counts in its CPU)`;
info.disconnect();
const t0 = Date.now();
const started = new Date().toISOString().slice(0, 10);
const load0 = loadavg()[0]!;

interface Row {
  model: string;
  clients: number;
  inproc: InProcess;
  svc: ServiceCell;
}
const rows: Row[] = [];
const gridRows: Array<{ setting: Setting; model: string; inproc: InProcess; svc: ServiceCell }> = [];

try {
  await withStack(redis.url, DEFAULT, async (stack, metricsPort) => {
    for (const m of models)
      for (const clients of CLIENTS) {
        const inproc = await inProcess(m.id, INPROCESS_SECONDS);
        await sleep(200);
        const svc = await service(stack, metricsPort, redis.url, m.id, clients, SECONDS);
        rows.push({ model: m.id, clients, inproc, svc });
        console.log(`${m.id} ${clients} clients: ${fmt(svc.rps, 2)} rps vs ${fmt(inproc.rps, 2)} in-process`);
      }
  });
  for (const s of grid()) {
    await withStack(redis.url, s, async (stack, metricsPort) => {
      // Batching is about many small decodes: a TAESD-size batch of 4 takes ~3 s here, so a
      // grid cell of a few seconds would hold one or two bursts of answers, not a rate.
      for (const m of models.filter((x) => s.MAX_BATCH_SIZE === 1 || x.arch === "tiny")) {
        const inproc = await inProcess(m.id, GRID_INPROCESS_SECONDS);
        await sleep(200);
        const svc = await service(stack, metricsPort, redis.url, m.id, GOAL_CLIENTS, GRID_SECONDS);
        gridRows.push({ setting: s, model: m.id, inproc, svc });
        console.log(`${label(s)} ${m.id}: ${fmt(svc.rps, 2)} rps vs ${fmt(inproc.rps, 2)} in-process`);
      }
    });
  }
} finally {
  for (const s of session.values()) await s.release();
  await redis.stop();
}

const ratio = (svc: ServiceCell, inproc: InProcess) => svc.rps / inproc.rps;
console.log(
  `\nThroughput, 1x4x64x64 float32 latents → uint8 [1,512,512,3] (output_type=pt, partial_postprocess=True)`,
);
console.log(
  `${started}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), load ${fmt(load0, 1)} at start, ${redisNote}; ` +
    `worker defaults (${label(DEFAULT)}); in-process = session.run back to back, ORT defaults, just before each cell`,
);
console.log(
  `${"model".padEnd(12)} ${"clients".padStart(7)} ${"in-proc rps".padStart(11)} ${"service rps".padStart(11)} ` +
    `${"ratio".padStart(6)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"(n)".padStart(5)} ` +
    `${"c/rps ms".padStart(8)} ${"run p50".padStart(8)}  worker read/run/write ms  ` +
    `CPU ms per answer: client/API/worker/Redis (in-process per run)`,
);
for (const r of rows) {
  const c = r.svc.cpu;
  const ph = r.svc.phases;
  console.log(
    `${r.model.padEnd(12)} ${String(r.clients).padStart(7)} ${fmt(r.inproc.rps, 2).padStart(11)} ` +
      `${fmt(r.svc.rps, 2).padStart(11)} ${`${fmt(ratio(r.svc, r.inproc), 2)}x`.padStart(6)} ` +
      `${fmt(r.svc.p50).padStart(8)} ${fmt(r.svc.p99).padStart(8)} ${`(${r.svc.steady})`.padStart(5)} ` +
      `${fmt((r.clients * 1000) / r.svc.rps, 0).padStart(8)} ${fmt(r.inproc.p50).padStart(8)}  ` +
      `${`${fmt(ph.read)} / ${fmt(ph.run)} / ${fmt(ph.write)}`.padEnd(24)}  ` +
      `${fmt(c.client)} / ${fmt(c.api)} / ${fmt(c.worker)} / ${fmt(c.redis)} (${fmt(r.inproc.cpuMs)})` +
      `${r.svc.errors ? `  ${r.svc.errors} ERRORS` : ""}`,
  );
}
console.log(
  "p50/p99: requests sent after the first answer (n of them); c/rps: the mean latency a closed loop of " +
    "c clients must see at that rate (Little's law); run p50: in-process session.run",
);
for (const m of models) {
  const r = rows.find((x) => x.model === m.id && x.clients === GOAL_CLIENTS);
  if (!r) continue;
  const x = ratio(r.svc, r.inproc);
  console.log(
    `goal ≥ ${GOAL}× of in-process throughput at ${GOAL_CLIENTS} clients, ${m.id}: ${fmt(x, 2)}× ` +
      `${x >= GOAL ? "met" : "NOT met"} (worker defaults)`,
  );
}

if (gridRows.length > 0) {
  console.log(
    `\nWorker settings at ${GOAL_CLIENTS} clients (ratio: service rps / in-process rps with ORT defaults, measured just before)`,
  );
  const all = [
    ...rows
      .filter((r) => r.clients === GOAL_CLIENTS)
      .map((r) => ({ setting: DEFAULT, model: r.model, inproc: r.inproc, svc: r.svc })),
    ...gridRows,
  ];
  for (const m of models) {
    const mine = all.filter((g) => g.model === m.id);
    for (const g of mine)
      console.log(
        `${m.id.padEnd(12)} ${label(g.setting).padEnd(40)} ${fmt(g.svc.rps, 2).padStart(7)} rps ` +
          `(in-process ${fmt(g.inproc.rps, 2).padStart(6)}) ${`${fmt(ratio(g.svc, g.inproc), 2)}x`.padStart(6)}  ` +
          `worker run ${fmt(g.svc.phases.run).padStart(6)} ms  CPU ms/answer API ${fmt(g.svc.cpu.api)} ` +
          `worker ${fmt(g.svc.cpu.worker)} client ${fmt(g.svc.cpu.client)}`,
      );
    const best = mine.reduce((a, b) => (ratio(b.svc, b.inproc) > ratio(a.svc, a.inproc) ? b : a));
    const x = ratio(best.svc, best.inproc);
    console.log(
      `best for ${m.id} at ${GOAL_CLIENTS} clients: ${label(best.setting)} — ${fmt(best.svc.rps, 2)} rps, ` +
        `${fmt(x, 2)}× in-process (goal ${x >= GOAL ? "met" : "NOT met"})`,
    );
  }
}
console.log(`(bench took ${fmt((Date.now() - t0) / 1000, 0)} s)`);
process.exit(0);
