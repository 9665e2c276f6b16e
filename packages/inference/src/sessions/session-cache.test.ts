import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateVaeModel } from "@hybrid/model-tools";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getSession, releaseSessions } from "./session-cache.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sessions-"));
  await generateVaeModel({ family: "sd-v1", outDir: dir, withEncoder: false });
});
afterAll(async () => {
  await releaseSessions();
  await rm(dir, { recursive: true, force: true });
});

describe("getSession", () => {
  const path = () => join(dir, "vae_decoder", "model.onnx");

  it("falls back to cpu when the CUDA provider's libraries are not installed", async () => {
    // The npm package ships only the CPU provider; these machines never download the CUDA one.
    const s = await getSession(path(), { providers: ["cuda", "cpu"], intraOpThreads: 0 });
    expect(s.providers).toEqual(["cpu"]);
    expect(s.requested).toEqual(["cuda", "cpu"]);
    expect(s.fallback).toMatch(/^cuda: libonnxruntime_providers_cuda\.so is not installed$/);
    expect(s.inputs[0]).toMatchObject({ name: "latent_sample", type: "float32" });
    expect(s.inputs[0]!.shape).toHaveLength(4);
    expect(s.outputs[0]!.name).toBe("sample");
  });

  it("creates a session once and hands the same one out again", async () => {
    const a = await getSession(path(), { providers: ["cpu"], intraOpThreads: 1 });
    const b = await getSession(path(), { providers: ["cpu"], intraOpThreads: 1 });
    expect(a.session).toBe(b.session);
  });

  it("does not cache a failed load: the next call tries again", async () => {
    const later = join(dir, "later.onnx");
    await expect(getSession(later, { providers: ["cpu"], intraOpThreads: 0 })).rejects.toThrow();
    await copyFile(path(), later);
    await expect(getSession(later, { providers: ["cpu"], intraOpThreads: 0 })).resolves.toMatchObject({
      providers: ["cpu"],
    });
  });
});
