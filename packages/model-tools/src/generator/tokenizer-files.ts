/** CLIP's context length: tokenizer_config's model_max_length and the text encoder's position table. */
export const CLIP_MAX_LENGTH = 77;

export const BOS_TOKEN = "<|startoftext|>";
export const EOS_TOKEN = "<|endoftext|>";

/**
 * GPT-2/CLIP's bytes_to_unicode: every byte maps to a printable character, so byte-level BPE tokens
 * never contain whitespace or control characters. The order is CLIP's vocabulary order: printable
 * bytes first ('!'..'~', '¡'..'¬', '®'..'ÿ'), then the rest mapped to U+0100 upwards.
 */
export function bytesToUnicode(): { byte: number; char: string }[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table = printable.map((byte) => ({ byte, char: String.fromCodePoint(byte) }));
  let n = 0;
  for (let byte = 0; byte < 256; byte++) {
    if (!printable.includes(byte)) table.push({ byte, char: String.fromCodePoint(256 + n++) });
  }
  return table;
}

/** CLIP's pre-tokenizer split (re.IGNORECASE; the text is lower-cased first anyway). */
const WORD_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;

/**
 * The text the synthetic merges (and the T5 Unigram pieces) are learned from: prompt-like English, so that common prompt words
 * ("a photo of a cat") become single tokens as they do with the real CLIP vocabulary.
 */
export const CORPUS = `
a photo of a cat sitting on a table. a photo of a dog running in the park.
a beautiful painting of a mountain landscape at sunset, highly detailed, trending on artstation.
portrait of a woman with red hair, digital art, sharp focus, studio lighting, 4k, 8k.
an astronaut riding a horse on the moon, cinematic, dramatic light, concept art.
a castle in the forest, fantasy, intricate, elegant, illustration, by greg rutkowski.
a city street at night with neon lights and rain, photorealistic, high quality, masterpiece.
the sea and the sky, a boat on the water, oil painting, soft colors, in the style of monet.
a cute little robot, 3d render, octane render, unreal engine, bokeh, best quality.
a bowl of fruit on the kitchen table, still life, natural light, the best photo of the year.
a man and a woman walking on the beach at sunrise, film grain, wide angle, golden hour.
the old house on the hill, the green trees and the blue river, watercolor, detailed, beautiful.
a red car in front of a white house, a black cat in the window, award winning photography.
`;

/** Merges stop at this count, or earlier once no pair occurs twice in the corpus. */
const MAX_MERGES = 256;

export interface ClipVocabulary {
  /** Tokens in id order: 256 byte tokens, their `</w>` forms, one token per merge, then bos and eos. */
  tokens: string[];
  /** BPE merges in rank order; merge i produces token 512 + i, as in CLIP. */
  merges: [string, string][];
  bosId: number;
  eosId: number;
}

let cached: ClipVocabulary | undefined;

/**
 * A small byte-level BPE vocabulary in CLIP's exact construction (openai/CLIP's `SimpleTokenizer`):
 * byte tokens, `</w>` end-of-word forms, merges learned greedily (most frequent pair, ties by
 * string order) from a fixed corpus, and the two special tokens as the last ids. Deterministic.
 */
export function clipVocabulary(): ClipVocabulary {
  if (cached) return cached;
  const base = bytesToUnicode();
  const byteChar = new Map(base.map((e) => [e.byte, e.char]));
  const tokens = [...base.map((e) => e.char), ...base.map((e) => `${e.char}</w>`)];
  const known = new Set(tokens);

  const wordCounts = new Map<string, number>();
  for (const word of CORPUS.toLowerCase().match(WORD_PATTERN) ?? []) {
    wordCounts.set(word, (wordCounts.get(word) ?? 0) + 1);
  }
  const words = [...wordCounts].map(([word, count]) => {
    const symbols = Array.from(new TextEncoder().encode(word), (b) => byteChar.get(b)!);
    symbols[symbols.length - 1] += "</w>";
    return { symbols, count };
  });

  const merges: [string, string][] = [];
  while (merges.length < MAX_MERGES) {
    const pairCounts = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
      }
    }
    // A pair whose concatenation is already a token is skipped, so every merge adds exactly one
    // new token and ids stay contiguous, as CLIP's vocabulary construction assumes.
    const best = [...pairCounts]
      .filter(([key, count]) => count >= 2 && !known.has(key.replace(" ", "")))
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
    if (!best) break;
    const [left, right] = best[0].split(" ") as [string, string];
    merges.push([left, right]);
    tokens.push(left + right);
    known.add(left + right);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (w.symbols[i] === left && w.symbols[i + 1] === right) {
          out.push(left + right);
          i++;
        } else {
          out.push(w.symbols[i]!);
        }
      }
      w.symbols = out;
    }
  }
  tokens.push(BOS_TOKEN, EOS_TOKEN);
  cached = { tokens, merges, bosId: tokens.length - 2, eosId: tokens.length - 1 };
  return cached;
}

/** The AddedToken form transformers writes for CLIP's special tokens. */
function addedToken(content: string) {
  return { content, lstrip: false, normalized: true, rstrip: false, single_word: false };
}

/**
 * The four files transformers' `CLIPTokenizer.save_pretrained` writes (what optimum copies into
 * tokenizer/ and tokenizer_2/), as file name → contents. `padToken` is "<|endoftext|>" for SD 1.x
 * and SDXL's first tokenizer, "!" for SDXL's tokenizer_2.
 */
export function tokenizerFiles(padToken: string): Record<string, string> {
  const v = clipVocabulary();
  const padId = v.tokens.indexOf(padToken);
  if (padId < 0) throw new Error(`pad token ${JSON.stringify(padToken)} is not in the vocabulary`);
  const specials: Record<string, unknown> = {
    [String(v.bosId)]: { ...addedToken(BOS_TOKEN), special: true },
    [String(v.eosId)]: { ...addedToken(EOS_TOKEN), special: true },
  };
  if (padToken !== EOS_TOKEN) specials[String(padId)] = { ...addedToken(padToken), special: true };
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  return {
    // Written by hand rather than via an object, whose integer-like keys ("0".."9") JSON.stringify
    // would move to the front: the file lists tokens in id order, as the real vocab.json does.
    "vocab.json": `{${v.tokens.map((t, id) => `${JSON.stringify(t)}:${id}`).join(",")}}`,
    "merges.txt": `#version: 0.2\n${v.merges.map(([a, b]) => `${a} ${b}`).join("\n")}\n`,
    "tokenizer_config.json": json({
      add_prefix_space: false,
      added_tokens_decoder: specials,
      bos_token: BOS_TOKEN,
      clean_up_tokenization_spaces: true,
      do_lower_case: true,
      eos_token: EOS_TOKEN,
      errors: "replace",
      model_max_length: CLIP_MAX_LENGTH,
      pad_token: padToken,
      tokenizer_class: "CLIPTokenizer",
      unk_token: EOS_TOKEN,
    }),
    "special_tokens_map.json": json({
      bos_token: addedToken(BOS_TOKEN),
      eos_token: addedToken(EOS_TOKEN),
      pad_token: padToken,
      unk_token: addedToken(EOS_TOKEN),
    }),
  };
}
