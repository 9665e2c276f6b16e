// Fail closed, end to end: the real API process refuses to start open on a network address, with
// a named keys file missing, or with a short ADMIN_KEY (one log line that says what to do, a
// non-zero exit); started as the quick start starts it, it listens on loopback only and refuses
// what another site's page (or a DNS-rebound name) could send it.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, repoRoot, stop, waitFor } from "../../scripts/lib.ts";
import { REDIS_URL } from "./stack.ts";

let tmp: string;
let emptyKeys: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "e2e-exposure-"));
  emptyKeys = join(tmp, "keys.json");
  await writeFile(emptyKeys, '{ "keys": [] }\n');
});
afterAll(async () => {
  await Promise.all(children.map((c) => stop(c)));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** The API from source with exactly these settings (nothing of the test's own HOST & co.). */
function startApi(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const base = { ...process.env };
  for (const k of ["HOST", "API_KEYS_FILE", "ADMIN_KEY", "ALLOW_ANONYMOUS", "ALLOWED_HOSTS"]) delete base[k];
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", "apps/api/src/index.ts"], {
    cwd: repoRoot,
    env: { ...base, REDIS_URL, QUEUE_PREFIX: `e2e-exposure-${process.pid}`, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let text = "";
  child.stdout?.on("data", (d: Buffer) => {
    text += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    text += d.toString();
  });
  return { child, output: () => text };
}

/** Starts the API and waits for it to exit; its exit code and output lines. */
async function refusal(env: Record<string, string>): Promise<{ code: number | null; lines: string[] }> {
  const { child, output } = startApi({ PORT: String(await freePort()), ...env });
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  return { code, lines: output().trim().split("\n") };
}

const msgOf = (line: string) => (JSON.parse(line) as { msg: string }).msg;

describe("the API at start", () => {
  it("refuses a network address without keys, saying what to do", async () => {
    const { code, lines } = await refusal({ HOST: "0.0.0.0", API_KEYS_FILE: emptyKeys });
    expect(code).toBe(1);
    expect(lines).toHaveLength(1);
    expect(msgOf(lines[0]!)).toMatch(/HOST=0\.0\.0\.0 .*no API keys.*ALLOW_ANONYMOUS=true/);
  });

  it("refuses a keys file that was named but is missing", async () => {
    const missing = join(tmp, "not-mounted", "keys.json");
    const { code, lines } = await refusal({ API_KEYS_FILE: missing });
    expect(code).toBe(1);
    expect(lines).toHaveLength(1);
    expect(msgOf(lines[0]!)).toContain(`API_KEYS_FILE names ${missing}, which does not exist`);
  });

  it("refuses an ADMIN_KEY shorter than 32 characters", async () => {
    const { code, lines } = await refusal({ API_KEYS_FILE: emptyKeys, ADMIN_KEY: "0123456789abcdef" });
    expect(code).toBe(1);
    expect(lines).toHaveLength(1);
    expect(msgOf(lines[0]!)).toMatch(/invalid settings.*ADMIN_KEY: .*32 characters/);
  });
});

describe("the API started as the quick start starts it (no HOST, no keys)", () => {
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    const { output } = startApi({ PORT: String(port), API_KEYS_FILE: emptyKeys });
    await waitFor(async () => output().includes("api listening"), 60_000, "the API listening");
  });

  const send = (
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: string,
    host = "127.0.0.1",
  ) =>
    new Promise<{ status: number; body: { code?: string } }>((resolve, reject) => {
      const req = request({ host, port, method, path, headers }, (res) => {
        let text = "";
        res.on("data", (d: Buffer) => {
          text += d.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} }));
      });
      req.on("error", reject);
      req.end(body);
    });

  it("listens on loopback only and answers the loopback names", async () => {
    expect((await send("GET", "/v1/jobs", { Host: `localhost:${port}` })).status).toBe(200);
    expect((await send("GET", "/v1/jobs", { Host: `127.0.0.1:${port}` })).status).toBe(200);
    // The default is 127.0.0.1: the same port on this machine's other addresses is closed.
    const { networkInterfaces } = await import("node:os");
    const other = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    if (other)
      await expect(send("GET", "/health/live", {}, undefined, other)).rejects.toThrow(/ECONNREFUSED/);
  });

  it("does not answer a rebound host name", async () => {
    const res = await send("GET", "/v1/jobs", { Host: `rebind.attacker.example:${port}` });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe("forbidden");
  });

  it("refuses another site's simple POST (415) and its page's requests (403)", async () => {
    const host = `127.0.0.1:${port}`;
    const simple = await send(
      "POST",
      "/v1/text-to-image/sd-v1-tiny",
      { Host: host, "Content-Type": "text/plain;charset=UTF-8", Origin: "https://attacker.example" },
      JSON.stringify({ inputs: "a cat", webhook: "https://attacker.example/hook" }),
    );
    expect(simple.status).toBe(415);
    expect(simple.body.code).toBe("unsupported_media_type");
    const blob = await send(
      "POST",
      "/v1/vae/sd-v1-tiny/encode",
      { Host: host, Origin: "https://attacker.example" },
      "\x89PNG",
    );
    expect(blob.status).toBe(403);
  });
});
