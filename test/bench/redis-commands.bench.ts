// `pnpm bench:commands`: how many Redis commands each kind of request costs, counted with MONITOR
// on a redis-server of the bench's own (one API, one worker serving the tiny VAE and the tiny SD
// pipeline). A Lua script (EVAL/EVALSHA/FCALL) counts as one command; the commands it runs
// inside are left out. Background traffic (heartbeats, BullMQ's blocking reads and stalled
// checks) is measured over an idle window first and subtracted, scaled to each window's length.
//
// Per kind, K requests go one at a time, then the window stays open for --settle seconds so that
// work a request leaves running after its answer (a poller, a timer) is charged to it. Then a
// burst of requests is answered and the following idle seconds are compared with the idle
// baseline: an idle service must go back to idle.
//
// Options: --requests K (20 per kind), --idle S (8: the idle window, and the window after the
// burst), --settle S (6: longer than the 5 s a left-behind Completions.stored() poll ran),
// --burst B (20), --tree <checkout> (count another checkout of this repository instead, e.g. the
// Foundation commit b57d47f; kinds it does not serve are reported as such).
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { generateDefaultModels } from "@hybrid/model-tools";
import { encodeFromFloat32 } from "@hybrid/protocol";
import sharp from "sharp";
import { repoRoot } from "../../scripts/lib.ts";
import { pythonQuery } from "../e2e/diffusers-client.ts";
import {
  type CommandCount,
  countCommands,
  type Fence,
  lessBackground,
  type MonitoredCommand,
  RedisMonitor,
} from "../e2e/redis-monitor.ts";
import { TEST_MODELS_DIR } from "../e2e/stack.ts";
import { fmt, sleep } from "./bench-utils.ts";
import { startTreeStack } from "./tree-stack.ts";

const { values: opt } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: {
    requests: { type: "string", default: "20" },
    idle: { type: "string", default: "8" },
    settle: { type: "string", default: "6" },
    burst: { type: "string", default: "20" },
    tree: { type: "string" },
  },
});
const K = Number(opt.requests);
const IDLE_MS = Number(opt.idle) * 1000;
const SETTLE_MS = Number(opt.settle) * 1000;
const BURST = Number(opt.burst);
const root = opt.tree ? resolve(opt.tree) : repoRoot;

const VAE = "sd-v1-tiny";
const PIPELINE = "sd-tiny";
const latent = encodeFromFloat32(
  Float32Array.from({ length: 4 * 32 * 32 }, (_, i) => Math.sin(i * 0.37) * 2),
  "float32",
);
const decodeQuery = pythonQuery({
  output_type: "pt",
  partial_postprocess: true,
  shape: [1, 4, 32, 32],
  dtype: "float32",
});
const png = new Uint8Array(
  await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 90, b: 30 } } })
    .png()
    .toBuffer(),
);

await generateDefaultModels(TEST_MODELS_DIR);
const stack = await startTreeStack({
  name: opt.tree ? "tree" : "this",
  root,
  models: [VAE, PIPELINE].map((id) => `${id}=${join(TEST_MODELS_DIR, id)}`).join(","),
});
const base = stack.baseUrl;

/** The answer's status, its body read to the end (the request is over only then). */
async function statusOf(res: Response): Promise<number> {
  await res.arrayBuffer();
  return res.status;
}

const send = async (path: string, init: RequestInit) =>
  statusOf(await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(120_000) }));

const decode = (headers: Record<string, string> = {}) =>
  fetch(`${base}/v1/vae/${VAE}/decode?${decodeQuery}`, {
    method: "POST",
    headers: { "content-type": "tensor/binary", accept: "tensor/binary", ...headers },
    body: latent,
    signal: AbortSignal.timeout(120_000),
  });

interface Kind {
  name: string;
  /** Sends one request; resolves to the final status (the result's, for an async job). */
  run(): Promise<number>;
}

const POLL_MS = 50;
let polls = 0;

const kinds: Kind[] = [
  {
    name: "sync decode",
    run: async () => statusOf(await decode()),
  },
  {
    name: "sync encode",
    run: () => send(`/v1/vae/${VAE}/encode`, { method: "POST", body: png }),
  },
  {
    name: `async decode (202, poll every ${POLL_MS} ms, GET result)`,
    run: async () => {
      const res = await decode({ Prefer: "respond-async" });
      // A 200 means a tree without the async API answered it synchronously: not this kind.
      if (res.status !== 202) return (await statusOf(res)) === 200 ? 501 : res.status;
      const { id } = (await res.json()) as { id: string };
      for (;;) {
        polls++;
        const job = await fetch(`${base}/v1/jobs/${id}`);
        const { status } = (await job.json()) as { status: string };
        if (status === "succeeded") break;
        if (status === "failed" || status === "canceled") return 500;
        await sleep(POLL_MS);
      }
      return send(`/v1/jobs/${id}/result`, {});
    },
  },
  {
    name: "sync text-to-image (64x64, 2 steps, unseeded)",
    run: () =>
      send(`/v1/text-to-image/${PIPELINE}`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "image/png" },
        body: JSON.stringify({
          inputs: "a red car",
          parameters: { width: 64, height: 64, num_inference_steps: 2 },
        }),
      }),
  },
  {
    name: "sync decode with Idempotency-Key",
    run: async () => statusOf(await decode({ "Idempotency-Key": randomUUID() })),
  },
];

