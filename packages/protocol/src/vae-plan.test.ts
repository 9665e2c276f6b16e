import { describe, expect, it } from "vitest";
import type { AppError } from "./errors.ts";
import type { ModelInfo } from "./schemas.ts";
import { decodeOutputFor, planDecode, planEncodeTensor, scalingFor } from "./vae-plan.ts";

const sd: ModelInfo = {
  id: "sd",
  family: "sd-v1",
  task: "vae",
  operations: ["decode", "encode"],
  latent_channels: 4,
  latent_rank: 4,
  spatial_compression: 8,
  scaling_factor: 0.18215,
  shift_factor: null,
  dtype: "float32",
};
const flux: ModelInfo = {
  ...sd,
  id: "flux",
  family: "flux",
  latent_channels: 16,
  scaling_factor: 0.3611,
  shift_factor: 0.1159,
};
const video: ModelInfo = {
  ...sd,
  id: "v",
  family: "hunyuan-video",
  latent_channels: 16,
  latent_rank: 5,
  temporal_compression: 4,
  operations: ["decode"],
};

const codeOf = (fn: () => unknown) => {
  try {
    fn();
    return "none";
  } catch (e) {
    return (e as AppError).code;
  }
};
const bytes = (shape: number[], width = 4) => shape.reduce((a, b) => a * b, 1) * width;

describe("planDecode", () => {
  it("computes output shapes for images, packed Flux and video", () => {
    expect(
      planDecode(
        { shape: [2, 4, 8, 6], dtype: "float32", byteLength: bytes([2, 4, 8, 6]), packed: null },
        sd,
      ),
    ).toEqual({
      latentShape: [2, 4, 8, 6],
      outputShape: [2, 3, 64, 48],
    });
    expect(
      planDecode(
        {
          shape: [1, 12, 64],
          dtype: "float16",
          byteLength: bytes([1, 12, 64], 2),
          packed: { height: 64, width: 48 },
        },
        flux,
      ).outputShape,
    ).toEqual([1, 3, 64, 48]);
    expect(
      planDecode(
        { shape: [1, 16, 3, 4, 5], dtype: "float32", byteLength: bytes([1, 16, 3, 4, 5]), packed: null },
        video,
      ).outputShape,
    ).toEqual([1, 3, 9, 32, 40]);
  });

  it("names what is wrong with a stable code", () => {
    const plan = (shape: number[], model = sd, extra: Partial<Parameters<typeof planDecode>[0]> = {}) =>
      codeOf(() =>
        planDecode({ shape, dtype: "float32", byteLength: bytes(shape), packed: null, ...extra }, model),
      );
    expect(plan([4, 4])).toBe("invalid_shape");
    expect(plan([1, 4, 4, 4], sd, { byteLength: 7 })).toBe("invalid_body_length");
    expect(plan([1, 4, 64])).toBe("missing_dimensions");
    expect(plan([1, 4, 64], sd, { packed: { height: 64, width: 64 } })).toBe("invalid_shape");
    expect(plan([1, 16, 4, 4])).toBe("invalid_shape");
    expect(plan([1, 4, 4, 4], video)).toBe("invalid_shape");
    expect(plan([1, 4, 257, 256])).toBe("too_large");
    expect(plan([17, 4, 2, 2])).toBe("too_large");
    expect(plan([1, 16, 40, 4, 4], video)).toBe("too_large");
  });

  it("caps an output at 2048 × 2048 pixels by default, counting the product (docs/protocol.md)", () => {
    const outputOf = (shape: number[]) =>
      planDecode({ shape, dtype: "float16", byteLength: bytes(shape, 2), packed: null }, sd).outputShape;
    expect(outputOf([1, 4, 256, 256])).toEqual([1, 3, 2048, 2048]);
    expect(outputOf([1, 4, 128, 512])).toEqual([1, 3, 1024, 4096]);
    expect(codeOf(() => outputOf([1, 4, 256, 257]))).toBe("too_large");
  });
});

describe("decodeOutputFor", () => {
  const q = {
    output_type: "pil" as const,
    partial_postprocess: false,
    image_format: "jpg" as const,
    dtype: "float16" as const,
  };
  it("maps each row of the protocol table", () => {
    expect(decodeOutputFor(q, "image/jpeg", sd)).toEqual({ kind: "image", format: "jpg" });
    expect(decodeOutputFor({ ...q, image_format: "png" }, "image/png", sd)).toEqual({
      kind: "image",
      format: "png",
    });
    expect(decodeOutputFor(q, "tensor/binary", sd)).toEqual({ kind: "unit-float16" });
    expect(
      decodeOutputFor({ ...q, output_type: "pt", partial_postprocess: true }, "tensor/binary", sd),
    ).toEqual({ kind: "uint8" });
    expect(decodeOutputFor({ ...q, output_type: "pt" }, "tensor/binary", sd)).toEqual({
      kind: "raw",
      dtype: "float16",
    });
    expect(decodeOutputFor({ ...q, output_type: "pt", dtype: "bfloat16" }, "tensor/binary", sd)).toEqual({
      kind: "raw",
      dtype: "bfloat16",
    });
    expect(decodeOutputFor({ ...q, output_type: "mp4" }, "text/plain", video)).toEqual({ kind: "mp4" });
    expect(codeOf(() => decodeOutputFor({ ...q, output_type: "mp4" }, "text/plain", sd))).toBe(
      "unsupported_operation",
    );
  });
});

describe("scalingFor", () => {
  it("prefers explicit factors, then do_scaling, else none", () => {
    expect(scalingFor({ scaling_factor: 0.5, shift_factor: 0.1 }, flux)).toEqual({ scale: 0.5, shift: 0.1 });
    expect(scalingFor({ do_scaling: true }, flux)).toEqual({ scale: 0.3611, shift: 0.1159 });
    expect(scalingFor({ do_scaling: true }, sd)).toEqual({ scale: 0.18215, shift: 0 });
    expect(scalingFor({ do_scaling: true, shift_factor: 0.2 }, flux)).toEqual({ scale: 0.3611, shift: 0.2 });
    expect(scalingFor({}, sd)).toBeNull();
    expect(codeOf(() => scalingFor({ scaling_factor: 0 }, sd))).toBe("invalid_parameter");
  });
});

describe("planEncodeTensor", () => {
  it("wants [B, 3, H, W] with sides multiple of 8", () => {
    expect(
      codeOf(() =>
        planEncodeTensor({ shape: [1, 3, 16, 24], dtype: "float32", byteLength: bytes([1, 3, 16, 24]) }, sd),
      ),
    ).toBe("none");
    expect(
      codeOf(() =>
        planEncodeTensor({ shape: [1, 3, 15, 24], dtype: "float32", byteLength: bytes([1, 3, 15, 24]) }, sd),
      ),
    ).toBe("invalid_shape");
    expect(
      codeOf(() =>
        planEncodeTensor({ shape: [1, 4, 16, 24], dtype: "float32", byteLength: bytes([1, 4, 16, 24]) }, sd),
      ),
    ).toBe("invalid_shape");
  });
});
