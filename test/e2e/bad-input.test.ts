import { DecodeQuery } from "@hybrid/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareDecode, pythonQuery, readTensor, remoteDecode } from "./diffusers-client.ts";
import { latents } from "./fixtures.ts";
import { type Stack, startStack } from "./stack.ts";

let stack: Stack;
beforeAll(async () => {
  // A small body cap so the oversize case is cheap to send.
  stack = await startStack({ MAX_BODY_BYTES: String(4 * 1024 * 1024) });
});
afterAll(async () => {
  await stack?.stop();
});

const decodeUrl = (model = "sd-v1-tiny") => `${stack.baseUrl}/v1/vae/${model}/decode`;

async function post(
  url: string,
  query: string,
  body: Uint8Array | undefined,
  headers: Record<string, string> = { "Content-Type": "tensor/binary" },
) {
  const res = await fetch(`${url}?${query}`, { method: "POST", headers, ...(body ? { body } : {}) });
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type") ?? "", body: text };
}

const good = latents([1, 4, 4, 4]).tensor;
const q = (over: Record<string, unknown>) =>
  pythonQuery({ shape: good.shape, dtype: "float32", output_type: "pt", ...over });

const cases: Array<{ name: string; code: string; status: number; send: () => ReturnType<typeof post> }> = [
  {
    name: "wrong byte length",
    code: "invalid_body_length",
    status: 400,
    send: () => post(decodeUrl(), q({}), good.data.subarray(0, 60)),
  },
  {
    name: "unknown dtype",
    code: "invalid_dtype",
    status: 400,
    send: () => post(decodeUrl(), q({ dtype: "int64" }), good.data),
  },
  {
    name: "uint8 latents",
    code: "invalid_dtype",
    status: 400,
    send: () => post(decodeUrl(), q({ dtype: "uint8", shape: [1, 4, 8, 8] }), good.data),
  },
  {
    name: "rank 2",
    code: "invalid_shape",
    status: 400,
    send: () => post(decodeUrl(), q({ shape: [16, 16] }), good.data),
  },
  {
    name: "rank 6",
    code: "invalid_shape",
    status: 400,
    send: () => post(decodeUrl(), q({ shape: [1, 4, 1, 1, 4, 4] }), good.data),
  },
  {
    name: "negative dim",
    code: "invalid_shape",
    status: 400,
    send: () => post(decodeUrl(), q({ shape: [1, -4, 4, 4] }), good.data),
  },
  {
    name: "zero dim",
    code: "invalid_shape",
    status: 400,
    send: () => post(decodeUrl(), q({ shape: [1, 4, 0, 4] }), good.data),
  },
  {
    name: "non-numeric dim",
    code: "invalid_shape",
    status: 400,
    send: () => post(decodeUrl(), q({ shape: [1, 4, "a", 4] }), good.data),
  },
  {
    name: "missing shape",
    code: "invalid_shape",
    status: 400,
    send: () => post(decodeUrl(), pythonQuery({ dtype: "float32" }), good.data),
  },
  {
    name: "wrong channel count",
    code: "invalid_shape",
    status: 400,
    send: () => post(decodeUrl(), q({ shape: [1, 16, 2, 2] }), good.data),
  },
  {
    name: "3-D without height/width",
    code: "missing_dimensions",
    status: 400,
    send: () => post(decodeUrl("flux-tiny"), q({ shape: [1, 4, 64] }), latents([1, 4, 64]).tensor.data),
  },
  {
    name: "3-D whose sequence does not match height/width",
    code: "invalid_shape",
    status: 400,
    send: () =>
      post(
        decodeUrl("flux-tiny"),
        q({ shape: [1, 4, 64], height: 64, width: 64 }),
        latents([1, 4, 64]).tensor.data,
      ),
  },
  {
    name: "output over 2048x2048",
    code: "too_large",
    status: 413,
    send: () => post(decodeUrl(), q({ shape: [1, 4, 320, 320] }), new Uint8Array(4 * 320 * 320 * 4)),
  },
  {
    name: "shape with more elements than allowed",
    code: "too_large",
    status: 413,
    send: () => post(decodeUrl(), q({ shape: [1, 4, 100000, 100000] }), good.data),
  },
  {
    name: "body over the size cap",
    code: "payload_too_large",
    status: 413,
    send: () => post(decodeUrl(), q({ shape: [1, 4, 512, 640] }), new Uint8Array(4 * 512 * 640 * 4)),
  },
  {
    name: "batch over the limit",
    code: "too_large",
    status: 413,
    send: () => post(decodeUrl(), q({ shape: [17, 4, 2, 2] }), new Uint8Array(17 * 16 * 4)),
  },
  {
    name: "unknown model",
    code: "unknown_model",
    status: 404,
    send: () => post(decodeUrl("no-such-model"), q({}), good.data),
  },
  { name: "empty body", code: "empty_body", status: 400, send: () => post(decodeUrl(), q({}), undefined) },
  {
    name: "bad output_type",
    code: "invalid_parameter",
    status: 400,
    send: () => post(decodeUrl(), q({ output_type: "gif" }), good.data),
  },
  {
    name: "mp4 from an image model",
    code: "unsupported_operation",
    status: 400,
    send: () => post(decodeUrl(), q({ output_type: "mp4" }), good.data),
  },
  {
    name: "scaling_factor 0",
    code: "invalid_parameter",
    status: 400,
    send: () => post(decodeUrl(), q({ scaling_factor: 0 }), good.data),
  },
  {
    name: "garbage image to encode",
    code: "invalid_image",
    status: 400,
    send: () =>
      post(
        `${stack.baseUrl}/v1/vae/sd-v1-tiny/encode`,
        "",
        new TextEncoder().encode("definitely not an image"),
        {},
      ),
  },
  {
    name: "truncated PNG to encode",
    code: "invalid_image",
    status: 400,
    send: () =>
      post(
        `${stack.baseUrl}/v1/vae/sd-v1-tiny/encode`,
        "",
        Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 73, 72]),
        {},
      ),
  },
  {
    name: "empty body to encode",
    code: "empty_body",
    status: 400,
    send: () => post(`${stack.baseUrl}/v1/vae/sd-v1-tiny/encode`, "", undefined, {}),
  },
  {
    name: "encode tensor with 4 channels",
    code: "invalid_shape",
    status: 400,
    send: () =>
      post(
        `${stack.baseUrl}/v1/vae/sd-v1-tiny/encode`,
        pythonQuery({ shape: [1, 4, 8, 8], dtype: "float32" }),
        new Uint8Array(4 * 64 * 4),
      ),
  },
  {
    name: "GET on decode",
    code: "method_not_allowed",
    status: 405,
    send: async () => {
      const res = await fetch(decodeUrl());
      return { status: res.status, type: res.headers.get("content-type") ?? "", body: await res.text() };
    },
  },
  {
    name: "unknown route",
    code: "not_found",
    status: 404,
    send: () => post(`${stack.baseUrl}/v2/nothing`, "", good.data),
  },
];

