/// <reference path="../types/huggingface-tokenizers.d.ts" />
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type AddedTokenConfig, Tokenizer, type TokenizerJSON } from "@huggingface/tokenizers";
import { AppError } from "@hybrid/protocol";
import { z } from "zod";

/** CLIP's pre-tokenizer pattern, as transformers' `CLIPConverter` writes it. */
const CLIP_SPLIT = String.raw`'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`;

/**
 * Transformers writes `model_max_length: 1e30` when it knows no limit. A CLIP text encoder has a
 * fixed number of positions (77), so such a value means the wrong file, not "pad forever".
 */
const MAX_SANE_LENGTH = 4096;

const DEFAULTS = {
  bos_token: "<|startoftext|>",
  eos_token: "<|endoftext|>",
  unk_token: "<|endoftext|>",
  pad_token: "<|endoftext|>",
  model_max_length: 77,
};

/** A special token: a plain string, or transformers' serialized `AddedToken` object. */
const TokenSpec = z
  .union([z.string(), z.looseObject({ content: z.string() })])
  .transform((t) => (typeof t === "string" ? t : t.content));

const SpecialTokens = z.looseObject({
  bos_token: TokenSpec.nullish(),
  eos_token: TokenSpec.nullish(),
  unk_token: TokenSpec.nullish(),
  pad_token: TokenSpec.nullish(),
});

const TokenizerConfigFile = SpecialTokens.extend({
  model_max_length: z.number().int().min(2).max(MAX_SANE_LENGTH).optional(),
});

const Vocab = z.record(z.string(), z.number().int().nonnegative());

/**
 * Characters of a prompt the tokenizer sees at most (the API caps prompts at MAX_TEXT_CHARS,
 * 4000 by default; jobs may come from other producers). Far more than 77 tokens take.
 */
export const MAX_TOKENIZED_CHARS = 4096;

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

/**
 * The first {@link MAX_TOKENIZED_CHARS} characters of a prompt (never half a surrogate pair), and
 * whether what was cut held more than whitespace. Tokenizers' cost grows with the text, while text
 * encoders take at most a few hundred tokens, which prose reaches in far fewer characters.
 */
export function capTokenizedText(text: string): { text: string; cut: boolean } {
  if (text.length <= MAX_TOKENIZED_CHARS) return { text, cut: false };
  const end = MAX_TOKENIZED_CHARS - (isHighSurrogate(text.charCodeAt(MAX_TOKENIZED_CHARS - 1)) ? 1 : 0);
  return { text: text.slice(0, end), cut: /\S/.test(text.slice(end)) };
}

/** The files of a CLIP tokenizer, already read. */
export interface ClipTokenizerFiles {
  /** Parsed `vocab.json`: token → id. */
  vocab: Record<string, number>;
  /** Text of `merges.txt`, one `a b` merge per line, highest priority first. */
  merges: string;
  /** Parsed `tokenizer_config.json`: special tokens and `model_max_length`. */
  config?: unknown;
  /** Parsed `special_tokens_map.json`; where present it overrides `config`, as in transformers. */
  specialTokensMap?: unknown;
}

/** A prompt encoded for a CLIP text encoder. */
export interface ClipEncoding {
  /** Exactly `maxLength` ids: bos, text, eos, then padding. */
  ids: number[];
  /** Whether text tokens were dropped to fit; the pipeline should warn. */
  truncated: boolean;
  /** Ids before padding, bos and eos included (at most `maxLength`). */
  length: number;
}

/**
 * Stable Diffusion's CLIP tokenizer: byte-level BPE with `</w>` word ends, lower-cased input,
 * framed as `[bos, …text, eos]`, truncated and padded to `model_max_length`.
 *
 * BPE runs in `@huggingface/tokenizers`, configured as transformers' `CLIPConverter` configures
 * the Rust tokenizer; framing, truncation and padding are done here because the port has none.
 */
export class ClipTokenizer {
  /** Sequence length the text encoder takes; every encoding has exactly this many ids. */
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  /** `<|endoftext|>` for SD 1.x, `!` (id 0) for SD 2.x, whose OpenCLIP encoder padded with 0. */
  readonly padId: number;
  private readonly tokenizer: Tokenizer;

  private constructor(
    tokenizer: Tokenizer,
    ids: { bos: number; eos: number; pad: number },
    maxLength: number,
  ) {
    this.tokenizer = tokenizer;
    this.bosId = ids.bos;
    this.eosId = ids.eos;
    this.padId = ids.pad;
    this.maxLength = maxLength;
  }

  /**
   * Loads a tokenizer folder as optimum's Stable Diffusion export lays it out (`tokenizer/`):
   * `vocab.json` and `merges.txt` (required), `tokenizer_config.json` and
   * `special_tokens_map.json` (optional).
   */
  static async fromDir(dir: string): Promise<ClipTokenizer> {
    const [vocab, merges, config, specialTokensMap] = await Promise.all([
      readTokenizerJson(join(dir, "vocab.json"), true),
      readText(join(dir, "merges.txt")),
      readTokenizerJson(join(dir, "tokenizer_config.json"), false),
      readTokenizerJson(join(dir, "special_tokens_map.json"), false),
    ]);
    const parsed = Vocab.safeParse(vocab);
    if (!parsed.success) {
      throw new AppError("internal", `${join(dir, "vocab.json")} is not a token → id map.`, {
        cause: parsed.error,
      });
    }
    return ClipTokenizer.fromFiles({ vocab: parsed.data, merges, config, specialTokensMap });
  }

