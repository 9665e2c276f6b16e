import { AppError } from "@hybrid/protocol";

/**
 * Sentencepiece's compiled normalization rules (`precompiled_charsmap`, the `Precompiled`
 * normalizer of a `tokenizer.json`), applied as sentencepiece applies them.
 *
 * Why this exists: `@huggingface/tokenizers` 0.2.0 ignores the charsmap and approximates it with
 * NFKC plus a fixed list of blanks and controls. For T5's nmt_nfkc rules that list is wrong at
 * least for U+200C/U+200D (joiners: the rules keep them, the port turns them into spaces, which
 * splits emoji sequences into extra tokens). The rules themselves are small to apply.
 *
 * Layout of the blob: a little-endian u32 byte size of a Darts-clone double-array trie over UTF-8
 * bytes, the trie's u32 units, then the replacement strings, each NUL-terminated; a trie value is
 * the byte offset of a replacement.
 */
export class PrecompiledCharsmap {
  private readonly units: Uint32Array;
  private readonly replacements: Buffer;

  private constructor(units: Uint32Array, replacements: Buffer) {
    this.units = units;
    this.replacements = replacements;
  }

  /** Parses a base64 charsmap as `tokenizer.json` stores it; throws `AppError("internal")` if malformed. */
  static fromBase64(base64: string): PrecompiledCharsmap {
    const blob = Buffer.from(base64, "base64");
    const fail = (why: string) =>
      new AppError("internal", `T5 tokenizer: precompiled_charsmap is malformed (${why}).`);
    if (blob.length < 4) throw fail("shorter than its header");
    const trieBytes = blob.readUInt32LE(0);
    if (trieBytes === 0 || trieBytes % 4 !== 0 || 4 + trieBytes > blob.length) {
      throw fail("trie size does not fit the blob");
    }
    const units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < units.length; i++) units[i] = blob.readUInt32LE(4 + 4 * i);
    return new PrecompiledCharsmap(units, blob.subarray(4 + trieBytes));
  }

  /**
   * Rewrites `text` as sentencepiece's `Normalizer` does before its whitespace handling: at each
   * position the longest rule matching the UTF-8 bytes wins; without one, the character is kept.
   * (Lone surrogates became U+FFFD when the string was encoded to UTF-8, as sentencepiece does
   * with malformed input.)
   */
  normalize(text: string): string {
    const input = Buffer.from(text, "utf8");
    const out: Buffer[] = [];
    let copyFrom = 0;
    let pos = 0;
    while (pos < input.length) {
      const match = this.longestMatch(input, pos);
      if (match) {
        if (copyFrom < pos) out.push(input.subarray(copyFrom, pos));
        out.push(match.replacement);
        pos += match.length;
        copyFrom = pos;
      } else {
        pos += utf8Length(input[pos]!);
      }
    }
    if (copyFrom === 0) return text;
    if (copyFrom < input.length) out.push(input.subarray(copyFrom));
    return Buffer.concat(out).toString("utf8");
  }

  /** Darts-clone `commonPrefixSearch`, keeping the longest hit. */
  private longestMatch(input: Buffer, start: number): { length: number; replacement: Buffer } | undefined {
    const units = this.units;
    let best: { length: number; value: number } | undefined;
    let node = offset(units[0]!);
    for (let i = start; i < input.length; i++) {
      const byte = input[i]!;
      node ^= byte;
      const unit = units[node];
      // A unit's label is its low byte plus the leaf-value bit; a mismatch ends the search.
      if (unit === undefined || (unit & 0x800000ff) !== byte) break;
      node ^= offset(unit);
      if ((unit >>> 8) & 1) {
        const value = units[node];
        if (value !== undefined) best = { length: i - start + 1, value: value & 0x7fffffff };
      }
    }
    if (!best) return undefined;
    const end = this.replacements.indexOf(0, best.value);
    const replacement = this.replacements.subarray(best.value, end === -1 ? undefined : end);
    return { length: best.length, replacement };
  }
}

function offset(unit: number): number {
  return (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
}

/** Bytes of the UTF-8 sequence a lead byte starts (1 for a stray continuation byte). */
function utf8Length(lead: number): number {
  if (lead >= 0xf0) return 4;
  if (lead >= 0xe0) return 3;
  if (lead >= 0xc0) return 2;
  return 1;
}
