import { NnGraph, streamSeed } from "./nn-graph.ts";
import { DataType } from "./onnx-builder.ts";

/**
 * Width / heads / joint blocks of the small transformers: "tiny" for tests and defaults, "bench"
 * with realistic per-step compute (tens of ms on a CPU core at 256², like UNET_CHANNELS.bench).
 */
export const TRANSFORMER_ARCHS = {
  tiny: { width: 32, heads: 2, layers: 1 },
  bench: { width: 256, heads: 4, layers: 2 },
} as const;
export type TransformerArch = keyof typeof TRANSFORMER_ARCHS;

/** Latent channels of Flux's and SD3's VAE. */
export const TRANSFORMER_LATENT_CHANNELS = 16;
/** Flux packs 2×2 latent patches (64 values a token) before its transformer; SD3's conv does it inside. */
const PATCH = 2;
/** Gain of the last layer of each residual branch, so the skip path dominates. */
const RESIDUAL_GAIN = 0.5;
/** Gain of proj_out: roughly unit-variance outputs, like a velocity prediction. */
const OUTPUT_GAIN = 1.2;
/** Sinusoid frequencies per id axis in Flux's position embedding (real Flux: RoPE over 16/56/56 dims). */
const ID_FREQUENCIES = 4;

export interface FluxTransformerSpec {
  /** T5's d_model: width of encoder_hidden_states. */
  jointAttentionDim: number;
  /** CLIP's hidden size: width of pooled_projections (the pooler output). */
  pooledProjectionDim: number;
  /** FLUX.1 dev: a `guidance` input (guidance-distilled); schnell has none. */
  guidanceEmbeds: boolean;
}

export interface Sd3TransformerSpec {
  /** T5's d_model: width of encoder_hidden_states (the CLIP states are zero-padded to it). */
  jointAttentionDim: number;
  /** Both CLIPs' projection sizes added: width of pooled_projections. */
  pooledProjectionDim: number;
}

/** FluxTransformer2DModel's config.json for the small graph below (real values in comments). */
export function fluxTransformerConfig(
  spec: FluxTransformerSpec,
  arch: TransformerArch,
): Record<string, unknown> {
  const a = TRANSFORMER_ARCHS[arch];
  return {
    _class_name: "FluxTransformer2DModel",
    _diffusers_version: "0.32.0",
    attention_head_dim: a.width / a.heads, // 128
    axes_dims_rope: [16, 56, 56],
    guidance_embeds: spec.guidanceEmbeds,
    in_channels: TRANSFORMER_LATENT_CHANNELS * PATCH * PATCH, // 64
    joint_attention_dim: spec.jointAttentionDim, // 4096
    num_attention_heads: a.heads, // 24
    num_layers: a.layers, // 19
    num_single_layers: 0, // 38
    out_channels: null,
    patch_size: 1,
    pooled_projection_dim: spec.pooledProjectionDim, // 768
    _hybrid_arch: arch,
  };
}

/** SD3Transformer2DModel's config.json for the small graph below (real SD3 medium values in comments). */
export function sd3TransformerConfig(
  spec: Sd3TransformerSpec,
  arch: TransformerArch,
): Record<string, unknown> {
  const a = TRANSFORMER_ARCHS[arch];
  return {
    _class_name: "SD3Transformer2DModel",
    _diffusers_version: "0.32.0",
    attention_head_dim: a.width / a.heads, // 64
    caption_projection_dim: a.width, // 1536
    in_channels: TRANSFORMER_LATENT_CHANNELS,
    joint_attention_dim: spec.jointAttentionDim, // 4096
    num_attention_heads: a.heads, // 24
    num_layers: a.layers, // 24
    out_channels: TRANSFORMER_LATENT_CHANNELS,
    patch_size: PATCH,
    pooled_projection_dim: spec.pooledProjectionDim, // 2048
    pos_embed_max_size: 192,
    // 32 latents = 256 pixels: small, so the defaults stay fast (real: 128).
    sample_size: 32,
    _hybrid_arch: arch,
  };
}

