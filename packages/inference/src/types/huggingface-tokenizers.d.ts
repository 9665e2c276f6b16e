/**
 * Local typings for the part of `@huggingface/tokenizers` (pinned at 0.2.0) that we use.
 *
 * Why this exists: the package's own `types/` re-export through extensionless relative paths
 * (`export { default as Tokenizer } from "./core/Tokenizer"`), which `moduleResolution: NodeNext`
 * refuses (TS2834). With `skipLibCheck` that error is silent and every export degrades to `any`.
 * An ambient `declare module` takes precedence over the package's typings, so this file is what
 * the checker sees. It describes the runtime in `dist/tokenizers.mjs`; re-check it on upgrade and
 * delete it once upstream ships NodeNext-compatible typings.
 *
 * This file must stay a script (no top-level import/export): as a module it would become an
 * augmentation of the broken typings instead of replacing them.
 */
declare module "@huggingface/tokenizers" {
  /** A pattern as `tokenizer.json` writes it; regexes are Oniguruma syntax, translated by the port. */
  export type TokenizerPattern = { String: string } | { Regex: string };

  export type NormalizerConfig =
    | { type: "NFC" }
    | { type: "NFKC" }
    | { type: "Lowercase" }
    | { type: "Replace"; pattern: TokenizerPattern; content: string }
    | { type: "Strip"; strip_left?: boolean; strip_right?: boolean }
    /** Sentencepiece's rules; the port ignores the charsmap and applies NFKC-like fixed rules. */
    | { type: "Precompiled"; precompiled_charsmap?: string | null }
    | { type: "Sequence"; normalizers: NormalizerConfig[] };

  export type PreTokenizerConfig =
    | {
        type: "Split";
        pattern: TokenizerPattern;
        behavior: "Removed" | "Isolated";
        /** True keeps the matches rather than the text between them. */
        invert: boolean;
      }
    | { type: "ByteLevel"; add_prefix_space: boolean; trim_offsets?: boolean; use_regex?: boolean }
    | { type: "WhitespaceSplit" }
    /** Spaces become `replacement`; the port ignores `split` (it returns one piece). */
    | {
        type: "Metaspace";
        replacement?: string;
        prepend_scheme?: "always" | "first" | "never";
        split?: boolean;
      }
    | { type: "Sequence"; pretokenizers: PreTokenizerConfig[] };

  export interface BpeModelConfig {
    type: "BPE";
    vocab: Record<string, number>;
    /** `"a b"` strings (merges.txt lines) or `[a, b]` pairs; rank is the index. */
    merges: string[] | Array<[string, string]>;
    unk_token?: string | null;
    /** Appended to the last symbol of each word before merging (`</w>` for CLIP). */
    end_of_word_suffix?: string | null;
    continuing_subword_suffix?: string | null;
    fuse_unk?: boolean;
    byte_fallback?: boolean;
    ignore_merges?: boolean;
    dropout?: number | null;
  }

  /** Sentencepiece-style model: `[piece, log probability]` per id. */
  export interface UnigramModelConfig {
    type: "Unigram";
    vocab: Array<[string, number]>;
    /** The port scores unknown characters at the lowest score minus 10 and fuses runs of them. */
    unk_id: number;
    byte_fallback?: boolean;
  }

  /** An item of a `TemplateProcessing` template. */
  export type TemplatePiece =
    | { Sequence: { id: "A" | "B"; type_id: number } }
    | { SpecialToken: { id: string; type_id: number } };

  export type PostProcessorConfig =
    | {
        type: "RobertaProcessing";
        /** [token, id] appended after the sequence. */
        sep: [string, number];
        /** [token, id] prepended before the sequence. */
        cls: [string, number];
        trim_offsets?: boolean;
        add_prefix_space?: boolean;
      }
    | {
        type: "TemplateProcessing";
        single: TemplatePiece[];
        pair?: TemplatePiece[];
        special_tokens?: Record<string, { id: string; ids: number[]; tokens: string[] }>;
      };

  export type DecoderConfig =
    | {
        type: "ByteLevel";
        add_prefix_space?: boolean;
        trim_offsets?: boolean;
        use_regex?: boolean;
      }
    | {
        type: "Metaspace";
        replacement?: string;
        prepend_scheme?: "always" | "first" | "never";
        split?: boolean;
      };

  export interface AddedTokenConfig {
    id: number;
    content: string;
    single_word?: boolean;
    lstrip?: boolean;
    rstrip?: boolean;
    /** Matched after normalization (true) or against the raw text (false). */
    normalized?: boolean;
    special?: boolean;
  }

  /** The `tokenizer.json` object. Every key must be present; `null` disables a stage. */
  export interface TokenizerJSON {
    version?: string;
    added_tokens: AddedTokenConfig[];
    normalizer: NormalizerConfig | null;
    pre_tokenizer: PreTokenizerConfig | null;
    model: BpeModelConfig | UnigramModelConfig;
    post_processor: PostProcessorConfig | null;
    decoder: DecoderConfig | null;
  }

  /** The `tokenizer_config.json` fields the runtime reads. */
  export interface TokenizerConfig {
    clean_up_tokenization_spaces?: boolean;
    remove_space?: boolean;
    do_lowercase_and_remove_accent?: boolean;
    additional_special_tokens?: string[];
  }

  export interface Encoding {
    ids: number[];
    tokens: string[];
    attention_mask: number[];
  }

  export class Tokenizer {
    constructor(tokenizer: TokenizerJSON, config: TokenizerConfig);
    encode(text: string, options?: { add_special_tokens?: boolean }): Encoding;
    /** Throws on an empty array. */
    decode(
      ids: number[],
      options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean },
    ): string;
    token_to_id(token: string): number | undefined;
    id_to_token(id: number): string | undefined;
  }
}
