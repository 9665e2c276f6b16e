import { type FloatIo, NnGraph, streamSeed } from "./nn-graph.ts";
import { DataType, type Dim } from "./onnx-builder.ts";

/** dtype of the UNet's `timestep` input: optimum exports float32 today; older exports used int64. */
export type TimestepDtype = "float32" | "int64" | "float16";

/**
 * Declared shape of `timestep`: "steps" = [steps] (optimum's dynamic axis, fed [1] or [batch]),
 * "one" = [1], "scalar" = [] (torch.onnx exports of a 0-d tensor).
 */
export type TimestepShape = "steps" | "one" | "scalar";

export interface UnetSpec {
  /** Width of encoder_hidden_states: the text encoder's hidden size (SDXL: both encoders concatenated). */
  crossAttentionDim: number;
  /** SDXL's "text_time" added conditioning: text_embeds width (text_encoder_2's projection_dim). */
  textTime?: { projectionDim: number; timeEmbedDim: number };
  /** LCM's guidance-embedding width (`timestep_cond`); real LCM checkpoints use 256. */
  timeCondProjDim?: number;
}

export interface UnetBuildOptions {
  timestepDtype: TimestepDtype;
  timestepShape: TimestepShape;
  /** dtype of sample, encoder_hidden_states, text_embeds, time_ids, timestep_cond and out_sample. */
  ioDtype: FloatIo;
  seed: number;
  /** @defaultValue "tiny" */
  arch?: UnetArch;
}

/**
 * Channels of the two resolution levels (the second is where cross-attention runs): "tiny" for
 * tests (~4 ms a step at 256², batch 2, on this CPU), "bench" with ~64× the compute so a
 * benchmark's fixed costs are measured against realistic work, as the TAESD VAE does for decodes.
 */
export const UNET_CHANNELS = { tiny: [32, 64], bench: [256, 512] } as const;
export type UnetArch = keyof typeof UNET_CHANNELS;
const NORM_GROUPS = 8;
const HEADS = 2;
const TIME_EMBED_DIM = 128;
/** Default resolution in latents (256 × 256 pixels): small, so defaults stay fast. */
const SAMPLE_SIZE = 32;
const LATENT_CHANNELS = 4;
/** Gain of the last layer of each residual branch: small, so the skip path dominates. */
const RESIDUAL_GAIN = 0.5;
/** Gain of conv_out, chosen so that out_sample has roughly unit variance like a noise prediction. */
const OUTPUT_GAIN = 1.6;

/** UNet2DConditionModel's config.json for the tiny architecture built below. */
export function unetConfig(spec: UnetSpec, arch: UnetArch = "tiny"): Record<string, unknown> {
  return {
    _class_name: "UNet2DConditionModel",
    _diffusers_version: "0.32.0",
    act_fn: "silu",
    addition_embed_type: spec.textTime ? "text_time" : null,
    addition_embed_type_num_heads: 64,
    addition_time_embed_dim: spec.textTime?.timeEmbedDim ?? null,
    // diffusers' historical naming: for SD-style configs this is the number of heads.
    attention_head_dim: HEADS,
    block_out_channels: [...UNET_CHANNELS[arch]],
    center_input_sample: false,
    class_embed_type: null,
    cross_attention_dim: spec.crossAttentionDim,
    down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D"],
    downsample_padding: 1,
    flip_sin_to_cos: true,
    freq_shift: 0,
    in_channels: LATENT_CHANNELS,
    layers_per_block: 1,
    mid_block_type: null,
    norm_eps: 1e-5,
    norm_num_groups: NORM_GROUPS,
    out_channels: LATENT_CHANNELS,
    projection_class_embeddings_input_dim: spec.textTime
      ? spec.textTime.projectionDim + 6 * spec.textTime.timeEmbedDim
      : null,
    sample_size: SAMPLE_SIZE,
    time_cond_proj_dim: spec.timeCondProjDim ?? null,
    transformer_layers_per_block: 1,
    up_block_types: ["CrossAttnUpBlock2D", "UpBlock2D"],
    upcast_attention: false,
    use_linear_projection: true,
    _hybrid_arch: "tiny",
  };
}

