import { randomInt } from "node:crypto";

/**
 * mulberry32: a small, fast, seedable PRNG (uniform in [0, 1)). The same seed gives the same
 * stream on every machine, which the model generator relies on for byte-identical models.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` standard normal samples (Box–Muller); the same seed gives the same samples. */
export function gaussian(n: number, seed: number | null): Float32Array {
  const rand = mulberry32(seed ?? randomInt(2 ** 32));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/**
 * A stream of standard normal samples: each call continues where the last one stopped, so a
 * generation that draws noise step by step gets the same values from the same seed.
 */
export function gaussianStream(seed: number): (n: number) => Float32Array {
  const rand = mulberry32(seed);
  let spare: number | null = null;
  return (n) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (spare !== null) {
        out[i] = spare;
        spare = null;
        continue;
      }
      const u = 1 - rand();
      const v = rand();
      const r = Math.sqrt(-2 * Math.log(u));
      out[i] = r * Math.cos(2 * Math.PI * v);
      spare = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  };
}
