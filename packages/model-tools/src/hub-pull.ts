import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { downloadFile, HubApiError, type ListFileEntry, listFiles } from "@huggingface/hub";
import { AppError, downloadRank, isLayoutFile, LAYOUT_DIRS, matchLayout } from "@hybrid/protocol";

/**
 * True for a repository path that a model directory in optimum's ONNX layout needs:
 * model_index.json, the scheduler config, the tokenizer files, and each component's
 * `model.onnx`, `config.json` and external weights (`*.onnx_data`, `weights.pb`). Everything else
 * (safetensors, .bin, fp16 variant folders, READMEs, images) is left on the Hub.
 */
export const PIPELINE_FILES: (path: string) => boolean = isLayoutFile;

/** Progress of one file of a pull; every count is in bytes. */
export interface PullProgress {
  /** Repository path of the file, e.g. `unet/model.onnx_data`. */
  path: string;
  /**
   * `verify`: hashing bytes already on disk (a finished file, or a partial download to resume);
   * `download`: receiving bytes; `done`: the file is in place and matches the Hub's checksum.
   */
  phase: "verify" | "download" | "done";
  fileBytes: number;
  fileSize: number;
  /** This file's place in the pull, 1-based, and the number of layout files. */
  fileIndex: number;
  fileCount: number;
  /** Bytes of all layout files handled so far (files in place plus this file's `fileBytes`). */
  doneBytes: number;
  totalBytes: number;
  /** Bytes received from the network by this pull so far (for a transfer rate). */
  receivedBytes: number;
}

/** Options of {@link pullModel}. */
export interface PullModelOptions {
  /** Hub model repository, `owner/name`. */
  repo: string;
  /** Branch, tag or commit; a commit hash pins every file to one snapshot. @defaultValue "main" */
  revision?: string;
  /** The model directory to write (`MODELS_DIR/<id>`); created when missing. */
  outDir: string;
  /** Base URL of the Hub or a mirror. @defaultValue "https://huggingface.co" */
  hubUrl?: string;
  /** Hub token (`hf_…`) for gated or private repositories. */
  accessToken?: string;
  /** fetch implementation (proxies, tests). @defaultValue globalThis.fetch */
  fetch?: typeof fetch;
  /** Called as bytes are hashed or received; may be called once per network chunk, so keep it cheap. */
  onProgress?: (progress: PullProgress) => void;
}

/** What {@link pullModel} left in `outDir`. */
export interface PullResult {
  /** Every layout file now in `outDir`, as repository paths. */
  files: string[];
  /**
   * Bytes received from the network by this call (0 when everything was already in place),
   * including a resumed `.part` that failed its checksum and was fetched again.
   */
  bytes: number;
  /** The files this call put in place (the rest were already present with the right checksum). */
  downloaded: string[];
  /** Repository files outside the layout, not downloaded. */
  ignored: string[];
  /** Stale layout files (and `.part` leftovers) removed because this revision does not have them. */
  removed: string[];
}

/** The checksum the Hub publishes for a file. */
interface Expected {
  size: number;
  /** LFS files: sha256 of the content. Git files: the blob id, sha1 over `blob <size>\0` + content. */
  algorithm?: "sha256" | "sha1";
  digest?: string;
}

function expectedOf(e: ListFileEntry): Expected {
  if (e.lfs) return { size: e.lfs.size, algorithm: "sha256", digest: e.lfs.oid.toLowerCase() };
  if (e.oid && /^[0-9a-f]{40}$/i.test(e.oid))
    return { size: e.size, algorithm: "sha1", digest: e.oid.toLowerCase() };
  return { size: e.size };
}

function newHash(x: Expected): Hash | undefined {
  if (!x.algorithm) return undefined;
  const hash = createHash(x.algorithm);
  if (x.algorithm === "sha1") hash.update(`blob ${x.size}\0`);
  return hash;
}

const fileSize = (p: string) =>
  stat(p).then(
    (s) => (s.isFile() ? s.size : undefined),
    () => undefined,
  );

async function hashFile(path: string, hash: Hash | undefined, onBytes: (n: number) => void): Promise<void> {
  if (!hash) return onBytes((await fileSize(path)) ?? 0);
  let n = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    n += chunk.length;
    onBytes(n);
  }
}

