import type { PipelineLayoutName } from "@hybrid/protocol";

/** How a pipeline family conditions its denoiser on the prompt. */
export interface TextConditioning {
  /** Which hidden state of each text encoder: the last, or the penultimate layer (SDXL) when exported. */
  hidden: "last" | "penultimate";
  /** The last encoder's pooled output conditions the denoiser too (SDXL's `text_embeds`). */
  pooled: boolean;
  /** Classifier-free guidance a request leaves out gets (diffusers' pipeline default). */
  guidanceScale: number;
}

/** Per layout, as data: a new family adds a row here, not a branch in the pipeline. */
export const TEXT_CONDITIONING: Readonly<Record<PipelineLayoutName, TextConditioning>> = {
  sd: { hidden: "last", pooled: false, guidanceScale: 7.5 },
  sdxl: { hidden: "penultimate", pooled: true, guidanceScale: 5 },
  // The transformers join their encoders as pipeline.ts' flowDenoising says (Flux: CLIP's pooled
  // vector and T5's states; SD3: both CLIPs' penultimate states padded and joined with T5's).
  // Guidance: diffusers' pipeline defaults (Flux dev's is its `guidance` input, not CFG).
  sd3: { hidden: "penultimate", pooled: true, guidanceScale: 7 },
  flux: { hidden: "last", pooled: true, guidanceScale: 3.5 },
};
