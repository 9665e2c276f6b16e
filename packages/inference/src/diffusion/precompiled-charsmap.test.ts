import { readFile } from "node:fs/promises";
import { AppError } from "@hybrid/protocol";
import { describe, expect, test } from "vitest";
import { PrecompiledCharsmap } from "./precompiled-charsmap.ts";

// nmt_nfkc rules as sentencepiece compiled them into the fixture model (see test-fixtures/t5/).
const tokenizerJson = JSON.parse(
  await readFile(new URL("../../test-fixtures/t5/tokenizer.json", import.meta.url), "utf8"),
) as { normalizer: { precompiled_charsmap: string } };
const nfkc = PrecompiledCharsmap.fromBase64(tokenizerJson.normalizer.precompiled_charsmap);

describe("PrecompiledCharsmap (nmt_nfkc)", () => {
  test.each([
    ["full-width letters and digits", "ｆｕｌｌ ＡＢＣ １２３", "full ABC 123"],
    ["compatibility forms", "ﬁ ½ ™ x²", "fi 1⁄2 TM x2"],
    ["a combining accent composes", "cafe\u0301", "caf\u00e9"],
    ["tab, newline and no-break space become spaces", "a\tb\nc\u00a0d\u3000e", "a b c d e"],
    ["control characters go", "x\u0007y\u0001z", "xyz"],
    ["zero-width space and non-joiner become spaces", "a\u200bb\u200cc", "a b c"],
    ["the zero-width joiner stays", "\u{1F468}\u200d\u{1F469}", "\u{1F468}\u200d\u{1F469}"],
    ["full-width tilde stays, unlike NFKC", "～x～", "～x～"],
  ])("%s", (_, input, expected) => {
    expect(nfkc.normalize(input)).toBe(expected);
  });

  test("text without a rule comes back unchanged, multi-byte characters included", () => {
    const text = "a photo of a caf\u00e9 in Z\u00fcrich, \u65e5\u672c, \u{1F600}";
    expect(nfkc.normalize(text)).toBe(text);
    expect(nfkc.normalize("")).toBe("");
  });

  test("a lone surrogate becomes U+FFFD, as malformed UTF-8 does in sentencepiece", () => {
    expect(nfkc.normalize("a\ud800b")).toBe(nfkc.normalize("a\ufffdb"));
  });

  test("rejects a blob whose header does not fit", () => {
    expect(() => PrecompiledCharsmap.fromBase64("")).toThrow(AppError);
    const header = Buffer.alloc(8);
    header.writeUInt32LE(64, 0);
    expect(() => PrecompiledCharsmap.fromBase64(header.toString("base64"))).toThrow(/trie size/);
  });
});
