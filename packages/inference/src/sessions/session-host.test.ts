import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateVaeModel } from "@hybrid/model-tools";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionHost } from "./session-host.ts";
import type { DecodeTask } from "./thread-protocol.ts";

let dir: string;
let host: SessionHost;
const decoder = (m: string) => join(dir, m, "vae_decoder", "model.onnx");
const decode = (m: string): DecodeTask => ({
  op: "decode",
  path: decoder(m),
  input: new Uint8Array(4 * 16 * 16 * 4),
  shape: [1, 4, 16, 16],
  dtype: "float32",
  scaling: null,
  packed: null,
  output: { kind: "uint8" },
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "session-host-"));
  for (const m of ["a", "b", "c"])
    await generateVaeModel({ family: "sd-v1", outDir: join(dir, m), arch: "taesd", withEncoder: m === "a" });
  host = new SessionHost({ threads: 2, providers: ["cpu"], intraOpThreads: 1 });
}, 120_000);

afterAll(async () => {
  await host?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("SessionHost", () => {
  it("pins each pinned model to one thread, the least loaded at its first task", async () => {
    for (const m of ["a", "b", "c"]) host.pin(join(dir, m));
    await host.describe(decoder("a"));
    await host.describe(decoder("b"));
    await host.describe(join(dir, "a", "vae_encoder", "model.onnx"));
    await host.describe(decoder("c"));
    const homes = new Map(host.models.map((m) => [m.dir, m]));
    expect(homes.get(join(dir, "a"))?.thread).toBe(0);
    expect(homes.get(join(dir, "b"))?.thread).toBe(1);
    // Two models on thread 0 once c came: it went to the thread holding fewer (a tie: the first).
    expect(homes.get(join(dir, "c"))?.thread).toBe(0);
    // Both of a's graphs are held by a's thread, each once.
    expect([...homes.get(join(dir, "a"))!.sessions.keys()].sort()).toEqual([
      decoder("a"),
      join(dir, "a", "vae_encoder", "model.onnx"),
    ]);
    expect(homes.get(join(dir, "a"))!.sessions.get(decoder("a"))).toEqual({
      providers: ["cpu"],
      requested: ["cpu"],
      fallback: null,
    });
  });

  it("runs one model's tasks one after another on its thread; two models side by side", async () => {
    // Two tasks of one model: one thread works, the other stays free (no second copy is loaded).
    const same = [host.run(decode("a")), host.run(decode("a"))];
    expect(host.freeThreads).toBe(1);
    expect(host.isFree({ path: decoder("b") })).toBe(true);
    expect(host.isFree({ path: decoder("c") })).toBe(false);
    await Promise.all(same);
    expect(host.freeThreads).toBe(2);
    // Models on different threads run at the same time.
    const apart = [host.run(decode("a")), host.run(decode("b"))];
    expect(host.freeThreads).toBe(0);
    const results = await Promise.all(apart);
    expect(results.map((r) => r.kind)).toEqual(["tensor", "tensor"]);
    expect(host.models).toHaveLength(3);
  });

  it("runs a model nobody pinned (a VAE) on every thread", async () => {
    const other = new SessionHost({ threads: 2, providers: ["cpu"], intraOpThreads: 1 });
    try {
      const both = [other.run(decode("b")), other.run(decode("b"))];
      expect(other.freeThreads).toBe(0);
      await Promise.all(both);
      expect(other.freeThreads).toBe(2);
      expect(other.isFree({ path: decoder("b") })).toBe(true);
      expect(other.models.find((m) => m.dir === join(dir, "b"))?.thread).toBeNull();
    } finally {
      await other.close();
    }
  });
});
