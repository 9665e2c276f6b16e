// `pnpm start`: Redis (the given one, the local one, or a child redis-server), the default models,
// one API and one worker. Ctrl-C stops everything.
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { generateDefaultModels } from "@hybrid/model-tools";
import { redisAnswers, repoRoot, startApp, startRedisServer, stop, waitFor } from "./lib.ts";
import { ensureWebBuild } from "./web-build.ts";

const port = process.env.PORT ?? "8080";
let redisUrl = process.env.REDIS_URL;
let redisChild: ChildProcess | undefined;

if (!redisUrl) {
  if (await redisAnswers("127.0.0.1", 6379)) {
    redisUrl = "redis://127.0.0.1:6379";
    console.log("Using the Redis already running on 127.0.0.1:6379.");
  } else {
    try {
      redisChild = await startRedisServer(6379);
      redisUrl = "redis://127.0.0.1:6379";
      console.log("Started redis-server on 127.0.0.1:6379 (in memory, stops with this command).");
    } catch {
      console.error(
        [
          "No Redis answers on 127.0.0.1:6379 and no redis-server binary was found.",
          "Either point REDIS_URL at a Redis (REDIS_URL=redis://host:6379 pnpm start), or install one:",
          "  Debian/Ubuntu: sudo apt-get install redis-server",
          "  macOS:         brew install redis",
          "  Docker:        docker run -p 6379:6379 redis:7",
        ].join("\n"),
      );
      process.exit(1);
    }
  }
}

const modelsDir = process.env.MODELS_DIR ?? join(repoRoot, "models");
if (!process.env.MODELS) {
  const ids = await generateDefaultModels(modelsDir);
  console.log(`Default models in ${modelsDir}: ${ids.join(", ")}`);
}

// `pnpm install` built the playground; sources changed since (a pull, an edit) are rebuilt here.
try {
  const why = await ensureWebBuild();
  if (why) console.log(`Built the playground (${why}).`);
} catch (e) {
  console.error(
    `The playground could not be built (${(e as Error).message}); the API serves everything else.`,
  );
}

// The models were just generated here; the worker need not check them again.
const env = { REDIS_URL: redisUrl, MODELS_DIR: modelsDir, PORT: port, GENERATE_DEFAULT_MODELS: "false" };
// WORKERS=N runs N worker processes: they share the queues, each taking jobs as it frees up.
const workerCount = Math.max(1, Number(process.env.WORKERS ?? 1) || 1);
const workers = Array.from({ length: workerCount }, () => startApp("worker", env));
const api = startApp("api", env);
const children = [api, ...workers];

let stopping = false;
async function shutdown(code: number) {
  if (stopping) return;
  stopping = true;
  await Promise.all(children.map((c) => stop(c)));
  await stop(redisChild);
  process.exit(code);
}
for (const c of children) {
  c.once("exit", (code) => {
    if (!stopping) {
      console.error(`A service exited (code ${code}); stopping the others.`);
      void shutdown(1);
    }
  });
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

const ready = async () => {
  try {
    return (await fetch(`http://127.0.0.1:${port}/health/ready`)).ok;
  } catch {
    return false;
  }
};
await waitFor(ready, 120_000, "the API to become ready");
console.log(
  `\nhybrid-inference is ready on http://localhost:${port} with ${workerCount} worker${workerCount > 1 ? "s" : ""}  (the playground is at /, GET /v1/models lists the models; Ctrl-C stops)\n`,
);