/** [N] → [N, dim] as [cos | sin] of x · 10000^(-i / (dim / 2)) (diffusers' Timesteps, flip_sin_to_cos). */
function sinusoid(g: NnGraph, x: string, dim: number): string {
  const half = dim / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.exp((-Math.log(10000) * i) / half);
  const args = g.mul(
    g.op("Unsqueeze", [x, g.ints([1])]),
    g.b.addFloatInitializer(g.b.uniqueName("freqs"), freqs, [1, half]),
  );
  return g.op("Concat", [g.op("Cos", [args]), g.op("Sin", [args])], { axis: { int: 1 } });
}

/** Linear → SiLU → Linear (diffusers' TimestepEmbedding / PixArtAlphaTextProjection). */
function mlp(g: NnGraph, x: string, cin: number, cout: number): string {
  return g.linear(g.silu(g.linear(x, cin, cout)), cout, cout);
}

/** A float input of `dims` reshaped to [N] (timestep, guidance: one value a batch entry, or one for all). */
function vectorInput(g: NnGraph, name: string, dim: string): string {
  g.b.addInput(name, DataType.FLOAT, [dim]);
  return g.op("Reshape", [name, g.ints([-1])]);
}

/** `[N, D]` → `[N, 1, D]`, to scale or shift every token of a batch entry. */
const perToken = (g: NnGraph, x: string) => g.op("Unsqueeze", [x, g.ints([1])]);

/** LayerNorm (no affine) then `x · (1 + scale) + shift` with both from the conditioning: adaLN. */
function modulate(g: NnGraph, x: string, cond: string, width: number): string {
  const scale = perToken(g, g.linear(cond, width, width, { gain: 0.3 }));
  const shift = perToken(g, g.linear(cond, width, width, { gain: 0.3 }));
  return g.add(g.mul(g.layerNorm(x, width), g.add(scale, g.scalar(1))), shift);
}

/**
 * MM-DiT's joint block reduced to one stream: text and image tokens attend to each other, each
 * residual branch adaLN-modulated and gated by the conditioning (timestep, pooled text, guidance).
 */
function jointBlock(g: NnGraph, x: string, cond: string, width: number, heads: number): string {
  const gate = () => perToken(g, g.linear(cond, width, width, { gain: 0.3 }));
  let h = modulate(g, x, cond, width);
  const attn = g.attention(
    g.linear(h, width, width),
    g.linear(h, width, width),
    g.linear(h, width, width),
    width,
    heads,
  );
  let out = g.add(x, g.mul(gate(), g.linear(attn, width, width, { gain: RESIDUAL_GAIN })));
  h = modulate(g, out, cond, width);
  const ff = g.linear(g.gelu(g.linear(h, width, 4 * width)), 4 * width, width, { gain: RESIDUAL_GAIN });
  out = g.add(out, g.mul(gate(), ff));
  return out;
}

/** Text and image tokens joined ([txt; img], as MM-DiT), `blocks` joint blocks, the image tokens back. */
function jointTransformer(g: NnGraph, txt: string, img: string, cond: string, arch: TransformerArch): string {
  const { width, heads, layers } = TRANSFORMER_ARCHS[arch];
  let x = g.op("Concat", [txt, img], { axis: { int: 1 } });
  for (let i = 0; i < layers; i++) x = jointBlock(g, x, cond, width, heads);
  const txtLength = g.op("Shape", [txt], { start: { int: 1 }, end: { int: 2 } });
  const imgTokens = g.op("Slice", [x, txtLength, g.ints([2 ** 62]), g.ints([1])]);
  return modulate(g, imgTokens, cond, width);
}

/**
 * A small FluxTransformer2DModel with optimum's I/O (`flux-transformer-2d`, diffusers ≥ 0.31):
 * inputs `hidden_states` [batch_size, packed_height_width, 64], `encoder_hidden_states`
 * [batch_size, sequence_length, jointAttentionDim], `pooled_projections` [batch_size,
 * pooledProjectionDim], `timestep` [step] (t / 1000: ×1000 inside, as diffusers), `txt_ids`
 * [sequence_length, 3], `img_ids` [packed_height_width, 3], and for dev `guidance` [batch_size]
 * (×1000 inside); all float32. Output `out_hidden_states` [batch_size, packed_height_width, 64].
 *
 * Architecture: x_embedder and context_embedder (Linear), a position embedding of the ids
 * (sinusoids of each id axis → Linear; real Flux rotates q/k by them) added to both streams, the
 * conditioning = MLP(sinusoid(1000 t)) + MLP(pooled) (+ MLP(sinusoid(1000 guidance))), joint
 * blocks, adaLN norm_out, proj_out. Every input reaches the output.
 */
