// `pnpm bench:crash`: how long a client waits when workers die under it. N sync decodes from C
// concurrent clients against 3 workers with a 4 s job lock, while a worker is `kill -9`ed every
// ~2 s and replaced. Prints whether every answer was correct and the latency distribution as
// multiples of the lock duration (BullMQ's default stalled-job check alone would take up to 30 s
// to hand a dead worker's job on, whatever the lock).
import type { ChildProcess } from "node:child_process";
import { encodeFromFloat32 } from "@hybrid/protocol";
import { pythonQuery } from "../e2e/diffusers-client.ts";
import { startStack } from "../e2e/stack.ts";
import { pct } from "./bench-utils.ts";

const N = Number(process.env.BENCH_CRASH_REQUESTS ?? 300);
const CLIENTS = Number(process.env.BENCH_CRASH_CLIENTS ?? 6);
const LOCK_MS = 4000;
const KILL_EVERY_MS = 2000;

// A 128x128 output from 1x4x16x16 latents: a few ms of compute, so the queue and the crashes dominate.
const inputs = [1, 2, 3].map((seed) => {
  const values = Float32Array.from({ length: 4 * 16 * 16 }, (_, i) => Math.sin(i * 0.37 * seed) * 2);
  return encodeFromFloat32(values, "float32");
});
const query = pythonQuery({
  output_type: "pt",
  partial_postprocess: true,
  shape: [1, 4, 16, 16],
  dtype: "float32",
});

const stack = await startStack({}, { worker: { LOCK_DURATION_MS: String(LOCK_MS), SESSION_THREADS: "1" } });
const decode = (i: number) =>
  fetch(`${stack.baseUrl}/v1/vae/sd-v1-tiny/decode?${query}`, {
    method: "POST",
    headers: { "Content-Type": "tensor/binary" },
    body: inputs[i % inputs.length]!,
  }).then(async (r) => ({ status: r.status, bytes: Buffer.from(await r.arrayBuffer()) }));

try {
  const expected = await Promise.all(inputs.map((_, i) => decode(i).then((r) => r.bytes)));
  await Promise.all([stack.addWorker(), stack.addWorker()]);

  let killing = true;
  let kills = 0;
  const killer = (async () => {
    while (killing) {
      await new Promise((r) => setTimeout(r, KILL_EVERY_MS));
      if (!killing) break;
      const alive = stack.workers.filter((w) => w.exitCode === null && w.signalCode === null);
      const victim: ChildProcess | undefined = alive[Math.floor(Math.random() * alive.length)];
      if (!victim || alive.length < 2) continue;
      victim.kill("SIGKILL");
      kills++;
      void stack.addWorker().catch(() => {});
    }
  })();

  const latencies: number[] = [];
  let wrong = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < N) {
        const i = next++;
        const t = performance.now();
        const r = await decode(i);
        latencies.push(performance.now() - t);
        if (r.status !== 200 || !r.bytes.equals(expected[i % inputs.length]!)) wrong++;
      }
    }),
  );
  const wall = performance.now() - t0;
  killing = false;
  await killer;

  const slowest = Math.max(...latencies);
  const x = (ms: number) => `${(ms / LOCK_MS).toFixed(2)}× lock`;
  console.log(
    `\n${N} sync decodes, ${CLIENTS} clients, 3 workers, LOCK_DURATION_MS=${LOCK_MS}, ${kills} kill -9 over ${(wall / 1000).toFixed(0)} s`,
  );
  console.log(`correct answers: ${N - wrong}/${N}`);
  console.log(`latency p50 ${x(pct(latencies, 50))}, p99 ${x(pct(latencies, 99))}, slowest ${x(slowest)}`);
  console.log(
    `goal: slowest <= 2.5× lock (a dead worker's job runs again within ~1.5× lock): ${slowest <= 2.5 * LOCK_MS ? "met" : "NOT met"}`,
  );
  if (wrong > 0) process.exitCode = 1;
} finally {
  await stack.stop();
}
