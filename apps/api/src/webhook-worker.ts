import { JobView, jobObjectOf, type WebhookDelivery } from "@hybrid/protocol";
import { openJobWorker, type QueueTarget } from "@hybrid/queue";
import { DelayedError, type Job, UnrecoverableError, type Worker } from "bullmq";
import type { Logger } from "pino";
import { ANONYMOUS } from "./auth.ts";
import type { KeyStore } from "./keys.ts";
import { type AttemptOutcome, HostBreaker } from "./webhook-breaker.ts";
import type { WebhookResolver } from "./webhook-dns.ts";
import { deliverWebhook } from "./webhook-sender.ts";

export interface WebhookWorkerOptions {
  /** The deployment's Redis and prefix. */
  target: QueueTarget;
  concurrency: number;
  /** Deliveries of one owner in flight at once in this process (see {@link OwnerSlots}). */
  perOwnerConcurrency: number;
  timeoutMs: number;
  allowedHosts: readonly string[];
  /** Signs deliveries of jobs made without an API key. */
  defaultSecret: string | undefined;
  /** Consecutive failures to a host that open its circuit, and how long it stays open. */
  breaker: { failures: number; cooldownMs: number };
  /**
   * A delivery older than this (ms since it was queued) is given up when its turn comes:
   * postponements do not use up attempts, so this bounds its life instead (about its whole
   * retry schedule).
   */
  maxAgeMs: number;
  /** Resolves receivers' hosts (c-ares). @defaultValue the system's nameservers */
  resolver?: WebhookResolver;
  /** Whether a progress delivery is still its job's newest (`JobEvents.isLatestProgress`). */
  isLatestProgress?: (jobId: string, msgId: string) => Promise<boolean>;
  /** Where the worker's connection errors go (the process's `RedisFaults`); absent: each is logged. */
  onError?: (err: Error) => void;
}

/** What a skipped (superseded) progress delivery returns as its status: nothing was sent. */
export const NOT_SENT = 0;

/**
 * Per-owner delivery slots in one process: at most `limit` deliveries of one owner at once, so a
 * receiver that hangs (each attempt holding a worker for WEBHOOK_TIMEOUT_MS) or is slow holds
 * only its owner's share of the worker's concurrency and other owners' deliveries go on. A
 * delivery over the limit is postponed by about the time its owner's deliveries take (their
 * recent average, or the age of the oldest one in flight if longer): soon for a fast receiver,
 * rarely re-tried for a hanging one.
 */
export class OwnerSlots {
  private readonly owners = new Map<string, { started: number[]; avgMs: number }>();

