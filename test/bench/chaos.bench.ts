// `pnpm bench:chaos`: what Redis and process faults do to admitted work. One API and one worker on
// a redis-server of their own with AOF on (`appendfsync everysec`), under steady load: async
// decodes (`Prefer: respond-async`, every 202 remembered) and sync decodes from a few clients.
// Meanwhile Redis is killed (SIGKILL) and restarted on the same port and data directory twice,
// then the API is killed (SIGKILL) once and started again. After the load, every admitted job is
// followed to its end. Prints the counts:
// - admitted async jobs that completed, failed, or were lost — a job admitted within the AOF
//   fsync window (1 s) before a Redis kill may be lost (the README says so); any other loss is a bug;
// - sync answers by status, and the longest sync wait (never past REQUEST_TIMEOUT_MS);
// - whether the worker or the (second) API exited, and their RSS before and after.
// Exits 1 when a rule above is broken.
//
// Options: --seconds S (60: the load's length), --clients C (4 sync loops), --async-rate R (async
// submissions per second, 20), --timeout-ms T (REQUEST_TIMEOUT_MS of the API, 15000).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateDefaultModels } from "@hybrid/model-tools";
import { freePort, redisAnswers, startApp, stop, waitFor } from "../../scripts/lib.ts";
import { TEST_MODELS_DIR } from "../e2e/stack.ts";
import { pct } from "./bench-utils.ts";
import {
  SMALL_DECODE_ANSWER_BYTES,
  SMALL_DECODE_BODY,
  SMALL_DECODE_MODEL,
  SMALL_DECODE_PATH,
} from "./small-decode.ts";
import { rssMb } from "./tree-stack.ts";

const { values: opt } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    seconds: { type: "string", default: "60" },
    clients: { type: "string", default: "4" },
    "async-rate": { type: "string", default: "20" },
    "timeout-ms": { type: "string", default: "15000" },
  },
});
const SECONDS = Number(opt.seconds);
const CLIENTS = Number(opt.clients);
const ASYNC_RATE = Number(opt["async-rate"]);
const TIMEOUT_MS = Number(opt["timeout-ms"]);
/** `appendfsync everysec`: what a hard kill of Redis may lose. */
const FSYNC_WINDOW_MS = 1000;
/** How long Redis stays down at each restart. */
const OUTAGE_MS = 3000;

const MODEL = SMALL_DECODE_MODEL;
const BODY = SMALL_DECODE_BODY;
const PATH = SMALL_DECODE_PATH;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// --- the stack -------------------------------------------------------------------------------

const dataDir = mkdtempSync(join(tmpdir(), "chaos-redis-"));
const redisPort = await freePort();
const redisUrl = `redis://127.0.0.1:${redisPort}`;
const apiPort = await freePort();
const baseUrl = `http://127.0.0.1:${apiPort}`;

function startRedis(): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(redisPort),
      "--bind",
      "127.0.0.1",
      "--dir",
      dataDir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      "--save",
      "",
      "--maxmemory-policy",
      "noeviction",
    ],
    { stdio: "ignore" },
  );
  return waitFor(() => redisAnswers("127.0.0.1", redisPort), 20_000, "redis-server").then(() => child);
}

const common = { REDIS_URL: redisUrl, QUEUE_PREFIX: "chaos", LOG_LEVEL: "warn" };
// A keys file with no keys: a developer's ./keys.json must not switch auth on here.
const noKeys = join(dataDir, "no-keys.json");
writeFileSync(noKeys, '{ "keys": [] }\n');
const startApi = () =>
  startApp("api", {
    ...common,
    PORT: String(apiPort),
    HOST: "127.0.0.1",
    REQUEST_TIMEOUT_MS: String(TIMEOUT_MS),
    API_KEYS_FILE: noKeys,
  });
const ready = () =>
  waitFor(
    () =>
      fetch(`${baseUrl}/health/ready`).then(
        (r) => r.ok,
        () => false,
      ),
    120_000,
    "the API to be ready",
  );

await generateDefaultModels(TEST_MODELS_DIR);
let redis = await startRedis();
const worker = startApp("worker", {
  ...common,
  MODELS: `${MODEL}=${join(TEST_MODELS_DIR, MODEL)}`,
  GENERATE_DEFAULT_MODELS: "false",
});
let api = startApi();
await ready();

// --- the load --------------------------------------------------------------------------------

