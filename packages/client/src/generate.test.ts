import { GenerateBody, parametersOf } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import { fromBase64 } from "./base64.ts";
import { prepareImageToImage, prepareTextToImage, readGenerate } from "./generate.ts";

describe("generation requests", () => {
  it("sends text-to-image in the HF task shape, which the server's schema reads back", () => {
    const req = prepareTextToImage("sd-tiny", {
      prompt: "a lighthouse",
      negativePrompt: ["blurry", "dark"],
      width: 128,
      height: 64,
      numInferenceSteps: 3,
      guidanceScale: 7.5,
      scheduler: "euler_a",
      seed: 5,
      previews: true,
      maxSequenceLength: 128,
      format: "png",
    });
    expect(req.path).toBe("/v1/text-to-image/sd-tiny");
    expect(req.headers).toEqual({ "Content-Type": "application/json", Accept: "image/png" });
    const body = GenerateBody.parse(JSON.parse(req.body as string));
    expect(body.inputs).toBe("a lighthouse");
    expect(parametersOf(body)).toEqual({
      inputs: "a lighthouse",
      negative_prompt: ["blurry", "dark"],
      width: 128,
      height: 64,
      num_inference_steps: 3,
      guidance_scale: 7.5,
      scheduler: "euler_a",
      seed: 5,
      previews: true,
      max_sequence_length: 128,
    });
    // Left-out parameters are left out (the model's defaults apply), and JPEG is the default.
    const bare = prepareTextToImage("m", { prompt: "x" });
    expect(JSON.parse(bare.body as string)).toEqual({ inputs: "x", parameters: {} });
    expect(bare.headers.Accept).toBe("image/jpeg");
  });

  it("sends image-to-image with the image as base64 inputs", () => {
    const image = new Uint8Array(70_000).map((_, i) => (i * 31) & 0xff);
    const req = prepareImageToImage("sd-tiny", {
      image,
      prompt: "in the snow",
      strength: 0.6,
      targetSize: { width: 96, height: 64 },
      seed: 1,
    });
    const body = JSON.parse(req.body as string);
    expect(fromBase64(body.inputs)).toEqual(image);
    expect(body.parameters).toEqual({
      prompt: "in the snow",
      strength: 0.6,
      target_size: { width: 96, height: 64 },
      seed: 1,
    });
  });

  it("reads the seed, job and truncation headers of an answer", async () => {
    const out = await readGenerate(
      new Response(new Uint8Array([0xff, 0xd8, 0xff]), {
        headers: {
          "content-type": "image/jpeg",
          "x-seed": "42",
          "x-job-id": "j1",
          "x-prompt-truncated": "true",
        },
      }),
    );
    expect(out).toEqual({
      bytes: new Uint8Array([0xff, 0xd8, 0xff]),
      contentType: "image/jpeg",
      seed: 42,
      jobId: "j1",
      promptTruncated: true,
    });
  });
});
