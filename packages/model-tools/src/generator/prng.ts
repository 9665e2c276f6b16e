/**
 * mulberry32: a small, fast, seedable PRNG (uniform in [0, 1)). Generated weights are drawn from
 * it, so the same seed gives byte-identical models on every machine: it is part of the
 * generator's output format (changing it changes every generated model, and must bump the
 * generator versions). The runtime's noise uses the same algorithm in @hybrid/inference, but the
 * two are independent on purpose: neither may change the other's bytes.
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
