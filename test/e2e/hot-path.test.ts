// The hot path pays only for what a request uses (issue 12, point 12): a plain sync decode sends
// few Redis commands, and once requests are answered the service goes back to idle (no pollers,
// listeners or timers left behind). Counted with MONITOR on a redis-server of this file's own,
// so every command is the stack's; background traffic (heartbeats, BullMQ's blocking reads and
// stalled checks) is measured over an idle window and subtracted.
import type { ChildProcess } from "node:child_process";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startRedisServer, stop, waitFor } from "../../scripts/lib.ts";
import { latents } from "./fixtures.ts";
import { decodeRequest } from "./jobs-client.ts";
import { type CommandCount, lessBackground, RedisMonitor } from "./redis-monitor.ts";
import { type Stack, startStack } from "./stack.ts";

/** The budget of issue 12 for a plain sync job, a script counting as one command. */
const MAX_COMMANDS_PER_SYNC_DECODE = 30;
// Measurement windows (not waits for a condition: what is measured is what happens in them).
const IDLE_WINDOW_MS = 4000;
/** How long a window stays open past the last answer, for the worker's bookkeeping of the job. */
const SETTLE_MS = 1500;
/** Idle enough to measure the baseline: fewer commands than this in one second. */
const QUIET_PER_SECOND = 20;

const small = { tensor: latents([1, 4, 8, 8]).tensor, output_type: "pt" as const, partial_postprocess: true };

let redis: ChildProcess;
let stack: Stack;
let monitor: RedisMonitor;
let idle: CommandCount;

const windowOf = async (ms: number): Promise<CommandCount> => {
  const from = await monitor.fence();
  await new Promise((r) => setTimeout(r, ms));
  return monitor.count(from, await monitor.fence());
};

/** The answer's status, its body read to the end (the request is over only then). */
async function statusOf(res: Response): Promise<number> {
  await res.arrayBuffer();
  return res.status;
}

async function syncDecode(): Promise<void> {
  expect(await statusOf(await decodeRequest(stack.baseUrl, small))).toBe(200);
}

/** `nodejs_active_resources{type="Timeout"}` of the API (prom-client's default metrics). */
async function apiTimers(): Promise<number> {
  // A client of its own, closed after: its keep-alive socket must not count as the API's.
  const agent = new Agent();
  try {
    const res = await request(`${stack.baseUrl}/metrics`, { dispatcher: agent });
    const text = await res.body.text();
    const m = /^nodejs_active_resources\{type="Timeout"\} (\d+)/m.exec(text);
    return m ? Number(m[1]) : 0;
  } finally {
    await agent.close();
  }
}

beforeAll(async () => {
  const port = await freePort();
  redis = await startRedisServer(port);
  const url = `redis://127.0.0.1:${port}`;
  stack = await startStack({ REDIS_URL: url });
  monitor = await RedisMonitor.open(url);
  // The first decode loads the model; its answer means the worker serves the queue.
  await waitFor(
    async () => (await statusOf(await decodeRequest(stack.baseUrl, small))) === 200,
    120_000,
    "a first decode answered",
  );
  // Whatever the warm-up left running ends first (today: a 5 s poller).
  await waitFor(async () => (await windowOf(1000)).total < QUIET_PER_SECOND, 60_000, "the stack to go quiet");
  idle = await windowOf(IDLE_WINDOW_MS);
});

afterAll(async () => {
  monitor?.close();
  await stack?.stop();
  await stop(redis, 2000);
});

describe("the hot path of a plain sync decode", () => {
  it(`sends at most ${MAX_COMMANDS_PER_SYNC_DECODE} Redis commands (a script counts as one)`, async ({
    annotate,
  }) => {
    const n = 5;
    const from = await monitor.fence();
    for (let i = 0; i < n; i++) await syncDecode();
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const window = monitor.count(from, await monitor.fence());
    const net = lessBackground(window, idle);
    const perRequest = net.total / n;
    const byName = Object.fromEntries([...net.byName].map(([k, v]) => [k, Math.round((v / n) * 10) / 10]));
    const report = `${perRequest.toFixed(1)} commands per sync decode: ${JSON.stringify(byName)}`;
    await annotate(report);
    expect(perRequest, report).toBeLessThanOrEqual(MAX_COMMANDS_PER_SYNC_DECODE);
  });

  it("leaves nothing running once 20 requests are answered: Redis traffic returns to idle", async ({
    annotate,
  }) => {
    const timersBefore = await apiTimers();
    await Promise.all(Array.from({ length: 20 }, () => syncDecode()));
    const timersAfter = await apiTimers();
    const after = await windowOf(IDLE_WINDOW_MS);
    const excess = lessBackground(after, idle);
    const report =
      `after 20 answers, ${after.total} commands in ${after.ms.toFixed(0)} ms (idle: ` +
      `${((idle.total * after.ms) / idle.ms).toFixed(0)}); API timers ${timersBefore} -> ${timersAfter}; excess ` +
      JSON.stringify(Object.fromEntries([...excess.byName].filter(([, v]) => v >= 1)));
    await annotate(report);
    // Slack for the worker's bookkeeping of the last job or two, and for a stalled check or
    // heartbeat more than the idle window happened to hold.
    expect(excess.total, report).toBeLessThanOrEqual(30 + 0.5 * idle.total);
    expect(timersAfter, report).toBeLessThanOrEqual(timersBefore + 2);
  });
});
