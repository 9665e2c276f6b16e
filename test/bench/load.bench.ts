// `pnpm bench:load`: N sync decodes of a 1x4x32x32 float32 latent (uint8 256x256 answer,
// `output_type=pt&partial_postprocess=True`) for the tiny generated SD VAE, sent by C concurrent
// keep-alive clients (undici) to one API + one worker on a redis-server of their own. Prints
// req/s, p50, p99, errors, CPU per request of the API, the worker and Redis, and the API's RSS idle,
// after the warm-up and after the load.
//
// `--against <checkout>` runs the same load against another checkout of this repository side by
// side: each tree gets a stack of its own (its redis-server, API and worker, started from that
// tree's sources), both serve the same model files, both are warmed up, then the rounds run
// alternately (A, B, A, B, ...) so that the machine's noise falls on both, and the ratios are
// printed. E.g. against the Foundation:
//   git worktree add ../foundation b57d47f && (cd ../foundation && pnpm install --frozen-lockfile)
//   nice -n 10 pnpm bench:load -- --against ../foundation
//
// Options: --requests N (6000, per tree, split over the rounds), --clients C (200), --rounds R
// (1 alone, 4 with --against), --warmup W (requests per tree before measuring, 400),
// --log-level (warn, both processes).
import { execFileSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { generateDefaultModels } from "@hybrid/model-tools";
import { Pool } from "undici";
import { repoRoot } from "../../scripts/lib.ts";
import { TEST_MODELS_DIR } from "../e2e/stack.ts";
import { fmt, pct, processCpuMs } from "./bench-utils.ts";
import { SMALL_DECODE_MODEL, sendSmallDecode } from "./small-decode.ts";
import { rssMb, startTreeStack, type TreeStack } from "./tree-stack.ts";

const { values: opt } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    requests: { type: "string", default: "6000" },
    clients: { type: "string", default: "200" },
    rounds: { type: "string" },
    warmup: { type: "string", default: "400" },
    against: { type: "string" },
    "log-level": { type: "string", default: "warn" },
  },
});
const REQUESTS = Number(opt.requests);
const CLIENTS = Number(opt.clients);
const ROUNDS = Number(opt.rounds ?? (opt.against ? 4 : 1));
const WARMUP = Number(opt.warmup);

const MODEL = SMALL_DECODE_MODEL;

interface Round {
  ok: number;
  errors: number;
  /** Answers by status other than 200 (or the error's name), for the report. */
  failures: Map<string, number>;
  latencies: number[];
  wallMs: number;
  apiCpuMs: number;
  workerCpuMs: number;
  redisCpuMs: number;
}

/** Sends `n` decodes from `clients` concurrent request loops over keep-alive connections. */
async function load(stack: TreeStack, n: number, clients: number): Promise<Round> {
  const pool = new Pool(stack.baseUrl, {
    connections: clients,
    headersTimeout: 600_000,
    bodyTimeout: 600_000,
  });
  const round: Round = {
    ok: 0,
    errors: 0,
    failures: new Map(),
    latencies: [],
    wallMs: 0,
    apiCpuMs: 0,
    workerCpuMs: 0,
    redisCpuMs: 0,
  };
  const fail = (why: string) => {
    round.errors++;
    round.failures.set(why, (round.failures.get(why) ?? 0) + 1);
  };
  let sent = 0;
  const api0 = processCpuMs(stack.api.pid);
  const worker0 = processCpuMs(stack.worker.pid);
  const redis0 = processCpuMs(stack.redis.pid);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(clients, n) }, async () => {
      while (sent < n) {
        sent++;
        const t = performance.now();
        const failed = await sendSmallDecode(pool);
        if (failed) fail(failed);
        else {
          round.ok++;
          round.latencies.push(performance.now() - t);
        }
      }
    }),
  );
  round.wallMs = performance.now() - t0;
  round.apiCpuMs = processCpuMs(stack.api.pid) - api0;
  round.workerCpuMs = processCpuMs(stack.worker.pid) - worker0;
  round.redisCpuMs = processCpuMs(stack.redis.pid) - redis0;
  await pool.close();
  return round;
}