export function buildFluxTransformer(
  spec: FluxTransformerSpec,
  o: { seed: number; arch: TransformerArch },
): Uint8Array {
  const g = new NnGraph("transformer", streamSeed(o.seed, "flux.transformer"));
  const { width } = TRANSFORMER_ARCHS[o.arch];
  const inC = TRANSFORMER_LATENT_CHANNELS * PATCH * PATCH;

  // optimum's input order: hidden_states, encoder_hidden_states, pooled_projections, timestep, txt_ids, img_ids, guidance.
  g.b.addInput("hidden_states", DataType.FLOAT, ["batch_size", "packed_height_width", inC]);
  g.b.addInput("encoder_hidden_states", DataType.FLOAT, [
    "batch_size",
    "sequence_length",
    spec.jointAttentionDim,
  ]);
  g.b.addInput("pooled_projections", DataType.FLOAT, ["batch_size", spec.pooledProjectionDim]);
  const t = vectorInput(g, "timestep", "step");
  g.b.addInput("txt_ids", DataType.FLOAT, ["sequence_length", 3]);
  g.b.addInput("img_ids", DataType.FLOAT, ["packed_height_width", 3]);
  const guidance = spec.guidanceEmbeds ? vectorInput(g, "guidance", "batch_size") : null;

  let cond = mlp(g, sinusoid(g, g.mul(t, g.scalar(1000)), 256), 256, width);
  if (guidance) cond = g.add(cond, mlp(g, sinusoid(g, g.mul(guidance, g.scalar(1000)), 256), 256, width));
  cond = g.silu(g.add(cond, mlp(g, "pooled_projections", spec.pooledProjectionDim, width)));

  // Shared between the streams, like Flux's one RoPE over the joined ids.
  const idFreqs = new Float32Array(ID_FREQUENCIES).map((_, i) => 10000 ** (-i / ID_FREQUENCIES));
  const freqs = g.b.addFloatInitializer("id_freqs", idFreqs, [1, 1, ID_FREQUENCIES]);
  const idFeatures = 3 * 2 * ID_FREQUENCIES;
  const posW = g.weight("pos_embed.weight", [idFeatures, width], Math.sqrt(3 / idFeatures));
  const position = (ids: string) => {
    const args = g.mul(g.op("Unsqueeze", [ids, g.ints([2])]), freqs);
    const feats = g.op("Concat", [g.op("Sin", [args]), g.op("Cos", [args])], { axis: { int: 2 } });
    return g.op("MatMul", [g.op("Reshape", [feats, g.ints([0, -1])]), posW]);
  };
  const img = g.add(g.linear("hidden_states", inC, width), position("img_ids"));
  const txt = g.add(g.linear("encoder_hidden_states", spec.jointAttentionDim, width), position("txt_ids"));

  const out = g.linear(jointTransformer(g, txt, img, cond, o.arch), width, inC, { gain: OUTPUT_GAIN });
  g.floatOutput(out, "out_hidden_states", ["batch_size", "packed_height_width", inC], "float32");
  return g.b.toBytes();
}

/** [n] int64 positions 0 … n−1 → [n, dim] sinusoids (half sin, half cos), as float. */
function positions1d(g: NnGraph, n: string, dim: number): string {
  const scalar = (v: number) => g.b.addInt64Initializer(g.b.uniqueName("int"), [BigInt(v)], []);
  const pos = g.op("Cast", [g.op("Range", [scalar(0), n, scalar(1)])], { to: { int: DataType.FLOAT } });
  return sinusoid(g, pos, dim);
}

