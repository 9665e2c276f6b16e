// `pnpm models [outDir] [--force]`: writes the default random-weight VAE models in optimum's ONNX
// layout. Models already generated with the same settings are skipped unless --force is given.
import { join, resolve } from "node:path";
import { DEFAULT_MODELS, generateDefaultModels } from "../packages/inference/src/generator/index.ts";
import { repoRoot } from "./lib.ts";

const usage = "usage: tsx --conditions=source scripts/generate-models.ts [outDir=./models] [--force]";

const args = process.argv.slice(2);
const force = args.includes("--force");
const positional = args.filter((a) => !a.startsWith("--"));
const unknown = args.filter((a) => a.startsWith("--") && a !== "--force");

if (args.includes("--help") || args.includes("-h")) {
  console.log(usage);
  process.exit(0);
}
if (unknown.length > 0 || positional.length > 1) {
  console.error(`Unexpected arguments: ${[...unknown, ...positional.slice(1)].join(" ")}\n${usage}`);
  process.exit(2);
}

// `pnpm models` runs from the repository root, where `pnpm start` also looks for ./models.
const outDir = resolve(positional[0] ?? join(repoRoot, "models"));
const t0 = performance.now();
const ids = await generateDefaultModels(outDir, { force });
const seconds = ((performance.now() - t0) / 1000).toFixed(1);
console.log(`${force ? "Regenerated" : "Ready"}: ${ids.length} models in ${outDir} (${seconds} s)`);
for (const m of DEFAULT_MODELS) {
  console.log(`  ${m.id.padEnd(20)} ${m.family}${m.withEncoder === false ? " (decoder only)" : ""}`);
}
