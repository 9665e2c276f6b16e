// Process helpers shared by `pnpm start`, the end-to-end tests and the benchmarks.
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, Socket } from "node:net";
import { fileURLToPath } from "node:url";

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
