import { NnGraph, streamSeed } from "./nn-graph.ts";
import { DataType } from "./onnx-builder.ts";
import { T5_EOS, T5_MAX_LENGTH, T5_PAD, t5Vocabulary } from "./t5-tokenizer-files.ts";

export interface T5EncoderSpec {
  /** Width of last_hidden_state: the transformer's joint_attention_dim (real T5-XXL: 4096). */
  dModel: number;
  heads: number;
  /** Width of the gated-GELU feed-forward (real: 10240). */
  dFf: number;
  /** Encoder layers (real: 24). */
  layers: number;
}

/** Flux's text_encoder_2 and SD3's text_encoder_3, shrunk (real: google/t5-v1_1-xxl's encoder). */
export const T5_TINY: T5EncoderSpec = { dModel: 96, heads: 2, dFf: 192, layers: 1 };

/**
 * Clipped relative distances the attention bias distinguishes (real T5 buckets them
 * logarithmically into 32 buckets up to 128; a clip is enough to make token order matter).
 */
const MAX_DISTANCE = 8;

/** T5Config as transformers writes it for T5EncoderModel (Flux's text_encoder_2/config.json, shrunk). */
export function t5EncoderConfig(spec: T5EncoderSpec): Record<string, unknown> {
  return {
    architectures: ["T5EncoderModel"],
    classifier_dropout: 0.0,
    d_ff: spec.dFf,
    d_kv: spec.dModel / spec.heads,
    d_model: spec.dModel,
    decoder_start_token_id: 0,
    dense_act_fn: "gelu_new",
    dropout_rate: 0.1,
    eos_token_id: T5_EOS.id,
    feed_forward_proj: "gated-gelu",
    initializer_factor: 1.0,
    is_encoder_decoder: true,
    is_gated_act: true,
    layer_norm_epsilon: 1e-6,
    model_type: "t5",
    n_positions: T5_MAX_LENGTH,
    num_decoder_layers: spec.layers,
    num_heads: spec.heads,
    num_layers: spec.layers,
    pad_token_id: T5_PAD.id,
    relative_attention_max_distance: 128,
    relative_attention_num_buckets: 32,
    tie_word_embeddings: false,
    torch_dtype: "float32",
    transformers_version: "4.46.0",
    use_cache: true,
    vocab_size: t5Vocabulary().pieces.length,
  };
}

/** T5LayerNorm: RMS normalisation without a mean or a bias, x / sqrt(mean(x²) + eps) · w. */
function rmsNorm(g: NnGraph, x: string, dim: number): string {
  const ms = g.op("ReduceMean", [g.mul(x, x)], { axes: { ints: [-1] }, keepdims: { int: 1 } });
  const inv = g.op("Reciprocal", [g.op("Sqrt", [g.add(ms, g.scalar(1e-6))])]);
  return g.mul(g.mul(x, inv), g.filled("rms.weight", [dim], 1));
}

/** The [heads, T, T] attention bias of a learned table over clipped relative distances j − i. */
function relativeBias(g: NnGraph, ids: string, heads: number): string {
  const scalar = (v: number) => g.b.addInt64Initializer(g.b.uniqueName("int"), [BigInt(v)], []);
  const length = g.op("Squeeze", [g.op("Shape", [ids], { start: { int: 1 }, end: { int: 2 } }), g.ints([0])]);
  const pos = g.op("Range", [scalar(0), length, scalar(1)]);
  const rel = g.op("Sub", [g.op("Unsqueeze", [pos, g.ints([0])]), g.op("Unsqueeze", [pos, g.ints([1])])]);
  const clipped = g.op("Max", [g.op("Min", [rel, scalar(MAX_DISTANCE)]), scalar(-MAX_DISTANCE)]);
  const table = g.weight("relative_attention_bias", [2 * MAX_DISTANCE + 1, heads], 1);
  const bias = g.op("Gather", [table, g.add(clipped, scalar(MAX_DISTANCE))]);
  return g.op("Transpose", [bias], { perm: { ints: [2, 0, 1] } });
}

/**
 * A small T5EncoderModel in optimum's layout (`t5-encoder` config): input `input_ids` int64
 * [batch_size, sequence_length]; output float32 `last_hidden_state` [batch_size,
 * sequence_length, dModel]. No attention mask, as optimum exports it and Flux/SD3 call it: pad
 * tokens are attended to.
 *
 * Each layer is T5's: RMS norm, bidirectional self-attention with a relative-position bias (so
 * token order matters), RMS norm, gated-GELU feed-forward, residuals; a final RMS norm. Any
 * sequence length works (no position table).
 */
export function buildT5Encoder(spec: T5EncoderSpec, o: { seed: number; label: string }): Uint8Array {
  const g = new NnGraph(o.label, streamSeed(o.seed, o.label));
  const D = spec.dModel;
  const ids = g.b.addInput("input_ids", DataType.INT64, ["batch_size", "sequence_length"]);
  let x = g.op("Gather", [g.weight("shared", [t5Vocabulary().pieces.length, D], Math.sqrt(3)), ids]);
  const bias = relativeBias(g, ids, spec.heads);
  for (let layer = 0; layer < spec.layers; layer++) {
    const h = rmsNorm(g, x, D);
    const q = g.linear(h, D, D, { bias: false });
    const k = g.linear(h, D, D, { bias: false });
    const v = g.linear(h, D, D, { bias: false });
    x = g.add(x, g.linear(g.attention(q, k, v, D, spec.heads, bias), D, D, { bias: false, gain: 0.5 }));
    const f = rmsNorm(g, x, D);
    const gated = g.mul(
      g.gelu(g.linear(f, D, spec.dFf, { bias: false })),
      g.linear(f, D, spec.dFf, { bias: false }),
    );
    x = g.add(x, g.linear(gated, spec.dFf, D, { bias: false, gain: 0.5 }));
  }
  g.floatOutput(rmsNorm(g, x, D), "last_hidden_state", ["batch_size", "sequence_length", D], "float32");
  return g.b.toBytes();
}
