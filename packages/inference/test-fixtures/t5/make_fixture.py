#!/usr/bin/python3
"""Builds the T5 tokenizer fixture: a small sentencepiece Unigram model, the Hugging Face
`tokenizer.json` equivalent to it, and reference ids from sentencepiece itself.

Run with Debian's python3-sentencepiece (no PyPI, no `transformers`/`tokenizers`):
    apt-get install -y python3-sentencepiece
    /usr/bin/python3 packages/inference/test-fixtures/t5/make_fixture.py

The `tokenizer.json` is written here from the model's pieces and scores, laid out as
transformers' T5 converter lays out google/t5-v1_1-xxl's (the file Flux's `tokenizer_2/` and
SD3's `tokenizer_3/` ship): the `Precompiled` normalizer carrying the model's own nmt_nfkc
charsmap, `WhitespaceSplit` then `Metaspace("▁", prepend_scheme "always")`, a Unigram model with
`<pad>`=0, `</s>`=1, `<unk>`=2, and a `TemplateProcessing` post-processor appending `</s>`.
The reference ids come from sentencepiece's own `encode` plus eos, so they are independent of
the code under test.
"""

import base64
import json
import os
import random
import tempfile

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB_SIZE = 500
EXTRA_IDS = 2  # T5 appends <extra_id_N> added tokens after the sentencepiece vocabulary (100 there).

SUBJECTS = [
    "a cat", "an astronaut", "a red fox", "the old lighthouse", "two dogs", "a robot", "a castle",
    "the café", "a dragon", "an owl", "a sailboat", "the mountains", "a bowl of ramen",
    "a woman in Zürich", "a man from São Paulo", "a garden", "the city skyline", "a crème brûlée",
    "a photo of a lion", "a portrait of a queen", "a majestic whale", "a jazz quartet", "an expressive face",
]
ACTIONS = [
    "standing on", "flying over", "sleeping under", "painted next to", "reading beside",
    "running through", "floating above", "hiding behind", "drawn near",
]
PLACES = [
    "a rock", "the moon", "a forest", "the beach", "a busy street", "a frozen lake", "the desert",
    "a neon-lit alley", "an ancient temple", "the clouds",
]
STYLES = [
    "highly detailed", "8k", "oil painting", "photorealistic", "at sunset", "golden hour",
    "studio lighting", "watercolor", "4K HDR", "trending on artstation", "35mm film",
    "by Hokusai", "naïve art", "(masterpiece)", "[best quality]", "f/1.8", "50% grey",
    "$100 budget", "#1 rated", "rock & roll", "it's \"vintage\"", "well-known style",
]


# Every printable ASCII character appears, so only what the prompts add beyond ASCII (emoji, CJK,
# Greek, typographic dashes) is unknown to the model.
ALPHABET = [
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
    "Pack my box with five dozen liquor jugs; 0 1 2 3 4 5 6 7 8 9.",
    "! \" # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \\ ] ^ _ ` { | } ~",
]


def corpus(rng: random.Random, n: int) -> list[str]:
    lines = list(ALPHABET) * 5
    for _ in range(n):
        parts = [rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(PLACES)]
        sentence = " ".join(parts)
        if rng.random() < 0.5:
            sentence = sentence[0].upper() + sentence[1:]
        styles = rng.sample(STYLES, rng.randint(0, 3))
        if styles:
            sentence += ", " + ", ".join(styles)
        if rng.random() < 0.3:
            sentence += f" in {rng.randint(1800, 2099)}"
        if rng.random() < 0.2:
            sentence += f" with {rng.randint(2, 99)} stars"
        sentence += rng.choice([".", "!", "?", "", ";", ":"])
        lines.append(sentence)
    return lines


LONG = ", ".join(
    f"a {c} {a} {p}" for c, a, p in zip(SUBJECTS * 4, ACTIONS * 8, PLACES * 8)
)[:1500]

