/// <reference path="../types/huggingface-tokenizers.d.ts" />
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer, type TokenizerJSON } from "@huggingface/tokenizers";
import { AppError } from "@hybrid/protocol";
import { afterEach, describe, expect, test } from "vitest";
import { MAX_TOKENIZED_CHARS } from "./clip-tokenizer.ts";
import { T5Tokenizer } from "./t5-tokenizer.ts";

// A small sentencepiece Unigram model, its tokenizer.json and sentencepiece's own ids
// (test-fixtures/t5/make_fixture.py; none of it made by the code under test).
const fixtureDir = fileURLToPath(new URL("../../test-fixtures/t5/", import.meta.url));
const readFixture = async (name: string) => JSON.parse(await readFile(join(fixtureDir, name), "utf8"));
const tokenizerJson = (await readFixture("tokenizer.json")) as Record<string, unknown>;
const config = await readFixture("tokenizer_config.json");
const specialTokensMap = await readFixture("special_tokens_map.json");
const reference = (await readFixture("reference.json")) as {
  pad_id: number;
  eos_id: number;
  cases: Array<{ text: string; ids: number[] }>;
};

const PAD = 0;
const EOS = 1;
const t5 = T5Tokenizer.fromFiles({ tokenizer: tokenizerJson, config, specialTokensMap });

/** What diffusers gets from `tokenizer(text, padding="max_length", max_length, truncation=True)`. */
function padded(ids: number[], maxLength: number): number[] {
  if (ids.length > maxLength) return [...ids.slice(0, maxLength - 1), EOS];
  return [...ids, ...new Array(maxLength - ids.length).fill(PAD)];
}

/** `n` words that are one token each ("▁rock" is a piece of the fixture's vocabulary). */
const words = (n: number) => Array.from({ length: n }, () => "rock").join(" ");

