// IEEE 754 binary16 and bfloat16 <-> float32, bit-exact, round-to-nearest-even.
// Operates on whole arrays through Uint32 views: these run on every tensor the service moves.

let halfTable: Float32Array | undefined;

/** Lookup table of all 65536 halves as float32 (256 KiB, built on first use). */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // ±0 and subnormals: mant * 2^-24, exact in float32
      table[h] = (sign ? -1 : 1) * mant * 2 ** -24;
    } else if (exp === 0x1f) {
      bits[h] = sign | 0x7f800000 | (mant << 13);
    } else {
      bits[h] = sign | ((exp + 112) << 23) | (mant << 13);
    }
  }
  halfTable = table;
  return table;
}

function halfBits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    let h = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, which is the correct rounding (up to Inf).
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** float32 → IEEE half bits. Overflow → ±Inf, NaN stays NaN, tiny values → subnormals or ±0. */
export function float32ToFloat16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) out[i] = halfBits(u[i]!);
  return out;
}

/** IEEE half bits → float32 (exact). */
export function float16ToFloat32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const table = halfToFloatTable();
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

/** float32 → bfloat16 bits (upper half of the float32, rounded to nearest even; NaN kept quiet). */
export function float32ToBfloat16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const b = u[i]!;
    if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) out[i] = (b >>> 16) | 0x40;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** bfloat16 bits → float32 (exact). */
export function bfloat16ToFloat32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) u[i] = src[i]! << 16;
  return out;
}
