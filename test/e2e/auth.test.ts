// API keys end to end: keys made with the real `pnpm keys` CLI, a real API + worker, and what
// each key may see, submit and spend; the API's own request log must never hold a key.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { JobObject } from "@hybrid/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../scripts/lib.ts";
import { latents } from "./fixtures.ts";
import { decodeRequest, getJob, readEvents } from "./jobs-client.ts";
import { type Stack, startStack } from "./stack.ts";

const run = promisify(execFile);

let tmp: string;
let keysFile: string;
let stack: Stack;
const keys: Record<"alice" | "bob" | "carol" | "dave", string> = { alice: "", bob: "", carol: "", dave: "" };
const wrongKey = `hik_${"x".repeat(43)}`;

/** Runs `pnpm keys ...` (the CLI from source) on this test's keys file; returns stdout. */
async function keysCli(...args: string[]): Promise<string> {
  const { stdout } = await run(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "apps/api/src/keys-cli.ts", ...args],
    { cwd: repoRoot, env: { ...process.env, API_KEYS_FILE: keysFile } },
  );
  return stdout;
}

const as = (name: keyof typeof keys) => ({ Authorization: `Bearer ${keys[name]}` });
const asyncAs = (name: keyof typeof keys) => ({ ...as(name), Prefer: "respond-async" });
const small = () => ({ tensor: latents([1, 4, 8, 8]).tensor, output_type: "pt" as const });
const errorOf = async (res: Response) => (await res.json()) as { code: string; error: string };

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "e2e-auth-"));
  keysFile = join(tmp, "keys.json");
  const made: [keyof typeof keys, string[]][] = [
    ["alice", ["--rate-per-minute", "1000"]],
    ["bob", ["--rate-per-minute", "3"]],
    ["carol", ["--max-queued", "1"]],
    ["dave", ["--models", "sdxl-tiny"]],
  ];
  for (const [name, flags] of made) {
    const lines = (await keysCli("create", name, ...flags)).trimEnd().split("\n");
    keys[name] = lines[lines.length - 1]!;
    expect(keys[name]).toMatch(/^hik_[A-Za-z0-9_-]{43}$/);
  }
  stack = await startStack({}, { api: { API_KEYS_FILE: keysFile, LOG_LEVEL: "info" }, captureApiLog: true });
});
afterAll(async () => {
  await stack?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("API keys", () => {
  it("asks for a key everywhere but /health", async () => {
    const none = await fetch(`${stack.baseUrl}/v1/models`);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect((await errorOf(none)).code).toBe("unauthorized");
    const anon = await decodeRequest(stack.baseUrl, small());
    expect(anon.status).toBe(401);
    expect((await errorOf(anon)).code).toBe("unauthorized");

    const wrong = await fetch(`${stack.baseUrl}/v1/jobs`, {
      headers: { Authorization: `Bearer ${wrongKey}` },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect((await errorOf(wrong)).code).toBe("unauthorized");

    expect((await fetch(`${stack.baseUrl}/health/live`)).status).toBe(200);
    expect((await fetch(`${stack.baseUrl}/health/ready`)).status).toBe(200);
    const models = await fetch(`${stack.baseUrl}/v1/models`, { headers: as("alice") });
    expect(models.status).toBe(200);
    const ids = ((await models.json()) as { data: { id: string }[] }).data.map((m) => m.id);
    expect(ids).toContain("sd-v1-tiny");
  });

  it("hides one key's jobs from another", async () => {
    const res = await decodeRequest(stack.baseUrl, small(), asyncAs("alice"));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobObject;
    expect((await getJob(stack.baseUrl, id, as("alice"))).id).toBe(id);
    const listOf = async (name: keyof typeof keys) => {
      const r = await fetch(`${stack.baseUrl}/v1/jobs?limit=100`, { headers: as(name) });
      expect(r.status).toBe(200);
      return ((await r.json()) as { data: JobObject[] }).data.map((j) => j.id);
    };
    expect(await listOf("alice")).toContain(id);
    expect(await listOf("bob")).not.toContain(id);

    const missing = await fetch(`${stack.baseUrl}/v1/jobs/00000000-0000-4000-8000-000000000000`, {
      headers: as("bob"),
    });
    const other = await fetch(`${stack.baseUrl}/v1/jobs/${id}`, { headers: as("bob") });
    expect([missing.status, other.status]).toEqual([404, 404]);
    expect([(await errorOf(missing)).code, (await errorOf(other)).code]).toEqual(["not_found", "not_found"]);
    for (const path of ["result", "events"]) {
      expect((await fetch(`${stack.baseUrl}/v1/jobs/${id}/${path}`, { headers: as("bob") })).status).toBe(
        404,
      );
    }
    const cancel = await fetch(`${stack.baseUrl}/v1/jobs/${id}/cancel`, {
      method: "POST",
      headers: as("bob"),
    });
    expect(cancel.status).toBe(404);
    expect((await errorOf(cancel)).code).toBe("not_found");
    const { events } = await readEvents(stack.baseUrl, id, as("alice"));
    expect(events.at(-1)?.event).toBe("succeeded");
  });

  it("limits a key's submissions per minute with 429 rate_limited and Retry-After", async () => {
    for (let i = 0; i < 3; i++) {
      expect((await decodeRequest(stack.baseUrl, small(), asyncAs("bob"))).status).toBe(202);
    }
    const res = await decodeRequest(stack.baseUrl, small(), asyncAs("bob"));
    expect(res.status).toBe(429);
    expect((await errorOf(res)).code).toBe("rate_limited");
    const retry = res.headers.get("retry-after") ?? "";
    expect(retry).toMatch(/^\d+$/);
    expect(Number.parseInt(retry, 10)).toBeGreaterThan(0);
    expect(Number.parseInt(retry, 10)).toBeLessThanOrEqual(60);
    // Another key's budget is its own.
    expect((await decodeRequest(stack.baseUrl, small(), asyncAs("alice"))).status).toBe(202);
  });

  it("caps a key's unfinished jobs with 429 too_many_queued until one finishes", async () => {
    // 1280 x 1280 output: about 2 s on the tiny model, so it is unfinished at the next request.
    const long = { tensor: latents([2, 4, 160, 160]).tensor, output_type: "pt" as const };
    const first = await decodeRequest(stack.baseUrl, long, asyncAs("carol"));
    expect(first.status).toBe(202);
    const { id } = (await first.json()) as JobObject;

    const second = await decodeRequest(stack.baseUrl, small(), asyncAs("carol"));
    expect(second.status).toBe(429);
    expect((await errorOf(second)).code).toBe("too_many_queued");
    const retry = second.headers.get("retry-after") ?? "";
    expect(retry).toMatch(/^\d+$/);
    expect(Number.parseInt(retry, 10)).toBeGreaterThan(0);
    expect((await getJob(stack.baseUrl, id, as("carol"))).status).not.toMatch(/succeeded|failed|canceled/);

    // The event stream ends with the terminal event, which is when the job stops counting.
    const { events } = await readEvents(stack.baseUrl, id, as("carol"));
    expect(events.at(-1)?.event).toBe("succeeded");
    expect((await getJob(stack.baseUrl, id, as("carol"))).status).toBe("succeeded");
    expect((await decodeRequest(stack.baseUrl, small(), asyncAs("carol"))).status).toBe(202);
  });

  it("answers a model outside the key's list exactly as one that does not exist (404)", async () => {
    const res = await decodeRequest(stack.baseUrl, small(), asyncAs("dave"));
    expect(res.status).toBe(404);
    const hidden = await errorOf(res);
    expect(hidden.code).toBe("unknown_model");
    expect(res.headers.get("x-job-id")).toBeNull();
    const ghost = await fetch(
      `${stack.baseUrl}/v1/vae/no-such-model/decode?shape=1&shape=4&shape=8&shape=8`,
      {
        method: "POST",
        headers: { ...as("dave"), "Content-Type": "tensor/binary" },
        body: new Uint8Array(4 * 4 * 8 * 8),
      },
    );
    expect(ghost.status).toBe(404);
    // Word for word, but for the model's name: nothing tells a served model from a missing one.
    expect((await errorOf(ghost)).error.replace("no-such-model", "sd-v1-tiny")).toBe(hidden.error);
    const list = await fetch(`${stack.baseUrl}/v1/jobs`, { headers: as("dave") });
    expect(list.status).toBe(200);
    expect(((await list.json()) as { data: unknown[] }).data).toEqual([]);
    // A bad query to a model it may not use is still that 404: the key is checked first.
    const bad = await fetch(`${stack.baseUrl}/v1/vae/sd-v1-tiny/decode?shape=x`, {
      method: "POST",
      headers: { ...as("dave"), "Content-Type": "tensor/binary" },
      body: "x",
    });
    expect(bad.status).toBe(404);
    expect((await errorOf(bad)).code).toBe("unknown_model");
    // A generation route too, and a model that is loading looks the same (the key is checked before the lookup).
    const gen = await fetch(`${stack.baseUrl}/v1/text-to-image/sd-v1-tiny`, {
      method: "POST",
      headers: { ...as("dave"), "Content-Type": "application/json", "x-wait-for-model": "true" },
      body: JSON.stringify({ inputs: "a cat" }),
    });
    expect(gen.status).toBe(404);
    expect((await errorOf(gen)).code).toBe("unknown_model");
    const models = await fetch(`${stack.baseUrl}/v1/models`, { headers: as("dave") });
    expect(((await models.json()) as { data: { id: string }[] }).data.map((m) => m.id)).toEqual([
      "sdxl-tiny",
    ]);
  });

  it("stops accepting a key revoked with the CLI within seconds, without a restart", async () => {
    const models = async () => (await fetch(`${stack.baseUrl}/v1/models`, { headers: as("bob") })).status;
    expect(await models()).toBe(200);
    expect(await keysCli("revoke", "bob")).toContain('Revoked key "bob"');
    // The API re-reads the keys file at most once a second; 10 s is that lag with room for a
    // loaded machine, and still fails a revocation that waits for a restart or a long interval.
    await expect.poll(models, { timeout: 10_000, interval: 50 }).toBe(401);
    expect((await fetch(`${stack.baseUrl}/v1/models`, { headers: as("alice") })).status).toBe(200);
  });

  // Last: every request above, the revoked key's 401s included, is in the log by now.
  it("never writes a key to the log", () => {
    const log = stack.apiLog();
    expect(log).toContain('"url":"/v1/vae/sd-v1-tiny/decode');
    expect(log).toContain('"status":401');
    for (const key of [...Object.values(keys), wrongKey]) {
      expect(log).not.toContain(key);
      expect(log).not.toContain(key.slice(4));
    }
    expect(log.toLowerCase()).not.toContain("authorization");
    expect(log.toLowerCase()).not.toContain("bearer");
  });
});