describe("T5Tokenizer", () => {
  test("the fixture covers blank, short and over-long prompts", () => {
    expect(reference.cases.length).toBeGreaterThanOrEqual(25);
    expect(reference).toMatchObject({ pad_id: PAD, eos_id: EOS });
    expect(reference.cases.some((c) => c.text === "")).toBe(true);
    expect(reference.cases.some((c) => c.ids.length > 512)).toBe(true);
  });

  test.each(reference.cases)("matches sentencepiece's ids: $text", ({ text, ids }) => {
    expect(ids.at(-1)).toBe(EOS);
    const whole = t5.encode(text, 1024);
    expect(whole.truncated).toBe(false);
    expect(whole.length).toBe(ids.length);
    expect(whole.ids.slice(0, whole.length)).toEqual(ids);
    for (const maxLength of [16, 256]) {
      const enc = t5.encode(text, maxLength);
      expect(enc.ids).toEqual(padded(ids, maxLength));
      expect(enc.truncated).toBe(ids.length > maxLength);
      expect(enc.length).toBe(Math.min(ids.length, maxLength));
    }
  });

  test("reads eos and pad from the config files, and defaults to </s> and <pad> without them", () => {
    expect(t5).toMatchObject({ eosId: EOS, padId: PAD });
    expect(T5Tokenizer.fromFiles({ tokenizer: tokenizerJson })).toMatchObject({ eosId: EOS, padId: PAD });
  });

  test("special_tokens_map.json overrides tokenizer_config.json, as in transformers", () => {
    const tok = T5Tokenizer.fromFiles({
      tokenizer: tokenizerJson,
      config,
      specialTokensMap: { ...specialTokensMap, pad_token: { content: "<unk>" } },
    });
    expect(tok.padId).toBe(2);
    expect(tok.encode("", 4).ids).toEqual([EOS, 2, 2, 2]);
  });

  test("pads with 0 after eos", () => {
    expect(t5.encode("", 5)).toEqual({ ids: [EOS, PAD, PAD, PAD, PAD], truncated: false, length: 1 });
    expect(t5.encode(" \t\n ", 3)).toEqual({ ids: [EOS, PAD, PAD], truncated: false, length: 1 });
  });

  test("an over-long prompt keeps its first tokens and ends with eos", () => {
    const rock = t5.encode("rock", 4);
    expect(rock.length).toBe(2);
    const enc = t5.encode(words(300), 256);
    expect(enc).toEqual({ ids: [...new Array(255).fill(rock.ids[0]), EOS], truncated: true, length: 256 });
    expect(t5.decode(enc.ids)).toBe(words(255));
  });

  test("maxLength - 1 text tokens fit exactly; one more is truncated", () => {
    expect(t5.encode(words(15), 16)).toMatchObject({ truncated: false, length: 16 });
    expect(t5.encode(words(16), 16)).toMatchObject({ truncated: true, length: 16 });
    expect(t5.encode("rock", 1)).toEqual({ ids: [EOS], truncated: true, length: 1 });
  });

  test("tokenizes only the first MAX_TOKENIZED_CHARS characters of a prompt", () => {
    // A word after a run of blanks that long is never seen, and the prompt is flagged as cut.
    const past = `${" ".repeat(MAX_TOKENIZED_CHARS)}rock`;
    expect(t5.encode(past, 8)).toEqual({ ids: [EOS, ...new Array(7).fill(PAD)], truncated: true, length: 1 });
    // Blanks past it change nothing: not flagged.
    expect(t5.encode(`rock${" ".repeat(2 * MAX_TOKENIZED_CHARS)}`, 8)).toEqual(t5.encode("rock", 8));
    // A 1 MiB prompt gives what its first tokens give.
    const huge = words(300_000);
    expect(huge.length).toBeGreaterThan(1024 * 1024);
    expect(t5.encode(huge, 256)).toEqual(t5.encode(words(1000), 256));
  });

  test("added tokens in the text map to their ids, as transformers splits them out", () => {
    const plain = t5.encode("a cat", 16);
    const withEos = t5.encode("a cat</s>", 16);
    expect(withEos.ids.slice(0, withEos.length)).toEqual([...plain.ids.slice(0, plain.length - 1), EOS, EOS]);
    const extra = t5.encode("<extra_id_0>", 4);
    expect(extra.ids.slice(0, 2)).toEqual([t5Id("<extra_id_0>"), EOS]);
  });

  test("the library alone turns joiners into spaces; the charsmap keeps sentencepiece's ids", () => {
    // Guards the glue in T5Tokenizer: if this starts to match, the port reads the charsmap itself.
    const family = reference.cases.find((c) => c.text.startsWith("family"));
    expect(family).toBeDefined();
    const portOnly = new Tokenizer(tokenizerJson as unknown as TokenizerJSON, {});
    expect(portOnly.encode(family!.text).ids).not.toEqual(family!.ids);
    const enc = t5.encode(family!.text, 64);
    expect(enc.ids.slice(0, enc.length)).toEqual(family!.ids);
  });

  test("accepts the Precompiled normalizer as the first step of a Sequence", () => {
    const tok = T5Tokenizer.fromFiles({
      tokenizer: {
        ...tokenizerJson,
        normalizer: { type: "Sequence", normalizers: [tokenizerJson.normalizer, { type: "Lowercase" }] },
      },
    });
    const enc = tok.encode("ＡＢＣ CAT", 16);
    expect(enc.ids).toEqual(t5.encode("abc cat", 16).ids);
  });

  test("decode drops eos and padding", () => {
    expect(t5.decode(t5.encode("a photo of a cat", 32).ids)).toBe("a photo of a cat");
    expect(t5.decode([])).toBe("");
  });

  test.each([0, -1, 1.5, MAX_TOKENIZED_CHARS + 1, Number.NaN])("rejects maxLength %s", (maxLength) => {
    expect(() => t5.encode("rock", maxLength)).toThrow(AppError);
  });

  test.each([
    ["a BPE model", { model: { type: "BPE", vocab: {}, merges: [] } }, /Unigram/],
    [
      "an unk_id past the vocabulary",
      { model: { ...(tokenizerJson.model as object), unk_id: 9999 } },
      /unk_id/,
    ],
    ["no post-processor", { post_processor: null }, /post_processor/],
    ["a normalizer the library lacks", { normalizer: { type: "Nope" } }, /not usable/],
    [
      "a Precompiled step that is not first",
      { normalizer: { type: "Sequence", normalizers: [{ type: "NFC" }, tokenizerJson.normalizer] } },
      /Precompiled/,
    ],
    [
      "a malformed charsmap",
      { normalizer: { type: "Precompiled", precompiled_charsmap: "AAAA" } },
      /malformed/,
    ],
  ])("rejects a tokenizer.json with %s", (_, change, message) => {
    const run = () => T5Tokenizer.fromFiles({ tokenizer: { ...tokenizerJson, ...change } });
    expect(run).toThrow(AppError);
    expect(run).toThrow(message);
  });

  test("rejects an eos token missing from the vocabulary", () => {
    expect(() => T5Tokenizer.fromFiles({ tokenizer: tokenizerJson, config: { eos_token: "<eos>" } })).toThrow(
      /eos_token "<eos>"/,
    );
  });
});

function t5Id(token: string): number {
  const found = (tokenizerJson.added_tokens as Array<{ id: number; content: string }>).find(
    (t) => t.content === token,
  );
  if (!found) throw new Error(`${token} is not an added token of the fixture`);
  return found.id;
}

describe("T5Tokenizer.fromDir", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  test("reads a tokenizer_2/ folder with all its files", async () => {
    const tok = await T5Tokenizer.fromDir(fixtureDir);
    const first = reference.cases[1]!;
    expect(tok.encode(first.text, 256).ids).toEqual(padded(first.ids, 256));
  });

  test("needs only tokenizer.json", async () => {
    dir = await mkdtemp(join(tmpdir(), "t5-tokenizer-"));
    await copyFile(join(fixtureDir, "tokenizer.json"), join(dir, "tokenizer.json"));
    const tok = await T5Tokenizer.fromDir(dir);
    expect(tok).toMatchObject({ eosId: EOS, padId: PAD });
  });

  test("fails with an AppError naming tokenizer.json when it is missing", async () => {
    dir = await mkdtemp(join(tmpdir(), "t5-tokenizer-"));
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    const load = T5Tokenizer.fromDir(dir);
    await expect(load).rejects.toThrow(AppError);
    await expect(load).rejects.toThrow(/tokenizer\.json/);
    await expect(load).rejects.toMatchObject({ code: "internal" });
  });

  test("fails clearly on a tokenizer.json that is not JSON", async () => {
    dir = await mkdtemp(join(tmpdir(), "t5-tokenizer-"));
    await writeFile(join(dir, "tokenizer.json"), "{ not json");
    await expect(T5Tokenizer.fromDir(dir)).rejects.toThrow(/tokenizer\.json is not valid JSON/);
  });
});
