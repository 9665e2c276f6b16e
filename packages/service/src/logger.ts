import { type Logger, pino } from "pino";
import pretty from "pino-pretty";
import { maskRedisUrls } from "./redis-url.ts";

/** Header and field names whose values never reach a log line, wherever they appear. */
export const REDACTED_PATHS = [
  "authorization",
  "headers.authorization",
  "req.headers.authorization",
  "*.authorization",
  "key",
  "*.key",
  "apiKey",
  "*.apiKey",
  "secret",
  "*.secret",
  "webhook_secret",
  "*.webhook_secret",
  "webhookSecret",
  "*.webhookSecret",
];

/**
 * The logger of an app: JSON lines (one object per line) for machines, or human-readable lines
 * when stdout is a terminal. Secrets (bearer keys, webhook secrets) are redacted, and the
 * password of any Redis URL is masked.
 */
export function createLogger(
  app: string,
  level: string,
  {
    tty = process.stdout.isTTY === true,
    destination,
  }: { tty?: boolean; destination?: NodeJS.WritableStream } = {},
): Logger {
  const opts = {
    level,
    base: { app },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    // A Redis URL's password may sit in any message or error (ioredis', BullMQ's, a setting's):
    // masked in the finished line, wherever it is.
    hooks: { streamWrite: maskRedisUrls },
  };
  if (tty)
    return pino(
      opts,
      pretty({
        colorize: destination === undefined,
        translateTime: "SYS:HH:MM:ss.l",
        ignore: "pid,hostname",
        // One line per entry (a request, with its fields inline), not one per field.
        singleLine: true,
        ...(destination ? { destination } : {}),
      }),
    );
  return destination ? pino(opts, destination) : pino(opts);
}

const LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace"]);
const noop = () => {};

/**
 * `logger.child(bindings)`, made the first time a line is written at an enabled level (or
 * anything else is asked of it). Hot paths bind a logger per request or per job, and at the
 * usual levels most never write a line; a child costs its bindings' serialization and
 * redaction up front, which was a measurable share of a small job's cost.
 */
export function lazyChild(logger: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined;
  return new Proxy(logger, {
    get(target, prop) {
      if (!child && typeof prop === "string" && LEVELS.has(prop) && !target.isLevelEnabled(prop)) return noop;
      child ??= logger.child(bindings);
      const value: unknown = Reflect.get(child, prop, child);
      return typeof value === "function" ? value.bind(child) : value;
    },
  });
}
