import type { ModelEntry } from "@hybrid/client";
import { describe, expect, it } from "vitest";
import {
  formFor,
  imageToImageParams,
  initialModel,
  modelsFor,
  randomSeed,
  roundTripModels,
  SCHEDULERS,
  textToImageParams,
} from "./params.ts";

const base = {
  family: "sd-v1",
  task: "vae",
  latent_channels: 4,
  spatial_compression: 8,
  scaling_factor: 0.18215,
  shift_factor: null,
  dtype: "float32",
} as const;
const sd: ModelEntry = {
  ...base,
  id: "sd-tiny",
  operations: ["decode", "encode"],
  latent_rank: 4,
  tasks: ["vae", "text-to-image", "image-to-image"],
  endpoints: {
    decode: "/v1/vae/sd-tiny/decode",
    encode: "/v1/vae/sd-tiny/encode",
    "text-to-image": "/v1/text-to-image/sd-tiny",
    "image-to-image": "/v1/image-to-image/sd-tiny",
  },
  generation: {
    tasks: ["text-to-image", "image-to-image"],
    defaults: {
      width: 256,
      height: 192,
      num_inference_steps: 8,
      guidance_scale: 7.5,
      scheduler: "pndm",
      strength: 0.8,
    },
  },
};
const t2iOnly: ModelEntry = {
  ...sd,
  id: "t2i",
  tasks: ["vae", "text-to-image"],
  endpoints: {
    decode: "/v1/vae/t2i/decode",
    encode: "/v1/vae/t2i/encode",
    "text-to-image": "/v1/text-to-image/t2i",
  },
  generation: { ...sd.generation!, tasks: ["text-to-image"] },
};
const vae = (id: string, operations: ModelEntry["operations"]) => ({
  id,
  operations,
  tasks: ["vae" as const],
  endpoints: Object.fromEntries(operations.map((op) => [op, `/v1/vae/${id}/${op}`])),
});
const decoderOnly: ModelEntry = { ...base, ...vae("dec", ["decode"]), latent_rank: 4 };
const video: ModelEntry = { ...base, ...vae("video", ["decode", "encode"]), latent_rank: 5 };

describe("models per tab", () => {
  it("lists the pipelines that run a task, and the VAEs that round-trip images", () => {
    const all = [sd, t2iOnly, decoderOnly, video];
    expect(modelsFor(all, "text-to-image").map((m) => m.id)).toEqual(["sd-tiny", "t2i"]);
    expect(modelsFor(all, "image-to-image").map((m) => m.id)).toEqual(["sd-tiny"]);
    expect(roundTripModels(all).map((m) => m.id)).toEqual(["sd-tiny", "t2i"]);
  });
});

describe("the model a generation tab starts on", () => {
  it("is sd-tiny (the docs' and the screenshot's) when served, even after others alphabetically before it", () => {
    const lcm: ModelEntry = { ...sd, id: "lcm-tiny" };
    expect(initialModel(modelsFor([lcm, sd, t2iOnly], "text-to-image"))?.id).toBe("sd-tiny");
    expect(initialModel([lcm, t2iOnly])?.id).toBe("lcm-tiny");
    expect(initialModel([])).toBeUndefined();
  });
});

describe("the generation form", () => {
  it("starts from the model's defaults and keeps what the user wrote", () => {
    const form = formFor(sd);
    expect(form).toMatchObject({
      model: "sd-tiny",
      width: "256",
      height: "192",
      steps: "8",
      guidance: "7.5",
    });
    expect(form).toMatchObject({ scheduler: "", seed: "", strength: "0.8", format: "png", previews: true });
    const edited = { ...form, prompt: "a cat", seed: "7", format: "jpeg" as const, width: "64" };
    expect(formFor(t2iOnly, edited)).toMatchObject({
      model: "t2i",
      prompt: "a cat",
      seed: "7",
      width: "256",
    });
    expect(formFor(undefined)).toMatchObject({ model: "", width: "", steps: "" });
  });

  it("sends empty fields as absent and the rest as typed", () => {
    const form = { ...formFor(sd), prompt: "a red car", width: "100", steps: " ", seed: "42" };
    expect(textToImageParams(form)).toEqual({
      prompt: "a red car",
      format: "png",
      previews: true,
      width: 100,
      height: 192,
      numInferenceSteps: undefined,
      guidanceScale: 7.5,
      seed: 42,
    });
    const withAll = { ...form, negativePrompt: "blurry", scheduler: "euler", strength: "0.5" };
    const image = new Uint8Array([1, 2, 3]);
    expect(imageToImageParams(withAll, image)).toMatchObject({
      image,
      strength: 0.5,
      negativePrompt: "blurry",
      scheduler: "euler",
    });
  });

  it("names the service's schedulers and draws seeds it accepts", () => {
    expect(SCHEDULERS).toContain("euler_a");
    for (let i = 0; i < 100; i++) {
      const seed = randomSeed();
      expect(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32).toBe(true);
    }
  });
});
