// `pnpm bench`: what the queue costs. A sync decode through API + Redis + worker against
// session.run of the same model in this process, for a 512x512 SD-family decode, with the tiny
// generated model (queue overhead dominates) and with a TAESD-architecture model (realistic
// compute). Measurements alternate between the two paths so machine noise hits both alike; the
// output is ratios from this one run.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { generateVaeModel } from "@hybrid/inference";
import { encodeFromFloat32 } from "@hybrid/protocol";
import * as ort from "onnxruntime-node";
import { Agent, request } from "undici";
import { pythonQuery } from "../e2e/diffusers-client.ts";
import { startStack, TEST_MODELS_DIR } from "../e2e/stack.ts";
import { pct } from "./bench-utils.ts";

const models = [
  {
    id: "bench-tiny",
    arch: "tiny" as const,
    rounds: Number(process.env.BENCH_ROUNDS_TINY ?? 30),
    goal: 1.25,
  },
  {
    id: "bench-taesd",
    arch: "taesd" as const,
    rounds: Number(process.env.BENCH_ROUNDS_TAESD ?? 16),
    goal: 1.02,
  },
];

/** `Server-Timing: name;dur=1.5, ...` → name → ms. */
function parseServerTiming(header: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of header.matchAll(/([\w-]+);dur=([\d.]+)/g)) out.set(m[1]!, Number(m[2]));
  return out;
}
for (const m of models) {
  const dir = join(TEST_MODELS_DIR, m.id);
  if (!existsSync(join(dir, "vae_decoder", "model.onnx")))
    await generateVaeModel({ family: "sd-v1", outDir: dir, arch: m.arch, withEncoder: false });
}

const shape = [1, 4, 64, 64];
const values = Float32Array.from({ length: 4 * 64 * 64 }, (_, i) => Math.sin(i * 0.37) * 2);
const body = encodeFromFloat32(values, "float32");
const query = pythonQuery({
  image_format: "jpg",
  output_type: "pt",
  partial_postprocess: true,
  shape,
  dtype: "float32",
});

const stack = await startStack({
  MODELS: models.map((m) => `${m.id}=${join(TEST_MODELS_DIR, m.id)}`).join(","),
  GENERATE_DEFAULT_MODELS: "false",
  LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "warn",
  // Worker settings to compare (e.g. ORT_ALLOW_SPINNING=false pnpm bench) pass through.
  ...Object.fromEntries(
    ["ORT_INTRA_OP_THREADS", "ORT_ALLOW_SPINNING", "SESSION_THREADS", "CONCURRENCY"].flatMap((k) =>
      process.env[k] ? [[k, process.env[k]]] : [],
    ),
  ),
});
// A keep-alive client with little overhead of its own (undici's request: Node's fetch spends
// ~2 ms more of its own per 786 KB answer here), so what is measured is the service.
const client = new Agent({ connections: 1 });
const rows: string[] = [];
try {
  for (const m of models) {
    const session = await ort.InferenceSession.create(
      join(TEST_MODELS_DIR, m.id, "vae_decoder", "model.onnx"),
      {
        executionProviders: ["cpu"],
        graphOptimizationLevel: "all",
      },
    );
    const feeds = { latent_sample: new ort.Tensor("float32", values, shape) };
    // ORT's threads spin for a while after a run: let them settle so neither path slows the other.
    const settle = () => new Promise((r) => setTimeout(r, 50));
    const inProcess = async () => {
      await settle();
      const t0 = performance.now();
      await session.run(feeds);
      return performance.now() - t0;
    };
    const phases = new Map<string, number[]>();
    const endToEnd = async () => {
      await settle();
      const t0 = performance.now();
      const res = await request(`${stack.baseUrl}/v1/vae/${m.id}/decode?${query}`, {
        method: "POST",
        headers: { "Content-Type": "tensor/binary", Accept: "tensor/binary" },
        body,
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
      `${m.id.padEnd(12)} rounds=${String(m.rounds).padEnd(3)} e2e/in-process p50 ${r50.toFixed(3)}x  p95 ${r95.toFixed(3)}x  ` +
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
