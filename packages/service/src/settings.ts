import type { z } from "zod";
import { createLogger } from "./logger.ts";
import { maskRedisUrls } from "./redis-url.ts";

/** A settings error as one sentence: each bad variable and what is wrong with it. */
export function settingsProblems(error: z.ZodError): string {
  return error.issues
    .map((i) => `${i.path.join(".") || "(settings)"}: ${maskRedisUrls(i.message)}`)
    .join("; ");
}

/**
 * Parses an app's settings; on a bad one, logs one line naming each problem and exits 1 (rather
 * than a stack trace of the schema library).
 */
export function loadSettingsOrExit<T extends z.ZodType>(
  app: string,
  schema: T,
  source: NodeJS.ProcessEnv = process.env,
): z.infer<T> {
  const parsed = schema.safeParse(source);
  if (parsed.success) return parsed.data;
  createLogger(app, "info").fatal(
    `invalid settings, refusing to start: ${settingsProblems(parsed.error)}. Fix them (docs/configuration.md lists every setting) and start again.`,
  );
  process.exit(1);
}
