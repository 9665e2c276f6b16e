// Hub-style model ids (`owner/name`) end to end: a worker serves a generated pipeline under one
// (MODELS=owner/name=/dir), and every route, @huggingface/inference and the SDK reach it by that
// id, with the slash literal or as %2F; malformed ids are 400, unknown ones 404.
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InferenceClient } from "@huggingface/inference";
import { HybridClient, HybridError } from "@hybrid/client";
import type { JobObject, ModelList } from "@hybrid/protocol";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { stop } from "../../scripts/lib.ts";
import { prepareDecode, remoteDecode } from "./diffusers-client.ts";
import { latents } from "./fixtures.ts";
import { finished, pollJob } from "./jobs-client.ts";
import { type Stack, startStack, TEST_MODELS_DIR } from "./stack.ts";

const REPO = "acme-labs/Tiny-SD.v1";
/** The id in a URL path: its slash literal, as the Hub writes it. */
const REPO_PATH = "acme-labs/Tiny-SD.v1";

let stack: Stack;
beforeAll(async () => {
  // The same generated pipeline twice: under its short id, and under a Hub-style id.
  stack = await startStack({}, { worker: { MODELS: `sd-tiny,${REPO}=${join(TEST_MODELS_DIR, "sd-tiny")}` } });
});
afterAll(async () => {
  await stack?.stop();
});

const SHAPE = [1, 4, 6, 5];
const seeded = {
  inputs: "a lighthouse",
  parameters: { width: 64, height: 64, num_inference_steps: 2, seed: 11 },
};

const postJson = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${stack.baseUrl}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "image/png", ...headers },
    body: JSON.stringify(body),
  });

async function bytesOf(res: Response): Promise<Buffer> {
  const bytes = Buffer.from(await res.arrayBuffer());
  expect(res.status, bytes.toString().slice(0, 300)).toBe(200);
  return bytes;
}