PROMPTS = [
    "a photo of a cat",
    "A majestic lion standing on a rock at sunset, highly detailed, 8k",
    "Hello, world! How are you?",
    "The year 2024: 3.14159 and 42% off, $19.99",
    "café au lait in Zürich, crème brûlée",
    "cafe\u0301 au lait",  # combining acute: NFKC composes it
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",  # fullwidth forms: NFKC folds them
    "a   cat    on  a mat",
    "   leading spaces",
    "trailing spaces   ",
    "\ttabs\tand\nnewlines\r\n",
    "",
    "   ",
    "emoji 😀 and 日本語 text",  # characters outside the vocabulary
    "Ω≈ç√∫ symbols",
    "non\u00a0breaking\u3000spaces",
    "ﬁne ligature ① x²",  # compatibility forms
    "quotes \"double\" and 'single' — dash – ellipsis…",
    "UPPER lower MiXeD",
    "hyphen-ated well-known state-of-the-art",
    "mail@example.com https://example.org/path?q=1&r=2",
    "zero\u200bwidth space",
    "family \U0001F468\u200d\U0001F469\u200d\U0001F467 and non\u200cjoiner",  # joiners stay (not spaces)
    "control\u0007bell",
    "～tilde fullwidth～",
    "(masterpiece), [best quality], {braces} <angle>",
    "naïve art by Hokusai, f/1.8, 35mm film",
    LONG,
]


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def fields(buf: bytes):
    """Top-level (field number, wire type, value) of a protobuf message; no protobuf library here."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def normalizer_spec(model: bytes) -> dict:
    # ModelProto.normalizer_spec = 3; NormalizerSpec: name = 1, precompiled_charsmap = 2,
    # add_dummy_prefix = 3, remove_extra_whitespaces = 4, escape_whitespaces = 5.
    spec = next(v for n, w, v in fields(model) if n == 3 and w == 2)
    out = {}
    for n, _, v in fields(spec):
        out[{1: "name", 2: "precompiled_charsmap", 3: "add_dummy_prefix", 4: "remove_extra_whitespaces", 5: "escape_whitespaces"}.get(n, str(n))] = v
    return out


def main() -> None:
    rng = random.Random(14)
    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "corpus.txt")
        with open(text_path, "w", encoding="utf-8") as f:
            f.write("\n".join(corpus(rng, 3000)) + "\n")
        prefix = os.path.join(tmp, "spiece")
        spm.SentencePieceTrainer.train(
            input=text_path,
            model_prefix=prefix,
            model_type="unigram",
            vocab_size=VOCAB_SIZE,
            normalization_rule_name="nmt_nfkc",
            character_coverage=1.0,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            pad_piece="<pad>",
            eos_piece="</s>",
            unk_piece="<unk>",
            num_threads=1,
            minloglevel=2,
        )
        with open(prefix + ".model", "rb") as f:
            model_bytes = f.read()

    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    norm = normalizer_spec(model_bytes)
    assert norm.get("name") == b"nmt_nfkc", norm.get("name")
    # Defaults (absent fields) are true; T5's converter relies on all three.
    for flag in ("add_dummy_prefix", "remove_extra_whitespaces", "escape_whitespaces"):
        assert norm.get(flag, 1) == 1, flag

    vocab = [[sp.id_to_piece(i), 0.0 if sp.is_control(i) or sp.is_unknown(i) else sp.get_score(i)] for i in range(sp.get_piece_size())]
    extra = [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]
    # transformers numbers the extra ids downwards from the end: <extra_id_0> is the last id.
    extra_ids = {tok: len(vocab) + EXTRA_IDS - 1 - i for i, tok in enumerate(extra)}
    vocab += [[tok, 0.0] for tok in sorted(extra, key=lambda t: extra_ids[t])]

    def added(i: int, content: str) -> dict:
        return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}

    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(0, "<pad>"), added(1, "</s>"), added(2, "<unk>")]
        + [added(extra_ids[t], t) for t in sorted(extra, key=lambda t: extra_ids[t])],
        "normalizer": {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(norm["precompiled_charsmap"]).decode()},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}},
            ],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}},
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": False},
    }
    special = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "additional_special_tokens": extra}
    config = {**special, "extra_ids": EXTRA_IDS, "model_max_length": 512, "tokenizer_class": "T5Tokenizer", "legacy": True}

    cases = []
    for text in PROMPTS:
        ids = sp.encode(text) + [sp.eos_id()]
        cases.append({"text": text, "ids": ids, "pieces": [sp.id_to_piece(i) for i in ids]})
    reference = {
        "source": f"sentencepiece {spm.__version__} encode(text) + [eos_id]; see make_fixture.py",
        "pad_id": sp.pad_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "cases": cases,
    }

    for name, obj in [
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", config),
        ("special_tokens_map.json", special),
        ("reference.json", reference),
    ]:
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=2)
            f.write("\n")
    print(f"vocab {len(vocab)}, charsmap {len(norm['precompiled_charsmap'])} bytes, {len(cases)} cases")


if __name__ == "__main__":
    main()