/** Waits until the stack answers one decode 200 (the worker has loaded the model). */
async function firstAnswer(stack: TreeStack): Promise<void> {
  const until = Date.now() + 180_000;
  for (;;) {
    const r = await load(stack, 1, 1);
    if (r.ok === 1) return;
    if (Date.now() > until) throw new Error(`${stack.name}: no decode answered: ${[...r.failures.keys()]}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

interface Side {
  stack: TreeStack;
  rounds: Round[];
  rssIdle: number;
  rssWarm: number;
  rssAfter: number;
}

interface Summary {
  rps: number;
  p50: number;
  p99: number;
  ok: number;
  errors: number;
  failures: string;
  apiCpu: number;
  workerCpu: number;
  redisCpu: number;
}

function summarize(rounds: Round[]): Summary {
  const lat = rounds.flatMap((r) => r.latencies);
  const ok = rounds.reduce((a, r) => a + r.ok, 0);
  const all = rounds.reduce((a, r) => a + r.ok + r.errors, 0);
  const failures = new Map<string, number>();
  for (const r of rounds) for (const [k, v] of r.failures) failures.set(k, (failures.get(k) ?? 0) + v);
  return {
    rps: (ok * 1000) / rounds.reduce((a, r) => a + r.wallMs, 0),
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    ok,
    errors: rounds.reduce((a, r) => a + r.errors, 0),
    failures: [...failures].map(([k, v]) => `${k}×${v}`).join(" "),
    apiCpu: rounds.reduce((a, r) => a + r.apiCpuMs, 0) / all,
    workerCpu: rounds.reduce((a, r) => a + r.workerCpuMs, 0) / all,
    redisCpu: rounds.reduce((a, r) => a + r.redisCpuMs, 0) / all,
  };
}

/** The checkout's commit, for the report. */
const gitHead = (root: string) => {
  try {
    return execFileSync("git", ["-C", root, "log", "-1", "--format=%h %s"], { encoding: "utf8" })
      .trim()
      .slice(0, 70);
  } catch {
    return "?";
  }
};

await generateDefaultModels(TEST_MODELS_DIR);
const models = `${MODEL}=${join(TEST_MODELS_DIR, MODEL)}`;
const trees = [{ name: "this", root: repoRoot }];
if (opt.against) trees.push({ name: "against", root: resolve(opt.against) });

console.log(
  `load bench: ${REQUESTS} sync decodes of 1x4x32x32 float32 (${MODEL}) per tree at ${CLIENTS} clients, ` +
    `${ROUNDS} round(s), warm-up ${WARMUP}; ${cpus().length} CPUs, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} at start.`,
);
console.log(
  "Each stack: its own redis-server, one API, one worker (default settings). The machine may be shared: " +
    "the load average above and the alternating rounds say how much noise to expect.",
);
for (const t of trees) console.log(`  ${t.name}: ${t.root} (${gitHead(t.root)})`);

const sides: Side[] = [];
try {
  for (const t of trees) {
    const stack = await startTreeStack({ ...t, models, logLevel: opt["log-level"] });
    sides.push({ stack, rounds: [], rssIdle: Number.NaN, rssWarm: Number.NaN, rssAfter: Number.NaN });
  }
  for (const s of sides) {
    await firstAnswer(s.stack);
    s.rssIdle = rssMb(s.stack.api.pid);
    await load(s.stack, WARMUP, CLIENTS);
    s.rssWarm = rssMb(s.stack.api.pid);
  }
  const perRound = Math.ceil(REQUESTS / ROUNDS);
  for (let r = 0; r < ROUNDS; r++)
    for (const s of sides) {
      const round = await load(s.stack, perRound, CLIENTS);
      s.rounds.push(round);
      const sum = summarize([round]);
      console.log(
        `  round ${r + 1} ${s.stack.name.padEnd(7)} ${fmt(sum.rps)} req/s  p50 ${fmt(sum.p50, 0)} ms  ` +
          `p99 ${fmt(sum.p99, 0)} ms  errors ${sum.errors}  (load average ${loadavg()[0]!.toFixed(2)})`,
      );
    }
  for (const s of sides) s.rssAfter = rssMb(s.stack.api.pid);

  console.log(
    `\n${"tree".padEnd(8)} ${"req/s".padStart(7)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)} ` +
      `${"ok".padStart(6)} ${"errors".padStart(6)} ${"api cpu/req".padStart(11)} ${"wrk cpu/req".padStart(11)} ${"rds cpu/req".padStart(11)} ` +
      `${"API RSS MB: idle".padStart(16)} ${"warm".padStart(6)} ${"after".padStart(6)}`,
  );
  const sums = sides.map((s) => summarize(s.rounds));
  sides.forEach((s, i) => {
    const m = sums[i]!;
    console.log(
      `${s.stack.name.padEnd(8)} ${fmt(m.rps).padStart(7)} ${fmt(m.p50, 0).padStart(7)} ${fmt(m.p99, 0).padStart(7)} ` +
        `${String(m.ok).padStart(6)} ${String(m.errors).padStart(6)} ${`${fmt(m.apiCpu, 2)} ms`.padStart(11)} ` +
        `${`${fmt(m.workerCpu, 2)} ms`.padStart(11)} ${`${fmt(m.redisCpu, 2)} ms`.padStart(11)} ${fmt(s.rssIdle, 0).padStart(16)} ${fmt(s.rssWarm, 0).padStart(6)} ` +
        `${fmt(s.rssAfter, 0).padStart(6)}${m.failures ? `  failures: ${m.failures}` : ""}`,
    );
  });
  if (sides.length === 2) {
    const [a, b] = sums as [Summary, Summary];
    console.log(
      `\nthis / against: req/s ×${fmt(a.rps / b.rps, 2)}, p50 ×${fmt(a.p50 / b.p50, 2)}, ` +
        `p99 ×${fmt(a.p99 / b.p99, 2)}, API RSS after ×${fmt(sides[0]!.rssAfter / sides[1]!.rssAfter, 2)}, ` +
        `API CPU/req ×${fmt(a.apiCpu / b.apiCpu, 2)}, worker CPU/req ×${fmt(a.workerCpu / b.workerCpu, 2)}, ` +
        `Redis CPU/req ×${fmt(a.redisCpu / b.redisCpu, 2)}`,
    );
  }
  console.log(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
} finally {
  await Promise.all(sides.map((s) => s.stack.stop()));
}
