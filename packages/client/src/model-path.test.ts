import { describe, expect, it } from "vitest";
import { prepareDecode } from "./decode.ts";
import { prepareEncode } from "./encode.ts";
import { prepareImageToImage, prepareTextToImage } from "./generate.ts";

const pathOf = (path: string) => path.split("?")[0];

describe("model ids in request paths", () => {
  it("keeps a Hub-style id's slash literal between its escaped owner and name", () => {
    const id = "black-forest-labs/FLUX.1-schnell";
    const tensor = { data: new Float32Array(16 * 2 * 2), shape: [1, 16, 2, 2] };
    expect(pathOf(prepareDecode(id, { tensor }).path)).toBe(
      "/v1/vae/black-forest-labs/FLUX.1-schnell/decode",
    );
    expect(pathOf(prepareEncode(id, new Uint8Array([1])).path)).toBe(
      "/v1/vae/black-forest-labs/FLUX.1-schnell/encode",
    );
    expect(prepareTextToImage(id, { prompt: "x" }).path).toBe(
      "/v1/text-to-image/black-forest-labs/FLUX.1-schnell",
    );
    expect(prepareImageToImage(id, { image: new Uint8Array([1]) }).path).toBe(
      "/v1/image-to-image/black-forest-labs/FLUX.1-schnell",
    );
  });

  it("sends any other id as one escaped segment, as before", () => {
    expect(prepareTextToImage("sd-tiny", { prompt: "x" }).path).toBe("/v1/text-to-image/sd-tiny");
    // Malformed ids reach the model route (the server answers them 400), never another route.
    expect(prepareTextToImage("o w/n?x=1", { prompt: "x" }).path).toBe("/v1/text-to-image/o%20w%2Fn%3Fx%3D1");
    expect(prepareTextToImage("a/..", { prompt: "x" }).path).toBe("/v1/text-to-image/a%2F..");
  });
});
