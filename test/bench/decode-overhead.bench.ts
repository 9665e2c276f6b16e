// `pnpm bench`: what the queue costs. A sync decode through API + Redis + worker against
// session.run of the same model in this process, for a 512x512 SD-family decode, with the tiny
// generated model (queue overhead dominates) and with a TAESD-architecture model (realistic
// compute). Measurements alternate between the two paths so machine noise hits both alike; the
// output is ratios from this one run.
import { Agent, request } from "undici";
import { startStack } from "../e2e/stack.ts";
import { inProcessProviders, pct, workerProviders } from "./bench-utils.ts";
import {
  BENCH_VAES,
  bareSession,
  benchVaesEnv,
  DECODE_BODY,
  DECODE_QUERY,
  ensureBenchVaes,
} from "./decode-workload.ts";

const rounds = {
  "bench-tiny": Number(process.env.BENCH_ROUNDS_TINY ?? 30),
  "bench-taesd": Number(process.env.BENCH_ROUNDS_TAESD ?? 16),
};
const goals = { "bench-tiny": 1.25, "bench-taesd": 1.02 };
const models = BENCH_VAES.map((m) => ({ id: m.id, rounds: rounds[m.id], goal: goals[m.id] }));

/** `Server-Timing: name;dur=1.5, ...` → name → ms. */
function parseServerTiming(header: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of header.matchAll(/([\w-]+);dur=([\d.]+)/g)) out.set(m[1]!, Number(m[2]));
  return out;
}
await ensureBenchVaes();

const stack = await startStack({
  MODELS: benchVaesEnv(),
  GENERATE_DEFAULT_MODELS: "false",
  LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warn",
  // Worker settings to compare (e.g. ORT_ALLOW_SPINNING=false pnpm bench) pass through.
  ...Object.fromEntries(
    [
      "ORT_INTRA_OP_THREADS",
      "ORT_ALLOW_SPINNING",
      "SESSION_THREADS",
      "CONCURRENCY",
      "EXECUTION_PROVIDERS",
    ].flatMap((k) => (process.env[k] ? [[k, process.env[k]]] : [])),
  ),
});
// A keep-alive client with little overhead of its own (undici's request: Node's fetch spends
// ~2 ms more of its own per 786 KB answer here), so what is measured is the service.
const client = new Agent({ connections: 1 });
const rows: string[] = [];
try {
  // Both paths run on the provider the worker got (cpu here; cuda on a GPU machine).
  const providers = await workerProviders(stack.baseUrl);
  for (const m of models) {
    const provider = providers[m.id] ?? "unknown";
    const session = await bareSession(m.id, inProcessProviders(provider));
    // ORT's threads spin for a while after a run: let them settle so neither path slows the other.
    const settle = () => new Promise((r) => setTimeout(r, 50));
    const inProcess = async () => {
      await settle();
      const t0 = performance.now();
      await session.run();
      return performance.now() - t0;
    };
    const phases = new Map<string, number[]>();
    const endToEnd = async () => {
      await settle();
      const t0 = performance.now();
      const res = await request(`${stack.baseUrl}/v1/vae/${m.id}/decode?${DECODE_QUERY}`, {
        method: "POST",
        headers: { "Content-Type": "tensor/binary", Accept: "tensor/binary" },
        body: DECODE_BODY,
        dispatcher: client,
      });
      const bytes = await res.body.arrayBuffer();
      if (res.statusCode !== 200 || bytes.byteLength !== 512 * 512 * 3)
        throw new Error(`bad answer ${res.statusCode}`);
      const total = performance.now() - t0;
      // The server's own breakdown; what it does not account for is HTTP (both ends) and body parsing.
      const timing = parseServerTiming(String(res.headers["server-timing"] ?? ""));
      timing.set("http", total - [...timing.values()].reduce((a, b) => a + b, 0));
      for (const [k, v] of timing) phases.set(k, [...(phases.get(k) ?? []), v]);
      return total;
    };
    // Warm both paths (session creation, first-run allocations, connections).
    for (let i = 0; i < 3; i++) {
      await inProcess();
      await endToEnd();
    }
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < m.rounds; i++) {
      a.push(await inProcess());
      b.push(await endToEnd());
    }
    await session.release();
    const r50 = pct(b, 50) / pct(a, 50);
    const r95 = pct(b, 95) / pct(a, 95);
    const goal = m.goal === undefined ? "" : `  goal <= ${m.goal}x: ${r50 <= m.goal ? "met" : "NOT met"}`;
    rows.push(
      `${m.id.padEnd(12)} provider=${provider} rounds=${String(m.rounds).padEnd(3)} e2e/in-process p50 ${r50.toFixed(3)}x  p95 ${r95.toFixed(3)}x  ` +
        `(overhead p50 ${(pct(b, 50) - pct(a, 50)).toFixed(1)} ms on a ${pct(a, 50).toFixed(1)} ms run)${goal}`,
      `${"".padEnd(12)} p50 per phase, ms: ${[...phases].map(([k, v]) => `${k} ${pct(v, 50).toFixed(2)}`).join(" | ")}`,
    );
  }
} finally {
  await client.close();
  await stack.stop();
}
console.log("\n512x512 SD-family decode, output_type=pt partial_postprocess=True, float32 latents");
for (const r of rows) console.log(r);
process.exit(0);
