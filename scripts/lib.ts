// Process helpers shared by `pnpm start`, the end-to-end tests and the benchmarks.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));

/** True when something at host:port answers Redis' PING. */
export function redisAnswers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("error", () => done(false));
    sock.connect(port, host, () => sock.write("PING\r\n"));
    sock.once("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.`);
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts `redis-server` on a port, keeping nothing on disk. Resolves once it answers. */
export async function startRedisServer(port: number, bin = "redis-server"): Promise<ChildProcess> {
  const child = spawn(
    bin,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: "ignore",
    },
  );
  const failed = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`redis-server exited with code ${code}`)));
  });
  await Promise.race([
    waitFor(() => redisAnswers("127.0.0.1", port), 10_000, `redis-server on port ${port}`),
    failed,
  ]);
  child.removeAllListeners("exit");
  return child;
}

/** A local Redis Cluster of masters only, from {@link startRedisCluster}. */
export interface RedisCluster {
  /** `REDIS_URL` naming every node: `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`. */
  url: string;
  ports: number[];
  /** Stops every node and deletes their cluster config files. */
  stop(): Promise<void>;
}

/** Slots of a cluster, split into `n` contiguous ranges as even as they go. */
function slotRanges(n: number): [number, number][] {
  const SLOTS = 16384;
  return Array.from({ length: n }, (_, i) => [
    Math.floor((i * SLOTS) / n),
    Math.floor(((i + 1) * SLOTS) / n) - 1,
  ]);
}

/**
 * Starts a Redis Cluster of `ports.length` masters (no replicas) on 127.0.0.1, keeping nothing on
 * disk but each node's cluster config file in a temporary directory. Each node gets an equal
 * range of the 16384 slots (CLUSTER ADDSLOTSRANGE), the first meets the others (CLUSTER MEET),
 * and it resolves once every node reports `cluster_state:ok` with every slot assigned and every
 * node known. The cluster bus of each node listens on a free port of its own.
 */
export async function startRedisCluster(ports: number[], bin = "redis-server"): Promise<RedisCluster> {
  if (ports.length === 0) throw new RangeError("A cluster needs at least one node.");
  const dir = await mkdtemp(join(tmpdir(), "redis-cluster-"));
  const children: ChildProcess[] = [];
  const clients: Redis[] = [];
  const stopAll = async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(children.map((c) => stop(c)));
    await rm(dir, { recursive: true, force: true });
  };
  const busPorts: number[] = [];
  try {
    for (const port of ports) {
      const busPort = await freePort();
      busPorts.push(busPort);
      const child = spawn(
        bin,
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, `nodes-${port}.conf`),
          "--cluster-port",
          String(busPort),
          "--cluster-node-timeout",
          "5000",
          "--dir",
          dir,
        ],
        { stdio: "ignore" },
      );
      children.push(child);
      const failed = new Promise<never>((_, reject) => {
        child.once("error", reject);
        child.once("exit", (code) =>
          reject(new Error(`redis-server on port ${port} exited with code ${code}`)),
        );
      });
      await Promise.race([
        waitFor(() => redisAnswers("127.0.0.1", port), 10_000, `redis-server on port ${port}`),
        failed,
      ]);
      child.removeAllListeners("exit");
      clients.push(new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1 }));
    }
    const ranges = slotRanges(ports.length);
    await Promise.all(clients.map((c, i) => c.call("CLUSTER", "ADDSLOTSRANGE", ...ranges[i]!)));
    for (let i = 1; i < ports.length; i++)
      await clients[0]!.call("CLUSTER", "MEET", "127.0.0.1", String(ports[i]), String(busPorts[i]));
    await waitFor(
      async () => {
        const infos = await Promise.all(clients.map((c) => c.call("CLUSTER", "INFO") as Promise<string>));
        return infos.every(
          (info) =>
            info.includes("cluster_state:ok") &&
            info.includes("cluster_slots_assigned:16384") &&
            info.includes(`cluster_known_nodes:${ports.length}`),
        );
      },
      30_000,
      `a ${ports.length}-node Redis Cluster to form`,
    );
    for (const c of clients) c.disconnect();
    clients.length = 0;
  } catch (e) {
    await stopAll();
    throw e;
  }
  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`,
    ports,
    stop: stopAll,
  };
}

/** Runs one of the apps from its TypeScript source with the given environment. */
export function startApp(
  app: "api" | "worker",
  env: Record<string, string>,
  stdio: "inherit" | "pipe" = "inherit",
): ChildProcess {
  return spawn(process.execPath, ["--conditions=source", "--import", "tsx", `apps/${app}/src/index.ts`], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", stdio, stdio],
  });
}

/** SIGTERM, then SIGKILL if the process has not exited within `graceMs`. */
export function stop(child: ChildProcess | undefined, graceMs = 10_000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