  constructor(
    private readonly limit: number,
    private readonly maxWaitMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes a slot: a function that gives it back, or `null` when the owner has none free. */
  take(owner: string): (() => void) | null {
    const state = this.owners.get(owner) ?? { started: [], avgMs: 0 };
    if (state.started.length >= this.limit) return null;
    const t0 = this.now();
    state.started.push(t0);
    this.owners.set(owner, state);
    return () => {
      const i = state.started.indexOf(t0);
      if (i >= 0) state.started.splice(i, 1);
      state.avgMs = state.avgMs === 0 ? this.now() - t0 : 0.8 * state.avgMs + 0.2 * (this.now() - t0);
      // An owner with nothing in flight is forgotten: the map holds only owners being served.
      if (state.started.length === 0) this.owners.delete(owner);
    };
  }

  /** ms to postpone a delivery of `owner` that found no free slot. */
  waitMs(owner: string): number {
    const state = this.owners.get(owner);
    const oldest = state?.started[0];
    const busy = Math.max(state?.avgMs ?? 0, oldest === undefined ? 0 : this.now() - oldest);
    return Math.min(this.maxWaitMs, Math.max(50, busy));
  }

  /** Deliveries of `owner` in flight. */
  inFlight(owner: string): number {
    return this.owners.get(owner)?.started.length ?? 0;
  }
}

const hostOf = (url: string): string => {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
};

/** Postpones `job` by about `ms` (plus up to half again, so postponed ones do not return as a herd), without using an attempt. */
async function postpone(job: Job, ms: number): Promise<never> {
  await job.moveToDelayed(Date.now() + Math.round(ms * (1 + Math.random() / 2)), job.token);
  throw new DelayedError();
}

/**
 * Delivers queued webhooks (the catalog's `webhook` kind), signed per the Standard Webhooks
 * spec. It runs in the API process, which holds the keys file and so the per-key secrets;
 * BullMQ retries failed attempts with exponential backoff (network errors, 429 and 5xx), keeping
 * the message id across them.
 *
 * Fair and quiet: each owner gets at most `perOwnerConcurrency` deliveries at once, a host that
 * keeps failing an owner's deliveries has them postponed by a circuit breaker (per owner and
 * host) instead of tying up workers,
 * and a progress delivery that a newer progress event of its job superseded is skipped.
 */
export function startWebhookWorker(keys: KeyStore, log: Logger, opts: WebhookWorkerOptions): Worker {
  const slots = new OwnerSlots(Math.min(opts.perOwnerConcurrency, opts.concurrency), opts.timeoutMs);
  const breaker = new HostBreaker(opts.breaker.failures, opts.breaker.cooldownMs);
  const worker = openJobWorker(
    opts.target,
    "webhook",
    "",
    async (d: WebhookDelivery, job) => {
      if (Date.now() - job.timestamp > opts.maxAgeMs)
        throw new UnrecoverableError("Webhook given up: it waited longer than its whole retry schedule.");
      if (
        d.event === "progress" &&
        opts.isLatestProgress &&
        !(await opts.isLatestProgress(d.jobId, d.msgId))
      ) {
        log.debug({ jobId: d.jobId, msgId: d.msgId }, "webhook progress superseded by a newer one; not sent");
        return { status: NOT_SENT };
      }
      const secret = d.owner === ANONYMOUS ? opts.defaultSecret : keys.byId(d.owner)?.webhook_secret;
      if (!secret) throw new UnrecoverableError("No secret to sign with: the API key was revoked.");
      // The queued payload is the job's view: the body is the job object a client reads.
      const payload = JSON.stringify(jobObjectOf(JobView.parse(JSON.parse(d.payload))));

      const release = slots.take(d.owner);
      if (!release) return postpone(job, slots.waitMs(d.owner));
      // One circuit per owner and receiver host: a tenant whose webhooks fail on a host others
      // use too (a shared receiver service) opens only its own circuit, never theirs.
      const host = hostOf(d.url);
      const circuit = `${d.owner} ${host}`;
      const closedFor = breaker.admit(circuit);
      if (closedFor > 0) {
        release();
        log.debug({ msgId: d.msgId, host, postponedMs: closedFor }, "webhook postponed: circuit open");
        return postpone(job, closedFor);
      }
      let outcome: AttemptOutcome = "failure";
      try {
        const { status } = await deliverWebhook(
          { url: d.url, msgId: d.msgId, payload, secret },
          {
            timeoutMs: opts.timeoutMs,
            allowedHosts: opts.allowedHosts,
            ...(opts.resolver ? { resolver: opts.resolver } : {}),
          },
        );
        outcome = "success";
        log.info(
          { jobId: d.jobId, event: d.event, msgId: d.msgId, status, attempt: job.attemptsMade + 1 },
          "webhook delivered",
        );
        return { status };
      } catch (e) {
        // Refused, or an answer no retry changes: the host is not what failed.
        if (e instanceof UnrecoverableError) outcome = "neutral";
        throw e;
      } finally {
        release();
        const wasOpen = breaker.isOpen(circuit);
        breaker.settle(circuit, outcome);
        if (!wasOpen && breaker.isOpen(circuit))
          log.warn(
            { owner: d.owner, host, cooldownMs: opts.breaker.cooldownMs },
            "webhook host keeps failing: circuit open",
          );
      }
    },
    { concurrency: opts.concurrency },
  );
  worker.on("failed", (job, err) =>
    log.warn(
      {
        msgId: job?.id,
        attempt: job ? job.attemptsMade : undefined,
        final: Boolean(job?.finishedOn),
        err: err.message,
      },
      "webhook attempt failed",
    ),
  );
  worker.on("error", opts.onError ?? ((err) => log.warn({ err: err.message }, "webhook queue error")));
  return worker;
}
