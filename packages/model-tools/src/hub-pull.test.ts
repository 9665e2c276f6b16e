import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { matchLayout } from "@hybrid/protocol";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { generatePipelineModel } from "./generator/pipeline-generator.ts";
import { defaultModelId, modelDirOf, PIPELINE_FILES, pullModel, shortModelId } from "./hub-pull.ts";

const REPO = "test/tiny-sd";
const TOKEN = "hf_test_token";
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

interface HubFile {
  data: Buffer;
  /** Stored with LFS: the tree lists its sha256, /resolve redirects to the CDN. */
  lfs: boolean;
  /** LFS migrated to Xet: fileDownloadInfo's probe gets the xet file-info answer. */
  xet?: boolean;
}

interface Seen {
  server: "hub" | "cdn";
  path: string;
  range: string | undefined;
  auth: string | undefined;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
/** Git's blob id, which the tree API lists as `oid` (for LFS files: the pointer's). */
const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const lfsPointer = (b: Buffer) =>
  Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(b)}\nsize ${b.length}\n`);

/**
 * The parts of the Hub that @huggingface/hub's listFiles and downloadFile call: the paginated tree
 * API, /resolve (git files served directly, LFS files redirected to a CDN on another origin, Xet
 * files answering the xet file-info probe), Range requests, and the Hub's error headers.
 */
class FakeHub {
  readonly repos = new Map<string, Map<string, HubFile>>();
  readonly revisions = new Set(["main", "onnx"]);
  readonly seen: Seen[] = [];
  /** Bytes served instead of a file's own (same size, wrong content). */
  readonly corrupt = new Map<string, Buffer>();
  /** Paths whose next body (not the 1-byte probe) stops halfway with a dropped connection. */
  readonly cutOnce = new Set<string>();
  readonly pageSize = 5;
  hubUrl = "";
  cdnUrl = "";
  private servers: Server[] = [];

  async start(): Promise<void> {
    const listen = async (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
      const server = createServer(handler);
      this.servers.push(server);
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    };
    this.hubUrl = await listen((req, res) => this.record("hub", req) && this.hub(req, res));
    this.cdnUrl = await listen((req, res) => this.record("cdn", req) && this.cdn(req, res));
  }

  async stop(): Promise<void> {
    for (const s of this.servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  requests(server: Seen["server"], pattern: RegExp): Seen[] {
    return this.seen.filter((s) => s.server === server && pattern.test(s.path));
  }

  private record(server: Seen["server"], req: IncomingMessage): true {
    const { range, authorization } = req.headers;
    this.seen.push({ server, path: decodeURIComponent(req.url ?? ""), range, auth: authorization });
    return true;
  }

  private hub(req: IncomingMessage, res: ServerResponse): ServerResponse {
    const url = new URL(req.url ?? "/", this.hubUrl);
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/(.+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const [, repo = "", rawRev = ""] = tree ?? resolve ?? [];
    const files = this.repos.get(repo);
    if (!files) return jsonError(res, 401, "RepoNotFound", "Repository not found");
    const rev = decodeURIComponent(rawRev);
    if (!this.revisions.has(rev)) return jsonError(res, 404, "RevisionNotFound", `Invalid rev id: ${rev}`);
    if (tree) return this.tree(url, repo, rev, files, res);
    const path = decodeURIComponent(resolve?.[3] ?? "");
    const file = files.get(path);
    if (!resolve || !file) return jsonError(res, 404, "EntryNotFound", "Entry not found");
    res.setHeader("X-Repo-Commit", COMMIT);
    if (!file.lfs) return this.send(req, res, path, file.data, gitOid(file.data));
    const oid = sha256(file.data);
    res.setHeader("X-Linked-Size", file.data.length);
    res.setHeader("X-Linked-ETag", `"${oid}"`);
    res.setHeader("ETag", `"${gitOid(lfsPointer(file.data))}"`);
    if (file.xet && req.headers.accept?.includes("application/vnd.xet-fileinfo+json")) {
      res.setHeader("Content-Type", "application/vnd.xet-fileinfo+json");
      res.setHeader("X-Xet-Hash", oid);
      res.setHeader(
        "Link",
        `<${this.cdnUrl}/reconstructions/${oid}>; rel="xet-reconstruction-info", <${this.hubUrl}/api/models/${repo}/xet-read-token/${COMMIT}>; rel="xet-auth"`,
      );
      return res.end(JSON.stringify({ hash: oid }));
    }
    return res
      .writeHead(302, { Location: `${this.cdnUrl}/lfs/${oid}?path=${encodeURIComponent(path)}` })
      .end();
  }

  private tree(
    url: URL,
    repo: string,
    rev: string,
    files: Map<string, HubFile>,
    res: ServerResponse,
  ): ServerResponse {
    if (url.searchParams.get("recursive") !== "true") return jsonError(res, 400, "BadRequest", "recursive!");
    const dirs = new Set(
      [...files.keys()].flatMap((p) =>
        p
          .split("/")
          .slice(0, -1)
          .map((_, i, a) => a.slice(0, i + 1).join("/")),
      ),
    );
    const entries = [
      ...[...dirs].map((path) => ({ type: "directory", oid: gitOid(Buffer.from(path)), size: 0, path })),
      ...[...files].map(([path, f]) => ({
        type: "file",
        oid: gitOid(f.lfs ? lfsPointer(f.data) : f.data),
        size: f.data.length,
        path,
        ...(f.lfs && {
          lfs: { oid: sha256(f.data), size: f.data.length, pointerSize: lfsPointer(f.data).length },
        }),
        ...(f.xet && { xetHash: sha256(f.data) }),
      })),
    ].sort((a, b) => (a.path < b.path ? -1 : 1));
    const from = Number(url.searchParams.get("cursor") ?? 0);
    const next = from + this.pageSize;
    if (next < entries.length) {
      const nextUrl = `${this.hubUrl}/api/models/${repo}/tree/${rev}?recursive=true&expand=false&cursor=${next}`;
      res.setHeader("Link", `<${nextUrl}>; rel="next"`);
    }
    res.setHeader("Content-Type", "application/json");
    return res.end(JSON.stringify(entries.slice(from, next)));
  }

  private cdn(req: IncomingMessage, res: ServerResponse): ServerResponse {
    const url = new URL(req.url ?? "/", this.cdnUrl);
    const path = url.searchParams.get("path") ?? "";
    const file = [...this.repos.values()].find((r) => r.has(path))?.get(path);
    if (!file || url.pathname !== `/lfs/${sha256(file.data)}`) return jsonError(res, 404, "NotFound", "no");
    return this.send(req, res, path, file.data, sha256(file.data));
  }

  private send(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    data: Buffer,
    etag: string,
  ): ServerResponse {
    const body = this.corrupt.get(path) ?? data;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Math.min(Number(range[2]), body.length - 1) : body.length - 1;
    if (start > end) return res.writeHead(416, { "Content-Range": `bytes */${body.length}` }).end();
    const chunk = body.subarray(start, end + 1);
    res.writeHead(range ? 206 : 200, {
      ETag: `"${etag}"`,
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      "Content-Length": chunk.length,
      ...(range && { "Content-Range": `bytes ${start}-${end}/${body.length}` }),
    });
    if (chunk.length > 1 && this.cutOnce.delete(path)) {
      res.write(chunk.subarray(0, chunk.length >> 1), () => res.socket?.destroy());
      return res;
    }
    return res.end(chunk);
  }
}

function jsonError(res: ServerResponse, status: number, code: string, error: string): ServerResponse {
  res.writeHead(status, { "Content-Type": "application/json", "X-Error-Code": code });
  return res.end(JSON.stringify({ error }));
}

async function listTree(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listTree(join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

/** The layout the files under `dir` form. */
async function layoutOf(dir: string) {
  const files = new Set(await listTree(dir));
  return matchLayout((p) => files.has(p));
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

const DECOYS = [
  "README.md",
  ".gitattributes",
  "images/sample.png",
  "unet/diffusion_pytorch_model.safetensors",
  "unet/fp16/model.onnx",
  "text_encoder/model.safetensors",
  "vae_decoder/diffusion_pytorch_model.bin",
];

let root: string;
let layout: string[];
const hub = new FakeHub();
const source = () => hub.repos.get(REPO)!;
const pull = (outDir: string, opts: { repo?: string } = {}) =>
  pullModel({ repo: REPO, revision: "onnx", outDir, hubUrl: hub.hubUrl, accessToken: TOKEN, ...opts });

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hub-pull-"));
  const srcDir = join(root, "src");
  await generatePipelineModel({ kind: "sd-v1", outDir: srcDir });
  const files = new Map<string, HubFile>();
  for (const path of await listTree(srcDir)) {
    files.set(path, { data: await readFile(join(srcDir, path)), lfs: path.endsWith(".onnx") });
  }
  // Real UNet exports keep their weights beside the graph; on the Hub such files are Xet-backed.
  files.set("unet/model.onnx_data", { data: randomBytes(300_000), lfs: true, xet: true });
  for (const path of DECOYS) {
    files.set(path, { data: randomBytes(2_000), lfs: !/\.(md|gitattributes)$/.test(path) });
  }
  hub.repos.set(REPO, files);
  hub.repos.set(
    "test/torch-only",
    new Map([
      ["model_index.json", { data: Buffer.from("{}"), lfs: false }],
      ["unet/diffusion_pytorch_model.safetensors", { data: randomBytes(100), lfs: true }],
    ]),
  );
  layout = [...files.keys()].filter((p) => !DECOYS.includes(p)).sort();
  await hub.start();
});

afterAll(async () => {
  await hub.stop();
  await rm(root, { recursive: true, force: true });
});

beforeEach(() => {
  hub.seen.length = 0;
  hub.corrupt.clear();
  hub.cutOnce.clear();
});

describe("PIPELINE_FILES", () => {
  it("keeps the optimum layout and nothing else", () => {
    const keep = [
      "model_index.json",
      "scheduler/scheduler_config.json",
      "tokenizer/vocab.json",
      "tokenizer_2/merges.txt",
      "tokenizer/special_tokens_map.json",
      "tokenizer_2/tokenizer_config.json",
      "text_encoder_2/model.onnx",
      "unet/model.onnx_data",
      "unet/weights.pb",
      "unet/unet.onnx_data",
      "vae_encoder/config.json",
    ];
    const skip = [
      ...DECOYS,
      "unet/config.json.part",
      "vae/config.json",
      "safety_checker/model.onnx",
      "feature_extractor/preprocessor_config.json",
      "tokenizer/tokenizer.json",
      "unet/onnx__MatMul_1234",
      "unet/../model.onnx",
      "scheduler/other.json",
    ];
    for (const p of keep) expect(PIPELINE_FILES(p), p).toBe(true);
    for (const p of skip) expect(PIPELINE_FILES(p), p).toBe(false);
  });

  it("serves a pull under the repository id, or a short name when asked", () => {
    expect(defaultModelId("onnx-community/Stable-Diffusion-v1-5-ONNX")).toBe(
      "onnx-community/Stable-Diffusion-v1-5-ONNX",
    );
    expect(shortModelId("onnx-community/Stable-Diffusion-v1-5-ONNX")).toBe("stable-diffusion-v1-5-onnx");
    expect(modelDirOf("/m", "black-forest-labs/FLUX.1-schnell")).toBe(
      join("/m", "black-forest-labs", "FLUX.1-schnell"),
    );
    expect(modelDirOf("/m", "sd15")).toBe(join("/m", "sd15"));
  });
});

describe("pullModel against a local Hub", () => {
  it("downloads only the layout files, byte-identical, and the worker can read them", async () => {
    const outDir = join(root, "first");
    const result = await pull(outDir);
    expect(await listTree(outDir)).toEqual(layout);
    for (const path of layout) {
      expect((await readFile(join(outDir, path))).equals(source().get(path)!.data), path).toBe(true);
    }
    const total = layout.reduce((n, p) => n + source().get(p)!.data.length, 0);
    expect(result.bytes).toBe(total);
    expect([...result.files].sort()).toEqual(layout);
    expect(result.files.at(-1)).toBe("model_index.json");
    expect([...result.ignored].sort()).toEqual([...DECOYS].sort());

    const fetched = hub.seen.map((s) => s.path);
    for (const decoy of DECOYS)
      expect(
        fetched.some((p) => p.includes(decoy)),
        decoy,
      ).toBe(false);
    // Pagination: the listing arrived in several pages, following the Link header.
    expect(hub.requests("hub", /\/tree\/onnx/).length).toBeGreaterThan(3);
    expect(hub.requests("hub", /./).every((s) => s.auth === `Bearer ${TOKEN}`)).toBe(true);
    // fetch drops Authorization on the cross-origin redirect, so the token never reaches the CDN.
    expect(hub.requests("cdn", /\/lfs\//).length).toBeGreaterThan(0);
    expect(hub.requests("cdn", /./).every((s) => s.auth === undefined)).toBe(true);

    // What the runtime's detectModelDir will see: an SD pipeline (its tests read generated dirs).
    expect(await layoutOf(outDir)).toEqual({
      kind: "pipeline",
      layout: expect.objectContaining({ name: "sd" }),
    });

    hub.seen.length = 0;
    const again = await pull(outDir);
    expect(again).toMatchObject({ bytes: 0, downloaded: [] });
    expect(hub.seen.every((s) => s.server === "hub" && s.path.includes("/tree/"))).toBe(true);
  });

  it("reports progress per file and overall", async () => {
    const events: Array<{ path: string; phase: string; doneBytes: number; totalBytes: number }> = [];
    await pullModel({
      repo: REPO,
      outDir: join(root, "progress"),
      hubUrl: hub.hubUrl,
      onProgress: ({ path, phase, doneBytes, totalBytes }) =>
        events.push({ path, phase, doneBytes, totalBytes }),
    });
    const done = events.filter((e) => e.phase === "done");
    expect(done.map((e) => e.path).sort()).toEqual(layout);
    const last = events.at(-1)!;
    expect(last.doneBytes).toBe(last.totalBytes);
    expect(events.every((e, i) => i === 0 || e.doneBytes >= events[i - 1]!.doneBytes)).toBe(true);
  });

  it.each([
    ["an LFS file (sha256)", "unet/model.onnx", /sha256/],
    ["a git file (blob id)", "unet/config.json", /sha1/],
  ])("fails loudly on a corrupted %s and leaves no partial file", async (_, path, algorithm) => {
    const outDir = join(root, `corrupt-${path.replaceAll("/", "-")}`);
    const bad = Buffer.from(source().get(path)!.data);
    bad[bad.length >> 1]! ^= 0xff;
    hub.corrupt.set(path, bad);
    const failure = pull(outDir);
    await expect(failure).rejects.toThrow(`checksum mismatch for ${path}`);
    await expect(failure).rejects.toThrow(algorithm);
    expect(await exists(join(outDir, path))).toBe(false);
    expect(await exists(join(outDir, `${path}.part`))).toBe(false);
    // model_index.json comes last, so the directory is not marked complete.
    expect(await exists(join(outDir, "model_index.json"))).toBe(false);

    hub.corrupt.clear();
    await pull(outDir);
    expect((await readFile(join(outDir, path))).equals(source().get(path)!.data)).toBe(true);
  });

  it("resumes an interrupted download from its .part with a Range request", async () => {
    const outDir = join(root, "interrupted");
    const path = "unet/model.onnx";
    const size = source().get(path)!.data.length;
    hub.cutOnce.add(path);
    await expect(pull(outDir)).rejects.toThrow(/stopped after \d+ of \d+ bytes; run again to resume/);
    expect(await exists(join(outDir, path))).toBe(false);
    const partial = (await stat(join(outDir, `${path}.part`))).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(size);

    hub.seen.length = 0;
    const result = await pull(outDir);
    expect(result.downloaded).toContain(path);
    expect(hub.requests("cdn", /\/lfs\//).map((s) => s.range)).toContain(`bytes=${partial}-${size - 1}`);
    expect((await readFile(join(outDir, path))).equals(source().get(path)!.data)).toBe(true);
    expect(await exists(join(outDir, `${path}.part`))).toBe(false);
  });

  it("replaces a wrong file in place and removes stale layout files, not the user's", async () => {
    const outDir = join(root, "stale");
    for (const [path, text] of [
      ["unet/config.json", "{}"],
      ["text_encoder_2/model.onnx", "old"],
      ["unet/weights.pb", "old"],
      ["vae_decoder/model.onnx.part", "old"],
      ["notes.txt", "mine"],
    ] as const) {
      await mkdir(dirname(join(outDir, path)), { recursive: true });
      await writeFile(join(outDir, path), text);
    }
    const result = await pull(outDir);
    // The bad .part is resumed, fails its checksum and is fetched again from the start.
    expect(result.downloaded).toEqual(expect.arrayContaining(["unet/config.json", "vae_decoder/model.onnx"]));
    expect([...result.removed].sort()).toEqual(["text_encoder_2/model.onnx", "unet/weights.pb"]);
    expect(await listTree(outDir)).toEqual([...layout, "notes.txt"].sort());
    expect(await layoutOf(outDir)).toEqual({
      kind: "pipeline",
      layout: expect.objectContaining({ name: "sd" }),
    });
  });

  it("refuses a revision without an ONNX export before downloading anything", async () => {
    await expect(pull(join(root, "torch"), { repo: "test/torch-only" })).rejects.toThrow(
      /not an optimum ONNX export.*unet\/model\.onnx.*revision `onnx`/,
    );
    expect(hub.requests("hub", /\/resolve\//)).toEqual([]);
  });

  it("explains a repository the Hub does not show", async () => {
    await expect(pull(join(root, "missing"), { repo: "test/nope" })).rejects.toMatchObject({
      code: "unauthorized",
      message: expect.stringMatching(/Repository not found.*access token/),
    });
  });
});

describe("pnpm models pull", () => {
  const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

  const pullCli = (dir: string, ...extra: string[]) => {
    const env: NodeJS.ProcessEnv = { ...process.env, HF_ENDPOINT: hub.hubUrl };
    delete env.HF_TOKEN;
    delete env.MODELS_DIR;
    return promisify(execFile)(
      process.execPath,
      [
        "--conditions=source",
        "--import",
        "tsx",
        "scripts/generate-models.ts",
        "pull",
        REPO,
        "--dir",
        dir,
        ...extra,
      ],
      { cwd: repoRoot, env, timeout: 60_000 },
    );
  };

  it("pulls into <dir>/<owner>/<name> and serves it under the repository id", async () => {
    const dir = join(root, "cli-models");
    const { stdout } = await pullCli(dir);
    expect(await listTree(join(dir, "test", "tiny-sd"))).toEqual(layout);
    expect(stdout).toContain(join(dir, "test", "tiny-sd"));
    expect(stdout).toContain("MODELS=test/tiny-sd pnpm start");
    expect(stdout).toContain("/models/test/tiny-sd");
    expect(hub.requests("hub", /\/tree\/main/).length).toBeGreaterThan(0);
  });

  it("pulls into <dir>/<id> under a short id with --short or --id", async () => {
    const dir = join(root, "cli-short");
    const short = await pullCli(dir, "--short");
    expect(await listTree(join(dir, "tiny-sd"))).toEqual(layout);
    expect(short.stdout).toContain("MODELS=tiny-sd pnpm start");
    const named = await pullCli(dir, "--id", "sd15");
    expect(await listTree(join(dir, "sd15"))).toEqual(layout);
    expect(named.stdout).toContain("MODELS=sd15 pnpm start");
  });

  it("refuses an id no route could call, before downloading anything", async () => {
    const before = hub.seen.length;
    const cases: [string[], string][] = [
      [["--id", "x--y/z"], "not a model id"],
      [["--id", "x", "--short"], "give one"],
    ];
    for (const [bad, says] of cases) {
      const err = await pullCli(join(root, "cli-bad"), ...bad).then(
        () => null,
        (e: { code: number; stderr: string }) => e,
      );
      expect(err?.code, bad.join(" ")).toBe(2);
      expect(err?.stderr).toContain(says);
    }
    expect(hub.seen.length).toBe(before);
  });
});
