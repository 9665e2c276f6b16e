import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { settingsProblems } from "./settings.ts";
import { SharedEnv } from "./shared-env.ts";

describe("settingsProblems", () => {
  it("names each bad setting, with any Redis password masked", () => {
    const Env = z.object({ REDIS_URL: SharedEnv.REDIS_URL, PORT: z.coerce.number().int() });
    const parsed = Env.safeParse({ REDIS_URL: "redis+cluster://u:hunter2@h:0", PORT: "x" });
    expect(parsed.success).toBe(false);
    const text = settingsProblems(parsed.error!);
    expect(text).toMatch(/^REDIS_URL: .*; PORT: /);
    expect(text).not.toContain("hunter2");
  });
});

describe("loadSettingsOrExit", () => {
  it("logs one line naming the problem and exits 1", () => {
    const script = `
      import { z } from "zod";
      import { loadSettingsOrExit } from ${JSON.stringify(fileURLToPath(new URL("./settings.ts", import.meta.url)))};
      loadSettingsOrExit("api", z.object({ ADMIN_KEY: z.string().min(32) }), { ADMIN_KEY: "short" });
      console.log("still running");
    `;
    const run = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      encoding: "utf8",
    });
    expect(run.status).toBe(1);
    const lines = run.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 60, app: "api" });
    expect(lines[0]).toMatch(/invalid settings, refusing to start: ADMIN_KEY: /);
  });
});
