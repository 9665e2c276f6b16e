import { describe, expect, it } from "vitest";
import { createScheduler } from "./index.ts";
import { arange, linspace, roundHalfEven } from "./numeric.ts";
import { trailingTimesteps } from "./spacing.ts";

// Expected values were computed with numpy, line for line as diffusers' `set_timesteps` does.
const SD = {
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  num_train_timesteps: 1000,
  skip_prk_steps: true,
};
const timesteps = (cls: string, n: number, extra: Record<string, unknown> = {}, strength = 1) =>
  Array.from(createScheduler({ ...SD, _class_name: cls, ...extra }, n, null, { strength }).timesteps);

describe("numpy semantics", () => {
  it("rounds ties to even", () => {
    expect([0.5, 1.5, 2.5, -1.5, 166.5, 166.4999].map(roundHalfEven)).toEqual([0, 2, 2, -2, 166, 166]);
  });

  it("arange and linspace have numpy's lengths and endpoints", () => {
    expect(Array.from(arange(1000, 0, -1000 / 3)).map(Math.round)).toEqual([1000, 667, 333]);
    // numpy's own float quirk: 1000 / (1000 / 61) rounds above 61, so 62 elements.
    expect(arange(1000, 0, -1000 / 61).length).toBe(62);
    expect(Array.from(linspace(0, 999, 7))).toEqual([0, 166.5, 333, 499.5, 666, 832.5, 999]);
  });
});

describe("timestep spacing, per class as diffusers does it", () => {
  it("Euler: leading with steps_offset, trailing from T-1, linspace unrounded", () => {
    const leading = { timestep_spacing: "leading", steps_offset: 1 };
    expect(timesteps("EulerDiscreteScheduler", 7, leading)).toEqual([853, 711, 569, 427, 285, 143, 1]);
    expect(timesteps("EulerDiscreteScheduler", 7, { timestep_spacing: "trailing" })).toEqual([
      999, 856, 713, 570, 428, 285, 142,
    ]);
    expect(timesteps("EulerAncestralDiscreteScheduler", 7)).toEqual([999, 832.5, 666, 499.5, 333, 166.5, 0]);
  });

  it("DDIM: linspace rounded half to even, trailing", () => {
    expect(timesteps("DDIMScheduler", 7, { timestep_spacing: "linspace" })).toEqual([
      999, 832, 666, 500, 333, 166, 0,
    ]);
    expect(timesteps("DDIMScheduler", 3, { timestep_spacing: "trailing" })).toEqual([999, 666, 332]);
  });

  it("PLMS: the second timestep repeated, for every spacing", () => {
    expect(timesteps("PNDMScheduler", 7, { timestep_spacing: "linspace" })).toEqual([
      999, 832, 832, 666, 500, 333, 166, 0,
    ]);
    expect(timesteps("PNDMScheduler", 7, { steps_offset: 1 })).toEqual([
      853, 711, 711, 569, 427, 285, 143, 1,
    ]);
    expect(timesteps("PNDMScheduler", 7, { timestep_spacing: "trailing" })).toEqual([
      999, 856, 856, 713, 570, 428, 285, 142,
    ]);
    expect(timesteps("PNDMScheduler", 1, { steps_offset: 1 })).toEqual([1]);
  });

  it("DPM-Solver: n of n + 1 points", () => {
    expect(timesteps("DPMSolverMultistepScheduler", 4)).toEqual([999, 749, 500, 250]);
    expect(timesteps("DPMSolverMultistepScheduler", 7)).toEqual([999, 856, 714, 571, 428, 285, 143]);
    expect(timesteps("DPMSolverMultistepScheduler", 4, { timestep_spacing: "leading" })).toEqual([
      800, 600, 400, 200,
    ]);
    expect(
      timesteps("DPMSolverMultistepScheduler", 7, { timestep_spacing: "leading", steps_offset: 1 }),
    ).toEqual([876, 751, 626, 501, 376, 251, 126]);
    expect(timesteps("DPMSolverMultistepScheduler", 7, { timestep_spacing: "trailing" })).toEqual([
      999, 856, 713, 570, 428, 285, 142,
    ]);
  });

  it("LCM: picks from its distillation schedule, shortened by strength", () => {
    expect(timesteps("LCMScheduler", 7)).toEqual([999, 859, 719, 579, 439, 299, 159]);
    expect(timesteps("LCMScheduler", 4, {}, 0.5)).toEqual([499, 379, 259, 139]);
    expect(timesteps("LCMScheduler", 3, {}, 0.3)).toEqual([299, 199, 99]);
  });

  it("trailing never yields the stray timestep -1 numpy's rounding gives diffusers for some n", () => {
    for (let n = 1; n <= 1000; n++) {
      const t = trailingTimesteps(n, 1000);
      expect(t.length).toBe(n);
      expect(t[n - 1]).toBeGreaterThanOrEqual(0);
    }
    expect(Array.from(trailingTimesteps(61, 1000).subarray(-2))).toEqual([32, 15]);
  });
});
