import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { generateVaeModel } from "@hybrid/model-tools";
import { encodeFromFloat32 } from "@hybrid/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VaeRuntime } from "./vae-runtime.ts";

let dir: string;
let runtime: VaeRuntime;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "vae-runtime-"));
  await generateVaeModel({ family: "sd-v1", outDir: join(dir, "taesd"), arch: "taesd", withEncoder: false });
  await generateVaeModel({ family: "flux", outDir: join(dir, "flux") });
  runtime = await VaeRuntime.open(
    [
      { id: "taesd", dir: join(dir, "taesd") },
      { id: "flux", dir: join(dir, "flux") },
    ],
    // One ORT thread leaves a core to the main thread on this 2-core machine: the test is about
    // session.run not blocking the event loop, not about CPU starvation.
    { threads: 1, providers: ["cpu"], intraOpThreads: 1 },
  );
}, 120_000);

afterAll(async () => {
  await runtime?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const decodeJob = (model: string, shape: number[]) => ({
  kind: "decode" as const,
  model,
  input: "unused",
  shape,
  dtype: "float32" as const,
  scaling: null,
  packed: null,
  output: { kind: "uint8" as const },
});

describe("VaeRuntime", () => {
  it("reads each model's layout from its config and session metadata", () => {
    const byId = Object.fromEntries(runtime.models.map((m) => [m.id, m]));
    expect(byId.taesd).toMatchObject({
      family: "sd-v1",
      latent_channels: 4,
      latent_rank: 4,
      operations: ["decode"],
      dtype: "float32",
    });
    expect(byId.flux).toMatchObject({
      family: "flux",
      latent_channels: 16,
      shift_factor: 0.1159,
      operations: ["decode", "encode"],
    });
  });

  it("keeps the main thread's event loop responsive (lag <= 50 ms) during a run of >= 1 s", async () => {
    // Grow the latent until one run takes at least a second on this machine.
    let side = 48;
    let ms = 0;
    const lag = monitorEventLoopDelay({ resolution: 10 });
    while (side <= 160) {
      const shape = [1, 4, side, side];
      const input = encodeFromFloat32(new Float32Array(4 * side * side).fill(0.1), "float32");
      lag.reset();
      lag.enable();
      const t0 = performance.now();
      const answer = await runtime.decode(decodeJob("taesd", shape), input);
      ms = performance.now() - t0;
      lag.disable();
      expect(answer.shape).toEqual([1, side * 8, side * 8, 3]);
      if (ms >= 1000) break;
      side += 32;
    }
    expect(ms).toBeGreaterThanOrEqual(1000);
    // monitorEventLoopDelay reports nanoseconds; the max includes the 10 ms sampling resolution.
    expect(lag.max / 1e6).toBeLessThanOrEqual(50);
  }, 120_000);

  it("counts a task's wait for the busy thread apart from its run, and drops one canceled while it waits", async () => {
    const latent = encodeFromFloat32(new Float32Array(16 * 16 * 16).fill(0.1), "float32");
    const job = decodeJob("flux", [1, 16, 16, 16]);
    const canceled = new AbortController();
    // One thread: the second decode waits for the first's whole run, the third is canceled meanwhile.
    const first = runtime.decode(job, latent);
    const second = runtime.decode(job, latent);
    const third = runtime.decode(job, latent, canceled.signal);
    canceled.abort(new Error("canceled"));
    await expect(third).rejects.toThrow("canceled");
    const [a, b] = await Promise.all([first, second]);
    expect(b.waitMs!).toBeGreaterThanOrEqual(a.modelMs!);
    expect(b.waitMs!).toBeGreaterThan(a.waitMs!);
    expect(b.bytes).toEqual(a.bytes);
  });

  it("rejects a job for a model it does not serve with unknown_model", async () => {
    await expect(runtime.decode(decodeJob("nope", [1, 4, 2, 2]), new Uint8Array(64))).rejects.toMatchObject({
      code: "unknown_model",
    });
  });
});