/** Hub failures as AppErrors with a code the CLI can explain; keeps the Hub's message and the cause. */
function hubError(e: unknown, what: string): AppError {
  if (e instanceof AppError) return e;
  if (e instanceof HubApiError) {
    const s = e.statusCode;
    const code =
      s === 401 ? "unauthorized" : s === 403 ? "forbidden" : s === 404 ? "not_found" : "unavailable";
    // The Hub answers 401 for a repository it hides from this caller, 403 for a gated one it may not read.
    const hint = s === 401 || s === 403 ? " (gated or private repos need an access token)" : "";
    return new AppError(code, `${what}: ${e.message}${hint}`, { cause: e });
  }
  return new AppError("unavailable", `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

interface Ctx {
  opts: PullModelOptions;
  where: string;
  fileIndex: number;
  fileCount: number;
  doneBefore: number;
  totalBytes: number;
  /** Bytes received from the network so far, failed attempts included. */
  received: number;
}

type Report = (phase: PullProgress["phase"], fileBytes: number) => void;

/** Brings one file into place; returns false when it was already there. */
async function pullFile(entry: ListFileEntry, ctx: Ctx): Promise<boolean> {
  const x = expectedOf(entry);
  const target = join(ctx.opts.outDir, entry.path);
  const report: Report = (phase, fileBytes) =>
    ctx.opts.onProgress?.({
      path: entry.path,
      phase,
      fileBytes,
      fileSize: x.size,
      fileIndex: ctx.fileIndex,
      fileCount: ctx.fileCount,
      doneBytes: ctx.doneBefore + fileBytes,
      totalBytes: ctx.totalBytes,
      receivedBytes: ctx.received,
    });

  if ((await fileSize(target)) === x.size) {
    const hash = newHash(x);
    await hashFile(target, hash, (n) => report("verify", n));
    if (!hash || hash.digest("hex") === x.digest) {
      report("done", x.size);
      return false;
    }
  }
  await mkdir(dirname(target), { recursive: true });
  const part = `${target}.part`;
  const offset = (await fileSize(part)) ?? 0;
  if (offset > 0 && offset <= x.size) {
    const mismatch = await fetchInto(entry, x, offset, ctx, report);
    // A .part from another revision, or from a server that ignored Range: start over, once.
    if (!mismatch) return true;
  }
  const mismatch = await fetchInto(entry, x, 0, ctx, report);
  if (mismatch) throw mismatch;
  return true;
}

/**
 * Continues `<file>.part` from `offset` (0: from scratch), checks size and checksum, and renames it
 * into place. On a mismatch it deletes the `.part` and returns the error for the caller to throw.
 */
async function fetchInto(
  entry: ListFileEntry,
  x: Expected,
  offset: number,
  ctx: Ctx,
  report: Report,
): Promise<AppError | undefined> {
  const { opts, where } = ctx;
  const target = join(opts.outDir, entry.path);
  const part = `${target}.part`;
  const hash = newHash(x);
  // A resumed download is checked end to end, so the bytes already on disk go through the hash too.
  if (offset > 0) await hashFile(part, hash, (n) => report("verify", n));

  let received = 0;
  if (offset < x.size) {
    let blob: Blob | null;
    try {
      // xet off: plain resolve → CDN with Range requests, which resume needs; the checksum below
      // covers either transport.
      blob = await downloadFile({ ...hubParams(opts), path: entry.path, xet: false });
    } catch (e) {
      throw hubError(e, `${where}: ${entry.path}`);
    }
    if (!blob) throw new AppError("not_found", `${where}: ${entry.path} is listed but cannot be downloaded.`);
    if (blob.size !== x.size) {
      throw new AppError(
        "unavailable",
        `${where}: ${entry.path} is ${blob.size} bytes on the Hub but listed as ${x.size}; the revision may have moved, run again.`,
      );
    }
    const body = (offset > 0 ? blob.slice(offset) : blob).stream() as NodeReadableStream<Uint8Array>;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        received += chunk.length;
        ctx.received += chunk.length;
        if (offset + received > x.size) {
          callback(new Error(`received more than the ${x.size} bytes listed`));
          return;
        }
        hash?.update(chunk);
        report("download", offset + received);
        callback(null, chunk);
      },
    });
    try {
      await pipeline(
        Readable.fromWeb(body),
        meter,
        createWriteStream(part, { flags: offset > 0 ? "a" : "w" }),
      );
    } catch (e) {
      // Past the listed size the .part is garbage and goes; short of it, it holds a prefix of the
      // file that the next run continues.
      if (offset + received <= x.size) {
        const what = `${where}: download of ${entry.path} stopped after ${offset + received} of ${x.size} bytes; run again to resume`;
        throw hubError(e, what);
      }
    }
  }

  const size = offset + received;
  // An empty file never touches the network, so nothing has created its .part yet.
  if (size === 0) await writeFile(part, "");
  const digest = hash?.digest("hex");
  if (size !== x.size || digest !== x.digest) {
    await rm(part, { force: true });
    const want = x.algorithm ? `${x.algorithm} ${x.digest}, ${x.size} bytes` : `${x.size} bytes`;
    const got = x.algorithm ? `${x.algorithm} ${digest}, ${size} bytes` : `${size} bytes`;
    return new AppError(
      "internal",
      `${where}: checksum mismatch for ${entry.path}: expected ${want}, got ${got}. The partial download was deleted.`,
      { details: { path: entry.path, expected: x, actual: { size, digest } } },
    );
  }
  await rename(part, target);
  report("done", x.size);
  return undefined;
}

function hubParams(opts: PullModelOptions) {
  return {
    repo: opts.repo,
    revision: opts.revision,
    hubUrl: opts.hubUrl,
    accessToken: opts.accessToken,
    fetch: opts.fetch,
  };
}

/** Removes layout files (and `.part` leftovers) that this revision lacks, e.g. a stale text_encoder_2/. */
async function prune(outDir: string, keep: Set<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const dir of LAYOUT_DIRS) {
    const names = await readdir(join(outDir, dir)).catch(() => [] as string[]);
    for (const name of names) {
      const rel = dir ? `${dir}/${name}` : name;
      const layoutPath = rel.endsWith(".part") ? rel.slice(0, -".part".length) : rel;
      if (!PIPELINE_FILES(layoutPath) || keep.has(rel)) continue;
      if ((await fileSize(join(outDir, rel))) === undefined) continue;
      await rm(join(outDir, rel), { force: true });
      removed.push(rel);
    }
  }
  return removed;
}

/**
 * Downloads the optimum ONNX export of a Stable Diffusion-family pipeline from the Hugging Face Hub
 * into `outDir`, which the worker can then serve. Only {@link PIPELINE_FILES} are fetched. Each file
 * goes to `<file>.part` and is renamed into place only once its size and the Hub's checksum (sha256
 * for LFS files, the git blob id otherwise) match; a mismatch deletes the `.part` and throws. Files
 * already in place with the right checksum are skipped, and an interrupted download is continued
 * from its `.part` by the next call. Files go one at a time in the layout's download order (the
 * VAE decoder and model_index.json last, so a reader never takes a partial directory for a model).
 */
export async function pullModel(opts: PullModelOptions): Promise<PullResult> {
  const where = `${opts.repo}@${opts.revision ?? "main"}`;
  const wanted: ListFileEntry[] = [];
  const ignored: string[] = [];
  try {
    for await (const e of listFiles({ ...hubParams(opts), recursive: true })) {
      if (e.type !== "file") continue;
      if (PIPELINE_FILES(e.path)) wanted.push(e);
      else ignored.push(e.path);
    }
  } catch (e) {
    throw hubError(e, `Cannot list ${where}`);
  }
  const have = new Set(wanted.map((e) => e.path));
  const match = matchLayout((p) => have.has(p));
  if (match.kind !== "pipeline") {
    const { missing } = match;
    const hint = ignored.some((p) => /\.(safetensors|bin)$/.test(p))
      ? " It holds PyTorch weights: pick a revision or repository with an optimum ONNX export (e.g. revision `onnx`)."
      : "";
    throw new AppError(
      "invalid_request",
      `${where} is not an optimum ONNX export of a diffusion pipeline: no ${missing.join(", ")}.${hint}`,
    );
  }
  wanted.sort((a, b) => downloadRank(a.path) - downloadRank(b.path) || (a.path < b.path ? -1 : 1));

  const ctx: Ctx = {
    opts,
    where,
    fileIndex: 0,
    fileCount: wanted.length,
    doneBefore: 0,
    totalBytes: wanted.reduce((sum, e) => sum + expectedOf(e).size, 0),
    received: 0,
  };
  const downloaded: string[] = [];
  for (const entry of wanted) {
    ctx.fileIndex += 1;
    if (await pullFile(entry, ctx)) downloaded.push(entry.path);
    ctx.doneBefore += expectedOf(entry).size;
  }
  const removed = await prune(opts.outDir, have);
  return { files: wanted.map((e) => e.path), bytes: ctx.received, downloaded, ignored, removed };
}

/**
 * The model id a pull serves under by default: the repository id itself (`owner/SD-ONNX`), so a
 * client that builds `{base}/models/{repo id}`, as the Hub's own URLs read, works unchanged.
 */
export function defaultModelId(repo: string): string {
  return repo;
}

/** A short id for a pull (`--short`): the repository name, lower-cased (`owner/SD-ONNX` → `sd-onnx`). */
export function shortModelId(repo: string): string {
  return (repo.split("/").pop() ?? repo).toLowerCase();
}

/**
 * Where a model of id `id` lives under `modelsDir`, as the worker finds it: `<modelsDir>/<id>`
 * for a short id, `<modelsDir>/<owner>/<name>` for a Hub-style one. `id` must be a `ModelId`
 * (no `..` step, at most one slash).
 */
export function modelDirOf(modelsDir: string, id: string): string {
  return join(modelsDir, ...id.split("/"));
}
