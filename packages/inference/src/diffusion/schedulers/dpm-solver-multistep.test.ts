import { describe, expect, it } from "vitest";
import { createScheduler } from "./index.ts";

// The fixture pins DPM-Solver++ 2M (midpoint) to diffusers' numbers. The other variants are
// checked against the solver's theory instead: for a model whose output depends on the noise
// level only, the ODE has a closed-form solution, and one step of an order-p solver started on
// it must miss by O(h^(p+1)), so halving the steps divides the error by about 2^(p+1).

const BASE = {
  _class_name: "DPMSolverMultistepScheduler",
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  use_karras_sigmas: true,
  // Karras σs end at σ_min, and a final σ of σ_min keeps the last step off the σ = 0 special case.
  final_sigmas_type: "sigma_min",
};

/** Worst one-step error (relative) over the steps of full order, for n steps. */
function localError(extra: Record<string, unknown>, n: number): number {
  const plus = extra.algorithm_type !== "dpmsolver";
  // ++ integrates the x₀ prediction (x₀ = sin λ), plain DPM-Solver the ε prediction (ε = cos λ).
  const s = createScheduler({ ...BASE, ...extra, prediction_type: plus ? "sample" : "epsilon" }, n);
  const sigmas = s.sigmas as Float32Array;
  const lambda = (i: number) => -Math.log(sigmas[i] as number);
  const vp = (i: number) => {
    const sigma = sigmas[i] as number;
    return { alpha: 1 / Math.sqrt(sigma * sigma + 1), sigma: sigma / Math.sqrt(sigma * sigma + 1) };
  };
  // x/σ_t' = e^λ x₀ and (x/α_t)' = -e^(-λ) ε, integrated in closed form from x = 1 at step 0.
  const F = (l: number) => (Math.exp(l) * (Math.sin(l) - Math.cos(l))) / 2;
  const G = (l: number) => (Math.exp(-l) * (Math.sin(l) - Math.cos(l))) / 2;
  const exact = (i: number) =>
    plus
      ? vp(i).sigma * (1 / vp(0).sigma + F(lambda(i)) - F(lambda(0)))
      : vp(i).alpha * (1 / vp(0).alpha - G(lambda(i)) + G(lambda(0)));
  let worst = 0;
  // The last step has h = 0 (σ_min to σ_min); the first ones warm the order up.
  for (let i = 0; i < s.timesteps.length - 1; i++) {
    const out = new Float32Array([plus ? Math.sin(lambda(i)) : Math.cos(lambda(i))]);
    const next = s.step(out, i, new Float32Array([exact(i)]), () => new Float32Array(1));
    const want = exact(i + 1);
    if (i >= 3) worst = Math.max(worst, Math.abs((next[0] as number) - want) / Math.max(1, Math.abs(want)));
  }
  return worst;
}

describe("DPM-Solver variants converge at their order", () => {
  const cases: [Record<string, unknown>, number][] = [
    [{ solver_order: 2 }, 6],
    [{ solver_order: 2, solver_type: "heun" }, 6],
    [{ solver_order: 3 }, 12],
    [{ algorithm_type: "dpmsolver", solver_order: 2 }, 6],
    [{ algorithm_type: "dpmsolver", solver_order: 2, solver_type: "heun" }, 6],
    [{ algorithm_type: "dpmsolver", solver_order: 3 }, 12],
  ];
  for (const [extra, ratio] of cases) {
    it(`${JSON.stringify(extra)}: halving h divides the one-step error by more than ${ratio}`, () => {
      const coarse = localError(extra, 10);
      const fine = localError(extra, 20);
      expect(coarse / fine).toBeGreaterThan(ratio);
    });
  }
});
