import { readFileSync } from "node:fs";
import { AppError } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  calculateShift,
  createScheduler,
  isFlowMatchConfig,
  type Scheduler,
  schedulerNames,
} from "./index.ts";

/** Trajectories recorded from diffusers' FlowMatchEulerDiscreteScheduler (see the file's `about`). */
const Fixture = z.object({
  about: z.string(),
  shape: z.array(z.number()),
  init: z.array(z.number()),
  clean: z.array(z.number()),
  scenarios: z.array(
    z.object({
      name: z.string(),
      class: z.literal("FlowMatchEulerDiscreteScheduler"),
      config: z.record(z.string(), z.unknown()),
      num_inference_steps: z.number(),
      pipeline: z.enum(["flux", "sd3"]),
      image_seq_len: z.number().nullable(),
      mu: z.number().nullable(),
      strength: z.number().nullable(),
      all_timesteps: z.array(z.number()),
      all_sigmas: z.array(z.number()),
      t_start: z.number().optional(),
      start_sample: z.array(z.number()).optional(),
      steps: z.array(z.object({ t: z.number(), prev_sample: z.array(z.number()) })),
    }),
  ),
});

// shared/ sits beside the repository (and beside CI's clone of it).
const fixture = Fixture.parse(
  JSON.parse(
    readFileSync(new URL("../../../../../../shared/fixtures/flowmatch.json", import.meta.url), "utf8"),
  ),
);

/** Indices where `actual` is further than `tol` from `expected`. */
function mismatches(actual: ArrayLike<number>, expected: readonly number[], tol = 1e-5): string[] {
  if (actual.length !== expected.length) return [`length ${actual.length} != ${expected.length}`];
  const bad: string[] = [];
  expected.forEach((b, i) => {
    const a = actual[i] as number;
    if (!(Math.abs(a - b) <= tol)) bad.push(`[${i}] ${a} != ${b}`);
  });
  return bad;
}

/** The fixture's stand-in transformer: deterministic, timestep-dependent, bounded. */
const fakeTransformer = (sample: Float32Array, t: number) =>
  sample.map((x) => 0.5 * Math.tanh(x) + 0.1 * (t / 1000));

const noNoise = () => {
  throw new Error("flow-match Euler draws no noise");
};

/** Flux.1-dev's scheduler_config.json. */
const FLUX_DEV = {
  ...fixture.scenarios.find((s) => s.name === "flux-dev-28-512px")?.config,
  _class_name: "FlowMatchEulerDiscreteScheduler",
};
const SD3 = { _class_name: "FlowMatchEulerDiscreteScheduler", num_train_timesteps: 1000, shift: 3.0 };
/** SD 1.5's scheduler_config.json, as the hub has it. */
const SD15 = {
  _class_name: "PNDMScheduler",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
};

describe("FlowMatchEulerDiscreteScheduler matches diffusers as the Flux and SD3 pipelines call it", () => {
  it("the fixture covers both pipelines, static and dynamic shifting, and image-to-image", () => {
    const names = fixture.scenarios.map((s) => s.name);
    expect(names).toEqual([
      "flux-schnell-4",
      "flux-dev-28-512px",
      "flux-dev-20-1024px",
      "sd3-28",
      "flux-dev-img2img-20-s0.6",
      "sd3-img2img-30-s0.75",
    ]);
  });

  for (const sc of fixture.scenarios) {
    it(`${sc.name}: timesteps, σs, start and every step to 1e-5`, () => {
      const s = createScheduler({ ...sc.config, _class_name: sc.class }, sc.num_inference_steps, null, {
        flowSigmas: sc.pipeline === "flux" ? "flux" : "default",
        ...(sc.image_seq_len === null ? {} : { imageSeqLen: sc.image_seq_len }),
        ...(sc.strength === null ? {} : { strength: sc.strength }),
      });
      expect(s.className).toBe("FlowMatchEulerDiscreteScheduler");
      expect(s.numInferenceSteps).toBe(sc.num_inference_steps);
      expect(s.initNoiseSigma).toBe(1);
      expect(mismatches(s.timesteps, sc.all_timesteps)).toEqual([]);
      expect(mismatches(s.sigmas ?? [], sc.all_sigmas)).toEqual([]);
      expect(s.beginIndex).toBe(sc.t_start ?? 0);
      if (sc.mu !== null && sc.image_seq_len !== null) {
        expect(calculateShift(sc.image_seq_len, sc.config)).toBeCloseTo(sc.mu, 12);
      }

      let sample: Float32Array = Float32Array.from(fixture.init);
      if (sc.start_sample) {
        // The Flux and SD3 img2img pipelines noise the clean latents with the same draw the
        // fixture starts text-to-image from.
        sample = s.addNoise(Float32Array.from(fixture.clean), Float32Array.from(fixture.init), s.beginIndex);
        expect(mismatches(sample, sc.start_sample)).toEqual([]);
      }
      expect(sc.steps.length).toBe(s.timesteps.length - s.beginIndex);
      sc.steps.forEach((ref, k) => {
        const i = s.beginIndex + k;
        const t = s.timesteps[i] as number;
        expect(Math.abs(t - ref.t), `timestep of step ${i}`).toBeLessThanOrEqual(1e-5);
        const input = s.scaleModelInput(sample, i);
        expect(input).toBe(sample);
        sample = s.step(fakeTransformer(input, t), i, sample, noNoise);
        expect(mismatches(sample, ref.prev_sample), `prev_sample of step ${i}`).toEqual([]);
      });
    });
  }
});