/**
 * diffusers' Timesteps(flip_sin_to_cos=True, freq_shift=0): [N] -> [N, dim] as [cos | sin] of
 * t · 10000^(-i / (dim / 2)).
 */
function sinusoid(g: NnGraph, t: string, dim: number): string {
  const half = dim / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.exp((-Math.log(10000) * i) / half);
  const args = g.mul(
    g.op("Unsqueeze", [t, g.ints([1])]),
    g.b.addFloatInitializer(g.b.uniqueName("freqs"), freqs, [1, half]),
  );
  return g.op("Concat", [g.op("Cos", [args]), g.op("Sin", [args])], { axis: { int: 1 } });
}

/** Linear -> SiLU -> Linear, diffusers' TimestepEmbedding. */
function mlp(g: NnGraph, x: string, cin: number, cout: number): string {
  return g.linear(g.silu(g.linear(x, cin, cout)), cout, cout);
}

/** diffusers' ResnetBlock2D: GN-SiLU-conv, + time embedding per channel, GN-SiLU-conv, + skip. */
function resBlock(g: NnGraph, x: string, cin: number, cout: number, tembAct: string): string {
  let h = g.conv(g.silu(g.groupNorm(x, cin, NORM_GROUPS)), cin, cout);
  const t = g.linear(tembAct, TIME_EMBED_DIM, cout);
  h = g.add(h, g.op("Unsqueeze", [t, g.ints([2, 3])]));
  h = g.conv(g.silu(g.groupNorm(h, cout, NORM_GROUPS)), cout, cout, { gain: RESIDUAL_GAIN });
  const skip = cin === cout ? x : g.conv(x, cin, cout, { k: 1 });
  return g.add(skip, h);
}

/**
 * One Transformer2DModel with a single BasicTransformerBlock reduced to cross-attention + FF:
 * queries from the spatial features, keys/values from encoder_hidden_states, so the prompt steers
 * the output.
 */
function crossAttentionBlock(g: NnGraph, x: string, c: number, context: string, contextDim: number): string {
  const tokens = g.op("Transpose", [g.op("Reshape", [g.groupNorm(x, c, NORM_GROUPS), g.ints([0, 0, -1])])], {
    perm: { ints: [0, 2, 1] },
  });
  let h = g.linear(tokens, c, c);
  const q = g.linear(g.layerNorm(h, c), c, c, { bias: false });
  const k = g.linear(context, contextDim, c, { bias: false });
  const v = g.linear(context, contextDim, c, { bias: false });
  h = g.add(h, g.linear(g.attention(q, k, v, c, HEADS), c, c));
  h = g.add(h, g.linear(g.gelu(g.linear(g.layerNorm(h, c), c, 4 * c)), 4 * c, c, { gain: RESIDUAL_GAIN }));
  h = g.linear(h, c, c, { gain: RESIDUAL_GAIN });
  const back = g.op("Reshape", [g.op("Transpose", [h], { perm: { ints: [0, 2, 1] } }), g.op("Shape", [x])]);
  return g.add(x, back);
}

function timestepInput(g: NnGraph, o: UnetBuildOptions): string {
  const dims: Dim[] = o.timestepShape === "steps" ? ["steps"] : o.timestepShape === "one" ? [1] : [];
  const type = { float32: DataType.FLOAT, int64: DataType.INT64, float16: DataType.FLOAT16 }[o.timestepDtype];
  const t = g.b.addInput("timestep", type, dims);
  const asFloat = o.timestepDtype === "float32" ? t : g.op("Cast", [t], { to: { int: DataType.FLOAT } });
  // Every declared shape becomes [N]; N = 1 broadcasts over the batch, N = batch pairs up with it.
  return g.op("Reshape", [asFloat, g.ints([-1])]);
}