/**
 * A small SD3Transformer2DModel with optimum's I/O (`sd3-transformer-2d`): inputs
 * `hidden_states` [batch_size, 16, height, width], `encoder_hidden_states` [batch_size,
 * sequence_length, jointAttentionDim] (77 CLIP tokens then T5's), `pooled_projections`
 * [batch_size, pooledProjectionDim], `timestep` [step] (0 … 1000, as SD3's pipeline passes it);
 * all float32. Output `out_hidden_states` [batch_size, 16, height, width]. height and width must
 * be even (the patch size, 2), as for the real model.
 *
 * Architecture: a 2×2 stride-2 conv patch embedding plus 2-D sin-cos positions, context_embedder
 * (Linear), conditioning = MLP(sinusoid(t)) + MLP(pooled), joint blocks, adaLN norm_out,
 * proj_out to 2·2·16 values a patch, unpatchified by DepthToSpace.
 */
export function buildSd3Transformer(
  spec: Sd3TransformerSpec,
  o: { seed: number; arch: TransformerArch },
): Uint8Array {
  const g = new NnGraph("transformer", streamSeed(o.seed, "sd3.transformer"));
  const { width } = TRANSFORMER_ARCHS[o.arch];
  const C = TRANSFORMER_LATENT_CHANNELS;
  const imageDims = ["batch_size", C, "height", "width"];

  g.b.addInput("hidden_states", DataType.FLOAT, imageDims);
  g.b.addInput("encoder_hidden_states", DataType.FLOAT, [
    "batch_size",
    "sequence_length",
    spec.jointAttentionDim,
  ]);
  g.b.addInput("pooled_projections", DataType.FLOAT, ["batch_size", spec.pooledProjectionDim]);
  const t = vectorInput(g, "timestep", "step");

  const cond = g.silu(
    g.add(
      mlp(g, sinusoid(g, t, 256), 256, width),
      mlp(g, "pooled_projections", spec.pooledProjectionDim, width),
    ),
  );

  const fanIn = C * PATCH * PATCH;
  const patches = g.op(
    "Conv",
    [
      "hidden_states",
      g.weight("pos_embed.proj.weight", [width, C, PATCH, PATCH], Math.sqrt(3 / fanIn)),
      g.weight("pos_embed.proj.bias", [width], 0.02),
    ],
    { kernel_shape: { ints: [PATCH, PATCH] }, strides: { ints: [PATCH, PATCH] } },
  );
  const grid = g.op("Shape", [patches], { start: { int: 2 } });
  const gridH = g.op("Squeeze", [
    g.op("Shape", [patches], { start: { int: 2 }, end: { int: 3 } }),
    g.ints([0]),
  ]);
  const gridW = g.op("Squeeze", [
    g.op("Shape", [patches], { start: { int: 3 }, end: { int: 4 } }),
    g.ints([0]),
  ]);
  // Rows in the first half of the features, columns in the second, as diffusers' 2-D sin-cos embedding.
  const half = width / 2;
  const gridShape = g.op("Concat", [grid, g.ints([half])], { axis: { int: 0 } });
  const rows = g.op("Expand", [g.op("Unsqueeze", [positions1d(g, gridH, half), g.ints([1])]), gridShape]);
  const cols = g.op("Expand", [g.op("Unsqueeze", [positions1d(g, gridW, half), g.ints([0])]), gridShape]);
  const pos = g.op("Reshape", [g.op("Concat", [rows, cols], { axis: { int: 2 } }), g.ints([-1, width])]);
  const tokens = g.op("Transpose", [g.op("Reshape", [patches, g.ints([0, width, -1])])], {
    perm: { ints: [0, 2, 1] },
  });
  const img = g.add(tokens, pos);
  const txt = g.linear("encoder_hidden_states", spec.jointAttentionDim, width);

  const out = g.linear(jointTransformer(g, txt, img, cond, o.arch), width, PATCH * PATCH * C, {
    gain: OUTPUT_GAIN,
  });
  const patchShape = g.op(
    "Concat",
    [g.op("Shape", [patches], { end: { int: 1 } }), g.ints([PATCH * PATCH * C]), grid],
    { axis: { int: 0 } },
  );
  const patchesOut = g.op("Reshape", [g.op("Transpose", [out], { perm: { ints: [0, 2, 1] } }), patchShape]);
  const image = g.op("DepthToSpace", [patchesOut], { blocksize: { int: PATCH }, mode: { string: "CRD" } });
  g.floatOutput(image, "out_hidden_states", imageDims, "float32");
  return g.b.toBytes();
}
