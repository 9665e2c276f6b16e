import type { Logger } from "pino";

/** Anything that emits connection errors: an ioredis client, a BullMQ Queue, Worker or QueueEvents. */
export interface ErrorEmitter {
  on(event: "error", listener: (err: Error) => void): unknown;
}

export interface RedisFaultsOptions {
  /** Least ms between two lines about the same outage. @defaultValue 10000 */
  everyMs?: number;
  /** The clock (tests). @defaultValue Date.now */
  now?: () => number;
}

/** The URL as it may be shown: credentials never reach a log line. */
const shown = (url: string): string => url.replace(/\/\/[^@/]*@/g, "//***@");

/**
 * One voice for all the Redis connections of a process. Each client and each BullMQ queue or
 * worker reconnects on its own (with backoff) and reports every failed attempt: a dozen
 * connections to a Redis that is down wrote hundreds of lines a minute, and a connection without
 * an error listener printed ioredis' "Unhandled error event" stack traces. Watched emitters
 * instead say once what is wrong and what to do, then at most a line every `everyMs` while it
 * lasts, and once when Redis answers again.
 */
export class RedisFaults {
  private failing = false;
  private lastLineAt = 0;
  private since = 0;
  private quiet = 0;
  private readonly everyMs: number;
  private readonly now: () => number;

  constructor(
    private readonly log: Logger,
    private readonly url: string,
    opts: RedisFaultsOptions = {},
  ) {
    this.everyMs = opts.everyMs ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** An `error` listener for any Redis connection (bound: pass it as it is). */
  readonly onError = (err: Error): void => {
    const now = this.now();
    if (!this.failing) {
      this.failing = true;
      this.since = now;
      this.lastLineAt = now;
      this.quiet = 0;
      this.log.error(
        { redis: shown(this.url), err: err.message },
        "redis unreachable: start redis-server, or set REDIS_URL to a Redis that runs; retrying quietly",
      );
      return;
    }
    if (now - this.lastLineAt < this.everyMs) {
      this.quiet++;
      return;
    }
    this.log.warn(
      {
        redis: shown(this.url),
        err: err.message,
        downForS: Math.round((now - this.since) / 1000),
        errorsSinceLastLine: this.quiet + 1,
      },
      "redis still unreachable; retrying",
    );
    this.lastLineAt = now;
    this.quiet = 0;
  };

  /** A `ready` listener: the first connection back after errors says so once. */
  readonly onReady = (): void => {
    if (!this.failing) return;
    this.failing = false;
    this.log.info(
      { redis: shown(this.url), downForS: Math.round((this.now() - this.since) / 1000) },
      "redis reachable again",
    );
  };

  /** Routes `emitter`'s errors here, and its `ready` (ioredis clients, BullMQ workers); returns it. */
  watch<T extends ErrorEmitter>(emitter: T): T {
    emitter.on("error", this.onError);
    (emitter as unknown as NodeJS.EventEmitter).on("ready", this.onReady);
    return emitter;
  }
}
