import { describe, expect, it } from "vitest";
import { AppError } from "./errors.ts";
import {
  checkGenerateJson,
  DEFAULT_GENERATE_LIMITS,
  GenerateBody,
  type GenerateDefaults,
  isHandlerStyle,
  parametersOf,
  resolveGenerate,
  schedulerNameOf,
} from "./generate.ts";

const defaults: GenerateDefaults = {
  width: 512,
  height: 512,
  num_inference_steps: 25,
  guidance_scale: 7.5,
  scheduler: "pndm",
  strength: 0.8,
};
const seed = () => 1234;

function resolve(body: unknown, task: "text-to-image" | "image-to-image" = "text-to-image") {
  const b = GenerateBody.parse(body);
  const p = parametersOf(b);
  return resolveGenerate(
    task,
    task === "text-to-image" ? b.inputs : (p.prompt ?? ""),
    p,
    defaults,
    DEFAULT_GENERATE_LIMITS,
    seed,
  );
}

function paramOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).code).toBe("invalid_parameter");
    expect((e as AppError).status).toBe(400);
    return ((e as AppError).details as { parameter: string }).parameter;
  }
  return undefined;
}

describe("generation requests", () => {
  it("reads the custom-handler shape (flat, inference_steps) and answers it as JSON", () => {
    const body = {
      inputs: "a cat",
      negative_prompt: "blurry",
      height: 256,
      width: 384,
      guidance_scale: 5,
      inference_steps: 12,
    };
    expect(isHandlerStyle(GenerateBody.parse(body))).toBe(true);
    expect(resolve(body)).toEqual({
      task: "text-to-image",
      prompt: "a cat",
      negative_prompt: "blurry",
      width: 384,
      height: 256,
      num_inference_steps: 12,
      guidance_scale: 5,
      scheduler: null,
      strength: 1,
      seed: 1234,
      previews: false,
      target_size: null,
    });
  });

  it("reads the HF task shape (parameters) and takes the model's defaults for the rest", () => {
    const body = {
      inputs: "a dog",
      parameters: { num_inference_steps: 8, seed: 7, scheduler: "EulerDiscreteScheduler" },
    };
    expect(isHandlerStyle(GenerateBody.parse(body))).toBe(false);
    expect(isHandlerStyle(GenerateBody.parse({ inputs: "only a prompt" }))).toBe(false);
    expect(resolve(body)).toMatchObject({
      width: 512,
      height: 512,
      num_inference_steps: 8,
      seed: 7,
      scheduler: "euler",
      guidance_scale: 7.5,
    });
  });

  it("sizes text-to-image from target_size (older clients), and keeps it for image-to-image", () => {
    expect(resolve({ inputs: "x", parameters: { target_size: { width: 320, height: 192 } } })).toMatchObject({
      width: 320,
      height: 192,
      target_size: null,
    });
    const i2i = resolve(
      {
        inputs: "<b64>",
        parameters: { prompt: "x", target_size: { width: 100, height: 60 }, strength: 0.3 },
      },
      "image-to-image",
    );
    // Image-to-image generates at the init image's size unless one is given.
    expect(i2i).toMatchObject({
      width: null,
      height: null,
      strength: 0.3,
      target_size: { width: 100, height: 60 },
    });
  });

  it("joins several negative prompts", () => {
    expect(resolve({ inputs: "x", parameters: { negative_prompt: ["a", "b"] } }).negative_prompt).toBe(
      "a, b",
    );
  });

  it.each([
    [{ inputs: "x", height: 250 }, "height"],
    [{ inputs: "x", width: 32 }, "width"],
    [{ inputs: "x", width: 4096 }, "width"],
    [{ inputs: "x", width: 2048, height: 2048 }, "width"],
    [{ inputs: "x", inference_steps: 0 }, "inference_steps"],
    [{ inputs: "x", parameters: { num_inference_steps: 10_000 } }, "num_inference_steps"],
    [{ inputs: "x", guidance_scale: -1 }, "guidance_scale"],
    [{ inputs: "x", parameters: { scheduler: "warp-drive" } }, "scheduler"],
    [{ inputs: "x", parameters: { seed: -3 } }, "seed"],
    [{ inputs: "   " }, "inputs"],
    [{ inputs: "x".repeat(5000) }, "inputs"],
  ])("refuses %j naming %s", (body, parameter) => {
    expect(paramOf(() => resolve(body))).toBe(parameter);
  });

  it("refuses a strength outside [0, 1], and takes an image-to-image request without a prompt", () => {
    expect(
      paramOf(() => resolve({ inputs: "b64", parameters: { prompt: "x", strength: 1.5 } }, "image-to-image")),
    ).toBe("strength");
    expect(resolve({ inputs: "b64", parameters: {} }, "image-to-image").prompt).toBe("");
  });

  it("rejects non-finite numbers at parse time (JSON has no NaN, but a client may send a string)", () => {
    expect(GenerateBody.safeParse({ inputs: "x", guidance_scale: "NaN" }).success).toBe(false);
    expect(GenerateBody.safeParse({ inputs: "x", height: 256.5 }).success).toBe(false);
    expect(GenerateBody.safeParse({ inputs: 3 }).success).toBe(false);
  });

  it("knows scheduler names, any case, and diffusers' class names", () => {
    expect(schedulerNameOf("DPMPP_2M_Karras")).toBe("dpmpp_2m_karras");
    expect(schedulerNameOf("euler-a")).toBe("euler_a");
    expect(schedulerNameOf("DDIMScheduler")).toBe("ddim");
    expect(schedulerNameOf("Flow-Match-Euler")).toBe("flow_match_euler");
    expect(schedulerNameOf("FlowMatchEulerDiscreteScheduler")).toBe("flow_match_euler");
    expect(schedulerNameOf("nope")).toBeNull();
  });
});

