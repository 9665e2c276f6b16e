// `pnpm models [outDir] [--force]`: writes the default random-weight VAE models in optimum's ONNX
// layout. Models already generated with the same settings are skipped unless --force is given.
// `pnpm models pull <hub-repo-id> [--revision R] [--id NAME | --short] [--dir MODELS_DIR]`:
// downloads an optimum ONNX export of a diffusion pipeline from the Hugging Face Hub (HF_ENDPOINT,
// HF_TOKEN as in the Python hub library) into MODELS_DIR/<owner>/<name>, where the worker serves
// it under the repository id (or into MODELS_DIR/<id>, served as <id>, with --id or --short).
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  DEFAULT_MODELS,
  DEFAULT_PIPELINES,
  defaultModelId,
  generateDefaultModels,
  modelDirOf,
  type PullProgress,
  pullModel,
  shortModelId,
} from "@hybrid/model-tools";
import { isAppError, isHubModelId, ModelId, modelIdPath } from "@hybrid/protocol";
import { repoRoot } from "./lib.ts";

const usage = `usage:
  pnpm models [outDir=./models] [--force]
  pnpm models pull <hub-repo-id> [--revision R] [--id NAME | --short] [--dir MODELS_DIR]
    serves the pull under the repository id (owner/name) unless --id names another id or
    --short picks the repository's name, lower-cased
    env: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (gated or private repos)`;

function fail(message: string, code = 2): never {
  console.error(`${message}\n${usage}`);
  process.exit(code);
}

function parse<const T extends Record<string, { type: "string" | "boolean"; short?: string }>>(
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    return fail(e instanceof Error ? e.message : String(e));
  }
}

// `pnpm models` runs from the repository root, where `pnpm start` also looks for ./models.
const defaultModelsDir = process.env.MODELS_DIR ?? join(repoRoot, "models");

const args = process.argv.slice(2);
if (args[0] === "pull") await pull(args.slice(1));
else await generate(args);

async function generate(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    force: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  if (positionals.length > 1) fail(`Unexpected arguments: ${positionals.slice(1).join(" ")}`);
  const force = values.force === true;
  const outDir = resolve(positionals[0] ?? join(repoRoot, "models"));
  const t0 = performance.now();
  const ids = await generateDefaultModels(outDir, { force });
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`${force ? "Regenerated" : "Ready"}: ${ids.length} models in ${outDir} (${seconds} s)`);
  for (const m of DEFAULT_MODELS) {
    console.log(`  ${m.id.padEnd(20)} ${m.family}${m.withEncoder === false ? " (decoder only)" : ""}`);
  }
}