interface Admitted {
  id: string;
  at: number;
}
const admitted: Admitted[] = [];
const asyncRefusals = new Map<string, number>();
const syncStatus = new Map<string, number>();
const syncWaits: number[] = [];
const count = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
/** When Redis was killed: jobs admitted within the fsync window before it may be gone. */
const redisKills: number[] = [];
/** Redis' outages, [killed, answering again]: sync requests sent then are counted apart. */
const outages: [number, number][] = [];
const duringOutage = new Map<string, number>();
const inOutage = (t: number) => outages.some(([a, b]) => t >= a && t <= b);
/** While the API was down (killed, not yet ready again): refused connections are expected then. */
const apiDown = { from: Number.POSITIVE_INFINITY, to: Number.POSITIVE_INFINITY };
/** Transport errors (no HTTP answer) while the API was up: each is a bug. */
let dropped = 0;
const transportError = (e: unknown, m: Map<string, number>) => {
  const at = Date.now();
  if (at >= apiDown.from && at <= apiDown.to + 1000) count(m, "refused while the API was down");
  else {
    dropped++;
    count(m, (e as Error).name);
  }
};

async function submitAsync(): Promise<void> {
  try {
    const r = await fetch(`${baseUrl}${PATH}`, {
      method: "POST",
      headers: { "content-type": "tensor/binary", prefer: "respond-async" },
      body: BODY,
      signal: AbortSignal.timeout(TIMEOUT_MS + 10_000),
    });
    const body = (await r.json().catch(() => ({}))) as { id?: string; code?: string };
    if (r.status === 202 && body.id) admitted.push({ id: body.id, at: Date.now() });
    else count(asyncRefusals, `${r.status} ${body.code ?? ""}`.trim());
  } catch (e) {
    transportError(e, asyncRefusals);
  }
}

async function syncLoop(until: number): Promise<void> {
  while (Date.now() < until) {
    const t = performance.now();
    const sentAt = Date.now();
    try {
      const r = await fetch(`${baseUrl}${PATH}`, {
        method: "POST",
        headers: { "content-type": "tensor/binary" },
        body: BODY,
        signal: AbortSignal.timeout(TIMEOUT_MS + 10_000),
      });
      const bytes = await r.arrayBuffer();
      const status =
        r.status === 200 && bytes.byteLength !== SMALL_DECODE_ANSWER_BYTES ? "200 short" : String(r.status);
      count(syncStatus, status);
      if (inOutage(sentAt)) count(duringOutage, status);
    } catch (e) {
      transportError(e, syncStatus);
      // The API is down (killed): don't spin.
      await sleep(100);
    }
    syncWaits.push(performance.now() - t);
  }
}

const rss0 = { api: 0, worker: rssMb(worker.pid) };
const start = Date.now();
const until = start + SECONDS * 1000;
const asyncLoad = (async () => {
  const inFlight: Promise<void>[] = [];
  while (Date.now() < until) {
    inFlight.push(submitAsync());
    await sleep(1000 / ASYNC_RATE);
  }
  await Promise.all(inFlight);
})();
const syncLoad = Promise.all(Array.from({ length: CLIENTS }, () => syncLoop(until)));

// The faults, spread over the load: Redis at 20% and 45%, the API at 70%.
const faults = (async () => {
  for (const at of [0.2, 0.45]) {
    await sleep(Math.max(0, start + at * SECONDS * 1000 - Date.now()));
    console.log(
      `  ${((Date.now() - start) / 1000).toFixed(1)} s: kill -9 redis-server, restart in ${OUTAGE_MS} ms`,
    );
    redisKills.push(Date.now());
    const outage: [number, number] = [Date.now(), Number.POSITIVE_INFINITY];
    outages.push(outage);
    redis.kill("SIGKILL");
    await new Promise((r) => redis.once("exit", r));
    await sleep(OUTAGE_MS);
    redis = await startRedis();
    outage[1] = Date.now();
  }
  await sleep(Math.max(0, start + 0.7 * SECONDS * 1000 - Date.now()));
  console.log(`  ${((Date.now() - start) / 1000).toFixed(1)} s: kill -9 the API, start it again`);
  apiDown.from = Date.now();
  api.kill("SIGKILL");
  await new Promise((r) => api.once("exit", r));
  api = startApi();
  await ready();
  apiDown.to = Date.now();
  rss0.api = rssMb(api.pid);
})();

