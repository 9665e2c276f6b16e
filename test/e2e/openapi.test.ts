// The OpenAPI document against the real API: every operation it describes gets real requests
// (answers, async jobs, errors), and every answer must be one the document describes: a
// documented status, a documented content type, the required headers, and a JSON body that
// validates against the documented schema (the document's own JSON Schema, checked by Ajv in its
// draft 2020-12 mode, the dialect of OpenAPI 3.1).
import type { JobObject } from "@hybrid/protocol";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latents, pngOf } from "./fixtures.ts";
import { type decodeRequest, parseSse, pollJob } from "./jobs-client.ts";
import { type Stack, startStack } from "./stack.ts";

type Json = Record<string, unknown>;
interface MediaType {
  schema?: Json;
}
interface ResponseObject {
  description: string;
  headers?: Record<string, { required?: boolean } | { $ref: string }>;
  content?: Record<string, MediaType>;
}
interface Parameter {
  name: string;
  in: string;
  schema?: Json;
}
interface Operation {
  operationId: string;
  parameters?: (Parameter | { $ref: string })[];
  responses: Record<string, ResponseObject | { $ref: string }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: {
    schemas: Record<string, Json>;
    responses: Record<string, ResponseObject>;
    parameters: Record<string, Parameter>;
    securitySchemes: Record<string, { type: string; scheme?: string }>;
  };
}

let stack: Stack;
let doc: Document;

beforeAll(async () => {
  stack = await startStack();
  const res = await fetch(`${stack.baseUrl}/openapi.json`);
  expect(res.status).toBe(200);
  doc = (await res.json()) as Document;
});
afterAll(async () => {
  await stack?.stop();
});

/** Resolves a local `#/components/...` reference of the document. */
function deref<T>(value: T | { $ref: string }): T {
  if (value && typeof value === "object" && "$ref" in value) {
    const path = value.$ref.replace(/^#\//, "").split("/");
    let node: unknown = doc;
    for (const part of path) node = (node as Json)[part];
    expect(node, value.$ref).toBeDefined();
    return node as T;
  }
  return value as T;
}

// strict: false: OpenAPI adds keywords of its own (`example`, `discriminator`...) to the schemas.
const ajv = new Ajv2020({ strict: false, allErrors: true });
const validators = new Map<Json, ValidateFunction>();
/** A validator of one of the document's schemas, its `$ref`s resolved against components.schemas. */
function validatorOf(schema: Json): ValidateFunction {
  let v = validators.get(schema);
  if (!v) {
    const toDefs = (s: unknown): Json =>
      JSON.parse(JSON.stringify(s).replaceAll('"#/components/schemas/', '"#/$defs/')) as Json;
    v = ajv.compile({ ...toDefs(schema), $defs: toDefs(doc.components.schemas) });
    validators.set(schema, v);
  }
  return v;
}

function expectValid(schema: Json, value: unknown, where: string) {
  const validate = validatorOf(schema);
  const ok = validate(value);
  expect(
    ok,
    `${where}: ${JSON.stringify(validate.errors?.slice(0, 3))} in ${JSON.stringify(value).slice(0, 400)}`,
  ).toBe(true);
}

/** Operations exercised ("GET /v1/jobs/{id}") and the statuses each answered. */
const exercised = new Map<string, Set<number>>();

interface Checked {
  status: number;
  headers: Headers;
  contentType: string;
  json?: unknown;
  text?: string;
  bytes?: Buffer;
}

/**
 * Sends a request to the operation `METHOD /template` at `path`, and checks the answer against
 * the document.
 */
async function call(op: string, path: string, init: RequestInit = {}): Promise<Checked> {
  const [method, template] = op.split(" ") as [string, string];
  const operation = doc.paths[template]?.[method.toLowerCase()];
  expect(operation, `${op} is not in the document`).toBeDefined();
  const res = await fetch(`${stack.baseUrl}${path}`, { ...init, method });
  const where = `${op} (${path}) → ${res.status}`;
  const documented = operation!.responses[String(res.status)] ?? operation!.responses.default;
  const contentType = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  const out: Checked = { status: res.status, headers: res.headers, contentType };
  if (contentType === "application/json") out.json = await res.json();
  else if (contentType.startsWith("text/")) out.text = await res.text();
  else out.bytes = Buffer.from(await res.arrayBuffer());
  expect(
    documented,
    `${where} is not a documented status: ${out.text ?? JSON.stringify(out.json)}`,
  ).toBeDefined();
  if (!exercised.has(op)) exercised.set(op, new Set());
  exercised.get(op)!.add(res.status);

  const response = deref(documented!);
  for (const [name, header] of Object.entries(response.headers ?? {})) {
    if (deref(header).required) expect(res.headers.get(name), `${where}: header ${name}`).not.toBeNull();
  }
  if (out.bytes?.length === 0 && !response.content) return out;
  const media = response.content?.[contentType];
  expect(media, `${where}: content type ${contentType} is not documented`).toBeDefined();
  if (contentType === "application/json") expectValid(media!.schema!, out.json, where);
  if (contentType === "text/event-stream") {
    // The document says each event's data is a JobObject.
    const events = parseSse(out.text!);
    expect(events.length, where).toBeGreaterThan(0);
    for (const e of events)
      expectValid(doc.components.schemas.JobObject!, e.data, `${where} event ${e.event}`);
  }
  return out;
}

const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  headers: { "Content-Type": "application/json", ...headers },
  body: JSON.stringify(body),
});
const small = () => ({
  tensor: latents([1, 4, 8, 8]).tensor,
  output_type: "pt" as const,
  partial_postprocess: true,
});
const decodeQuery = "shape=1&shape=4&shape=8&shape=8&dtype=float32&output_type=pt&partial_postprocess=True";
const DECODE = "POST /v1/vae/{model}/decode";
const T2I = "POST /v1/text-to-image/{model}";
const I2I = "POST /v1/image-to-image/{model}";
const HF = "POST /models/{model}";
const tiny = { width: 64, height: 64, num_inference_steps: 2 };