async function pull(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    revision: { type: "string" },
    id: { type: "string" },
    short: { type: "boolean" },
    dir: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  const [repo, ...extra] = positionals;
  if (!repo || extra.length > 0) fail("pull takes one Hub repository id, e.g. onnx-community/<name>.");
  if (!isHubModelId(repo) || !ModelId.safeParse(repo).success)
    fail(`${repo} is not a Hub repository id (owner/name).`);
  if (values.id !== undefined && values.short) fail("--id and --short both name the id: give one.");
  const id = values.id ?? (values.short ? shortModelId(repo) : defaultModelId(repo));
  // The id is a directory (or owner/name directories) and an entry of the comma-separated,
  // `id=path` MODELS list: a ModelId is safe as both.
  const checked = ModelId.safeParse(id);
  if (!checked.success) fail(`--id: ${checked.error.issues[0]?.message}.`);
  if ([...DEFAULT_MODELS, ...DEFAULT_PIPELINES].some((m) => m.id === id)) {
    fail(`--id ${id} is a generated default model; pnpm start would regenerate it over the pull.`);
  }
  const modelsDir = resolve(values.dir ?? defaultModelsDir);
  const outDir = modelDirOf(modelsDir, id);
  const revision = values.revision ?? "main";
  const progress = progressPrinter(process.stdout);
  const t0 = performance.now();
  let result: Awaited<ReturnType<typeof pullModel>>;
  try {
    result = await pullModel({
      repo,
      revision,
      outDir,
      hubUrl: process.env.HF_ENDPOINT?.replace(/\/+$/, "") || undefined,
      accessToken: process.env.HF_TOKEN || undefined,
      onProgress: progress.update,
    });
  } catch (e) {
    progress.clear();
    const message = e instanceof Error ? e.message : String(e);
    const needsToken = isAppError(e) && ["unauthorized", "forbidden"].includes(e.code);
    console.error(`Pull failed: ${message}`);
    if (needsToken && !process.env.HF_TOKEN)
      console.error("Set HF_TOKEN to a token that can read the repository.");
    process.exit(1);
  }
  progress.clear();
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  const kept = result.files.length - result.downloaded.length;
  console.log(
    `Pulled ${repo}@${revision} into ${outDir}: ${result.downloaded.length} files downloaded (${formatBytes(result.bytes)}), ` +
      `${kept} already in place, ${result.ignored.length} repository files not needed (${seconds} s).`,
  );
  if (result.removed.length > 0) console.log(`Removed stale files: ${result.removed.join(", ")}`);
  const dirEnv = modelsDir === resolve(defaultModelsDir) ? "" : `MODELS_DIR=${modelsDir} `;
  console.log(`Serve it: ${dirEnv}MODELS=${id} pnpm start`);
  console.log(`  (without MODELS, the worker serves every model in ${modelsDir}, this one included)`);
  console.log(
    `  then call it by its id: POST /v1/text-to-image/${modelIdPath(id)} (or /models/${modelIdPath(id)})`,
  );
}

function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/**
 * On a TTY one status line (overall and current file), redrawn at most every 100 ms; otherwise a
 * line per finished file and, for big files, one every 10 s, so CI logs stay readable.
 */
function progressPrinter(out: NodeJS.WriteStream) {
  const tty = out.isTTY === true;
  const t0 = performance.now();
  const fetched = new Set<string>();
  let current = "";
  let lastDraw = 0;
  const clear = () => {
    if (tty) out.write("\r\x1b[K");
  };
  const update = (p: PullProgress) => {
    const now = performance.now();
    const count = `[${String(p.fileIndex).padStart(String(p.fileCount).length)}/${p.fileCount}]`;
    if (p.path !== current) {
      current = p.path;
      // Plain output: a file's first progress line comes 10 s into it, so small files get only "done".
      lastDraw = tty ? 0 : now;
    }
    if (p.phase === "download") fetched.add(p.path);
    if (p.phase === "done") {
      clear();
      const how = fetched.has(p.path) ? "downloaded" : "already in place";
      out.write(`${count} ${p.path}  ${formatBytes(p.fileSize)}  ${how}\n`);
      return;
    }
    if (now - lastDraw < (tty ? 100 : 10_000)) return;
    lastDraw = now;
    const file = `${count} ${p.path} ${formatBytes(p.fileBytes)} / ${formatBytes(p.fileSize)}`;
    if (!tty) {
      out.write(`${file}  ${p.phase === "verify" ? "verifying" : "downloading"}\n`);
      return;
    }
    const share = p.totalBytes > 0 ? p.doneBytes / p.totalBytes : 1;
    const width = 24;
    const filled = Math.round(share * width);
    const rate = p.receivedBytes / Math.max((now - t0) / 1000, 0.001);
    const line =
      `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}% ` +
      `${formatBytes(p.doneBytes)} / ${formatBytes(p.totalBytes)}  ${formatBytes(rate)}/s  ` +
      `${file}${p.phase === "verify" ? " (verifying)" : ""}`;
    out.write(`\r\x1b[K${line.slice(0, (out.columns || 120) - 1)}`);
  };
  return { update, clear };
}