/** Waits until `kind` answers 200 (models loaded); false when it never does (not served). */
async function warm(kind: Kind): Promise<boolean> {
  const until = Date.now() + 120_000;
  for (;;) {
    const status = await kind.run();
    if (status === 200) return true;
    // 503 while the worker loads the model; anything else: this tree does not serve the kind.
    if (status !== 503 || Date.now() > until) return false;
    await sleep(500);
  }
}

const perRequest = (c: CommandCount, n: number) => c.total / n;
const breakdown = (c: CommandCount, n: number, min = 0.25) =>
  [...c.byName]
    .map(([name, v]) => [name, v / n] as const)
    .filter(([, v]) => Math.abs(v) >= min)
    .sort((a, b) => b[1] - a[1])
    .map(([name, v]) => `${name} ${fmt(v)}`)
    .join(", ");

/**
 * The pid owning each client connection to the Redis on `port` (`ip:port` as MONITOR names the
 * client), from `ss`; empty where `ss` is missing. The stack's connections stay open, so a
 * snapshot taken after a window names the clients that sent its commands.
 */
function clientPids(port: number): Map<string, number> {
  const out = new Map<string, number>();
  try {
    const rows = execFileSync("ss", ["-tnpH", "dst", `127.0.0.1:${port}`], { encoding: "utf8" });
    for (const row of rows.split("\n")) {
      const m = /(\S+:\d+)\s+\S+:\d+\s+users:\(\("[^"]*",pid=(\d+)/.exec(row);
      if (m) out.set(m[1]!, Number(m[2]));
    }
  } catch {}
  return out;
}

const monitor = await RedisMonitor.open(stack.redisUrl);
try {
  console.log(`redis commands bench: ${stack.name} = ${root}, its own redis-server (${stack.redisUrl})`);
  console.log(
    `${K} requests per kind one at a time, each window open ${SETTLE_MS / 1000} s past the last answer; ` +
      `background from a ${IDLE_MS / 1000} s idle window, scaled; scripts count once, their inner commands not at all.`,
  );
  const served: Kind[] = [];
  for (const k of kinds) {
    if (await warm(k)) served.push(k);
    else console.log(`  ${k.name}: not served by this tree, skipped`);
  }
  // Whatever the warm-up left running must end before the idle window.
  await sleep(SETTLE_MS);
  const idleFrom = await monitor.fence();
  await sleep(IDLE_MS);
  const idleTo = await monitor.fence();
  const idle = monitor.count(idleFrom, idleTo);
  console.log(
    `\nidle: ${idle.total} commands in ${fmt(idle.ms / 1000)} s (${fmt((idle.total * 1000) / idle.ms)}/s): ${breakdown(idle, 1, 1)}`,
  );

  console.log(`\n${"kind".padEnd(50)} ${"commands/request".padStart(16)}  (raw window, background)`);
  let decodeCount: CommandCount | undefined;
  let decodeWindow: [Fence, Fence] | undefined;
  for (const k of served) {
    polls = 0;
    const from: Fence = await monitor.fence();
    let bad = 0;
    for (let i = 0; i < K; i++) if ((await k.run()) !== 200) bad++;
    await sleep(SETTLE_MS);
    const to = await monitor.fence();
    const raw = monitor.count(from, to);
    const net = lessBackground(raw, idle);
    if (k === kinds[0]) {
      decodeCount = net;
      decodeWindow = [from, to];
    }
    console.log(
      `${k.name.padEnd(50)} ${fmt(perRequest(net, K)).padStart(16)}  (${raw.total} in ${fmt(raw.ms / 1000)} s, ` +
        `${fmt(raw.total - net.total, 0)})${polls ? `, ${fmt(polls / K)} polls/request` : ""}${bad ? `, ${bad} not 200` : ""}`,
    );
  }
  if (decodeCount && decodeWindow) {
    console.log(`\nsync decode, per request by command: ${breakdown(decodeCount, K)}`);
    const pids = clientPids(Number(new URL(stack.redisUrl).port));
    const procs = [
      ["API", stack.api.pid],
      ["worker", stack.worker.pid],
    ] as const;
    const of = (cmds: MonitoredCommand[], pid: number | undefined) =>
      cmds.filter((c) => c.source !== "lua" && pids.get(c.source) === pid);
    for (const [name, pid] of procs) {
      const window = countCommands(of(monitor.commands(...decodeWindow), pid), decodeCount.ms);
      const net = lessBackground(window, countCommands(of(monitor.commands(idleFrom, idleTo), pid), idle.ms));
      console.log(`  sent by the ${name}: ${fmt(net.total / K)} per request: ${breakdown(net, K)}`);
    }
  }

  // A burst answered, then nothing should go on: the next seconds must look like the idle window.
  const burstAt = await monitor.fence();
  const statuses = await Promise.all(Array.from({ length: BURST }, () => decode().then(statusOf)));
  const answered = await monitor.fence();
  await sleep(IDLE_MS);
  const after = monitor.count(answered, await monitor.fence());
  const during = monitor.count(burstAt, answered);
  const excess = lessBackground(after, idle);
  console.log(
    `\nburst of ${BURST} sync decodes (${statuses.filter((s) => s === 200).length} answered 200): ` +
      `${during.total} commands until the last answer; in the ${fmt(after.ms / 1000)} s after it: ` +
      `${after.total} commands vs ${fmt((idle.total * after.ms) / idle.ms, 0)} idle (excess ${fmt(excess.total, 0)}: ` +
      `${breakdown(excess, 1, 1)})`,
  );
} finally {
  monitor.close();
  await stack.stop();
}
