import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AppError } from "@hybrid/protocol";
import { afterEach, describe, expect, test } from "vitest";
import { ClipTokenizer, MAX_TOKENIZED_CHARS } from "./clip-tokenizer.ts";

// The real CLIP ViT-L/14 vocabulary and OpenAI's reference ids, kept outside the repo (/work/shared).
const fixtureDir = fileURLToPath(new URL("../../../../../shared/fixtures/clip-tokenizer/", import.meta.url));
const vocab = JSON.parse(await readFile(join(fixtureDir, "vocab.json"), "utf8")) as Record<string, number>;
const merges = await readFile(join(fixtureDir, "merges.txt"), "utf8");
const reference = JSON.parse(await readFile(join(fixtureDir, "reference.json"), "utf8")) as {
  cases: Array<{ text: string; ids: number[] }>;
};

const BOS = 49406;
const EOS = 49407;
const BANG = 0;

const addedToken = (content: string) => ({
  __type: "AddedToken",
  content,
  lstrip: false,
  normalized: true,
  rstrip: false,
  single_word: false,
});

/** runwayml/stable-diffusion-v1-5 `tokenizer/tokenizer_config.json`. */
const sd1Config = {
  add_prefix_space: false,
  bos_token: addedToken("<|startoftext|>"),
  do_lower_case: true,
  eos_token: addedToken("<|endoftext|>"),
  errors: "replace",
  model_max_length: 77,
  pad_token: "<|endoftext|>",
  tokenizer_class: "CLIPTokenizer",
  unk_token: addedToken("<|endoftext|>"),
};

/** stabilityai/stable-diffusion-2-1: the same but padded with "!", as OpenCLIP padded with id 0. */
const sd2Config = { ...sd1Config, pad_token: "!" };

const sd1 = ClipTokenizer.fromFiles({ vocab, merges, config: sd1Config });
const sd2 = ClipTokenizer.fromFiles({ vocab, merges, config: sd2Config });

const words = (n: number) => Array.from({ length: n }, () => "cat").join(" ");

describe("ClipTokenizer", () => {
  test("the fixture has short cases and an over-long one", () => {
    expect(reference.cases.length).toBeGreaterThanOrEqual(20);
    expect(reference.cases.some((c) => c.ids.length > 77)).toBe(true);
  });

  test.each(reference.cases)("matches OpenAI's reference ids: $text", ({ text, ids }) => {
    const enc = sd1.encode(text);
    expect(enc.ids).toHaveLength(77);
    if (ids.length <= 77) {
      expect(enc.truncated).toBe(false);
      expect(enc.length).toBe(ids.length);
      expect(enc.ids.slice(0, enc.length)).toEqual(ids);
    } else {
      // The reference is untruncated; ours keeps the first 75 text tokens and ends with eos.
      expect(enc.truncated).toBe(true);
      expect(enc.length).toBe(77);
      expect(enc.ids).toEqual([...ids.slice(0, 76), EOS]);
    }
    expect(enc.ids.slice(enc.length)).toEqual(new Array(77 - enc.length).fill(EOS));
  });

  test("SD 1.x pads with <|endoftext|>", () => {
    expect(sd1.padId).toBe(EOS);
    expect(sd1.encode("a cat").ids).toEqual([BOS, 320, 2368, EOS, ...new Array(73).fill(EOS)]);
  });

  test("SD 2.x pads with '!' and still tokenizes '!' as ordinary text", () => {
    expect(sd2.padId).toBe(BANG);
    expect(sd2.encode("a cat").ids).toEqual([BOS, 320, 2368, EOS, ...new Array(73).fill(BANG)]);
    const shout = reference.cases.find((c) => c.text.endsWith("!!!"));
    expect(shout).toBeDefined();
    const enc = sd2.encode(shout!.text);
    expect(enc.ids.slice(0, enc.length)).toEqual(shout!.ids);
  });

  test("a 100-word prompt is cut to 77 ids with eos last and flagged", () => {
    const enc = sd1.encode(words(100));
    expect(enc).toMatchObject({ truncated: true, length: 77 });
    expect(enc.ids).toHaveLength(77);
    expect(enc.ids[0]).toBe(BOS);
    expect(enc.ids[76]).toBe(EOS);
    expect(enc.ids.slice(1, 76)).toEqual(new Array(75).fill(2368));
    expect(sd1.decode(enc.ids)).toBe(words(75));
  });

  test("tokenizes only the first MAX_TOKENIZED_CHARS characters of a prompt", () => {
    // Text past the bound is never tokenized: a word after a run of blanks that long is not
    // seen (the whole text would give [bos, cat, eos]), and the prompt is flagged as cut.
    const past = `${" ".repeat(MAX_TOKENIZED_CHARS)}cat`;
    expect(sd1.encode(past)).toMatchObject({ ids: [BOS, EOS, ...new Array(75).fill(EOS)], truncated: true });
    // Blanks past it change nothing: not flagged.
    expect(sd1.encode(`cat${" ".repeat(2 * MAX_TOKENIZED_CHARS)}`)).toEqual(sd1.encode("cat"));
    // A real over-long prompt (1 MiB) gives the same ids as its first 75 tokens would.
    const huge = words(300_000);
    expect(huge.length).toBeGreaterThan(1024 * 1024);
    expect(sd1.encode(huge)).toEqual(sd1.encode(words(100)));
    // Half a surrogate pair is not left at the cut.
    const emoji = `${"a ".repeat((MAX_TOKENIZED_CHARS - 2) / 2)}a\u{1F600}`;
    expect(emoji.length).toBe(MAX_TOKENIZED_CHARS + 1);
    expect(sd1.encode(emoji).truncated).toBe(true);
  });

  test("75 text tokens fit exactly; 76 do not", () => {
    expect(sd1.encode(words(75))).toMatchObject({ truncated: false, length: 77 });
    expect(sd1.encode(words(76))).toMatchObject({ truncated: true, length: 77 });
  });

  test("an empty or blank prompt is bos, eos, padding", () => {
    for (const text of ["", "   \n\t "]) {
      expect(sd2.encode(text)).toEqual({
        ids: [BOS, EOS, ...new Array(75).fill(BANG)],
        truncated: false,
        length: 2,
      });
    }
  });

  test("folds case and collapses whitespace runs", () => {
    const plain = sd1.encode("a photo of an astronaut");
    expect(sd1.encode("  A   PHOTO\tof\n\nAn  AsTrOnAuT  ")).toEqual(plain);
    expect(sd1.encode("a\u00a0photo\u3000of an astronaut")).toEqual(plain);
  });

  test("composes to NFC before tokenizing", () => {
    expect(sd1.encode("cafe\u0301")).toEqual(sd1.encode("caf\u00e9"));
  });

  test("decode gives back the normalized text", () => {
    const enc = sd1.encode("A Photo of an Astronaut");
    expect(sd1.decode(enc.ids.slice(0, enc.length))).toBe("a photo of an astronaut");
    expect(sd1.decode([])).toBe("");
  });

  test("defaults to 77 and <|endoftext|> padding without tokenizer_config.json", () => {
    const bare = ClipTokenizer.fromFiles({ vocab, merges });
    expect(bare).toMatchObject({ maxLength: 77, bosId: BOS, eosId: EOS, padId: EOS });
  });

  test("honours a smaller model_max_length", () => {
    const short = ClipTokenizer.fromFiles({ vocab, merges, config: { ...sd1Config, model_max_length: 8 } });
    expect(short.encode(words(10))).toEqual({
      ids: [BOS, 2368, 2368, 2368, 2368, 2368, 2368, EOS],
      truncated: true,
      length: 8,
    });
  });

  test("rejects a model_max_length transformers uses for 'no limit'", () => {
    expect(() => ClipTokenizer.fromFiles({ vocab, merges, config: { model_max_length: 1e30 } })).toThrow(
      AppError,
    );
  });

  test("rejects merges that do not fit the vocabulary", () => {
    expect(() => ClipTokenizer.fromFiles({ vocab, merges: "#version: 0.2\nzq xj</w>\n" })).toThrow(
      /merges\.txt line 2/,
    );
  });

  test("rejects special tokens missing from the vocabulary", () => {
    expect(() => ClipTokenizer.fromFiles({ vocab, merges, config: { pad_token: "<pad>" } })).toThrow(
      /pad_token "<pad>"/,
    );
  });
});

