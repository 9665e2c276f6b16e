/**
 * The few numpy/torch array routines the schedulers are built from, reproduced operation by
 * operation so that schedules come out bit-identical to diffusers' (which builds them with
 * numpy in float64 and torch in float32). Values are float64 numbers throughout; `f32` rounds
 * where the reference stores float32.
 */

/** Rounds to the nearest float32, as storing into a float32 tensor does. */
export const f32: (x: number) => number = Math.fround;

/** numpy's `round`: to the nearest integer, ties to even (`round(2.5) == 2`). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round sends ties up; a tie that landed on an odd number belongs one lower.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * numpy's `arange(start, stop, step)` for floats: length `ceil((stop - start) / step)`, and
 * element i is `start + i * delta` where delta is re-derived from the first two elements
 * (numpy's fill does this, and it can differ from `step` in the last bit).
 */
export function arange(start: number, stop: number, step: number): Float64Array {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(n);
  if (n === 0) return out;
  out[0] = start;
  if (n === 1) return out;
  const second = start + step;
  const delta = second - start;
  out[1] = second;
  for (let i = 2; i < n; i++) out[i] = start + i * delta;
  return out;
}

/** numpy's `linspace(start, stop, num)` (endpoint included, computed in float64). */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  // numpy pins the endpoint so that rounding in the multiply can't move it.
  out[num - 1] = stop;
  return out;
}

/**
 * torch's CPU `linspace` in float32: the step is computed in float32 and the second half of
 * the range is measured back from `end`, which is what makes it differ from numpy's.
 */
export function linspaceF32(start: number, end: number, steps: number): Float64Array {
  const s = f32(start);
  const e = f32(end);
  const out = new Float64Array(steps);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)));
  }
  return out;
}

/**
 * numpy's `interp(x, arange(len(fp)), fp)`: piecewise-linear lookup of `fp` at a fractional
 * index, clamped to the ends; an exact integer index returns the entry itself.
 */
export function interpIndex(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1;
  if (x <= 0) return fp[0] as number;
  if (x >= last) return fp[last] as number;
  const j = Math.floor(x);
  const lo = fp[j] as number;
  if (x === j) return lo;
  const slope = (fp[j + 1] as number) - lo;
  return slope * (x - j) + lo;
}

/** A copy of `a`, back to front. */
export function reversed(a: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[a.length - 1 - i] as number;
  return out;
}
