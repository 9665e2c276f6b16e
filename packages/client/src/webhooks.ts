import type { JobObject } from "@hybrid/protocol";
import { fromBase64 } from "./base64.ts";

/** Thrown by {@link verifyWebhook} for a delivery that must not be trusted. */
export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}

/** Request headers as a fetch `Headers`, or a plain record such as Node's `req.headers`. */
export type WebhookHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

export interface VerifyWebhookOptions {
  /** How far the `webhook-timestamp` may be from now, either way, in seconds. @defaultValue 300 */
  toleranceSeconds?: number;
  /** The current time in ms since the epoch (tests). @defaultValue `Date.now()` */
  now?: number;
}

const PREFIX = "whsec_";
const encoder = new TextEncoder();

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
  for (const [key, value] of Object.entries(
    headers as Record<string, string | readonly string[] | undefined>,
  ))
    if (key.toLowerCase() === name) return typeof value === "string" ? value : value?.join(", ");
  return undefined;
}

/** Compares two byte strings in time that depends only on their lengths. */
function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

async function hmacKey(secret: string) {
  let raw: Uint8Array<ArrayBuffer>;
  try {
    raw = fromBase64(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret);
  } catch {
    throw new TypeError('The webhook secret is not "whsec_" followed by base64.');
  }
  if (raw.length === 0) throw new TypeError("The webhook secret is empty.");
  return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

/**
 * Verifies a webhook delivery per Standard Webhooks and returns the job it carries.
 *
 * The signature is HMAC-SHA256, keyed with the base64 part of `secret`, over
 * `${webhook-id}.${webhook-timestamp}.${body}`; `webhook-signature` holds one or more
 * space-separated `v1,<base64>` entries, one of which must match (compared in constant time).
 * A timestamp more than `toleranceSeconds` from now is refused, so a captured delivery cannot
 * be replayed later. Pass the body exactly as received (raw bytes or their text), never
 * re-serialised JSON. Deduplicate deliveries on the `webhook-id` header (retries repeat it).
 *
 * Uses WebCrypto only: works in Node 20+, browsers, Deno, Bun and edge runtimes.
 *
 * @param secret - the signing secret, `whsec_…` (the API key's, or the service's `WEBHOOK_SECRET`)
 * @param rawBody - the request body as received
 * @param headers - the request headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
 * @throws WebhookVerificationError when a header is missing, the timestamp is out of tolerance,
 *   or no signature matches; TypeError for a malformed secret.
 */
export async function verifyWebhook(
  secret: string,
  rawBody: string | Uint8Array,
  headers: WebhookHeaders,
  options: VerifyWebhookOptions = {},
): Promise<JobObject> {
  const key = await hmacKey(secret);
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError("Missing required headers.");
  if (!/^\d{1,15}$/.test(timestamp.trim())) throw new WebhookVerificationError("Invalid webhook-timestamp.");
  const seconds = Number(timestamp.trim());
  const now = Math.floor((options.now ?? Date.now()) / 1000);
  const tolerance = options.toleranceSeconds ?? 300;
  if (now - seconds > tolerance) throw new WebhookVerificationError("Message timestamp too old.");
  if (seconds - now > tolerance) throw new WebhookVerificationError("Message timestamp too new.");

  const body = typeof rawBody === "string" ? encoder.encode(rawBody) : rawBody;
  const prefix = encoder.encode(`${id}.${seconds}.`);
  const signed = new Uint8Array(prefix.length + body.length);
  signed.set(prefix);
  signed.set(body, prefix.length);
  const expected = new Uint8Array(await crypto.subtle.sign("HMAC", key, signed));

  let matched = false;
  for (const entry of signatures.trim().split(/\s+/)) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    let candidate: Uint8Array;
    try {
      candidate = fromBase64(entry.slice(comma + 1));
    } catch {
      continue;
    }
    // No early exit: every entry is compared, so timing does not tell which one matched.
    if (timingSafeEqual(candidate, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError("No matching signature found.");
  const text = typeof rawBody === "string" ? rawBody : new TextDecoder().decode(rawBody);
  try {
    return JSON.parse(text) as JobObject;
  } catch {
    throw new WebhookVerificationError("The signed body is not JSON.");
  }
}
