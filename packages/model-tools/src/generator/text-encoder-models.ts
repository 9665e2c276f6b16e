import { INT32, NnGraph, streamSeed } from "./nn-graph.ts";
import { DataType } from "./onnx-builder.ts";
import { CLIP_MAX_LENGTH, clipVocabulary } from "./tokenizer-files.ts";

/** dtype of the text encoders' `input_ids`; optimum exports SD's CLIP text encoders with int32. */
export type IdsDtype = "int32" | "int64";

export interface TextEncoderSpec {
  /** "CLIPTextModel" (outputs last_hidden_state, pooler_output) or its WithProjection form (text_embeds first). */
  architecture: "CLIPTextModel" | "CLIPTextModelWithProjection";
  hiddenSize: number;
  heads: number;
  /** Size of text_embeds; only used by CLIPTextModelWithProjection. */
  projectionDim: number;
  /** OpenAI CLIP uses quick_gelu; OpenCLIP's bigG (SDXL's text_encoder_2) uses gelu. */
  hiddenAct: "quick_gelu" | "gelu";
  /** Transformer layers. @defaultValue 1 */
  layers?: number;
  /**
   * Also output `hidden_states.0` (the embeddings) … `hidden_states.<layers>`, as optimum exports
   * SDXL's and SD3's text encoders (`output_hidden_states=True`): their pipelines read the
   * penultimate one. @defaultValue false
   */
  hiddenStates?: boolean;
  /** Weight stream label. @defaultValue "text_encoder" for CLIPTextModel, "text_encoder_2" otherwise */
  label?: string;
}

/** SD 1.x / LCM text encoder and SDXL's first one (real: 768 wide, 12 layers). */
export const CLIP_TEXT_TINY: TextEncoderSpec = {
  architecture: "CLIPTextModel",
  hiddenSize: 32,
  heads: 2,
  projectionDim: 32,
  hiddenAct: "quick_gelu",
};

/** SDXL's text_encoder_2 (real: OpenCLIP bigG, 1280 wide, projection 1280). */
export const CLIP_TEXT_2_TINY: TextEncoderSpec = {
  architecture: "CLIPTextModelWithProjection",
  hiddenSize: 48,
  heads: 2,
  projectionDim: 40,
  hiddenAct: "gelu",
};

/** SD3's text_encoder: CLIP ViT-L with projection (real: 768 wide, 12 layers, projection 768). */
export const CLIP_L_PROJ_TINY: TextEncoderSpec = {
  architecture: "CLIPTextModelWithProjection",
  hiddenSize: 32,
  heads: 2,
  projectionDim: 32,
  hiddenAct: "quick_gelu",
  // Two layers, so the penultimate hidden state SD3 reads is a layer's output, not the embeddings.
  layers: 2,
  hiddenStates: true,
  label: "sd3.text_encoder",
};

/** SD3's text_encoder_2: OpenCLIP bigG with projection (real: 1280 wide, 32 layers, projection 1280). */
export const CLIP_G_PROJ_TINY: TextEncoderSpec = {
  architecture: "CLIPTextModelWithProjection",
  hiddenSize: 48,
  heads: 2,
  projectionDim: 48,
  hiddenAct: "gelu",
  layers: 2,
  hiddenStates: true,
  label: "sd3.text_encoder_2",
};

/** CLIPTextConfig as transformers writes it to text_encoder/config.json (fewer layers than 12/32). */
export function textEncoderConfig(spec: TextEncoderSpec, padTokenId: number): Record<string, unknown> {
  const v = clipVocabulary();
  return {
    architectures: [spec.architecture],
    attention_dropout: 0.0,
    bos_token_id: v.bosId,
    dropout: 0.0,
    eos_token_id: v.eosId,
    hidden_act: spec.hiddenAct,
    hidden_size: spec.hiddenSize,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: 4 * spec.hiddenSize,
    layer_norm_eps: 1e-5,
    max_position_embeddings: CLIP_MAX_LENGTH,
    model_type: "clip_text_model",
    num_attention_heads: spec.heads,
    num_hidden_layers: spec.layers ?? 1,
    pad_token_id: padTokenId,
    projection_dim: spec.projectionDim,
    torch_dtype: "float32",
    transformers_version: "4.46.0",
    vocab_size: v.tokens.length,
  };
}

/** CLIP's causal mask as an additive [77, 77] table: 0 on and below the diagonal, -1e9 above. */
function causalMask(): Float32Array {
  const n = CLIP_MAX_LENGTH;
  const mask = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) mask[i * n + j] = -1e9;
  return mask;
}