describe("calculateShift", () => {
  it("is the line through (256, 0.5) and (4096, 1.15) by default, as the fixture's μs", () => {
    expect(calculateShift(256)).toBeCloseTo(0.5, 15);
    expect(calculateShift(4096)).toBeCloseTo(1.15, 15);
    for (const sc of fixture.scenarios) {
      if (sc.mu === null || sc.image_seq_len === null) continue;
      expect(calculateShift(sc.image_seq_len)).toBeCloseTo(sc.mu, 12);
      expect(calculateShift(sc.image_seq_len, sc.config)).toBeCloseTo(sc.mu, 12);
    }
  });

  it("takes the config's points, null meaning the default", () => {
    const cfg = { base_image_seq_len: 1024, max_image_seq_len: 2048, base_shift: 1, max_shift: 2 };
    expect(calculateShift(1536, cfg)).toBeCloseTo(1.5, 15);
    expect(calculateShift(4096, { max_shift: null })).toBeCloseTo(1.15, 15);
  });
});

describe("the flow-match scheduler's options", () => {
  it("shifts larger images further toward noise when the config shifts dynamically", () => {
    const small = createScheduler(FLUX_DEV, 20, null, { flowSigmas: "flux", imageSeqLen: 256 });
    const large = createScheduler(FLUX_DEV, 20, null, { flowSigmas: "flux", imageSeqLen: 4096 });
    for (let i = 1; i < 20; i++) expect(large.sigmas?.[i]).toBeGreaterThan(small.sigmas?.[i] as number);
  });

  it("refuses dynamic shifting without an image sequence length instead of producing NaN", () => {
    expect(() => createScheduler(FLUX_DEV, 20, null, { flowSigmas: "flux" })).toThrow(/imageSeqLen/);
    expect(() => createScheduler(FLUX_DEV, 20, null, { imageSeqLen: 0 })).toThrow(RangeError);
    // A static config ignores it, as diffusers ignores `mu` there.
    expect(createScheduler(SD3, 28).sigmas?.every(Number.isFinite)).toBe(true);
  });

  it("runs dynamic shifting on the scheduler's own σs too (SD3's pipelines with such a config)", () => {
    const s = createScheduler(FLUX_DEV, 10, null, { imageSeqLen: 4096 });
    // linspace(1, 0.001, 10) through e^μ / (e^μ + 1/σ - 1), μ = 1.15.
    const e = Math.exp(1.15);
    const expected = Array.from({ length: 10 }, (_, i) => {
      const sigma = 1 - (i * 0.999) / 9;
      return e / (e + 1 / sigma - 1);
    });
    expect(mismatches(s.sigmas?.subarray(0, 10) ?? [], expected, 1e-6)).toEqual([]);
    expect(s.sigmas?.[10]).toBe(0);
  });

  it.each([
    ["use_karras_sigmas", true],
    ["use_exponential_sigmas", true],
    ["use_beta_sigmas", true],
    ["invert_sigmas", true],
    ["shift_terminal", 0.1],
    ["time_shift_type", "linear"],
    ["stochastic_sampling", true],
  ])("refuses %s = %j as unsupported rather than ignoring it", (key, value) => {
    expect(() => createScheduler({ ...SD3, [key]: value }, 20)).toThrow(
      expect.objectContaining({
        code: "unsupported_operation",
        details: expect.objectContaining({ parameter: "scheduler" }),
      }),
    );
  });

  it("treats a null or zero shift_terminal as off, as diffusers does", () => {
    const plain = Array.from(createScheduler(SD3, 20).sigmas ?? []);
    expect(Array.from(createScheduler({ ...SD3, shift_terminal: null }, 20).sigmas ?? [])).toEqual(plain);
    expect(Array.from(createScheduler({ ...SD3, shift_terminal: 0 }, 20).sigmas ?? [])).toEqual(plain);
  });

  it("refuses a malformed config as the model's fault (internal)", () => {
    for (const bad of [{ shift: -1 }, { base_image_seq_len: 4096 }, { time_shift_type: "cubic" }]) {
      expect(() => createScheduler({ ...SD3, ...bad }, 20)).toThrow(
        expect.objectContaining({ code: "internal" }),
      );
    }
  });
});

