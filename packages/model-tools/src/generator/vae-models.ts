import { FAMILIES, Family, type FamilySpec } from "@hybrid/protocol";
import { NnGraph, streamSeed } from "./nn-graph.ts";
import { DataType, type Dim, type OnnxGraphBuilder } from "./onnx-builder.ts";

export type Arch = "tiny" | "taesd";
export type EncoderOutput = "latent_sample" | "latent_parameters";
export type IoDtype = "float32" | "float16";

/** The protocol's family constants, plus whether the family is a video VAE. */
export const FAMILY_SPECS: Readonly<Record<Family, FamilySpec & { video: boolean }>> = Object.fromEntries(
  Family.options.map((f) => [f, { ...FAMILIES[f], video: FAMILIES[f].temporalCompression !== undefined }]),
) as Record<Family, FamilySpec & { video: boolean }>;

export const TEMPORAL_COMPRESSION = 4;
export const SPATIAL_COMPRESSION = 8;

/**
 * Four entries because diffusers derives the spatial factor as 2 ** (len(block_out_channels) - 1);
 * a reader that does the same gets 8.
 */
export const BLOCK_OUT_CHANNELS: Readonly<Record<Arch, readonly number[]>> = {
  tiny: [8, 16, 32, 32],
  taesd: [64, 64, 64, 64],
};

/** The diffusers-style VAE config optimum copies into both vae_decoder/ and vae_encoder/. */
export function vaeConfig(family: Family, arch: Arch): Record<string, unknown> {
  const spec = FAMILY_SPECS[family];
  return {
    _class_name: spec.vaeClass,
    _diffusers_version: "0.32.0",
    in_channels: 3,
    out_channels: 3,
    latent_channels: spec.latentChannels,
    block_out_channels: [...BLOCK_OUT_CHANNELS[arch]],
    scaling_factor: spec.scalingFactor,
    shift_factor: spec.shiftFactor,
    ...(spec.video
      ? { temporal_compression_ratio: TEMPORAL_COMPRESSION, spatial_compression_ratio: SPATIAL_COMPRESSION }
      : {}),
    _hybrid_arch: arch,
  };
}

// ---------------------------------------------------------------------------------------------
// Graph helpers

interface ConvOptions {
  /** 2 for images, 3 for video (kernel covers time too). */
  rank: 2 | 3;
  stride?: number;
  bias?: boolean;
  /**
   * Scale of the weights relative to variance-preserving (gain 1 = Xavier-like, sqrt(2) = He for a
   * following ReLU). Residual branches and output heads use smaller gains so activations stay O(1).
   */
  gain: number;
}

const RELU_GAIN = Math.SQRT2;
/** The last conv of a residual branch: small, so ten stacked blocks do not blow up the activations. */
const RESIDUAL_GAIN = 0.4;
const BIAS_BOUND = 0.05;
const INT64_MAX = 9223372036854775807n;

/**
 * The VAE's layers over NnGraph (its builder, seeded weight stream and constants; encoder and
 * decoder draw from separate streams, see `streamSeed`, so adding an encoder does not change the
 * decoder). Its convs take a rank and a gain, and pad video causally.
 */
class VaeGraph {
  private readonly g: NnGraph;
  readonly b: OnnxGraphBuilder;
  private readonly scalesCache = new Map<string, string>();

  constructor(name: string, seed: number) {
    this.g = new NnGraph(name, seed);
    this.b = this.g.b;
  }

  conv(x: string, cin: number, cout: number, o: ConvOptions): string {
    const k = 3;
    const kernel = o.rank === 2 ? [k, k] : [k, k, k];
    const fanIn = cin * kernel.reduce((a, c) => a * c, 1);
    const bound = o.gain * Math.sqrt(3 / fanIn);
    const name = this.b.uniqueName("conv");
    const weight = this.b.addFloatInitializer(`${name}.weight`, this.g.uniform(cout * fanIn, bound), [
      cout,
      cin,
      ...kernel,
    ]);
    const inputs = [x, weight];
    if (o.bias ?? true) {
      inputs.push(this.b.addFloatInitializer(`${name}.bias`, this.g.uniform(cout, BIAS_BOUND), [cout]));
    }
    const stride = o.stride ?? 1;
    // Video convs pad time only on the past side (causal, like HunyuanVideo's CausalConv3d), so
    // output frame t never depends on later latent frames.
    const pads = o.rank === 2 ? [1, 1, 1, 1] : [2, 1, 1, 0, 1, 1];
    return this.b.op("Conv", inputs, {
      kernel_shape: { ints: kernel },
      pads: { ints: pads },
      strides: { ints: kernel.map(() => stride) },
    });
  }

