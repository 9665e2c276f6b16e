import { describe, expect, it } from "vitest";
import { Env } from "./env.ts";

describe("MODELS", () => {
  it("splits id=path at the first =: a path may hold more", () => {
    const env = Env.parse({ MODELS: "sd=/models/a=b/sd, flux-vae ,x.y_1=/p" });
    expect(env.MODELS).toEqual([
      { id: "sd", path: "/models/a=b/sd" },
      { id: "flux-vae", path: null },
      { id: "x.y_1", path: "/p" },
    ]);
    expect(Env.parse({}).MODELS).toEqual([]);
  });

  it("takes Hub-style owner/name ids, split at the first = as any other", () => {
    const env = Env.parse({ MODELS: "black-forest-labs/FLUX.1-schnell=/m/a=b, acme/tiny" });
    expect(env.MODELS).toEqual([
      { id: "black-forest-labs/FLUX.1-schnell", path: "/m/a=b" },
      { id: "acme/tiny", path: null },
    ]);
  });

  it("refuses a malformed entry, naming it", () => {
    for (const entry of ["=/models/sd", "sd=", "a/b/c=/p", "/b=/p", "a--x/b", "a/../b", "bad id"]) {
      const parsed = Env.safeParse({ MODELS: `ok,${entry}` });
      expect(parsed.success, entry).toBe(false);
      const issue = parsed.error!.issues[0]!;
      expect(issue.path.join("."), entry).toBe("MODELS.1");
      expect(issue.message).toContain(JSON.stringify(entry));
    }
  });
});

describe("PREFETCH", () => {
  it("is one job by default, 0 turns it off, and it is bounded", () => {
    expect(Env.parse({}).PREFETCH).toBe(1);
    expect(Env.parse({ PREFETCH: "0" }).PREFETCH).toBe(0);
    for (const bad of ["-1", "65", "1.5", "many"])
      expect(Env.safeParse({ PREFETCH: bad }).success, bad).toBe(false);
  });
});
