// `pnpm bench:soak`: does memory stay flat under a long steady load? N sync decodes (50,000) from C
// concurrent keep-alive clients (64) against one API and one worker on a redis-server of their
// own (the load bench's stack). Prints the API's and the worker's RSS and Redis' used memory at
// every checkpoint (each 10,000 requests), and checks the rule: RSS after the last checkpoint is
// within 10% of RSS after the first (the warm-up is over by then). Exits 1 when it is broken or
// when any request failed.
//
// Options: --requests N (50000), --clients C (64), --every K (10000).
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateDefaultModels } from "@hybrid/model-tools";
import { Pool } from "undici";
import { repoRoot } from "../../scripts/lib.ts";
import { TEST_MODELS_DIR } from "../e2e/stack.ts";
import { infoClient, pct } from "./bench-utils.ts";
import { SMALL_DECODE_MODEL, sendSmallDecode } from "./small-decode.ts";
import { rssMb, startTreeStack } from "./tree-stack.ts";

const { values: opt } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    requests: { type: "string", default: "50000" },
    clients: { type: "string", default: "64" },
    every: { type: "string", default: "10000" },
  },
});
const REQUESTS = Number(opt.requests);
const CLIENTS = Number(opt.clients);
const EVERY = Number(opt.every);
/** RSS after the last checkpoint may exceed RSS after the first by this much. */
const RSS_GROWTH_ALLOWED = 0.1;

const MODEL = SMALL_DECODE_MODEL;

await generateDefaultModels(TEST_MODELS_DIR);
const stack = await startTreeStack({
  name: "soak",
  root: repoRoot,
  models: `${MODEL}=${join(TEST_MODELS_DIR, MODEL)}`,
});
const redis = infoClient(stack.redisUrl);
const redisUsedMb = async () => {
  const m = /used_memory:(\d+)/.exec(await redis.info("memory"));
  return m ? Number(m[1]) / 2 ** 20 : Number.NaN;
};

interface Checkpoint {
  done: number;
  api: number;
  worker: number;
  redis: number;
  rps: number;
  p50: number;
  p99: number;
}
const checkpoints: Checkpoint[] = [];
const failures = new Map<string, number>();
const pool = new Pool(stack.baseUrl, { connections: CLIENTS, headersTimeout: 600_000, bodyTimeout: 600_000 });

console.log(
  `soak bench: ${REQUESTS} sync decodes of 1x4x32x32 (${MODEL}) at ${CLIENTS} clients, a checkpoint every ${EVERY}.`,
);
console.log("   done    req/s  p50 ms  p99 ms  API RSS MB  worker RSS MB  Redis used MB");
const idle = { api: rssMb(stack.api.pid), worker: rssMb(stack.worker.pid), redis: await redisUsedMb() };
console.log(
  `${"idle".padStart(7)} ${"".padStart(8)} ${"".padStart(7)} ${"".padStart(7)} ${idle.api.toFixed(0).padStart(11)} ${idle.worker.toFixed(0).padStart(14)} ${idle.redis.toFixed(1).padStart(14)}`,
);

let sent = 0;
let done = 0;
let latencies: number[] = [];
let since = performance.now();
let checkpointing = Promise.resolve();
await Promise.all(
  Array.from({ length: CLIENTS }, async () => {
    while (sent < REQUESTS) {
      sent++;
      const t = performance.now();
      const failed = await sendSmallDecode(pool);
      if (failed) failures.set(failed, (failures.get(failed) ?? 0) + 1);
      else latencies.push(performance.now() - t);
      done++;
      if (done % EVERY === 0) {
        const lat = latencies;
        const wall = performance.now() - since;
        latencies = [];
        since = performance.now();
        const n = done;
        checkpointing = checkpointing.then(async () => {
          const c: Checkpoint = {
            done: n,
            api: rssMb(stack.api.pid),
            worker: rssMb(stack.worker.pid),
            redis: await redisUsedMb(),
            rps: (lat.length * 1000) / wall,
            p50: pct(lat, 50),
            p99: pct(lat, 99),
          };
          checkpoints.push(c);
          console.log(
            `${String(c.done).padStart(7)} ${c.rps.toFixed(1).padStart(8)} ${c.p50.toFixed(0).padStart(7)} ${c.p99.toFixed(0).padStart(7)} ${c.api.toFixed(0).padStart(11)} ${c.worker.toFixed(0).padStart(14)} ${c.redis.toFixed(1).padStart(14)}`,
          );
        });
      }
    }
  }),
);
await checkpointing;
await pool.close();
redis.disconnect();
await stack.stop();

const first = checkpoints[0];
const last = checkpoints.at(-1);
const broken: string[] = [];
if (failures.size > 0)
  broken.push(`failed requests: ${[...failures].map(([k, v]) => `${k} ×${v}`).join(", ")}`);
if (first && last && last !== first) {
  for (const p of ["api", "worker"] as const) {
    const growth = last[p] / first[p] - 1;
    console.log(
      `${p} RSS after ${last.done}: ${last[p].toFixed(0)} MB, ${(growth * 100).toFixed(1)}% vs after ${first.done} (${first[p].toFixed(0)} MB)`,
    );
    if (growth > RSS_GROWTH_ALLOWED) broken.push(`${p} RSS grew ${(growth * 100).toFixed(1)}%`);
  }
}
console.log(broken.length === 0 ? "soak: memory stayed flat" : `soak: BROKEN: ${broken.join("; ")}`);
process.exit(broken.length === 0 ? 0 : 1);
