import { sdV1Model } from "@hybrid/testing";
import { describe, expect, it } from "vitest";
import { modelEntry } from "./models.ts";

// The same fields in the same order as a worker announces them: the answer keeps that order.
const vae = sdV1Model({ id: "sd v1" });

describe("modelEntry", () => {
  it("answers the worker's fields in their order, then the tasks and their escaped paths", () => {
    expect(JSON.stringify(modelEntry(vae))).toBe(
      '{"id":"sd v1","family":"sd-v1","task":"vae","operations":["decode","encode"],"latent_channels":4,' +
        '"latent_rank":4,"spatial_compression":8,"scaling_factor":0.18215,"shift_factor":null,"dtype":"float32",' +
        '"tasks":["vae"],"endpoints":{"decode":"/v1/vae/sd%20v1/decode","encode":"/v1/vae/sd%20v1/encode"}}',
    );
  });

  it("adds a pipeline's generation tasks after vae, each with its path", () => {
    const entry = modelEntry({
      ...vae,
      id: "pipe",
      operations: ["decode"],
      generation: {
        tasks: ["text-to-image", "image-to-image"],
        defaults: {
          width: 64,
          height: 64,
          num_inference_steps: 2,
          guidance_scale: 7.5,
          scheduler: "pndm",
          strength: 0.8,
        },
      },
    });
    expect(entry.task).toBe("text-to-image");
    expect(entry.tasks).toEqual(["vae", "text-to-image", "image-to-image"]);
    expect(entry.endpoints).toEqual({
      decode: "/v1/vae/pipe/decode",
      "text-to-image": "/v1/text-to-image/pipe",
      "image-to-image": "/v1/image-to-image/pipe",
    });
  });
});
