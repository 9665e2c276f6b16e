import { AppError } from "@hybrid/protocol";

/** A 400 `invalid_parameter` naming the request parameter at fault. */
export const invalidParameter = (parameter: string, message: string): AppError =>
  new AppError("invalid_parameter", `Invalid ${parameter}: ${message}.`, { details: { parameter } });

/**
 * The first step index an image-to-image run starts at, by diffusers' `get_timesteps`: it runs
 * the last ⌊steps × strength⌋ steps of the txt2img schedule, so strength 1 is the full schedule
 * and 0.5 its second half.
 *
 * @throws AppError `invalid_parameter` (`strength`) when strength is outside [0, 1] or leaves no
 * step to run.
 */
export function strengthBeginIndex(numInferenceSteps: number, strength: number): number {
  if (!(strength >= 0 && strength <= 1))
    throw invalidParameter("strength", `${strength} is not between 0 and 1`);
  // Python's int() truncates the float product, so 0.29 × 100 runs 28 steps, not 29.
  const run = Math.min(Math.trunc(numInferenceSteps * strength), numInferenceSteps);
  if (run < 1) {
    throw invalidParameter(
      "strength",
      `${strength} leaves no denoising step out of ${numInferenceSteps} (needs at least ${1 / numInferenceSteps})`,
    );
  }
  return numInferenceSteps - run;
}

/** Checks a step count before a schedule is built from it. */
export function checkSteps(numInferenceSteps: number, max: number): void {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > max) {
    throw invalidParameter(
      "num_inference_steps",
      `${numInferenceSteps} is not an integer between 1 and ${max}`,
    );
  }
}

/**
 * The first step index of a flow-matching image-to-image run, by the Flux and SD3 pipelines'
 * `get_timesteps`: unlike the SD pipelines they truncate `steps - steps × strength`, not the
 * product, so 30 steps at 0.75 start at index 7 (23 steps), where SD's rule starts at 8.
 *
 * @throws AppError `invalid_parameter` (`strength`) when strength is outside [0, 1] or leaves no
 * step to run.
 */
export function flowStrengthBeginIndex(numInferenceSteps: number, strength: number): number {
  if (!(strength >= 0 && strength <= 1))
    throw invalidParameter("strength", `${strength} is not between 0 and 1`);
  const begin = Math.trunc(numInferenceSteps - Math.min(numInferenceSteps * strength, numInferenceSteps));
  if (begin >= numInferenceSteps) {
    throw invalidParameter(
      "strength",
      `${strength} leaves no denoising step out of ${numInferenceSteps} (it must be above 0)`,
    );
  }
  return begin;
}
