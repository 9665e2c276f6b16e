/** Hosts remembered at most; more, and the least interesting are forgotten. */
const MAX_HOSTS = 10_000;

/** What the breaker needs to know of a delivery attempt's end. */
export type AttemptOutcome = "success" | "failure" | "neutral";

interface HostState {
  /** Consecutive failures. */
  failures: number;
  /** While open: when the next attempt (one probe) may go. */
  openUntil: number;
  /** A probe is in flight (half-open): the others keep waiting. */
  probing: boolean;
}

/**
 * A circuit breaker per receiver (a string such as `host:port`; the webhook worker adds the owner),
 * in one process: after `failuresToOpen`
 * consecutive failed attempts (timeouts, refused connections, 408/429/5xx) a host's circuit opens
 * and its deliveries are postponed for `cooldownMs` instead of each holding a worker for its
 * whole timeout; then one delivery probes it (half-open): success closes the circuit, failure
 * opens it for another cool-down. Any answer that is not a failure (2xx, or a 4xx no retry can
 * change) closes it: the host is up.
 */
export class HostBreaker {
  private readonly hosts = new Map<string, HostState>();

  constructor(
    private readonly failuresToOpen: number,
    private readonly cooldownMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether an attempt to `host` may go now: 0, or the ms to postpone it by. A 0 while the
   * circuit is half-open makes this attempt the probe, which must then be {@link settle}d.
   */
  admit(host: string): number {
    const s = this.hosts.get(host);
    if (!s || s.failures < this.failuresToOpen) return 0;
    const wait = s.openUntil - this.now();
    if (wait > 0) return wait;
    // Half-open: one probe at a time; the others look again after a fraction of the cool-down.
    if (s.probing) return Math.max(1, Math.ceil(this.cooldownMs / 4));
    s.probing = true;
    return 0;
  }

  /** Records how an admitted attempt to `host` ended. */
  settle(host: string, outcome: AttemptOutcome): void {
    const s = this.hosts.get(host);
    if (outcome === "success") {
      this.hosts.delete(host);
      return;
    }
    if (outcome === "neutral") {
      if (s) s.probing = false;
      return;
    }
    const state = s ?? { failures: 0, openUntil: 0, probing: false };
    state.failures += 1;
    state.probing = false;
    if (state.failures >= this.failuresToOpen) state.openUntil = this.now() + this.cooldownMs;
    this.hosts.set(host, state);
    if (this.hosts.size > MAX_HOSTS) this.prune();
  }

  // Hosts that failed a little, or whose circuit has been half-open for a while unvisited, are
  // forgotten first: the map stays bounded however many different hosts clients name.
  private prune(): void {
    const stale = this.now() - this.cooldownMs;
    for (const [host, s] of this.hosts)
      if (!s.probing && (s.failures < this.failuresToOpen || s.openUntil < stale)) this.hosts.delete(host);
  }

  /** Whether `host`'s circuit is open or half-open (for logs and tests). */
  isOpen(host: string): boolean {
    const s = this.hosts.get(host);
    return s !== undefined && s.failures >= this.failuresToOpen;
  }
}