describe("a model served under a Hub-style id", () => {
  it("is listed under its id, with endpoints that keep the slash", async () => {
    const list = (await (await fetch(`${stack.baseUrl}/v1/models`)).json()) as ModelList;
    const entry = list.data.find((m) => m.id === REPO);
    expect(entry?.endpoints).toEqual({
      decode: `/v1/vae/${REPO_PATH}/decode`,
      encode: `/v1/vae/${REPO_PATH}/encode`,
      "text-to-image": `/v1/text-to-image/${REPO_PATH}`,
      "image-to-image": `/v1/image-to-image/${REPO_PATH}`,
    });
    // Short ids are listed as before.
    expect(list.data.find((m) => m.id === "sd-tiny")?.endpoints.decode).toBe("/v1/vae/sd-tiny/decode");
  });

  it("decodes at /v1/vae/owner/name/decode and /v1/vae/owner%2Fname/decode, as its short twin does", async () => {
    const args = { tensor: latents(SHAPE).tensor, output_type: "pt" as const };
    const short = await remoteDecode(`${stack.baseUrl}/v1/vae/sd-tiny/decode`, args);
    expect(short.res.status).toBe(200);
    for (const path of [REPO_PATH, encodeURIComponent(REPO)]) {
      const { res, bytes } = await remoteDecode(`${stack.baseUrl}/v1/vae/${path}/decode`, args);
      expect(res.status, `${path}: ${Buffer.from(bytes).toString().slice(0, 200)}`).toBe(200);
      expect(res.headers.get("shape")).toBe(short.res.headers.get("shape"));
      expect(Buffer.from(bytes).equals(Buffer.from(short.bytes)), path).toBe(true);
    }
  });

  it("takes a retry with the same Idempotency-Key in the id's other spelling as the same request", async () => {
    const { query, headers, body } = prepareDecode({ tensor: latents(SHAPE).tensor, output_type: "pt" });
    const key = `spelling-${randomUUID()}`;
    const send = (path: string) =>
      fetch(`${stack.baseUrl}/v1/vae/${path}/decode?${query}`, {
        method: "POST",
        headers: { ...headers, "Idempotency-Key": key },
        body,
      });
    const first = await send(REPO_PATH);
    expect(first.status).toBe(200);
    const retry = await send(encodeURIComponent(REPO));
    expect(retry.status, (await retry.clone().text()).slice(0, 200)).toBe(200);
    expect(retry.headers.get("x-job-id")).toBe(first.headers.get("x-job-id"));
    expect(Buffer.from(await retry.arrayBuffer()).equals(Buffer.from(await first.arrayBuffer()))).toBe(true);
    // The same key on another model is still another request.
    const other = await send("sd-tiny");
    expect(other.status).toBe(422);
    expect(await other.json()).toMatchObject({ code: "idempotency_conflict" });
  });

  it("generates for @huggingface/inference at {base}/models/{repo id}", async () => {
    const client = new InferenceClient();
    const blob = await client.textToImage(
      { endpointUrl: `${stack.baseUrl}/models/${REPO}`, model: REPO, ...seeded },
      { outputType: "blob" },
    );
    const bytes = Buffer.from(await blob.arrayBuffer());
    const meta = await sharp(bytes).metadata();
    expect([meta.width, meta.height]).toEqual([64, 64]);
    // Same weights, same seed, same format: the very bytes of the short id, on every route and
    // in both spellings of the id.
    const accept = { Accept: blob.type || "image/jpeg", "x-use-cache": "false" };
    expect((await bytesOf(await postJson("/models/sd-tiny", seeded, accept))).equals(bytes)).toBe(true);
    for (const path of [
      `/models/${encodeURIComponent(REPO)}`,
      `/v1/text-to-image/${REPO_PATH}`,
      `/v1/text-to-image/${encodeURIComponent(REPO)}`,
    ])
      expect((await bytesOf(await postJson(path, seeded, accept))).equals(bytes), path).toBe(true);
  });

  it("works through the SDK by its id", async () => {
    const client = new HybridClient({ baseUrl: stack.baseUrl });
    expect((await client.models()).map((m) => m.id)).toContain(REPO);
    const image = await client.textToImage(REPO, { prompt: "a lighthouse", width: 64, height: 64, seed: 3 });
    expect(image.seed).toBe(3);
    expect((await sharp(Buffer.from(image.bytes)).metadata()).width).toBe(64);
    const decoded = await client.remoteDecode(REPO, { tensor: latents(SHAPE).tensor });
    expect(decoded.kind).toBe("image");
    const bad = await client.textToImage("a/b/c", { prompt: "x" }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(HybridError);
    expect([(bad as HybridError).status, (bad as HybridError).code]).toEqual([400, "invalid_parameter"]);
  });

  it("runs as a job whose record names the id", async () => {
    const res = await postJson(`/v1/text-to-image/${REPO_PATH}`, seeded, {
      Prefer: "respond-async",
      "x-use-cache": "false",
    });
    expect(res.status).toBe(202);
    const job = (await res.json()) as JobObject;
    expect(job.model).toBe(REPO);
    const done = await pollJob(stack.baseUrl, job.id, finished, 60_000);
    expect(done.status).toBe("succeeded");
    const result = await fetch(`${stack.baseUrl}/v1/jobs/${job.id}/result`);
    expect(result.status).toBe(200);
    // Its queue (the id's slash and all) shows on the dashboard, and the job in it.
    const queue = `generate-${REPO}`;
    const board = (await (await fetch(`${stack.baseUrl}/admin/queues/api/queues`)).json()) as {
      queues: { name: string }[];
    };
    expect(board.queues.map((q) => q.name)).toContain(queue);
    const shown = await fetch(
      `${stack.baseUrl}/admin/queues/api/queues/${encodeURIComponent(queue)}/${job.id}`,
    );
    expect(shown.status).toBe(200);
  });
});

describe("MODELS_DIR", () => {
  it("serves <MODELS_DIR>/<owner>/<name> under owner/name beside flat <MODELS_DIR>/<id>", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hub-ids-models-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await mkdir(join(dir, "other-org"));
    await symlink(join(TEST_MODELS_DIR, "lcm-tiny"), join(dir, "other-org", "Tiny-LCM"));
    await symlink(join(TEST_MODELS_DIR, "sd-v1-tiny"), join(dir, "flat-vae"));
    const worker = await stack.addWorker({ MODELS_DIR: dir, MODELS: "" });
    onTestFinished(() => stop(worker));
    const ids = async () =>
      ((await (await fetch(`${stack.baseUrl}/v1/models`)).json()) as ModelList).data.map((m) => m.id);
    await expect
      .poll(ids, { timeout: 30_000, interval: 250 })
      .toEqual(expect.arrayContaining(["other-org/Tiny-LCM", "flat-vae"]));
    const res = await postJson("/models/other-org/Tiny-LCM", seeded);
    expect((await sharp(await bytesOf(res)).metadata()).width).toBe(64);
  });
});

describe("model ids in paths", () => {
  const bad = [
    "/v1/vae/acme--labs/tiny/decode",
    "/v1/vae/acme%2Fb%2Fc/decode",
    "/v1/text-to-image/-acme/tiny",
    "/v1/image-to-image/acme/ti..ny",
    "/models/acme/tiny%20sd",
    "/models/a%2Fb%2Fc",
    "/models/%2Ftiny",
  ];
  it.each(bad)("%s is a malformed id: 400 invalid_parameter", async (path) => {
    const res = await fetch(`${stack.baseUrl}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ inputs: "x" }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_parameter", details: { parameter: "model" } });
  });

  it.each([
    "/v1/vae/acme-labs/nope/decode",
    `/v1/vae/${encodeURIComponent("acme-labs/nope")}/decode`,
    "/v1/text-to-image/acme-labs/nope",
    "/models/acme-labs/nope",
    "/models/no-such-model",
  ])("%s is a well-formed id nobody serves: 404 unknown_model", async (path) => {
    const res = await fetch(`${stack.baseUrl}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ inputs: "x" }),
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: "unknown_model" });
  });

  it("answers a GET on a VAE route of a Hub-style id with 405, as for a short id", async () => {
    for (const path of ["/v1/vae/sd-tiny/decode", `/v1/vae/${REPO_PATH}/decode`]) {
      const res = await fetch(`${stack.baseUrl}${path}`);
      expect([res.status, ((await res.json()) as { code: string }).code], path).toEqual([
        405,
        "method_not_allowed",
      ]);
    }
  });
});