/**
 * A one-layer CLIP text transformer in optimum's layout: input `input_ids` [batch_size,
 * sequence_length] (int32 or int64); outputs float32 `last_hidden_state` [batch_size,
 * sequence_length, hidden] and `pooler_output` [batch_size, hidden] (CLIPTextModel), or
 * `text_embeds` [batch_size, projection_dim] then `last_hidden_state` (CLIPTextModelWithProjection).
 *
 * The layer is CLIP's: token + position embeddings, pre-LN causal self-attention, pre-LN MLP, final
 * LayerNorm (repeated per layer). With `hiddenStates`, `hidden_states.0` … `hidden_states.<layers>`
 * follow (the embeddings, then each layer's output before the final LayerNorm, as transformers
 * returns them). The pooled vector is CLIP's: the final hidden state at argmax(input_ids), which is the
 * first end-of-text token because it has the largest id (a pad equal to eos comes after it).
 * Sequences of 1..77 tokens are accepted.
 */
export function buildTextEncoder(spec: TextEncoderSpec, o: { idsDtype: IdsDtype; seed: number }): Uint8Array {
  const label = spec.label ?? (spec.architecture === "CLIPTextModel" ? "text_encoder" : "text_encoder_2");
  const g = new NnGraph(label, streamSeed(o.seed, label));
  const H = spec.hiddenSize;
  const vocabSize = clipVocabulary().tokens.length;

  const ids = g.b.addInput("input_ids", o.idsDtype === "int32" ? INT32 : DataType.INT64, [
    "batch_size",
    "sequence_length",
  ]);
  const seqLen = g.op("Shape", [ids], { start: { int: 1 }, end: { int: 2 } });
  // Embedding tables scaled like a unit-variance input; the LayerNorms that follow fix the scale anyway.
  const tokens = g.op("Gather", [g.weight("token_embedding", [vocabSize, H], Math.sqrt(3)), ids]);
  const positions = g.op("Slice", [
    g.weight("position_embedding", [CLIP_MAX_LENGTH, H], Math.sqrt(3)),
    g.ints([0]),
    seqLen,
    g.ints([0]),
  ]);
  let x = g.add(tokens, positions);

  const mask = g.op("Slice", [
    g.b.addFloatInitializer("causal_mask", causalMask(), [CLIP_MAX_LENGTH, CLIP_MAX_LENGTH]),
    g.ints([0, 0]),
    g.op("Concat", [seqLen, seqLen], { axis: { int: 0 } }),
    g.ints([0, 1]),
  ]);
  const states = [x];
  for (let layer = 0; layer < (spec.layers ?? 1); layer++) {
    let h = g.layerNorm(x, H);
    const attn = g.attention(g.linear(h, H, H), g.linear(h, H, H), g.linear(h, H, H), H, spec.heads, mask);
    x = g.add(x, g.linear(attn, H, H, { gain: 0.5 }));
    h = g.linear(g.layerNorm(x, H), H, 4 * H);
    h = spec.hiddenAct === "gelu" ? g.gelu(h) : g.quickGelu(h);
    x = g.add(x, g.linear(h, 4 * H, H, { gain: 0.5 }));
    states.push(x);
  }
  const last = g.layerNorm(x, H);

  // CLIP's pooling does input_ids.to(torch.int).argmax(-1); the Cast mirrors what its export contains.
  const eos = g.op("ArgMax", [g.op("Cast", [ids], { to: { int: INT32 } })], {
    axis: { int: 1 },
    keepdims: { int: 1 },
  });
  const gatherShape = g.op("Concat", [g.op("Shape", [ids], { end: { int: 1 } }), g.ints([1, H])], {
    axis: { int: 0 },
  });
  const index = g.op("Expand", [g.op("Unsqueeze", [eos, g.ints([2])]), gatherShape]);
  const pooled = g.op("Squeeze", [g.op("GatherElements", [last, index], { axis: { int: 1 } }), g.ints([1])]);

  const hiddenDims = ["batch_size", "sequence_length", H];
  if (spec.architecture === "CLIPTextModel") {
    g.floatOutput(last, "last_hidden_state", hiddenDims, "float32");
    g.floatOutput(pooled, "pooler_output", ["batch_size", H], "float32");
  } else {
    const textEmbeds = g.linear(pooled, H, spec.projectionDim, { bias: false });
    g.floatOutput(textEmbeds, "text_embeds", ["batch_size", spec.projectionDim], "float32");
    g.floatOutput(last, "last_hidden_state", hiddenDims, "float32");
  }
  if (spec.hiddenStates)
    states.forEach((state, i) => {
      g.floatOutput(state, `hidden_states.${i}`, hiddenDims, "float32");
    });
  return g.b.toBytes();
}