describe("flow-match image-to-image", () => {
  it("starts at int(steps - steps × strength), the Flux/SD3 rule, not SD's", () => {
    expect(createScheduler(SD3, 30, null, { strength: 0.75 }).beginIndex).toBe(7);
    expect(createScheduler(SD15, 30, "euler", { strength: 0.75 }).beginIndex).toBe(8);
    expect(createScheduler(SD3, 20, null, { strength: 1 }).beginIndex).toBe(0);
    // 25 × 0.56 = 14.000000000000002 in floats, so 25 - it truncates to 10, as in Python.
    expect(createScheduler(SD3, 25, null, { strength: 0.56 }).beginIndex).toBe(10);
    // Any strength above 0 leaves at least one step.
    expect(createScheduler(SD3, 20, null, { strength: 0.01 }).beginIndex).toBe(19);
  });

  it("refuses a strength outside [0, 1] or one that leaves no step", () => {
    for (const strength of [-0.1, 1.5, Number.NaN, 0]) {
      expect(() => createScheduler(SD3, 20, null, { strength })).toThrow(
        expect.objectContaining({ code: "invalid_parameter", details: { parameter: "strength" } }),
      );
    }
  });

  it("with a perfect velocity model lands exactly on the data point from any start", () => {
    // On the straight path x_σ = σ·ε + (1 - σ)·c the ideal velocity is ε - c everywhere, so
    // Euler is exact: whatever the σs, the last step (to σ = 0) returns c.
    const c = Float32Array.from({ length: 16 }, (_, i) => Math.sin(i + 1));
    const eps = Float32Array.from({ length: 16 }, (_, i) => Math.cos(3 * i));
    const v = eps.map((e, i) => e - (c[i] as number));
    const runs: Scheduler[] = [
      createScheduler(SD3, 28),
      createScheduler(SD3, 30, null, { strength: 0.75 }),
      createScheduler(FLUX_DEV, 20, null, { flowSigmas: "flux", imageSeqLen: 1024, strength: 0.6 }),
    ];
    for (const s of runs) {
      let x = s.beginIndex === 0 ? eps.slice() : s.addNoise(c, eps, s.beginIndex);
      for (let i = s.beginIndex; i < s.timesteps.length; i++) x = s.step(v, i, x, noNoise);
      expect(mismatches(x, Array.from(c), 1e-5)).toEqual([]);
    }
  });
});

describe("a scheduler of the wrong family is refused", () => {
  const familyError = (f: () => unknown): AppError => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      return e as AppError;
    }
    throw new Error("expected an AppError");
  };

  it("knows flow-matching configs by class, or by flow_prediction", () => {
    expect(isFlowMatchConfig(SD3)).toBe(true);
    expect(isFlowMatchConfig({ _class_name: "FlowMatchHeunDiscreteScheduler" })).toBe(true);
    expect(
      isFlowMatchConfig({ _class_name: "DPMSolverMultistepScheduler", prediction_type: "flow_prediction" }),
    ).toBe(true);
    expect(isFlowMatchConfig(SD15)).toBe(false);
    expect(isFlowMatchConfig({})).toBe(false);
  });

  it("refuses every DDPM sampler for a flow-matching model, naming flow_match_euler", () => {
    for (const name of schedulerNames.filter((n) => n !== "flow_match_euler")) {
      const err = familyError(() => createScheduler(SD3, 20, name));
      expect(err.code).toBe("invalid_parameter");
      expect(err.details).toEqual({ parameter: "scheduler" });
      expect(err.message).toContain("flow_match_euler");
    }
    expect(familyError(() => createScheduler(SD3, 20, "EulerDiscreteScheduler")).code).toBe(
      "invalid_parameter",
    );
  });

  it("refuses flow_match_euler for a DDPM-trained model", () => {
    for (const name of ["flow_match_euler", "FlowMatchEulerDiscreteScheduler"]) {
      const err = familyError(() => createScheduler(SD15, 20, name));
      expect(err.code).toBe("invalid_parameter");
      expect(err.details).toEqual({ parameter: "scheduler" });
      expect(err.message).not.toContain("flow_match_euler,");
      expect(err.message).toContain("dpmpp_2m");
    }
  });

  it("runs flow_match_euler, by either name, on another flow-matching model's config", () => {
    const heun = { ...SD3, _class_name: "FlowMatchHeunDiscreteScheduler" };
    const own = familyError(() => createScheduler(heun, 20));
    expect(own.code).toBe("unsupported_operation");
    expect(own.message).toContain("flow_match_euler");
    expect(own.message).not.toContain("dpmpp_2m");
    for (const name of ["flow_match_euler", "FlowMatchEulerDiscreteScheduler", "Flow-Match-Euler"]) {
      const s = createScheduler(heun, 28, name);
      expect(s.className).toBe("FlowMatchEulerDiscreteScheduler");
      expect(Array.from(s.timesteps)).toEqual(Array.from(createScheduler(SD3, 28).timesteps));
    }
  });
});