  relu(x: string): string {
    return this.b.op("Relu", [x]);
  }

  scalar(value: number): string {
    return this.g.scalar(value);
  }

  /** Nearest-neighbour upsampling, with the attributes PyTorch exports for nn.Upsample(mode="nearest"). */
  resize(x: string, scales: readonly number[]): string {
    const key = scales.join(",");
    let s = this.scalesCache.get(key);
    if (!s) {
      s = this.b.addFloatInitializer(this.b.uniqueName("scales"), new Float32Array(scales), [scales.length]);
      this.scalesCache.set(key, s);
    }
    return this.b.op("Resize", [x, "", s], {
      mode: { string: "nearest" },
      coordinate_transformation_mode: { string: "asymmetric" },
      nearest_mode: { string: "floor" },
    });
  }

  /** Drops the first `n` entries along `axis`. */
  dropFirst(x: string, axis: number, n: number): string {
    const starts = this.b.addInt64Initializer(this.b.uniqueName("starts"), [BigInt(n)], [1]);
    const ends = this.b.addInt64Initializer(this.b.uniqueName("ends"), [INT64_MAX], [1]);
    const axes = this.b.addInt64Initializer(this.b.uniqueName("axes"), [BigInt(axis)], [1]);
    return this.b.op("Slice", [x, starts, ends, axes]);
  }

  /** Graph input, cast to float32 when the I/O is fp16 (CPU fp16 conv kernels are not reliable). */
  input(name: string, dims: readonly Dim[], io: IoDtype): string {
    this.b.addInput(name, io === "float16" ? DataType.FLOAT16 : DataType.FLOAT, dims);
    return io === "float16" ? this.b.op("Cast", [name], { to: { int: DataType.FLOAT } }) : name;
  }

  output(x: string, name: string, dims: readonly Dim[], io: IoDtype): void {
    if (io === "float16") {
      this.b.addNode("Cast", [x], { to: { int: DataType.FLOAT16 } }, [name]);
      this.b.addOutput(name, DataType.FLOAT16, dims);
    } else {
      this.b.addNode("Identity", [x], {}, [name]);
      this.b.addOutput(name, DataType.FLOAT, dims);
    }
  }

  /**
   * Decoder output head: roughly [-1, 1] like a real VAE, but 1.2 * tanh leaves some values just
   * outside so the consumers' clamping is exercised.
   */
  outputHead(x: string): string {
    return this.b.op("Mul", [this.b.op("Tanh", [x]), this.scalar(1.2)]);
  }

  /** TAESD's Block: ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x). */
  taesdBlock(x: string, c: number): string {
    let h = this.relu(this.conv(x, c, c, { rank: 2, gain: RELU_GAIN }));
    h = this.relu(this.conv(h, c, c, { rank: 2, gain: RELU_GAIN }));
    h = this.conv(h, c, c, { rank: 2, gain: RESIDUAL_GAIN });
    return this.relu(this.b.op("Add", [h, x]));
  }
}

// ---------------------------------------------------------------------------------------------
// Architectures

export interface BuildOptions {
  family: Family;
  arch: Arch;
  ioDtype: IoDtype;
  seed: number;
}

/** How much the decoder's final conv is scaled, chosen so that about 1 value in 10 lands outside [-1, 1]. */
const OUTPUT_GAIN = 0.7;

const IMAGE_LATENT_DIMS = ["batch_size", "num_channels_latent", "height_latent", "width_latent"];
const IMAGE_SAMPLE_DIMS = ["batch_size", 3, "height", "width"];
const VIDEO_LATENT_DIMS = [
  "batch_size",
  "num_channels_latent",
  "num_frames_latent",
  "height_latent",
  "width_latent",
];
const VIDEO_SAMPLE_DIMS = ["batch_size", 3, "num_frames", "height", "width"];

