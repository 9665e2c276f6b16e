import { arange, linspace, reversed, roundHalfEven } from "./numeric.ts";

/**
 * How inference timesteps are picked out of the training range (table 2 of "Common Diffusion
 * Noise Schedules and Sample Steps are Flawed"): `leading` counts up from 0 by T/n,
 * `trailing` counts down from T by T/n, `linspace` spreads n points over [0, T-1] evenly.
 */
export type TimestepSpacing = "linspace" | "leading" | "trailing";

/** `leading`: `(0…n-1) × ⌊T/n⌋ + offset`, descending. `steps_offset` 1 is what SD 1.x uses. */
export function leadingTimesteps(n: number, T: number, offset: number): Float64Array {
  const ratio = Math.floor(T / n);
  return reversed(arange(0, n, 1).map((i) => roundHalfEven(i * ratio) + offset));
}

/**
 * `trailing`: `round(from, from - T/n, …) - 1` down to (not including) 0, descending, so the
 * first step is at the last training timestep (from = T) however few steps there are.
 *
 * One deliberate difference from diffusers: for some n (61, 103, 121… with T = 1000) float
 * rounding gives numpy's `arange` an (n+1)-th element ≈ 0, i.e. a timestep of -1, which diffusers
 * then runs as an extra step (and DDIM reads ᾱ[-1], the *last* entry). It is dropped here, which
 * leaves exactly n steps, identical to diffusers' first n.
 */
export function trailingTimesteps(n: number, T: number, from = T): Float64Array {
  return arange(from, 0, -T / n)
    .map((t) => roundHalfEven(t) - 1)
    .filter((t) => t >= 0);
}

/** `linspace`: n evenly spaced points over [0, T-1], descending and not rounded. */
export function linspaceTimesteps(n: number, T: number): Float64Array {
  return reversed(linspace(0, T - 1, n));
}

/**
 * A schedule's descending timesteps for its spacing. `linspace` is the one that lands between
 * integers: the integer schedulers (DDIM, PNDM, LCM-style) round it ties-to-even as numpy does
 * ({@link roundHalfEven}); the Euler samplers keep float32 values.
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  n: number,
  T: number,
  stepsOffset: number,
  roundLinspace: (t: number) => number,
): Float64Array {
  switch (spacing) {
    case "linspace":
      return linspaceTimesteps(n, T).map(roundLinspace);
    case "leading":
      return leadingTimesteps(n, T, stepsOffset);
    case "trailing":
      return trailingTimesteps(n, T);
  }
}

/** The descending integer timesteps of DDIM, PNDM and LCM-style schedulers. */
export const integerTimesteps = (spacing: TimestepSpacing, n: number, T: number, stepsOffset: number) =>
  spacedTimesteps(spacing, n, T, stepsOffset, roundHalfEven);
