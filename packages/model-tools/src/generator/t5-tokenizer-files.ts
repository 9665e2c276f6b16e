import { CORPUS } from "./tokenizer-files.ts";

/** T5's special tokens and their fixed ids (google/t5-v1_1: pad 0, eos 1, unk 2). */
export const T5_PAD = { id: 0, content: "<pad>" } as const;
export const T5_EOS = { id: 1, content: "</s>" } as const;
export const T5_UNK = { id: 2, content: "<unk>" } as const;
/** SentencePiece's word-boundary mark, prepended to every word. */
export const METASPACE = "\u2581";
/** T5TokenizerFast's model_max_length (Flux dev asks for 512 tokens, schnell and SD3 for 256). */
export const T5_MAX_LENGTH = 512;

export interface T5Vocabulary {
  /** Unigram pieces in id order with their log-probability scores; the first three are pad, eos, unk. */
  pieces: [string, number][];
}

let cached: T5Vocabulary | undefined;

/**
 * A small SentencePiece-style Unigram vocabulary: each word that occurs at least twice in the
 * prompt corpus as one `▁word` piece (so "a photo of a cat" is five pieces, as with the real T5),
 * every printable ASCII character alone and after `▁` as fallbacks, scored by log frequency so
 * that the Viterbi segmentation prefers whole words. Anything else (non-ASCII) is `<unk>`, as T5
 * has no byte fallback. Deterministic.
 */
export function t5Vocabulary(): T5Vocabulary {
  if (cached) return cached;
  const counts = new Map<string, number>();
  for (const word of CORPUS.match(/[\p{L}\p{N}]+/gu) ?? []) counts.set(word, (counts.get(word) ?? 0) + 1);
  const words = [...counts].filter(([, n]) => n >= 2);
  const total = words.reduce((a, [, n]) => a + n, 0);
  const scored: [string, number][] = words.map(([w, n]) => [METASPACE + w, Math.log(n / total)]);
  // Characters score well below any word, so a known word is never spelled out.
  const charScore = Math.log(1 / total) - 4;
  scored.push([METASPACE, charScore]);
  const known = new Set(scored.map(([p]) => p));
  for (let c = 0x21; c <= 0x7e; c++) {
    const ch = String.fromCharCode(c);
    scored.push([ch, charScore - 1]);
    // One-letter words ("▁a") are already pieces; a piece appears once.
    if (!known.has(METASPACE + ch)) scored.push([METASPACE + ch, charScore - 0.5]);
  }
  // Scores are rounded like SentencePiece's float32 export, and written in score order like its vocab.
  const pieces = scored
    .map(([p, s]): [string, number] => [p, Math.fround(s)])
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  cached = {
    pieces: [[T5_PAD.content, 0], [T5_EOS.content, 0], [T5_UNK.content, 0], ...pieces],
  };
  return cached;
}

function addedToken(t: { id: number; content: string }) {
  return { ...t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/**
 * What transformers' `T5TokenizerFast.save_pretrained` writes (optimum copies it into Flux's
 * tokenizer_2/ and SD3's tokenizer_3/), as file name → contents: a standard tokenizers
 * `tokenizer.json` (Unigram model, WhitespaceSplit + Metaspace "▁" with prepend_scheme "always",
 * a template that appends `</s>`), tokenizer_config.json and special_tokens_map.json. The slow
 * tokenizer's spiece.model is left out: nothing here reads it.
 */
export function t5TokenizerFiles(): Record<string, string> {
  const v = t5Vocabulary();
  const specials = [T5_PAD, T5_EOS, T5_UNK];
  const metaspace = { type: "Metaspace", replacement: METASPACE, prepend_scheme: "always", split: true };
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  const mapToken = (t: { content: string }) => ({
    content: t.content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
  });
  return {
    "tokenizer.json": json({
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: specials.map(addedToken),
      normalizer: null,
      pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "WhitespaceSplit" }, metaspace] },
      post_processor: {
        type: "TemplateProcessing",
        single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: T5_EOS.content, type_id: 0 } }],
        pair: [
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: T5_EOS.content, type_id: 0 } },
          { Sequence: { id: "B", type_id: 0 } },
          { SpecialToken: { id: T5_EOS.content, type_id: 0 } },
        ],
        special_tokens: {
          [T5_EOS.content]: { id: T5_EOS.content, ids: [T5_EOS.id], tokens: [T5_EOS.content] },
        },
      },
      decoder: metaspace,
      model: { type: "Unigram", unk_id: T5_UNK.id, vocab: v.pieces, byte_fallback: false },
    }),
    "tokenizer_config.json": json({
      added_tokens_decoder: Object.fromEntries(
        specials.map((t) => [String(t.id), { ...addedToken(t), id: undefined }]),
      ),
      additional_special_tokens: [],
      clean_up_tokenization_spaces: true,
      eos_token: T5_EOS.content,
      extra_ids: 0,
      legacy: true,
      model_max_length: T5_MAX_LENGTH,
      pad_token: T5_PAD.content,
      sp_model_kwargs: {},
      tokenizer_class: "T5Tokenizer",
      unk_token: T5_UNK.content,
    }),
    "special_tokens_map.json": json({
      eos_token: mapToken(T5_EOS),
      pad_token: mapToken(T5_PAD),
      unk_token: mapToken(T5_UNK),
    }),
  };
}