export function buildDecoder(o: BuildOptions): Uint8Array {
  const spec = FAMILY_SPECS[o.family];
  const g = new VaeGraph("vae_decoder", streamSeed(o.seed, "vae_decoder"));
  const C = spec.latentChannels;

  if (spec.video) {
    if (o.arch !== "tiny") throw new Error(`arch "${o.arch}" is not available for ${o.family}`);
    const ch = BLOCK_OUT_CHANNELS.tiny;
    let h = g.input("latent_sample", VIDEO_LATENT_DIMS, o.ioDtype);
    h = g.relu(g.conv(h, C, ch[3]!, { rank: 3, gain: RELU_GAIN }));
    for (let i = 3; i >= 1; i--) {
      if (i === 3) {
        // Time ×4 then drop the first 3 frames gives (f - 1) * 4 + 1 frames without ever forming
        // an empty tensor at f = 1, which a "drop a frame, then upsample" order would.
        h = g.dropFirst(g.resize(h, [1, 1, TEMPORAL_COMPRESSION, 2, 2]), 2, TEMPORAL_COMPRESSION - 1);
      } else {
        h = g.resize(h, [1, 1, 1, 2, 2]);
      }
      h = g.relu(g.conv(h, ch[i]!, ch[i - 1]!, { rank: 3, gain: RELU_GAIN }));
    }
    h = g.outputHead(g.conv(h, ch[0]!, 3, { rank: 3, gain: OUTPUT_GAIN }));
    g.output(h, "sample", VIDEO_SAMPLE_DIMS, o.ioDtype);
    return g.b.toBytes();
  }

  let h = g.input("latent_sample", IMAGE_LATENT_DIMS, o.ioDtype);
  if (o.arch === "taesd") {
    const c = 64;
    // TAESD's Clamp module: a soft clamp of the latent to (-3, 3).
    h = g.b.op("Mul", [g.b.op("Tanh", [g.b.op("Div", [h, g.scalar(3)])]), g.scalar(3)]);
    h = g.relu(g.conv(h, C, c, { rank: 2, gain: RELU_GAIN }));
    for (let stage = 0; stage < 3; stage++) {
      for (let i = 0; i < 3; i++) h = g.taesdBlock(h, c);
      h = g.resize(h, [1, 1, 2, 2]);
      h = g.conv(h, c, c, { rank: 2, gain: 1, bias: false });
    }
    h = g.taesdBlock(h, c);
    h = g.outputHead(g.conv(h, c, 3, { rank: 2, gain: OUTPUT_GAIN }));
  } else {
    const ch = BLOCK_OUT_CHANNELS.tiny;
    h = g.relu(g.conv(h, C, ch[3]!, { rank: 2, gain: RELU_GAIN }));
    for (let i = 3; i >= 1; i--) {
      h = g.resize(h, [1, 1, 2, 2]);
      h = g.relu(g.conv(h, ch[i]!, ch[i - 1]!, { rank: 2, gain: RELU_GAIN }));
    }
    h = g.outputHead(g.conv(h, ch[0]!, 3, { rank: 2, gain: OUTPUT_GAIN }));
  }
  g.output(h, "sample", IMAGE_SAMPLE_DIMS, o.ioDtype);
  return g.b.toBytes();
}

export function buildEncoder(o: BuildOptions & { encoderOutput: EncoderOutput }): Uint8Array {
  const spec = FAMILY_SPECS[o.family];
  if (spec.video) throw new Error(`no encoder is generated for ${o.family}`);
  const g = new VaeGraph("vae_encoder", streamSeed(o.seed, "vae_encoder"));
  const C = spec.latentChannels;
  // latent_parameters is diffusers' DiagonalGaussian parameters: mean then logvar along channels.
  const outC = o.encoderOutput === "latent_parameters" ? 2 * C : C;

  let h = g.input("sample", IMAGE_SAMPLE_DIMS, o.ioDtype);
  if (o.arch === "taesd") {
    const c = 64;
    h = g.taesdBlock(g.conv(h, 3, c, { rank: 2, gain: 1 }), c);
    for (let stage = 0; stage < 3; stage++) {
      h = g.conv(h, c, c, { rank: 2, gain: 1, stride: 2, bias: false });
      for (let i = 0; i < 3; i++) h = g.taesdBlock(h, c);
    }
    h = g.conv(h, c, outC, { rank: 2, gain: 1 });
  } else {
    const ch = BLOCK_OUT_CHANNELS.tiny;
    h = g.relu(g.conv(h, 3, ch[0]!, { rank: 2, gain: RELU_GAIN }));
    for (let i = 0; i < 3; i++) {
      h = g.relu(g.conv(h, ch[i]!, ch[i + 1]!, { rank: 2, gain: RELU_GAIN, stride: 2 }));
    }
    h = g.conv(h, ch[3]!, outC, { rank: 2, gain: 1 });
  }
  g.output(h, o.encoderOutput, ["batch_size", outC, "height_latent", "width_latent"], o.ioDtype);
  return g.b.toBytes();
}