  /** Builds the tokenizer from file contents; throws `AppError("internal")` on inconsistent files. */
  static fromFiles(files: ClipTokenizerFiles): ClipTokenizer {
    const config = parseOrThrow(TokenizerConfigFile, files.config ?? {}, "tokenizer_config.json");
    const map = parseOrThrow(SpecialTokens, files.specialTokensMap ?? {}, "special_tokens_map.json");
    const token = (key: keyof typeof SpecialTokens.shape) => map[key] ?? config[key] ?? DEFAULTS[key];
    const idOf = (key: keyof typeof SpecialTokens.shape) => {
      const id = files.vocab[token(key)];
      if (id === undefined) {
        throw new AppError("internal", `CLIP tokenizer: ${key} "${token(key)}" is not in vocab.json.`);
      }
      return id;
    };
    const ids = { bos: idOf("bos_token"), eos: idOf("eos_token"), pad: idOf("pad_token") };

    // Only bos/eos/unk are matched as literal tokens in the prompt (OpenAI's tokenizer does the
    // same). Never the pad token: SD 2.x pads with "!", which must stay ordinary punctuation.
    const added = new Map<string, AddedTokenConfig>();
    for (const key of ["bos_token", "eos_token", "unk_token"] as const) {
      const content = token(key);
      // normalized: matched after lower-casing, so "<|EndOfText|>" counts too, as in OpenAI's.
      added.set(content, { id: idOf(key), content, special: true, normalized: true });
    }

    const json: TokenizerJSON = {
      added_tokens: [...added.values()],
      normalizer: {
        type: "Sequence",
        normalizers: [
          { type: "NFC" },
          { type: "Replace", pattern: { Regex: String.raw`\s+` }, content: " " },
          { type: "Lowercase" },
        ],
      },
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: CLIP_SPLIT }, behavior: "Removed", invert: true },
          { type: "ByteLevel", add_prefix_space: false },
        ],
      },
      model: {
        type: "BPE",
        vocab: files.vocab,
        merges: parseMerges(files.merges, files.vocab),
        unk_token: token("unk_token"),
        end_of_word_suffix: "</w>",
        fuse_unk: false,
        dropout: null,
      },
      post_processor: null,
      decoder: { type: "ByteLevel" },
    };
    const tokenizer = new Tokenizer(json, { clean_up_tokenization_spaces: true });
    return new ClipTokenizer(tokenizer, ids, config.model_max_length ?? DEFAULTS.model_max_length);
  }

  /**
   * Encodes a prompt to exactly `maxLength` ids; over-long prompts keep their first tokens and
   * eos. Only the first {@link MAX_TOKENIZED_CHARS} characters are tokenized: BPE's cost grows
   * with the text, and 75 tokens never need more (every accepted prompt is shorter anyway).
   */
  encode(text: string): ClipEncoding {
    const { text: capped, cut } = capTokenizedText(text);
    const body = this.tokenizer.encode(capped, { add_special_tokens: false }).ids;
    const room = this.maxLength - 2;
    const truncated = cut || body.length > room;
    const kept = truncated ? body.slice(0, room) : body;
    const ids = [this.bosId, ...kept, this.eosId];
    const length = ids.length;
    while (ids.length < this.maxLength) ids.push(this.padId);
    return { ids, truncated, length };
  }

  /**
   * Text of the given ids, special tokens dropped; for messages such as which words truncation
   * removed. Pass ids without padding: SD 2.x's pad id is the ordinary token "!".
   */
  decode(ids: readonly number[]): string {
    // The port throws on an empty array.
    if (ids.length === 0) return "";
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }
}

/**
 * `merges.txt` lines as pairs, checked against the vocabulary: a merge whose result is not a
 * token means vocab.json and merges.txt come from different tokenizers, which would otherwise
 * show up only as unknown tokens in some prompts.
 */
function parseMerges(text: string, vocab: Record<string, number>): Array<[string, string]> {
  const merges: Array<[string, string]> = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || (i === 0 && line.startsWith("#version"))) continue;
    const parts = line.split(" ");
    const [a, b] = parts;
    if (parts.length !== 2 || !a || !b || vocab[a + b] === undefined) {
      throw new AppError(
        "internal",
        `CLIP tokenizer: merges.txt line ${i + 1} ("${line}") does not fit vocab.json.`,
      );
    }
    merges.push([a, b]);
  }
  return merges;
}

function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, file: string): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new AppError("internal", `CLIP tokenizer: invalid ${file}: ${z.prettifyError(parsed.error)}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw new AppError("internal", `CLIP tokenizer: cannot read ${path}.`, { cause: e });
  }
}

/** A tokenizer folder's JSON file (undefined when an optional one is absent); `label` names the tokenizer in errors. */
export async function readTokenizerJson(
  path: string,
  required: boolean,
  label = "CLIP tokenizer",
): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new AppError("internal", `${label}: cannot read ${path}.`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new AppError("internal", `${path} is not valid JSON.`, { cause: e });
  }
}
