import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AppError } from "@hybrid/protocol";
import { afterAll, beforeEach, describe, expect, it, vi } from "vitest";
import { ApiKeyRecord, bearerToken, createKey, KeyStore, listKeys, revokeKey } from "./keys.ts";

const apiRoot = fileURLToPath(new URL("..", import.meta.url));
const dirs: string[] = [];
let file: string;

beforeEach(async () => {
  const dir = await mkdtemp(join(tmpdir(), "hybrid-keys-"));
  dirs.push(dir);
  file = join(dir, "sub", "keys.json");
});

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Lets a test skip the once-per-second throttle instead of sleeping. */
const noThrottle = { checkIntervalMs: 0 };

describe("createKey / listKeys / revokeKey", () => {
  it("round-trips records and never stores the key", async () => {
    expect(await listKeys(file)).toEqual([]);
    const a = await createKey(file, "alice", { models: ["flux-vae"], ratePerMinute: 5, maxQueued: 2 });
    const b = await createKey(file, "bob");

    expect(a.key).toMatch(/^hik_[A-Za-z0-9_-]{43}$/);
    expect(a.key).not.toBe(b.key);
    const hash = createHash("sha256").update(a.key).digest("hex");
    expect(a.record).toMatchObject({
      id: hash.slice(0, 16),
      name: "alice",
      hash,
      models: ["flux-vae"],
      rate_per_minute: 5,
      max_queued: 2,
    });
    expect(Buffer.from(a.record.webhook_secret.slice("whsec_".length), "base64")).toHaveLength(32);
    expect(b.record).toMatchObject({ models: null, rate_per_minute: null, max_queued: null });
    expect(await listKeys(file)).toEqual([a.record, b.record]);

    const text = await readFile(file, "utf8");
    expect(text).not.toContain(a.key);
    expect(text).not.toContain(b.key);
    expect(text).not.toContain(a.key.slice(4));
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    expect(await revokeKey(file, "alice")).toBe(true);
    expect(await revokeKey(file, "alice")).toBe(false);
    expect(await listKeys(file)).toEqual([b.record]);
  });

  it("refuses a duplicate name and out-of-range limits", async () => {
    await createKey(file, "alice");
    await expect(createKey(file, "alice")).rejects.toMatchObject({ code: "invalid_parameter" });
    await expect(createKey(file, "zero", { ratePerMinute: 0 })).rejects.toBeInstanceOf(AppError);
    await expect(createKey(file, "")).rejects.toMatchObject({ code: "invalid_parameter" });
    expect((await listKeys(file)).map((r) => r.name)).toEqual(["alice"]);
  });

  it("revoking from a missing file removes nothing and creates nothing", async () => {
    expect(await revokeKey(file, "ghost")).toBe(false);
    await expect(stat(file)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("exports a schema that accepts what createKey writes", async () => {
    const { record } = await createKey(file, "alice");
    expect(ApiKeyRecord.parse(JSON.parse(JSON.stringify(record)))).toEqual(record);
  });
});

describe("KeyStore", () => {
  it("is disabled and accepts nothing without a file", async () => {
    const store = await KeyStore.open(file);
    expect(store.enabled).toBe(false);
    expect(store.authenticate("hik_anything")).toBeUndefined();
  });

  it("authenticates the right key only", async () => {
    const a = await createKey(file, "alice");
    const b = await createKey(file, "bob");
    const store = await KeyStore.open(file);
    expect(store.enabled).toBe(true);
    expect(store.authenticate(a.key)).toEqual(a.record);
    expect(store.authenticate(b.key)).toEqual(b.record);
    expect(store.authenticate(`${a.key}x`)).toBeUndefined();
    expect(store.authenticate(a.record.hash)).toBeUndefined();
    expect(store.authenticate("")).toBeUndefined();
    expect(store.authenticate(undefined)).toBeUndefined();
  });

  it("follows create and revoke after a refresh, and stays enabled with no keys left", async () => {
    const store = await KeyStore.open(file, noThrottle);
    expect(store.enabled).toBe(false);

    const a = await createKey(file, "alice");
    expect(store.authenticate(a.key)).toBeUndefined();
    await store.refresh();
    expect(store.authenticate(a.key)).toEqual(a.record);
    expect(store.enabled).toBe(true);

    await revokeKey(file, "alice");
    await store.refresh();
    expect(store.authenticate(a.key)).toBeUndefined();
    // Revoking the last key must lock everyone out, not open the API.
    expect(store.enabled).toBe(true);
  });

  it("stats the file at most once per interval", async () => {
    const a = await createKey(file, "alice");
    const store = await KeyStore.open(file);
    await revokeKey(file, "alice");
    await store.refresh();
    expect(store.authenticate(a.key)).toEqual(a.record);

    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(Date.now() + 1001);
      await store.refresh();
    } finally {
      vi.useRealTimers();
    }
    expect(store.authenticate(a.key)).toBeUndefined();
  });

  it("reloads when only the mtime changes", async () => {
    const a = await createKey(file, "alice");
    const store = await KeyStore.open(file, noThrottle);
    const text = await readFile(file, "utf8");
    // Same inode and size: only the mtime says the content is new.
    const edited = text.replace('"name": "alice"', '"name": "carol"');
    expect(edited.length).toBe(text.length);
    await writeFile(file, edited);
    const later = new Date(Date.now() + 5000);
    await utimes(file, later, later);
    await store.refresh();
    expect(store.authenticate(a.key)?.name).toBe("carol");
  });

  it("watch() follows create and revoke in the background, with no call to refresh", async () => {
    const store = await KeyStore.open(file, { checkIntervalMs: 20 });
    const stop = store.watch();
    try {
      const a = await createKey(file, "alice");
      await expect.poll(() => store.authenticate(a.key)?.name).toBe("alice");
      await revokeKey(file, "alice");
      await expect.poll(() => store.authenticate(a.key)).toBeUndefined();
    } finally {
      stop();
    }
  });

  it("shares one check between concurrent refreshes", async () => {
    await createKey(file, "alice");
    const store = await KeyStore.open(file, noThrottle);
    const p1 = store.refresh();
    const p2 = store.refresh();
    expect(p2).toBe(p1);
    await p1;
  });

  it("refuses to open a malformed file", async () => {
    await createKey(file, "alice");
    await writeFile(file, "{ not json");
    await expect(KeyStore.open(file)).rejects.toThrow(/not valid JSON/);
    await writeFile(file, JSON.stringify({ keys: [{ name: "x" }] }));
    await expect(KeyStore.open(file)).rejects.toThrow(/keys\.0\.id/);
    await expect(listKeys(file)).rejects.toThrow(/invalid/);
  });

  it("keeps its keys when a reload finds a malformed file, and reports it once", async () => {
    const a = await createKey(file, "alice");
    const onError = vi.fn();
    const store = await KeyStore.open(file, { ...noThrottle, onError });
    await writeFile(file, '{"keys": [');
    await store.refresh();
    await store.refresh();
    expect(onError).toHaveBeenCalledTimes(1);
    expect(onError.mock.calls[0]![0]).toBeInstanceOf(Error);
    expect(store.authenticate(a.key)).toEqual(a.record);

    const b = await createKey(file, "bob").catch((e: unknown) => e);
    expect(b).toBeInstanceOf(Error);
    await writeFile(file, JSON.stringify({ keys: [] }));
    await store.refresh();
    expect(store.authenticate(a.key)).toBeUndefined();
    expect(onError).toHaveBeenCalledTimes(1);
  });

  it("treats a deleted file as no keys", async () => {
    const a = await createKey(file, "alice");
    const store = await KeyStore.open(file, noThrottle);
    await rm(file);
    await store.refresh();
    expect(store.authenticate(a.key)).toBeUndefined();
    expect(store.enabled).toBe(true);
  });
});

describe("bearerToken", () => {
  it.each([
    ["Bearer hik_abc", "hik_abc"],
    ["bearer hik_abc", "hik_abc"],
    ["BEARER   hik_abc  ", "hik_abc"],
    ["Bearer a.b-c_d~e+f/g==", "a.b-c_d~e+f/g=="],
  ])("parses %j", (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });

  it.each([
    undefined,
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "hik_abc",
    "Bearer a b",
    "Bearerhik_abc",
  ])("rejects %j", (header) => {
    expect(bearerToken(header)).toBeUndefined();
  });
});

// tsx by absolute URL: a CLI run's working directory may be outside the repository.
const tsxLoader = pathToFileURL(createRequire(join(apiRoot, "package.json")).resolve("tsx")).href;

describe("keys CLI", () => {
  interface Run {
    code: number;
    stdout: string;
    stderr: string;
  }

  function cli(args: string[], env: Record<string, string>, cwd = apiRoot): Promise<Run> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        ["--conditions=source", "--import", tsxLoader, join(apiRoot, "src/keys-cli.ts"), ...args],
        { cwd, env: { ...process.env, ...env } },
        (error, stdout, stderr) => {
          resolve({ code: error ? ((error.code as number | undefined) ?? 1) : 0, stdout, stderr });
        },
      );
    });
  }

  it("creates a key whose last output line authenticates, then lists and revokes it", async () => {
    const env = { API_KEYS_FILE: file };
    const created = await cli(["create", "ci", "--rate-per-minute", "5", "--models", "a,b"], env);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const lines = created.stdout.trimEnd().split("\n");
    const key = lines.at(-1)!;
    expect(key).toMatch(/^hik_[A-Za-z0-9_-]+$/);

    const store = await KeyStore.open(file);
    const record = store.authenticate(key);
    expect(record).toMatchObject({ name: "ci", rate_per_minute: 5, max_queued: null, models: ["a", "b"] });
    expect(created.stdout).toContain(record!.webhook_secret);

    const listed = await cli(["list"], env);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain("ci");
    expect(listed.stdout).toContain(record!.id);
    expect(listed.stdout).not.toContain(record!.hash);
    expect(listed.stdout).not.toContain(key);

    expect((await cli(["create", "ci"], env)).code).toBe(1);
    expect((await cli(["revoke", "ci"], env)).code).toBe(0);
    expect((await cli(["revoke", "ci"], env)).code).toBe(1);
    expect(await listKeys(file)).toEqual([]);
  });

  it("resolves a relative API_KEYS_FILE against its working directory, as the API does", async () => {
    const dir = join(file, "..", "..");
    const run = await cli(["create", "rel"], { API_KEYS_FILE: "keys.json" }, dir);
    expect(run.code, run.stderr).toBe(0);
    expect((await listKeys(join(dir, "keys.json"))).map((r) => r.name)).toEqual(["rel"]);
  });

  it.each([
    [[]],
    [["frobnicate"]],
    [["create"]],
    [["create", "a", "b"]],
    [["create", "x", "--rate-per-minute", "0"]],
    [["create", "x", "--rate-per-minute", "1.5"]],
    [["create", "x", "--max-queued", "many"]],
    [["create", "x", "--models", ","]],
    [["create", "x", "--bogus"]],
    [["list", "extra"]],
    [["list", "--rate-per-minute", "3"]],
    [["revoke"]],
  ])("exits 2 on bad usage %j", async (args) => {
    const run = await cli(args, { API_KEYS_FILE: file });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("Usage:");
    expect(run.stdout).toBe("");
    await expect(stat(file)).rejects.toMatchObject({ code: "ENOENT" });
  });
});
