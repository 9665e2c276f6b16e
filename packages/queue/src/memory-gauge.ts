import { Cluster } from "ioredis";
import type { RedisClient } from "./connection.ts";

/** Redis' memory as last sampled: its fullest master's. */
export interface MemoryReading {
  /** `used_memory`, in bytes. */
  used: number;
  /** `maxmemory`, in bytes; 0: unlimited. */
  max: number;
}

export interface MemoryGaugeOptions {
  /** The share of `maxmemory` (0–1) from which the gauge reads full. */
  highWater: number;
  /** ms between samples. */
  intervalMs: number;
  /** Called when the gauge turns full or no longer full. */
  onChange?: (full: boolean, reading: MemoryReading) => void;
  /** Called when a sample fails (the last reading stands). */
  onError?: (err: Error) => void;
}

/** `used_memory` and `maxmemory` out of `INFO memory`. */
export function parseMemoryInfo(info: string): MemoryReading {
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(info)?.[1] ?? 0);
  return { used: field("used_memory"), max: field("maxmemory") };
}

/**
 * Redis' memory use, sampled in the background (`INFO memory` every `intervalMs`; on a cluster,
 * on each master), so admission can refuse new work at a high-water mark below `maxmemory`
 * before Redis itself refuses writes (`noeviction`: then jobs already admitted could not store
 * their results). Never read per request: a check is a comparison with the last sample, plus
 * the bytes this process {@link note}d since, which the sample has not seen yet.
 * With `maxmemory` 0 (unlimited) it never reads full.
 */
export class RedisMemoryGauge {
  private reading: MemoryReading = { used: 0, max: 0 };
  private since = 0;
  private wasFull = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly opts: MemoryGaugeOptions,
  ) {}

  /** Takes a first sample, then keeps sampling until {@link stop}. */
  async start(): Promise<void> {
    await this.sample();
    this.timer = setInterval(() => void this.sample(), this.opts.intervalMs);
    // Sampling must not keep a process alive.
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Takes a sample now (the timer does this every `intervalMs`). */
  async sample(): Promise<void> {
    try {
      const nodes = this.redis instanceof Cluster ? this.redis.nodes("master") : [this.redis];
      const readings = await Promise.all(nodes.map(async (n) => parseMemoryInfo(await n.info("memory"))));
      // The fullest master decides: a write to it fails whatever the others hold.
      const share = (r: MemoryReading) => (r.max > 0 ? r.used / r.max : 0);
      this.reading = readings.reduce((a, b) => (share(b) > share(a) ? b : a), readings[0] ?? this.reading);
      this.since = 0;
      const full = this.full();
      if (full !== this.wasFull) {
        this.wasFull = full;
        this.opts.onChange?.(full, this.reading);
      }
    } catch (e) {
      this.opts.onError?.(e as Error);
    }
  }

  /** Counts bytes this process is about to write, until the next sample sees them. */
  note(bytes: number): void {
    this.since += bytes;
  }

  /** The last sample. */
  get last(): MemoryReading {
    return this.reading;
  }

  /** Whether Redis is at the high-water mark, or would be with `extraBytes` more. */
  full(extraBytes = 0): boolean {
    const { used, max } = this.reading;
    return max > 0 && used + this.since + extraBytes >= max * this.opts.highWater;
  }
}
