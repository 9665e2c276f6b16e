/// <reference path="../types/huggingface-tokenizers.d.ts" />
import { join } from "node:path";
import { type NormalizerConfig, Tokenizer, type TokenizerJSON } from "@huggingface/tokenizers";
import { AppError } from "@hybrid/protocol";
import { z } from "zod";
import { capTokenizedText, MAX_TOKENIZED_CHARS, readTokenizerJson } from "./clip-tokenizer.ts";
import { PrecompiledCharsmap } from "./precompiled-charsmap.ts";

const DEFAULTS = { eos_token: "</s>", pad_token: "<pad>" };

/** A special token: a plain string, or transformers' serialized `AddedToken` object. */
const TokenSpec = z
  .union([z.string(), z.looseObject({ content: z.string() })])
  .transform((t) => (typeof t === "string" ? t : t.content));

const SpecialTokens = z.looseObject({ eos_token: TokenSpec.nullish(), pad_token: TokenSpec.nullish() });

/**
 * One stage of `tokenizer.json`. Only its type is checked here: the library checks each type's
 * fields and rejects types it does not implement.
 */
const Stage = z.looseObject({ type: z.string() }).nullable().default(null);

const Precompiled = z.looseObject({
  type: z.literal("Precompiled"),
  precompiled_charsmap: z.string().nullish(),
});

const TokenizerFile = z.looseObject({
  added_tokens: z
    .array(z.looseObject({ id: z.number().int().nonnegative(), content: z.string() }))
    .default([]),
  normalizer: Stage,
  pre_tokenizer: Stage,
  post_processor: Stage,
  decoder: Stage,
  model: z
    .looseObject({
      type: z.literal("Unigram"),
      unk_id: z.number().int().nonnegative(),
      vocab: z.array(z.tuple([z.string(), z.number()])).min(1),
    })
    .refine((m) => m.unk_id < m.vocab.length, "unk_id is past the end of vocab"),
});

/** The files of a T5 tokenizer, already parsed. */
export interface T5TokenizerFiles {
  /** Parsed `tokenizer.json` (a Unigram model, as transformers converts T5's `spiece.model`). */
  tokenizer: unknown;
  /** Parsed `tokenizer_config.json`: `eos_token`, `pad_token`. */
  config?: unknown;
  /** Parsed `special_tokens_map.json`; where present it overrides `config`, as in transformers. */
  specialTokensMap?: unknown;
}

/** A prompt encoded for a T5 text encoder. */
export interface T5Encoding {
  /** Exactly `maxLength` ids: text, `</s>`, then padding. */
  ids: number[];
  /** Whether text tokens were dropped to fit (diffusers warns then). */
  truncated: boolean;
  /** Ids before padding, `</s>` included (at most `maxLength`). */
  length: number;
}

/**
 * The T5 v1.1 tokenizer of Flux (`tokenizer_2/`) and Stable Diffusion 3 (`tokenizer_3/`): a
 * sentencepiece Unigram model, text then `</s>`, truncated and padded to the length the pipeline
 * asks for, as diffusers calls it (`padding="max_length"`, `truncation=True`).
 *
 * The Unigram lattice, whitespace split, `▁` prefixing and added tokens run in
 * `@huggingface/tokenizers` from the folder's `tokenizer.json`. Its `Precompiled` normalizer is
 * applied here instead ({@link PrecompiledCharsmap}: the port does not read the charsmap), to the
 * whole prompt before the port splits out added tokens such as `</s>`; transformers splits first,
 * which differs only where normalization itself makes or breaks such a token (e.g. full-width
 * `＜/s＞`). Truncation and padding are done here because the port has none.
 */
export class T5Tokenizer {
  readonly eosId: number;
  /** Id diffusers pads with (`tokenizer.pad_token_id`, 0 for T5). */
  readonly padId: number;
  private readonly tokenizer: Tokenizer;
  private readonly charsmap: PrecompiledCharsmap | undefined;

  private constructor(
    tokenizer: Tokenizer,
    charsmap: PrecompiledCharsmap | undefined,
    ids: { eos: number; pad: number },
  ) {
    this.tokenizer = tokenizer;
    this.charsmap = charsmap;
    this.eosId = ids.eos;
    this.padId = ids.pad;
  }

  /**
   * Loads a tokenizer folder as optimum and diffusers lay it out (`tokenizer_2/`, `tokenizer_3/`):
   * `tokenizer.json` (required), `tokenizer_config.json` and `special_tokens_map.json` (optional).
   * `spiece.model`, if present, is not read: `tokenizer.json` carries the same model.
   */
  static async fromDir(dir: string): Promise<T5Tokenizer> {
    const [tokenizer, config, specialTokensMap] = await Promise.all([
      readTokenizerJson(join(dir, "tokenizer.json"), true, "T5 tokenizer"),
      readTokenizerJson(join(dir, "tokenizer_config.json"), false, "T5 tokenizer"),
      readTokenizerJson(join(dir, "special_tokens_map.json"), false, "T5 tokenizer"),
    ]);
    return T5Tokenizer.fromFiles({ tokenizer, config, specialTokensMap });
  }