describe("text size limits", () => {
  const max = DEFAULT_GENERATE_LIMITS.maxPromptChars;
  const errorOf = (f: () => unknown): AppError => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      return e as AppError;
    }
    throw new Error("expected an AppError");
  };

  it("caps negative_prompt, as a string and as an array counted joined, naming the field and the limit", () => {
    for (const negative of ["x".repeat(max + 1), Array.from({ length: 2000 }, () => "ab")]) {
      const e = errorOf(() => resolve({ inputs: "a cat", negative_prompt: negative }));
      expect(e.code).toBe("invalid_parameter");
      expect(e.message).toContain("negative_prompt");
      expect(e.message).toContain(`limit of ${max} (MAX_TEXT_CHARS)`);
      expect(e.details).toEqual({ parameter: "negative_prompt", limit: max });
    }
    // At the limit it passes, joined as before.
    expect(resolve({ inputs: "a cat", negative_prompt: "y".repeat(max) }).negative_prompt).toHaveLength(max);
    expect(resolve({ inputs: "a cat", parameters: { negative_prompt: ["a", "b"] } }).negative_prompt).toBe(
      "a, b",
    );
  });

  it("checks a parsed body before the schema reads it: every string at any depth, negative_prompt joined", () => {
    const long = "z".repeat(max + 1);
    const cases: Array<[unknown, string]> = [
      [{ inputs: "a cat", parameters: { negative_prompt: long } }, "parameters.negative_prompt"],
      [{ inputs: "a cat", negative_prompt: Array.from({ length: 40_000 }, () => "") }, "negative_prompt"],
      [{ inputs: "a cat", parameters: { prompt: long } }, "parameters.prompt"],
      [{ inputs: "a cat", scheduler: long }, "scheduler"],
      [{ inputs: "a cat", webhook: `https://x.example/${long}` }, "webhook"],
      [{ inputs: "a cat", something_else: { deeper: [long] } }, "something_else.deeper.0"],
    ];
    for (const [body, path] of cases) {
      const e = errorOf(() => checkGenerateJson(body, max, "auto"));
      expect(e.code, path).toBe("invalid_parameter");
      expect(e.message, path).toContain(`Invalid ${path}:`);
      expect(e.message, path).toContain(String(max));
    }
    const filters = Array.from({ length: 17 }, () => "completed");
    expect(
      errorOf(() => checkGenerateJson({ inputs: "a", webhook_events_filter: filters }, max, "auto")).message,
    ).toContain("webhook_events_filter");
  });

  it("exempts inputs where it may be an image, and caps it where it is the prompt", () => {
    const image = {
      inputs: "A".repeat(10 * max),
      parameters: { prompt: "a cat", negative_prompt: ["x", "y"] },
    };
    expect(() => checkGenerateJson(image, max, "image-to-image")).not.toThrow();
    expect(() => checkGenerateJson(image, max, "auto")).not.toThrow();
    expect(errorOf(() => checkGenerateJson(image, max, "text-to-image")).message).toContain(
      "Invalid inputs:",
    );
  });

  it("says what a missing inputs is, per route", () => {
    const t2i = errorOf(() => checkGenerateJson({ parameters: { seed: 1 } }, max, "text-to-image"));
    expect(t2i.code).toBe("invalid_parameter");
    expect(t2i.message).toMatch(/^Missing inputs: it is the prompt, and it is required/);
    expect(t2i.details).toEqual({ parameter: "inputs" });
    expect(errorOf(() => checkGenerateJson({}, max, "image-to-image")).message).toContain("init image");
    expect(errorOf(() => checkGenerateJson({ prompt: "a cat" }, max, "auto")).message).toContain(
      "it is the prompt",
    );
    expect(errorOf(() => checkGenerateJson({ inputs: 5 }, max, "text-to-image")).message).toMatch(
      /^Invalid inputs: not a string: it is the prompt/,
    );
    expect(errorOf(() => checkGenerateJson(["a cat"], max, "auto")).code).toBe("invalid_parameter");
  });
});
