import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { ModelInfo } from "@hybrid/protocol";
import { Queues } from "@hybrid/queue";
import express from "express";
import { afterAll, describe, expect, it } from "vitest";
import { dashboardAccess, dashboardRoutes, presentedSecret } from "./dashboard.ts";
import { errorHandler, notFound } from "./errors.ts";

const model = (id: string, generation: boolean): ModelInfo => ({
  id,
  family: "sd-v1",
  task: "vae",
  operations: ["decode", "encode"],
  latent_channels: 4,
  latent_rank: 4,
  spatial_compression: 8,
  scaling_factor: 0.18215,
  shift_factor: null,
  dtype: "float32",
  ...(generation
    ? {
        generation: {
          tasks: ["text-to-image"],
          defaults: {
            width: 512,
            height: 512,
            num_inference_steps: 20,
            guidance_scale: 7.5,
            scheduler: "euler",
            strength: 0.8,
          },
        },
      }
    : {}),
});

const queues = new Queues(
  process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  `test-dash-${randomBytes(6).toString("hex")}`,
);
const servers: { close(): void }[] = [];
afterAll(async () => {
  for (const s of servers) s.close();
  await queues.close();
});

/** The dashboard alone in an app with the API's 404 and error handler, listening on a free port. */
async function serve(opts: { keysEnabled: boolean; adminKey?: string; models: ModelInfo[] }) {
  const keys = { enabled: opts.keysEnabled, refresh: async () => {} };
  const directory = { calls: 0, models: async () => new Map(opts.models.map((m) => [m.id, m])) };
  const counted = {
    models: async () => {
      directory.calls++;
      return directory.models();
    },
  };
  const app = express()
    .use(dashboardRoutes({ queues, adminKey: opts.adminKey, refreshMs: 200, directory: counted, keys }))
    .use(notFound)
    .use(errorHandler);
  const server = app.listen(0, "127.0.0.1");
  servers.push(server);
  await new Promise((r) => server.once("listening", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const names = async (headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}/admin/queues/api/queues`, { headers });
    expect(res.status).toBe(200);
    return ((await res.json()) as { queues: { name: string }[] }).queues.map((q) => q.name);
  };
  return { base, keys, directory, names, models: opts.models };
}

describe("dashboardAccess", () => {
  it("is open without keys, off with keys, and needs the admin key whenever one is set", () => {
    expect(dashboardAccess(false, undefined)).toBe("open");
    expect(dashboardAccess(true, undefined)).toBe("off");
    expect(dashboardAccess(true, "k".repeat(16))).toBe("admin-key");
    expect(dashboardAccess(false, "k".repeat(16))).toBe("admin-key");
  });
});

describe("presentedSecret", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  it("reads a bearer token, or the password of HTTP Basic", () => {
    expect(presentedSecret("Bearer abc")).toBe("abc");
    expect(presentedSecret("bearer   abc ")).toBe("abc");
    expect(presentedSecret(`Basic ${b64("user:pa:ss")}`)).toBe("pa:ss");
    expect(presentedSecret(`basic ${b64(":secret")}`)).toBe("secret");
  });
  it("gives nothing for other schemes and malformed Basic", () => {
    expect(presentedSecret(undefined)).toBeUndefined();
    expect(presentedSecret("")).toBeUndefined();
    expect(presentedSecret("Token abc")).toBeUndefined();
    expect(presentedSecret("Bearer")).toBeUndefined();
    expect(presentedSecret(`Basic ${b64("no-colon")}`)).toBeUndefined();
  });
});

describe("dashboardRoutes", () => {
  it("lists each live model's queues and the webhook queue, re-read at most every refreshMs", async () => {
    const d = await serve({ keysEnabled: false, models: [model("vae-only", false), model("pipe", true)] });
    expect(await d.names()).toEqual([
      "decode-pipe",
      "encode-pipe",
      "generate-pipe",
      "decode-vae-only",
      "encode-vae-only",
      "webhooks",
    ]);
    await d.names();
    await d.names();
    expect(d.directory.calls).toBe(1);
    d.models.splice(0, 1);
    await new Promise((r) => setTimeout(r, 250));
    expect(await d.names()).toEqual(["decode-pipe", "encode-pipe", "generate-pipe", "webhooks"]);
    expect(d.directory.calls).toBe(2);
  });

  it("turns off (404) when keys appear and there is no admin key", async () => {
    const d = await serve({ keysEnabled: false, models: [model("m", false)] });
    expect((await fetch(`${d.base}/admin/queues`)).status).toBe(200);
    d.keys.enabled = true;
    for (const path of ["/admin/queues", "/admin/queues/api/queues"]) {
      const res = await fetch(`${d.base}${path}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { code: string }).code).toBe("not_found");
    }
  });

  it("needs the admin key when one is set, even without API keys", async () => {
    const adminKey = "a".repeat(32);
    const d = await serve({ keysEnabled: false, adminKey, models: [model("m", false)] });
    const none = await fetch(`${d.base}/admin/queues`);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Basic /);
    expect(await d.names({ Authorization: `Bearer ${adminKey}` })).toContain("decode-m");
  });
});
