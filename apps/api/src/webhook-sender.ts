import { AppError } from "@hybrid/protocol";
import { UnrecoverableError } from "bullmq";
import { Webhook } from "standardwebhooks";
import { Agent, fetch as undiciFetch } from "undici";
import type { WebhookResolver } from "./webhook-dns.ts";
import { checkWebhookUrl, guardedLookup, isTransientRefusal, REFUSED_ADDRESS } from "./webhook-guard.ts";

/** One webhook call, as stored in a `webhooks` job. Job data must stay small: BullMQ copies it as JSON. */
export interface WebhookDelivery {
  /** Where to POST; checked again before each attempt. */
  url: string;
  /** The Standard Webhooks `webhook-id`: the same on every retry, so receivers can deduplicate. */
  msgId: string;
  /** The JSON body, sent and signed byte for byte as given. */
  payload: string;
  /** The client's signing secret, `whsec_` followed by base64. */
  secret: string;
}

/** Options of {@link deliverWebhook}. */
export interface DeliverWebhookOptions {
  /** Milliseconds the whole request may take, response headers included, before the attempt fails. */
  timeoutMs: number;
  /** Hosts exempt from the address check (see `parseAllowedHosts`). */
  allowedHosts: readonly string[];
  /** Resolves the host for the check and the connection. @defaultValue the system's nameservers */
  resolver?: WebhookResolver;
  /** @defaultValue a fetch whose connections refuse internal addresses (see {@link guardedFetch}) */
  fetchImpl?: typeof fetch;
}

const agents = new Map<string, Agent>();
const resolverAgents = new WeakMap<WebhookResolver, Map<string, Agent>>();

/**
 * undici's fetch over a connection pool whose DNS lookups refuse internal addresses (unless
 * allowed): the address checked is the address connected to, whatever DNS says in between.
 */
export function guardedFetch(allowedHosts: readonly string[], resolver?: WebhookResolver): typeof fetch {
  const key = [...allowedHosts].sort().join(",");
  let pool = agents;
  if (resolver) {
    pool = resolverAgents.get(resolver) ?? new Map<string, Agent>();
    resolverAgents.set(resolver, pool);
  }
  let agent = pool.get(key);
  if (!agent) {
    agent = new Agent({ connect: { lookup: guardedLookup(allowedHosts, resolver) } });
    pool.set(key, agent);
  }
  const dispatcher = agent;
  return ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
    undiciFetch(input as never, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch;
}

/** Sent as `user-agent`, so receivers can tell our calls apart in their logs. */
export const WEBHOOK_USER_AGENT = "hybrid-inference-webhooks";

function unrecoverable(message: string, cause?: unknown): UnrecoverableError {
  const e = new UnrecoverableError(message);
  if (cause !== undefined) e.cause = cause;
  return e;
}

// 408 is the receiver timing out on us, the same as our own timeout: worth another try.
const isRetryableStatus = (status: number): boolean => status === 408 || status === 429 || status >= 500;

/**
 * Sends one webhook attempt: re-checks the URL, signs the payload per Standard Webhooks and POSTs it.
 * Retries are not done here: the `webhooks` queue's BullMQ backoff re-runs failed attempts.
 *
 * Redirects are never followed (a 3xx could point at an internal address) and count as failures.
 *
 * @returns the receiver's 2xx status.
 * @throws UnrecoverableError when no retry can help: the URL is now refused, the secret is not
 *   usable, or the receiver answered 3xx or 4xx (other than 408 and 429).
 * @throws Error (retried by BullMQ) on 408, 429, 5xx, network errors, timeouts and DNS outages
 *   (a nameserver that does not answer, as opposed to a name without address).
 */
export async function deliverWebhook(
  d: WebhookDelivery,
  opts: DeliverWebhookOptions,
): Promise<{ status: number }> {
  let url: URL;
  try {
    // DNS may have changed since the job was submitted: check the address this attempt will use.
    url = await checkWebhookUrl(d.url, opts.allowedHosts, opts.resolver ? { resolver: opts.resolver } : {});
  } catch (e) {
    // A nameserver that did not answer says nothing about the host: that attempt is retried.
    if (e instanceof AppError && !isTransientRefusal(e)) {
      throw unrecoverable(`Webhook refused: ${e.message}`, e);
    }
    throw new Error(`Webhook host lookup failed: ${(e as Error).message}`, { cause: e });
  }

  // Whole seconds: the header carries Unix seconds, and the signature must cover that same value.
  const timestamp = Math.floor(Date.now() / 1000);
  let signature: string;
  try {
    signature = new Webhook(d.secret).sign(d.msgId, new Date(timestamp * 1000), d.payload);
  } catch (e) {
    throw unrecoverable(`Webhook secret is not usable: ${(e as Error).message}`, e);
  }

  const fetchImpl = opts.fetchImpl ?? guardedFetch(opts.allowedHosts, opts.resolver);
  let res: Response;
  try {
    res = await fetchImpl(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": WEBHOOK_USER_AGENT,
        "webhook-id": d.msgId,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": signature,
      },
      body: d.payload,
      redirect: "manual",
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
  } catch (e) {
    const err = e as Error & { cause?: { code?: unknown } };
    if (err.cause?.code === REFUSED_ADDRESS)
      throw unrecoverable(`Webhook refused at connect: ${(err.cause as unknown as Error).message}`, e);
    const what =
      err.name === "TimeoutError"
        ? `timed out after ${opts.timeoutMs} ms`
        : `failed: ${err.name}: ${err.message}${typeof err.cause?.code === "string" ? ` (${err.cause.code})` : ""}`;
    throw new Error(`Webhook request ${what}`, { cause: e });
  }

  // The body is never read: cancelling it frees the socket instead of leaving it to the GC.
  await res.body?.cancel().catch(() => undefined);

  if (res.status >= 200 && res.status < 300) return { status: res.status };
  if (isRetryableStatus(res.status)) {
    throw new Error(`Webhook receiver answered ${res.status}; will retry.`);
  }
  const hint = res.status >= 300 && res.status < 400 ? " (redirects are not followed)" : "";
  throw unrecoverable(`Webhook receiver answered ${res.status}${hint}; not retrying.`);
}
