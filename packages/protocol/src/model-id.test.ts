import { describe, expect, it } from "vitest";
import type { AppError } from "./errors.ts";
import { checkModelId, MAX_MODEL_ID_CHARS, ModelId, modelIdFileStem, modelIdPath } from "./model-id.ts";

const valid = [
  // Short ids, as worker MODELS entries have always taken them.
  "sd-tiny",
  "x.y_1",
  "_private",
  "a--b",
  "SDXL",
  // Hub repository ids.
  "black-forest-labs/FLUX.1-schnell",
  "stabilityai/stable-diffusion-3.5-medium",
  "onnx-community/Stable-Diffusion-v1-5-ONNX",
  "a/b",
  "user_1/model_v2.0",
  `${"o".repeat(40)}/${"n".repeat(MAX_MODEL_ID_CHARS - 41)}`,
];

const invalid = [
  "",
  "a/b/c",
  "/name",
  "owner/",
  "/",
  "-owner/name",
  "owner/.name",
  "owner/_name",
  "owner--x/name",
  "owner/name--x",
  "owner/na..me",
  "own er/name",
  "owner/name:latest",
  "owner/{name}",
  "owner/näme",
  "..",
  ".hidden",
  "-x",
  "sd tiny",
  "a:b",
  "{tag}",
  "a%2Fb",
  `${"o".repeat(40)}/${"n".repeat(MAX_MODEL_ID_CHARS - 40)}`,
  "x".repeat(MAX_MODEL_ID_CHARS + 1),
];

describe("ModelId", () => {
  it("takes short ids and Hub repository ids", () => {
    for (const id of valid) expect(ModelId.safeParse(id).success, id).toBe(true);
  });

  it("refuses anything else, naming the id", () => {
    for (const id of invalid) {
      const parsed = ModelId.safeParse(id);
      expect(parsed.success, id).toBe(false);
      expect(parsed.error!.issues[0]!.message).toContain(JSON.stringify(id));
    }
  });

  it("keeps every id safe as a Redis hash tag, a BullMQ queue name and a path", () => {
    for (const id of valid) {
      expect(id).not.toMatch(/[:{}\s]/);
      expect(id.split("/").every((s) => s !== "." && s !== ".." && s.length > 0)).toBe(true);
    }
  });
});

describe("checkModelId", () => {
  it("answers a bad id with 400 invalid_parameter naming the model parameter", () => {
    expect(checkModelId("owner/name")).toBe("owner/name");
    let err: AppError | undefined;
    try {
      checkModelId("a/b/c");
    } catch (e) {
      err = e as AppError;
    }
    expect([err?.status, err?.code]).toEqual([400, "invalid_parameter"]);
    expect(err?.details).toEqual({ parameter: "model" });
    expect(err?.message).toContain('"a/b/c"');
  });
});

describe("modelIdPath and modelIdFileStem", () => {
  it("keep the owner/name slash literal in URLs and turn it into -- in file names", () => {
    expect(modelIdPath("black-forest-labs/FLUX.1-schnell")).toBe("black-forest-labs/FLUX.1-schnell");
    expect(modelIdPath("sd-tiny")).toBe("sd-tiny");
    // Any other id is one escaped segment: it can never reach another route or make a path step.
    for (const id of ["a b/c?d", "a/b/c", "/b", "a/", "a/..", "../x", "a--b/c"])
      expect(modelIdPath(id), id).toBe(encodeURIComponent(id));
    expect(modelIdFileStem("owner/name")).toBe("owner--name");
    expect(modelIdFileStem("sd-tiny")).toBe("sd-tiny");
  });
});