/** Decodes through `call`, with the wire format diffusers uses. */
async function decode(args: Parameters<typeof decodeRequest>[1], extra: Record<string, string> = {}) {
  const { query, headers, body } = await (async () => {
    const { prepareDecode } = await import("./diffusers-client.ts");
    return prepareDecode(args);
  })();
  return call(DECODE, `/v1/vae/sd-v1-tiny/decode?${query}`, { headers: { ...headers, ...extra }, body });
}

let finishedJob = "";
let generationJob = "";

describe("the document", () => {
  it("is OpenAPI 3.1 with bearer auth, the request headers and the error body", () => {
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
    const headerNames = Object.values(doc.components.parameters)
      .filter((p) => p.in === "header")
      .map((p) => p.name);
    expect(headerNames).toEqual(
      expect.arrayContaining([
        "Prefer",
        "Idempotency-Key",
        "X-Webhook-Url",
        "X-Webhook-Events",
        "x-use-cache",
        "x-wait-for-model",
      ]),
    );
    for (const name of ["ErrorBody", "JobObject", "JobList", "GenerateBody", "ModelEntry"])
      expect(doc.components.schemas[name], name).toBeDefined();
    // Query parameters read as what clients send, not as the parsers' string inputs.
    const params = doc.paths["/v1/vae/{model}/decode"]!.post!.parameters!.map((p) => deref(p));
    expect(params.find((p) => p.name === "shape")?.schema).toMatchObject({
      type: "array",
      items: { type: "integer" },
    });
    expect(params.find((p) => p.name === "partial_postprocess")?.schema).toMatchObject({ type: "boolean" });
    expect(params.find((p) => p.name === "scaling_factor")?.schema).toMatchObject({ type: "number" });
  });

  it("has validators that reject what the schemas forbid", () => {
    const job = doc.components.schemas.JobObject!;
    expect(validatorOf(job)({})).toBe(false);
    expect(validatorOf(doc.components.schemas.ErrorBody!)({ error: "x", code: "nope" })).toBe(false);
    const error404 = deref(doc.paths["/v1/jobs/{id}"]!.get!.responses["404"]!).content!["application/json"]!;
    expect(validatorOf(error404.schema!)({ error: "x", code: "not_found" })).toBe(true);
    expect(validatorOf(error404.schema!)({ error: "x", code: "invalid_shape" })).toBe(false);
  });
});