/**
 * A small UNet2DConditionModel in optimum's layout. Inputs: `sample` [batch_size, 4, height,
 * width], `timestep` (see TimestepDtype/TimestepShape), `encoder_hidden_states` [batch_size,
 * sequence_length, crossAttentionDim]; SDXL adds `text_embeds` [batch_size, projectionDim] and
 * `time_ids` [batch_size, 6]; LCM adds `timestep_cond` [batch_size, timeCondProjDim]. Output
 * `out_sample` [batch_size, 4, height, width].
 *
 * Architecture: conv_in, a ResNet block at full resolution, a stride-2 downsample, a ResNet block
 * and a cross-attention block at half resolution, a nearest upsample back to the skip's exact size
 * (so any height/width works, odd ones included), concat with the skip, a ResNet block, GN-SiLU-
 * conv_out. The time embedding is diffusers': sinusoid -> Linear -> SiLU -> Linear, with LCM's
 * cond_proj(timestep_cond) added to the sinusoid and SDXL's add_embedding(text_embeds ‖ sinusoid(time_ids))
 * added to the result. GroupNorm before every conv keeps out_sample O(1) whatever the input scale.
 */
export function buildUnet(spec: UnetSpec, o: UnetBuildOptions): Uint8Array {
  const g = new NnGraph("unet", streamSeed(o.seed, "unet"));
  const [c0, c1] = UNET_CHANNELS[o.arch ?? "tiny"];
  const imageDims = ["batch_size", LATENT_CHANNELS, "height", "width"];

  // Inputs are declared in optimum's order: sample, timestep, encoder_hidden_states, text_embeds,
  // time_ids, timestep_cond.
  const sample = g.floatInput("sample", imageDims, o.ioDtype);
  const t = timestepInput(g, o);
  const context = g.floatInput(
    "encoder_hidden_states",
    ["batch_size", "sequence_length", spec.crossAttentionDim],
    o.ioDtype,
  );
  const textTime = spec.textTime && {
    ...spec.textTime,
    textEmbeds: g.floatInput("text_embeds", ["batch_size", spec.textTime.projectionDim], o.ioDtype),
    timeIds: g.floatInput("time_ids", ["batch_size", 6], o.ioDtype),
  };
  const condDim = spec.timeCondProjDim;
  const cond = condDim ? g.floatInput("timestep_cond", ["batch_size", condDim], o.ioDtype) : undefined;

  let tEmb = sinusoid(g, t, c0);
  if (cond && condDim) tEmb = g.add(tEmb, g.linear(cond, condDim, c0, { bias: false }));
  let temb = mlp(g, tEmb, c0, TIME_EMBED_DIM);
  if (textTime) {
    const { projectionDim, timeEmbedDim } = textTime;
    const idsEmb = g.op("Reshape", [
      sinusoid(g, g.op("Reshape", [textTime.timeIds, g.ints([-1])]), timeEmbedDim),
      g.ints([-1, 6 * timeEmbedDim]),
    ]);
    const added = g.op("Concat", [textTime.textEmbeds, idsEmb], { axis: { int: 1 } });
    temb = g.add(temb, mlp(g, added, projectionDim + 6 * timeEmbedDim, TIME_EMBED_DIM));
  }
  const tembAct = g.silu(temb);

  const skip = resBlock(g, g.conv(sample, LATENT_CHANNELS, c0), c0, c0, tembAct);
  let h = g.conv(skip, c0, c1, { stride: 2 });
  h = resBlock(g, h, c1, c1, tembAct);
  h = crossAttentionBlock(g, h, c1, context, spec.crossAttentionDim);
  const sizes = g.op(
    "Concat",
    [g.op("Shape", [h], { end: { int: 2 } }), g.op("Shape", [skip], { start: { int: 2 } })],
    { axis: { int: 0 } },
  );
  h = g.op("Resize", [h, "", "", sizes], {
    mode: { string: "nearest" },
    coordinate_transformation_mode: { string: "asymmetric" },
    nearest_mode: { string: "floor" },
  });
  h = resBlock(g, g.op("Concat", [h, skip], { axis: { int: 1 } }), c1 + c0, c0, tembAct);
  const out = g.conv(g.silu(g.groupNorm(h, c0, NORM_GROUPS)), c0, LATENT_CHANNELS, { gain: OUTPUT_GAIN });
  g.floatOutput(out, "out_sample", imageDims, o.ioDtype);
  return g.b.toBytes();
}
