// The tensors the flow-matching transformers (Flux, SD3) take besides the latents, built as
// diffusers' FluxPipeline and StableDiffusion3Pipeline build them. Pure functions over
// Float32Arrays: the pipeline runs the encoders and hands their outputs here.

/** A batch of token embeddings: `[batch, sequence, dim]`, row-major. */
export interface Sequence {
  data: Float32Array;
  batch: number;
  sequence: number;
  dim: number;
}

/** A batch of vectors: `[batch, dim]`. */
export interface Pooled {
  data: Float32Array;
  batch: number;
  dim: number;
}

/**
 * SD3's `encoder_hidden_states`: the two CLIP encoders' hidden states joined along the feature
 * axis, zero-padded to the T5 width, then the T5 sequence appended along the token axis
 * (`torch.cat([pad(cat([clip_l, clip_g], -1)), t5], -2)`). Without T5, diffusers appends
 * `tokenizer_max_length` (77) rows of zeros of the transformer's `joint_attention_dim`; pass
 * `t5` as null and `zeros` as that shape.
 */
export function joinSd3Text(
  clipL: Sequence,
  clipG: Sequence,
  t5: Sequence | { zeros: { sequence: number; dim: number } },
): Sequence {
  const batch = clipL.batch;
  if (clipG.batch !== batch || clipG.sequence !== clipL.sequence)
    throw new Error(
      `CLIP hidden states disagree: [${clipL.batch}, ${clipL.sequence}] vs [${clipG.batch}, ${clipG.sequence}]`,
    );
  const tail = "zeros" in t5 ? { ...t5.zeros, data: null } : t5;
  if (!("zeros" in t5) && t5.batch !== batch) throw new Error("T5 and CLIP batches differ");
  const dim = tail.dim;
  if (clipL.dim + clipG.dim > dim)
    throw new Error(`CLIP features (${clipL.dim} + ${clipG.dim}) are wider than the T5 width ${dim}`);
  const sequence = clipL.sequence + tail.sequence;
  const out = new Float32Array(batch * sequence * dim);
  for (let b = 0; b < batch; b++) {
    for (let s = 0; s < clipL.sequence; s++) {
      const row = (b * sequence + s) * dim;
      const src = b * clipL.sequence + s;
      out.set(clipL.data.subarray(src * clipL.dim, (src + 1) * clipL.dim), row);
      out.set(clipG.data.subarray(src * clipG.dim, (src + 1) * clipG.dim), row + clipL.dim);
    }
    if (tail.data) {
      const from = b * tail.sequence * dim;
      out.set(tail.data.subarray(from, from + tail.sequence * dim), (b * sequence + clipL.sequence) * dim);
    }
  }
  return { data: out, batch, sequence, dim };
}

/** Pooled vectors joined along the feature axis (SD3: CLIP-L's then CLIP-G's `text_embeds`). */
export function concatPooled(a: Pooled, b: Pooled): Pooled {
  if (a.batch !== b.batch) throw new Error("pooled batches differ");
  const dim = a.dim + b.dim;
  const out = new Float32Array(a.batch * dim);
  for (let n = 0; n < a.batch; n++) {
    out.set(a.data.subarray(n * a.dim, (n + 1) * a.dim), n * dim);
    out.set(b.data.subarray(n * b.dim, (n + 1) * b.dim), n * dim + a.dim);
  }
  return { data: out, batch: a.batch, dim };
}

/**
 * FluxPipeline._prepare_latent_image_ids: one (0, row, column) triple per packed token of a
 * `rows` × `cols` grid of 2×2 patches, rows outermost: `[rows·cols, 3]`.
 */
export function fluxImageIds(rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols * 3);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      const k = (i * cols + j) * 3;
      out[k + 1] = i;
      out[k + 2] = j;
    }
  return out;
}

/** FluxPipeline's `text_ids`: zeros, `[sequence, 3]`. */
export const fluxTextIds = (sequence: number): Float32Array => new Float32Array(sequence * 3);

/** Longest T5 sequence the Flux and SD3 pipelines accept (`max_sequence_length`). */
export const MAX_T5_SEQUENCE = 512;

/**
 * The T5 sequence length a generation uses: the request's, else the family's default as the
 * model cards run it (Flux dev 512, Flux schnell 256, SD3 256).
 */
export function t5SequenceLength(
  family: "flux" | "sd3",
  guidanceEmbeds: boolean,
  requested?: number | null,
): number {
  if (requested != null) return requested;
  return family === "flux" && guidanceEmbeds ? 512 : 256;
}

/** The transformer's `timestep` input: Flux takes t / 1000 (σ), SD3 the scheduler's t itself. */
export const transformerTimestep = (family: "flux" | "sd3", t: number): number =>
  family === "flux" ? t / 1000 : t;