describe("every operation, against the running API", () => {
  it("POST /v1/vae/{model}/decode", async () => {
    const pt = await decode(small());
    expect(pt.status).toBe(200);
    expect(pt.contentType).toBe("tensor/binary");
    expect(pt.headers.get("shape")).toBe("[1, 64, 64, 3]");
    const png = await decode({
      tensor: latents([1, 4, 8, 8]).tensor,
      output_type: "pil",
      image_format: "png",
    });
    expect([png.status, png.contentType]).toEqual([200, "image/png"]);
    const jpeg = await decode({ tensor: latents([1, 4, 8, 8]).tensor });
    expect([jpeg.status, jpeg.contentType]).toEqual([200, "image/jpeg"]);
    const waited = await decode(small(), { Prefer: "wait=30" });
    expect(waited.status).toBe(200);

    const queued = await decode(small(), { Prefer: "respond-async", "X-Webhook-Events": "completed" });
    expect(queued.status).toBe(202);
    finishedJob = (queued.json as JobObject).id;
    expect(queued.headers.get("location")).toBe(`/v1/jobs/${finishedJob}`);

    const key = `openapi-${Date.now()}`;
    expect((await decode(small(), { Prefer: "respond-async", "Idempotency-Key": key })).status).toBe(202);
    const conflict = await decode({ ...small(), partial_postprocess: false }, { "Idempotency-Key": key });
    expect(conflict.status).toBe(422);

    const bad = await call(DECODE, "/v1/vae/sd-v1-tiny/decode?shape=x", {
      headers: { "Content-Type": "tensor/binary" },
      body: "x",
    });
    expect([bad.status, (bad.json as { code: string }).code]).toEqual([400, "invalid_shape"]);
    const short = await call(DECODE, `/v1/vae/sd-v1-tiny/decode?${decodeQuery}`, {
      headers: { "Content-Type": "tensor/binary" },
      body: "xx",
    });
    expect([short.status, (short.json as { code: string }).code]).toEqual([400, "invalid_body_length"]);
    const hook = await decode(small(), { "X-Webhook-Url": "not a url" });
    expect([hook.status, (hook.json as { code: string }).code]).toEqual([400, "invalid_webhook"]);
    expect(
      (
        await call(DECODE, `/v1/vae/nope/decode?${decodeQuery}`, {
          headers: { "Content-Type": "tensor/binary" },
          body: "x",
        })
      ).status,
    ).toBe(404);
    // A body a cross-site form could send (fetch types a string body text/plain).
    const simple = await call(DECODE, `/v1/vae/sd-v1-tiny/decode?${decodeQuery}`, { body: "x" });
    expect([simple.status, (simple.json as { code: string }).code]).toEqual([415, "unsupported_media_type"]);
  });

  it("POST /v1/vae/{model}/encode", async () => {
    const png = await pngOf(64, 64);
    const fromImage = await call("POST /v1/vae/{model}/encode", "/v1/vae/sd-v1-tiny/encode", { body: png });
    expect([fromImage.status, fromImage.contentType]).toEqual([200, "tensor/binary"]);
    expect(fromImage.headers.get("shape")).toBe("[1, 4, 8, 8]");
    const tensor = latents([1, 3, 64, 64]).tensor;
    const fromTensor = await call(
      "POST /v1/vae/{model}/encode",
      "/v1/vae/sd-v1-tiny/encode?shape=1&shape=3&shape=64&shape=64&dtype=float32&sample=True&seed=7",
      { headers: { "Content-Type": "tensor/binary" }, body: tensor.data },
    );
    expect(fromTensor.status).toBe(200);
    const empty = await call("POST /v1/vae/{model}/encode", "/v1/vae/sd-v1-tiny/encode", {
      headers: { "Content-Type": "image/png" },
      body: "",
    });
    expect([empty.status, (empty.json as { code: string }).code]).toEqual([400, "empty_body"]);
  });

  it("the {owner}/{name} twins of the model routes (Hub-style ids)", async () => {
    const twins = [
      "POST /v1/vae/{owner}/{name}/decode",
      "POST /v1/vae/{owner}/{name}/encode",
      "POST /v1/text-to-image/{owner}/{name}",
      "POST /v1/image-to-image/{owner}/{name}",
      "POST /models/{owner}/{name}",
    ];
    for (const op of twins) {
      const path = (id: string) => op.slice(5).replace("{owner}/{name}", id);
      // A well-formed id nobody serves here, and a malformed one.
      const unknown = await call(op, path("acme/nope"), json({ inputs: "x" }));
      expect([unknown.status, (unknown.json as { code: string }).code], op).toEqual([404, "unknown_model"]);
      const bad = await call(op, path("acme/no..pe"), json({ inputs: "x" }));
      expect([bad.status, (bad.json as { code: string }).code], op).toEqual([400, "invalid_parameter"]);
    }
  });

  it("POST /v1/text-to-image/{model}", async () => {
    const handler = await call(
      T2I,
      "/v1/text-to-image/sd-tiny",
      json({ inputs: "a cat", ...tiny, inference_steps: 2 }),
    );
    expect([handler.status, handler.contentType]).toEqual([200, "application/json"]);
    const task = await call(
      T2I,
      "/v1/text-to-image/sd-tiny",
      json({ inputs: "a cat", parameters: { ...tiny, seed: 3 } }),
    );
    expect([task.status, task.contentType, task.headers.get("x-seed")]).toEqual([200, "image/jpeg", "3"]);
    const cached = await call(
      T2I,
      "/v1/text-to-image/sd-tiny",
      json({ inputs: "a cat", parameters: { ...tiny, seed: 3 } }, { "x-use-cache": "true" }),
    );
    expect(cached.headers.get("x-cache")).toBe("HIT");
    const png = await call(
      T2I,
      "/v1/text-to-image/sd-tiny",
      json({ inputs: "a cat", parameters: tiny }, { Accept: "image/png", "x-wait-for-model": "true" }),
    );
    expect([png.status, png.contentType]).toEqual([200, "image/png"]);
    const queued = await call(
      T2I,
      "/v1/text-to-image/sd-tiny",
      json({ inputs: "a cat", ...tiny }, { Prefer: "respond-async" }),
    );
    expect(queued.status).toBe(202);
    generationJob = (queued.json as JobObject).id;
    const bad = await call(
      T2I,
      "/v1/text-to-image/sd-tiny",
      json({ inputs: "a cat", parameters: { width: 7 } }),
    );
    expect([bad.status, (bad.json as { code: string }).code]).toEqual([400, "invalid_parameter"]);
    const vae = await call(T2I, "/v1/text-to-image/sd-v1-tiny", json({ inputs: "a cat" }));
    expect([vae.status, (vae.json as { code: string }).code]).toEqual([400, "unsupported_operation"]);
  });

  it("POST /v1/image-to-image/{model}", async () => {
    const png = Buffer.from(await pngOf(64, 64));
    const b64 = await call(
      I2I,
      "/v1/image-to-image/sd-tiny",
      json({
        inputs: png.toString("base64"),
        parameters: { prompt: "snow", strength: 0.5, num_inference_steps: 2 },
      }),
    );
    expect([b64.status, b64.contentType]).toEqual([200, "image/jpeg"]);
    const raw = await call(I2I, "/v1/image-to-image/sd-tiny", {
      headers: { "Content-Type": "image/png" },
      body: png,
    });
    expect(raw.status).toBe(200);
    const notImage = await call(I2I, "/v1/image-to-image/sd-tiny", json({ inputs: "a cat" }));
    expect([notImage.status, (notImage.json as { code: string }).code]).toEqual([400, "invalid_image"]);
  });

  it("POST /models/{model}", async () => {
    const t2i = await call(HF, "/models/sd-tiny", json({ inputs: "a lighthouse", parameters: tiny }));
    expect([t2i.status, t2i.contentType]).toEqual([200, "image/jpeg"]);
    const png = Buffer.from(await pngOf(64, 64));
    const i2i = await call(HF, "/models/sd-tiny", json({ inputs: png.toString("base64"), parameters: tiny }));
    expect(i2i.status).toBe(200);
    expect((await call(HF, "/models/nope", json({ inputs: "x" }))).status).toBe(404);
  });

  it("GET /v1/jobs/{id}, /result, /events and POST /cancel", async () => {
    await pollJob(stack.baseUrl, finishedJob, (j) => j.status === "succeeded");
    const job = await call("GET /v1/jobs/{id}", `/v1/jobs/${finishedJob}`);
    expect([job.status, (job.json as JobObject).status]).toEqual([200, "succeeded"]);
    const jobSchema = doc.components.schemas.JobObject!;
    expect(validatorOf(jobSchema)({ ...(job.json as JobObject), status: "done" })).toBe(false);
    const result = await call("GET /v1/jobs/{id}/result", `/v1/jobs/${finishedJob}/result`);
    expect([result.status, result.contentType]).toEqual([200, "tensor/binary"]);
    const events = await call("GET /v1/jobs/{id}/events", `/v1/jobs/${finishedJob}/events`);
    expect(events.status).toBe(200);
    const replay = await call("GET /v1/jobs/{id}/events", `/v1/jobs/${finishedJob}/events`, {
      headers: { "Last-Event-ID": "0-0" },
    });
    expect(replay.status).toBe(200);
    const done = await call("POST /v1/jobs/{id}/cancel", `/v1/jobs/${finishedJob}/cancel`);
    expect([done.status, (done.json as JobObject).status]).toEqual([200, "succeeded"]);

    await pollJob(stack.baseUrl, generationJob, (j) => j.status === "succeeded");
    const image = await call("GET /v1/jobs/{id}/result", `/v1/jobs/${generationJob}/result`);
    expect([image.status, image.contentType]).toEqual([200, "application/json"]);

    // About 2 s of work: unfinished when asked for its result, then canceled while it runs.
    const long = await decode(
      { tensor: latents([2, 4, 160, 160]).tensor, output_type: "pt" },
      { Prefer: "respond-async" },
    );
    const id = (long.json as JobObject).id;
    const early = await call("GET /v1/jobs/{id}/result", `/v1/jobs/${id}/result`);
    expect([409, 200]).toContain(early.status);
    const cancel = await call("POST /v1/jobs/{id}/cancel", `/v1/jobs/${id}/cancel`);
    expect([202, 200]).toContain(cancel.status);
    if (cancel.status === 202) {
      await pollJob(stack.baseUrl, id, (j) => j.status === "canceled");
      const canceled = await call("GET /v1/jobs/{id}/result", `/v1/jobs/${id}/result`);
      expect([canceled.status, (canceled.json as { code: string }).code]).toEqual([409, "canceled"]);
      expect((await call("POST /v1/jobs/{id}/cancel", `/v1/jobs/${id}/cancel`)).status).toBe(202);
    }

    const missing = "00000000-0000-4000-8000-000000000000";
    for (const [op, path] of [
      ["GET /v1/jobs/{id}", `/v1/jobs/${missing}`],
      ["GET /v1/jobs/{id}/result", `/v1/jobs/${missing}/result`],
      ["GET /v1/jobs/{id}/events", `/v1/jobs/${missing}/events`],
      ["POST /v1/jobs/{id}/cancel", `/v1/jobs/${missing}/cancel`],
    ] as const)
      expect((await call(op, path)).status, op).toBe(404);
  });

  it("GET /v1/jobs", async () => {
    const page = await call("GET /v1/jobs", "/v1/jobs?limit=2");
    expect(page.status).toBe(200);
    const { data, next_cursor } = page.json as { data: JobObject[]; next_cursor: string | null };
    expect(data).toHaveLength(2);
    expect(next_cursor).not.toBeNull();
    const next = await call("GET /v1/jobs", `/v1/jobs?limit=100&cursor=${encodeURIComponent(next_cursor!)}`);
    expect(next.status).toBe(200);
    expect((await call("GET /v1/jobs", "/v1/jobs?limit=0")).status).toBe(400);
  });

  it("GET /v1/models, /health/*, /metrics, /openapi.json, the dashboard and the playground", async () => {
    const models = await call("GET /v1/models", "/v1/models");
    expect((models.json as { data: { id: string }[] }).data.map((m) => m.id)).toContain("sd-tiny");
    expect((await call("GET /health/live", "/health/live")).status).toBe(200);
    expect((await call("GET /health/ready", "/health/ready")).status).toBe(200);
    const metrics = await call("GET /metrics", "/metrics");
    expect([metrics.status, metrics.contentType]).toEqual([200, "text/plain"]);
    expect((await call("GET /openapi.json", "/openapi.json")).status).toBe(200);
    const board = await call("GET /admin/queues", "/admin/queues");
    expect([board.status, board.contentType]).toEqual([200, "text/html"]);
    const page = await call("GET /", "/");
    expect([page.status, page.contentType]).toEqual([200, "text/html"]);
    const config = await call("GET /playground/config.json", "/playground/config.json");
    expect(config.json).toEqual({ api_keys: false, dashboard: true, docs: true });
  });

  it("GET /docs: Swagger UI from local assets only, on /openapi.json", async () => {
    const page = await call("GET /docs", "/docs");
    expect([page.status, page.contentType]).toEqual([200, "text/html"]);
    const refs = [...page.text!.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThanOrEqual(3);
    for (const ref of refs) {
      expect(ref, `${ref} must be served by the API`).toMatch(/^\/(?!\/)/);
      const asset = await fetch(`${stack.baseUrl}${ref}`);
      expect(asset.status, ref).toBe(200);
      const body = await asset.text();
      if (ref.endsWith("init.js")) {
        expect(body).toContain('"/openapi.json"');
        expect(body).not.toMatch(/https?:/);
      }
    }
    expect((await fetch(`${stack.baseUrl}/docs/`)).status).toBe(200);
    // Only the UI's assets: not the package's index.html (the petstore) or its package.json.
    expect((await fetch(`${stack.baseUrl}/docs/index.html`)).status).toBe(404);
    expect((await fetch(`${stack.baseUrl}/docs/package.json`)).status).toBe(404);
  });

  it("left no documented operation unexercised", () => {
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect([...exercised.keys()].sort()).toEqual(documented.sort());
  });
});