console.log(
  `chaos bench: ${SECONDS} s of load (${ASYNC_RATE} async decodes/s, ${CLIENTS} sync clients), ` +
    `REQUEST_TIMEOUT_MS ${TIMEOUT_MS}; Redis AOF everysec in ${dataDir}`,
);
await Promise.all([asyncLoad, syncLoad, faults]);

// --- every admitted job to its end -----------------------------------------------------------

const outcome = new Map<string, string>();
const settleBy = Date.now() + 120_000;
let pending = admitted.map((a) => a.id);
while (pending.length > 0 && Date.now() < settleBy) {
  const next: string[] = [];
  for (const id of pending) {
    const r = await fetch(`${baseUrl}/v1/jobs/${id}`).catch(() => null);
    const body = r?.ok ? ((await r.json()) as { status?: string }) : null;
    const status = r?.status === 404 ? "lost" : body?.status;
    if (status === "succeeded" || status === "failed" || status === "canceled" || status === "lost")
      outcome.set(id, status);
    else next.push(id);
  }
  pending = next;
  if (pending.length > 0) await sleep(500);
}
for (const id of pending) outcome.set(id, "unfinished");

const inWindow = (a: Admitted) => redisKills.some((k) => a.at <= k && k - a.at <= FSYNC_WINDOW_MS);
const tally = new Map<string, number>();
let lostOutsideWindow = 0;
for (const a of admitted) {
  const o = outcome.get(a.id) ?? "unfinished";
  count(tally, o);
  if ((o === "lost" || o === "unfinished") && !inWindow(a)) lostOutsideWindow++;
}

// Memory once the load is over (a moment for GC to run).
await sleep(2000);
const rss1 = { api: rssMb(api.pid), worker: rssMb(worker.pid) };
const exited = [
  worker.exitCode !== null || worker.signalCode !== null ? "worker" : null,
  api.exitCode !== null ? "api" : null,
].filter(Boolean);
const longestSync = Math.max(0, ...syncWaits);

console.log("");
console.log(`admitted async jobs: ${admitted.length}; ${[...tally].map(([k, v]) => `${k} ${v}`).join(", ")}`);
console.log(
  `  lost or unfinished outside the ${FSYNC_WINDOW_MS} ms fsync window before a Redis kill: ${lostOutsideWindow}`,
);
console.log(`async refusals: ${[...asyncRefusals].map(([k, v]) => `${k} ×${v}`).join(", ") || "none"}`);
console.log(`sync answers: ${[...syncStatus].map(([k, v]) => `${k} ×${v}`).join(", ")}`);
console.log(
  `  sync wait p50 ${pct(syncWaits, 50).toFixed(0)} ms, p99 ${pct(syncWaits, 99).toFixed(0)} ms, longest ${longestSync.toFixed(0)} ms (REQUEST_TIMEOUT_MS ${TIMEOUT_MS})`,
);
console.log(
  `  sent while Redis was down: ${[...duringOutage].map(([k, v]) => `${k} ×${v}`).join(", ") || "none"}`,
);
console.log(`exited: ${exited.join(", ") || "none"}`);
console.log(
  `RSS MB: API (second process) ${rss0.api.toFixed(0)} -> ${rss1.api.toFixed(0)}, worker ${rss0.worker.toFixed(0)} -> ${rss1.worker.toFixed(0)}`,
);

const broken: string[] = [];
if (lostOutsideWindow > 0) broken.push(`${lostOutsideWindow} admitted jobs lost`);
if (longestSync > TIMEOUT_MS + 5000) broken.push("a sync request hung past REQUEST_TIMEOUT_MS");
if (exited.length > 0) broken.push(`${exited.join(" and ")} exited`);
if (dropped > 0) broken.push(`${dropped} requests got no HTTP answer while the API was up`);
const badSync = [...syncStatus.keys()].filter(
  (k) => !["200", "503", "504", "refused while the API was down"].includes(k) && !k.endsWith("Error"),
);
if (badSync.length > 0) broken.push(`sync answers other than 200/503/504: ${badSync.join(", ")}`);
console.log(broken.length === 0 ? "chaos: every rule held" : `chaos: BROKEN: ${broken.join("; ")}`);

await Promise.all([stop(api), stop(worker)]);
await stop(redis, 2000);
rmSync(dataDir, { recursive: true, force: true });
process.exit(broken.length === 0 ? 0 : 1);
