import { describe, expect, it } from "vitest";
import { AppError } from "./errors.ts";
import type { ModelInfo } from "./schemas.ts";
import { DEFAULT_LIMITS } from "./tensor.ts";
import { checkDecodeOutput, decodeOutputFor, planDecode, planEncodeTensor, scalingFor } from "./vae-plan.ts";

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

/** The AppError `fn` throws (fails the test when it throws none). */
const errorOf = (fn: () => unknown): AppError => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error("expected an AppError");
};

describe("per-job output caps", () => {
  const decode = (shape: number[], model: ModelInfo, output: Parameters<typeof checkDecodeOutput>[1]) => {
    const plan = planDecode({ shape, dtype: "float16", byteLength: bytes(shape, 2), packed: null }, model);
    checkDecodeOutput(plan, output, DEFAULT_LIMITS);
  };

  it("refuses 16 latents at 2048² as a tensor, naming MAX_JOB_PIXELS (each image alone is within its cap)", () => {
    const e = errorOf(() => decode([16, 4, 256, 256], sd, { kind: "raw", dtype: "float16" }));
    expect(e.code).toBe("too_large");
    expect(e.status).toBe(413);
    expect(e.message).toContain("MAX_JOB_PIXELS");
    expect(e.message).toContain(String(16 * 1024 * 1024));
    expect(e.details).toMatchObject({ limit: "MAX_JOB_PIXELS", requested: 16 * 2048 * 2048 });
  });

  it("counts what is computed: an image answer decodes only the first latent of a batch", () => {
    expect(codeOf(() => decode([16, 4, 256, 256], sd, { kind: "image", format: "jpg" }))).toBe("none");
    // A full batch at 1024² (SDXL's size) fits, as every tensor answer of it.
    for (const kind of ["unit-float16", "uint8"] as const)
      expect(codeOf(() => decode([16, 4, 128, 128], sd, { kind }))).toBe("none");
  });

  it("refuses a long video at 2048² (every frame counts, and each is within the per-frame cap)", () => {
    // 121 frames of 2048²: what a 62 MiB latent asked for before.
    const e = errorOf(() => decode([1, 16, 31, 256, 256], video, { kind: "mp4" }));
    expect(e.code).toBe("too_large");
    expect(e.message).toContain("121 image(s) of 2048x2048");
    expect(e.message).toContain("MAX_JOB_PIXELS");
    // Even as an image answer the decoder computes every frame of the first latent.
    expect(codeOf(() => decode([1, 16, 31, 256, 256], video, { kind: "image", format: "jpg" }))).toBe(
      "too_large",
    );
    // 97 frames at 512x320 fit (129 of them are 21 Mi pixels: MAX_JOB_PIXELS is the setting).
    expect(codeOf(() => decode([1, 16, 25, 40, 64], video, { kind: "unit-float16" }))).toBe("none");
  });

  it("refuses a tensor answer over MAX_OUTPUT_BYTES even within the pixel cap", () => {
    const limits = { ...DEFAULT_LIMITS, maxOutputBytes: 1024 * 1024 };
    const plan = planDecode(
      { shape: [1, 4, 64, 64], dtype: "float32", byteLength: bytes([1, 4, 64, 64]), packed: null },
      sd,
    );
    // 512² × 3 × 2 bytes of float16 = 1.5 MiB; as uint8, 768 KiB.
    const e = errorOf(() => checkDecodeOutput(plan, { kind: "raw", dtype: "float16" }, limits));
    expect(e.code).toBe("too_large");
    expect(e.message).toContain("MAX_OUTPUT_BYTES");
    expect(codeOf(() => checkDecodeOutput(plan, { kind: "uint8" }, limits))).toBe("none");
    // A JPEG's size is known once encoded: the worker checks it then.
    expect(codeOf(() => checkDecodeOutput(plan, { kind: "image", format: "jpg" }, limits))).toBe("none");
    // What the API reserves in its Redis budget: the answer's bytes, an image's raw pixels at most.
    expect(checkDecodeOutput(plan, { kind: "uint8" }, limits)).toBe(512 * 512 * 3);
    expect(checkDecodeOutput(plan, { kind: "image", format: "jpg" }, limits)).toBe(512 * 512 * 3);
    expect(checkDecodeOutput(plan, { kind: "unit-float16" })).toBe(512 * 512 * 3 * 2);
  });

  it("caps an encode's total pixels too", () => {
    const shape = [16, 3, 2048, 2048];
    const e = errorOf(() =>
      planEncodeTensor({ shape, dtype: "float16", byteLength: bytes(shape, 2) }, sd, {
        ...DEFAULT_LIMITS,
        maxElements: 2 ** 28,
      }),
    );
    expect(e.code).toBe("too_large");
    expect(e.message).toContain("MAX_JOB_PIXELS");
  });
});

describe("error messages that say what to do", () => {
  it("a channel mismatch names the channels, not the body length, even when the length is off too", () => {
    // 16-channel latents (Flux's) sent to a 4-channel model, with a body of 4 channels' length.
    const e = errorOf(() =>
      planDecode(
        { shape: [1, 16, 64, 64], dtype: "float32", byteLength: bytes([1, 4, 64, 64]), packed: null },
        sd,
      ),
    );
    expect(e.code).toBe("invalid_shape");
    expect(e.message).toContain("expects 4 latent channels, got 16");
    expect(e.message).not.toMatch(/bytes/);
    expect(e.details).toEqual({ expected_channels: 4, received_channels: 16 });
  });
});
