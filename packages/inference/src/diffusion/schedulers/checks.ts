/**
 * Guards for programming errors at the scheduler's edges (wrong lengths, steps out of order):
 * plain errors, not `AppError`s, because no request can cause them.
 */

/** Checks that two latent arrays line up, which the element-wise step math relies on. */
export function checkSameLength(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new RangeError(`${what}: ${a.length} values against ${b.length}.`);
}

/** Checks that `stepIndex` addresses an entry of a schedule of `length` timesteps. */
export function checkStepIndex(stepIndex: number, length: number): void {
  if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= length) {
    throw new RangeError(`Step index ${stepIndex} is outside the schedule of ${length} timesteps.`);
  }
}

/**
 * Checks that a multistep sampler is stepped once per index, in order: its history of model
 * outputs would silently be wrong otherwise.
 */
export function checkNextStep(stepIndex: number, expected: number, cls: string): void {
  if (stepIndex !== expected) {
    throw new RangeError(
      `${cls} keeps earlier steps: step ${expected} comes next, not ${stepIndex} (one instance per generation).`,
    );
  }
}
