// `pnpm start`: Redis (the given one, the local one, or a child redis-server), the default models,
// one API and one worker. Ctrl-C stops everything and exits 0: the `start` script `exec`s node
// (no shell between pnpm and us to die of the SIGINT, and no tsx CLI, which exits 130 on it), so
// pnpm sees our exit code and prints no ELIFECYCLE line.
import type { ChildProcess } from "node:child_process";
import { Socket } from "node:net";
import { join } from "node:path";
import { generateDefaultModels } from "@hybrid/model-tools";
import { createRedis, WorkerDirectory } from "@hybrid/queue";
import { parseRedisUrl } from "@hybrid/service";
import { redisAnswers, repoRoot, startApp, startRedisServer, stop } from "./lib.ts";
import { ensureWebBuild } from "./web-build.ts";

const port = process.env.PORT ?? "8080";
const prefix = process.env.QUEUE_PREFIX ?? "hybrid";
let redisUrl = process.env.REDIS_URL;
let redisChild: ChildProcess | undefined;

/** The URL as it may be printed: no credentials. */
const shown = (url: string) => url.replace(/\/\/[^@/]*@/g, "//***@");

/** Whether the (first) host of a Redis URL accepts a TCP connection (a password or TLS is the apps' business). */
function reachable(url: string): Promise<boolean> {
  const target = parseRedisUrl(url);
  const node =
    target.kind === "cluster"
      ? target.nodes[0]!
      : { host: new URL(url).hostname || "127.0.0.1", port: Number(new URL(url).port || 6379) };
  return new Promise((resolve) => {
    const sock = new Socket();
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(2000, () => done(false));
    sock.once("error", () => done(false));
    sock.connect(node.port, node.host.replace(/^\[|\]$/g, ""), () => done(true));
  });
}

/**
 * Waits for the given Redis: says once what is wrong and what to do, then retries quietly with
 * backoff (a reminder every 30 s), instead of starting services that would each report the outage.
 */
async function untilReachable(url: string): Promise<void> {
  if (await reachable(url)) return;
  console.error(
    [
      `No Redis answers at REDIS_URL=${shown(url)}.`,
      "Start it (e.g. `redis-server`), or point REDIS_URL at a Redis that runs (unset, pnpm start",
      "uses the one on 127.0.0.1:6379 or starts redis-server itself). Waiting for it; Ctrl-C stops.",
    ].join("\n"),
  );
  const since = Date.now();
  let lastLine = since;
  for (let delay = 250; !(await reachable(url)); delay = Math.min(delay * 2, 5000)) {
    await new Promise((r) => setTimeout(r, delay));
    if (Date.now() - lastLine >= 30_000) {
      lastLine = Date.now();
      console.error(`Still no Redis at ${shown(url)} (${Math.round((lastLine - since) / 1000)} s); waiting.`);
    }
  }
  console.log(`Redis at ${shown(url)} answers now.`);
}

let stopping = false;
let children: ChildProcess[] = [];
async function shutdown(code: number) {
  if (stopping) return;
  stopping = true;
  await Promise.all(children.map((c) => stop(c)));
  await stop(redisChild);
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

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
} else await untilReachable(redisUrl);

// Workers this command did not start, on the same Redis and prefix, would take its jobs (another
// checkout's `pnpm start`, an old worker): say so before starting ours.
{
  const redis = createRedis(redisUrl, "command", { lazyConnect: true });
  redis.on("error", () => {});
  const others = await redis
    .connect()
    .then(() => new WorkerDirectory(redis, prefix).list(true))
    .catch(() => []);
  redis.disconnect();
  console.log(`Queue prefix: ${prefix} (QUEUE_PREFIX) on ${shown(redisUrl)}.`);
  if (others.length > 0)
    console.warn(
      [
        `WARNING: ${others.length} worker${others.length > 1 ? "s" : ""} this command did not start already serve the prefix "${prefix}" on this Redis:`,
        ...others.map((w) => `  ${w.hostname} pid ${w.pid} (started ${w.startedAt})`),
        "They will take jobs sent to this API (and may serve other models or code). Stop them, or give",
        "this checkout a prefix of its own: QUEUE_PREFIX=mine pnpm start.",
      ].join("\n"),
    );
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
children = [api, ...workers];

for (const c of children) {
  c.once("exit", (code) => {
    if (!stopping) {
      console.error(`A service exited (code ${code}); stopping the others.`);
      void shutdown(1);
    }
  });
}
const ready = async () => {
  try {
    return (await fetch(`http://127.0.0.1:${port}/health/ready`)).ok;
  } catch {
    return false;
  }
};
// No deadline: a service that cannot start exits (and stops the others); Redis going away during
// start-up is reported by the services themselves, once.
while (!stopping && !(await ready())) await new Promise((r) => setTimeout(r, 200));
if (stopping) await new Promise(() => {});
console.log(
  `\nhybrid-inference is ready on http://localhost:${port} with ${workerCount} worker${workerCount > 1 ? "s" : ""} on queue prefix "${prefix}"  (the playground is at /, GET /v1/models lists the models; Ctrl-C stops)\n`,
);