describe("ClipTokenizer.fromDir", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** A model folder in optimum's layout; returns its `tokenizer/` subfolder. */
  async function optimumTokenizerDir(files: Record<string, unknown>): Promise<string> {
    dir = await mkdtemp(join(tmpdir(), "clip-tokenizer-"));
    const tokenizerDir = join(dir, "tokenizer");
    await mkdir(tokenizerDir);
    await copyFile(join(fixtureDir, "vocab.json"), join(tokenizerDir, "vocab.json"));
    await copyFile(join(fixtureDir, "merges.txt"), join(tokenizerDir, "merges.txt"));
    for (const [name, content] of Object.entries(files)) {
      await writeFile(join(tokenizerDir, name), JSON.stringify(content));
    }
    return tokenizerDir;
  }

  test("reads an SD 2.x tokenizer folder", async () => {
    const tok = await ClipTokenizer.fromDir(
      await optimumTokenizerDir({
        "tokenizer_config.json": sd2Config,
        "special_tokens_map.json": {
          bos_token: addedToken("<|startoftext|>"),
          eos_token: addedToken("<|endoftext|>"),
          pad_token: "!",
          unk_token: addedToken("<|endoftext|>"),
        },
      }),
    );
    expect(tok).toMatchObject({ maxLength: 77, bosId: BOS, eosId: EOS, padId: BANG });
    const first = reference.cases[0]!;
    const enc = tok.encode(first.text);
    expect(enc.ids.slice(0, enc.length)).toEqual(first.ids);
  });

  test("special_tokens_map.json overrides tokenizer_config.json, as in transformers", async () => {
    const tok = await ClipTokenizer.fromDir(
      await optimumTokenizerDir({
        "tokenizer_config.json": sd1Config,
        "special_tokens_map.json": { pad_token: { content: "!" } },
      }),
    );
    expect(tok.padId).toBe(BANG);
  });

  test("works with only vocab.json and merges.txt", async () => {
    const tok = await ClipTokenizer.fromDir(await optimumTokenizerDir({}));
    expect(tok).toMatchObject({ maxLength: 77, padId: EOS });
  });

  test("fails clearly when merges.txt is missing", async () => {
    dir = await mkdtemp(join(tmpdir(), "clip-tokenizer-"));
    await copyFile(join(fixtureDir, "vocab.json"), join(dir, "vocab.json"));
    await expect(ClipTokenizer.fromDir(dir)).rejects.toThrow(/merges\.txt/);
  });
});
