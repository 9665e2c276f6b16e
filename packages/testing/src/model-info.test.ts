import { GenerationInfo, ModelInfo } from "@hybrid/protocol";
import { describe, expect, it } from "vitest";
import { sdV1Generation, sdV1Model } from "./model-info.ts";

describe("sdV1Model", () => {
  it("is a ModelInfo the protocol accepts, with SD-v1's geometry", () => {
    const model = ModelInfo.parse(sdV1Model());
    expect(model).toMatchObject({ family: "sd-v1", latent_channels: 4, spatial_compression: 8 });
  });

  it("applies overrides", () => {
    const a = sdV1Model({ id: "a", operations: ["decode"], generation: sdV1Generation() });
    expect(ModelInfo.parse(a)).toMatchObject({ id: "a", operations: ["decode"], latent_channels: 4 });
  });

  it("hands out a new object each time: a test that edits its copy changes no other test's", () => {
    sdV1Model().operations.pop();
    expect(sdV1Model().operations).toEqual(["decode", "encode"]);
  });
});

describe("sdV1Generation", () => {
  it("is a GenerationInfo the protocol accepts", () => {
    expect(GenerationInfo.parse(sdV1Generation({ tasks: ["image-to-image"] })).tasks).toEqual([
      "image-to-image",
    ]);
  });
});
