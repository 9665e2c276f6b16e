import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "./stack.ts";

const script = fileURLToPath(new URL("./python/remote_decode_check.py", import.meta.url));
const probe = spawnSync("python3", ["-c", "import requests, numpy"], { encoding: "utf8" });
const havePython = probe.status === 0;
if (!havePython) {
  // biome-ignore lint/suspicious/noConsole: a skipped suite must say why in the test output
  console.warn(
    `python-client tests skipped: python3 with requests and numpy is not available (${probe.error?.message ?? probe.stderr.trim()})`,
  );
}

describe.skipIf(!havePython)("a Python client using the real requests library", () => {
  let stack: Stack;
  let results: Record<string, Record<string, unknown>>;

  beforeAll(async () => {
    stack = await startStack();
    const run = spawnSync("python3", [script, stack.baseUrl], { encoding: "utf8", timeout: 60_000 });
    if (run.status !== 0) throw new Error(`python failed: ${run.stderr}`);
    results = JSON.parse(run.stdout);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("sends shape as repeated keys and booleans as True/False", () => {
    const url = new URL(results.pt_uint8!.url as string);
    expect(url.searchParams.getAll("shape")).toEqual(["2", "4", "8", "6"]);
    expect(url.searchParams.get("partial_postprocess")).toBe("True");
    expect(url.searchParams.get("do_scaling")).toBe("True");
  });

  it("gets a PNG of 8h x 8w and a JPEG", () => {
    expect(results.png).toMatchObject({
      status: 200,
      content_type: "image/png",
      magic: "89504e47",
      size: [48, 64],
    });
    expect(results.jpg).toMatchObject({ status: 200, content_type: "image/jpeg" });
    expect(String(results.jpg!.magic).startsWith("ffd8ff")).toBe(true);
  });

  it("reads tensors back through the shape and dtype headers", () => {
    expect(results.pt_uint8).toMatchObject({ status: 200, shape: [2, 64, 48, 3], dtype: "uint8" });
    expect(results.pt_float16).toMatchObject({ status: 200, shape: [1, 3, 64, 48], dtype: "float16" });
    expect(results.pt_float16!.min as number).toBeLessThan(0);
    expect(results.flux_packed).toMatchObject({ status: 200, shape: [1, 3, 64, 48], dtype: "float16" });
  });

  it("gets a JSON error it can raise, for packed latents without height/width", () => {
    expect(results.flux_packed_no_size).toMatchObject({ status: 400, error: { code: "missing_dimensions" } });
  });
});