describe("bad input gets a 4xx JSON error with a stable code", () => {
  it.each(cases)("$name → $status $code", async ({ send, code, status }) => {
    const r = await send();
    expect(r.status, r.body).toBe(status);
    expect(r.type).toMatch(/application\/json/);
    const body = JSON.parse(r.body) as { error: unknown; code: unknown };
    expect(body.code).toBe(code);
    expect(typeof body.error).toBe("string");
    expect((body.error as string).length).toBeGreaterThan(10);
  });

  it("the server is still healthy and answers a good request after all of that", async () => {
    expect((await fetch(`${stack.baseUrl}/health/ready`)).status).toBe(200);
    expect((await fetch(`${stack.baseUrl}/health/live`)).status).toBe(200);
    const { res, bytes } = await remoteDecode(decodeUrl(), {
      tensor: good,
      output_type: "pt",
      partial_postprocess: true,
    });
    expect(res.status).toBe(200);
    expect(readTensor(bytes, res.headers).shape).toEqual([1, 32, 32, 3]);
    expect(stack.api.exitCode).toBeNull();
    expect(stack.worker.exitCode).toBeNull();
  });

  it("the protocol's decode query names every key diffusers sends, and reads the values diffusers means", () => {
    // DecodeQuery lets unknown keys through (clients send extras), so a key diffusers sends
    // under a name the protocol does not know would be ignored without an error: check each.
    const asDiffusers = (query: string) => {
      const params = new URLSearchParams(query);
      const unknown = [...new Set(params.keys())].filter((k) => !(k in DecodeQuery.shape));
      expect(unknown, query).toEqual([]);
      return DecodeQuery.parse({ ...Object.fromEntries(params), shape: params.getAll("shape") });
    };
    const scaled = prepareDecode({
      tensor: good,
      output_type: "pt",
      partial_postprocess: true,
      scaling_factor: 0.18215,
    });
    expect(scaled.headers).toEqual({ "Content-Type": "tensor/binary", Accept: "tensor/binary" });
    expect(asDiffusers(scaled.query)).toMatchObject({
      shape: [1, 4, 4, 4],
      dtype: "float32",
      output_type: "pt",
      partial_postprocess: true,
      image_format: "jpg",
      scaling_factor: 0.18215,
    });
    // Older diffusers (no Accept header), a packed Flux latent's height and width, a shift.
    const older = prepareDecode(
      { tensor: good, scaling_factor: 0.3611, shift_factor: 0.1159, height: 64, width: 48 },
      "no-headers",
    );
    expect(asDiffusers(older.query)).toMatchObject({
      output_type: "pil",
      partial_postprocess: false,
      scaling_factor: 0.3611,
      shift_factor: 0.1159,
      height: 64,
      width: 48,
    });
    expect(asDiffusers(prepareDecode({ tensor: good }).query)).toMatchObject({ do_scaling: true });
  });
});