  /** Builds the tokenizer from file contents; throws `AppError("internal")` on inconsistent files. */
  static fromFiles(files: T5TokenizerFiles): T5Tokenizer {
    const file = parseOrThrow(TokenizerFile, files.tokenizer, "tokenizer.json");
    const config = parseOrThrow(SpecialTokens, files.config ?? {}, "tokenizer_config.json");
    const map = parseOrThrow(SpecialTokens, files.specialTokensMap ?? {}, "special_tokens_map.json");
    const { charsmap, rest } = splitNormalizer(file.normalizer);

    let tokenizer: Tokenizer;
    try {
      // The stages are the file's own; the library validates each and throws on unknown types.
      const json = { ...file, normalizer: rest } as unknown as TokenizerJSON;
      tokenizer = new Tokenizer(json, { clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new AppError("internal", `T5 tokenizer: tokenizer.json is not usable: ${(e as Error).message}`, {
        cause: e,
      });
    }

    const idOf = (key: keyof typeof DEFAULTS) => {
      const token = map[key] ?? config[key] ?? DEFAULTS[key];
      const id = tokenizer.token_to_id(token);
      if (id === undefined) {
        throw new AppError("internal", `T5 tokenizer: ${key} "${token}" is not in tokenizer.json.`);
      }
      return id;
    };
    const ids = { eos: idOf("eos_token"), pad: idOf("pad_token") };

    // Framing is done in encode(); this checks that the file's post-processor frames the same way
    // (text then eos, as T5's TemplateProcessing does), so ids match transformers'.
    const framed = tokenizer.encode("", { add_special_tokens: true }).ids;
    if (framed.length !== 1 || framed[0] !== ids.eos) {
      throw new AppError(
        "internal",
        `T5 tokenizer: tokenizer.json's post_processor does not append only eos (${ids.eos}); it gives [${framed.join(", ")}] for an empty text.`,
      );
    }
    return new T5Tokenizer(tokenizer, charsmap, ids);
  }

  /**
   * Encodes a prompt to exactly `maxLength` ids: its first `maxLength - 1` tokens, `</s>`, then
   * {@link padId}. Only the first {@link MAX_TOKENIZED_CHARS} characters are tokenized.
   *
   * @param maxLength - The text encoder's sequence length (`max_sequence_length`: 256 for Flux
   *   schnell and SD3, 512 for Flux dev); 1 to {@link MAX_TOKENIZED_CHARS}.
   */
  encode(text: string, maxLength: number): T5Encoding {
    if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > MAX_TOKENIZED_CHARS) {
      throw new AppError(
        "internal",
        `T5 tokenizer: maxLength must be an integer from 1 to ${MAX_TOKENIZED_CHARS}, got ${maxLength}.`,
      );
    }
    const { text: capped, cut } = capTokenizedText(text);
    const normalized = this.charsmap ? this.charsmap.normalize(capped) : capped;
    const body = this.tokenizer.encode(normalized, { add_special_tokens: false }).ids;
    const truncated = cut || body.length + 1 > maxLength;
    const ids = [...(truncated ? body.slice(0, maxLength - 1) : body), this.eosId];
    const length = ids.length;
    while (ids.length < maxLength) ids.push(this.padId);
    return { ids, truncated, length };
  }

  /** Text of the given ids, special tokens (eos, padding) dropped; for messages about truncation. */
  decode(ids: readonly number[]): string {
    // The port throws on an empty array.
    if (ids.length === 0) return "";
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }
}

/**
 * Takes sentencepiece's `Precompiled` normalizer out of the file's normalizer so that it runs
 * here, with the charsmap. transformers' converters put it alone or first in a `Sequence`; what
 * follows it (e.g. `Strip`, `Replace`) is left to the library.
 */
function splitNormalizer(normalizer: { type: string } | null): {
  charsmap: PrecompiledCharsmap | undefined;
  rest: NormalizerConfig | null;
} {
  const toCharsmap = (stage: unknown) => {
    const charsmap = parseOrThrow(Precompiled, stage, "tokenizer.json normalizer").precompiled_charsmap;
    return charsmap ? PrecompiledCharsmap.fromBase64(charsmap) : undefined;
  };
  if (normalizer === null) return { charsmap: undefined, rest: null };
  if (normalizer.type === "Precompiled") return { charsmap: toCharsmap(normalizer), rest: null };
  const steps = (normalizer as { normalizers?: unknown }).normalizers;
  if (normalizer.type === "Sequence" && Array.isArray(steps)) {
    const [first, ...others] = steps as Array<{ type?: unknown }>;
    if (first?.type === "Precompiled") {
      if (others.some(hasPrecompiled)) {
        throw new AppError(
          "internal",
          "T5 tokenizer: more than one Precompiled normalizer in tokenizer.json.",
        );
      }
      const rest =
        others.length === 0 ? null : ({ type: "Sequence", normalizers: others } as NormalizerConfig);
      return { charsmap: toCharsmap(first), rest };
    }
  }
  if (hasPrecompiled(normalizer)) {
    throw new AppError(
      "internal",
      "T5 tokenizer: a Precompiled normalizer that is not the first step of tokenizer.json's normalizer.",
    );
  }
  return { charsmap: undefined, rest: normalizer as NormalizerConfig };
}

function hasPrecompiled(stage: unknown): boolean {
  if (typeof stage !== "object" || stage === null) return false;
  const { type, normalizers } = stage as { type?: unknown; normalizers?: unknown };
  return type === "Precompiled" || (Array.isArray(normalizers) && normalizers.some(hasPrecompiled));
}

function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, file: string): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new AppError("internal", `T5 tokenizer: invalid ${file}: ${z.prettifyError(parsed.error)}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}
