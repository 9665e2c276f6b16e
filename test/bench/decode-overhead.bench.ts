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
import { pythonQuery } from "../e2e/diffusers-client.ts";
import { startStack, TEST_MODELS_DIR } from "../e2e/stack.ts";
import { pct } from "./bench-utils.ts";

const models = [
  { id: "bench-tiny", arch: "tiny" as const, rounds: Number(process.env.BENCH_ROUNDS_TINY ?? 30) },
  { id: "bench-taesd", arch: "taesd" as const, rounds: Number(process.env.BENCH_ROUNDS_TAESD ?? 16) },
];
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
});
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
    const endToEnd = async () => {
      await settle();
      const t0 = performance.now();
      const res = await fetch(`${stack.baseUrl}/v1/vae/${m.id}/decode?${query}`, {
        method: "POST",
        headers: { "Content-Type": "tensor/binary", Accept: "tensor/binary" },
        body,
      });
      const bytes = await res.arrayBuffer();
      if (res.status !== 200 || bytes.byteLength !== 512 * 512 * 3)
        throw new Error(`bad answer ${res.status}`);
      return performance.now() - t0;
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
    rows.push(
      `${m.id.padEnd(12)} rounds=${String(m.rounds).padEnd(3)} e2e/in-process p50 ${r50.toFixed(3)}x  p95 ${r95.toFixed(3)}x  ` +
        `(overhead p50 ${(pct(b, 50) - pct(a, 50)).toFixed(1)} ms on a ${pct(a, 50).toFixed(1)} ms run)`,
    );
  }
} finally {
  await stack.stop();
}
console.log("\n512x512 SD-family decode, output_type=pt partial_postprocess=True, float32 latents");
for (const r of rows) console.log(r);
console.log("goal: bench-taesd p50 ratio <= 1.05x");
process.exit(0);
