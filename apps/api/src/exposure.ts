import { isIP } from "node:net";
import { AppError } from "@hybrid/protocol";
import type { RequestHandler } from "express";

// Who may reach the API, decided once at start (fail closed) and checked on every request (Host
// header, cross-site browser requests). See the README's "Security" section.

/** Whether `HOST` (an address to listen on) is reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || /^::ffff:127\./.test(h);
  return false;
}

/** What the start-up check looks at. */
export interface ExposureFacts {
  /** `HOST`. */
  host: string;
  /** Whether the keys file holds at least one key. */
  keysEnabled: boolean;
  /** `ALLOW_ANONYMOUS`. */
  allowAnonymous: boolean;
  /** The keys file's path, and whether `API_KEYS_FILE` named it (rather than the default). */
  keysFile: string;
  keysFileExplicit: boolean;
  keysFileExists: boolean;
}

/**
 * Why the API must not start as configured, as one sentence that says what to do; null when it
 * may. Fails closed: an explicitly named keys file that is missing (a secret that was not
 * mounted) would otherwise open the API to everyone, and so would listening on a network
 * address without keys.
 */
export function startupRefusal(f: ExposureFacts): string | null {
  if (f.keysFileExplicit && !f.keysFileExists)
    return (
      `API_KEYS_FILE names ${f.keysFile}, which does not exist: refusing to start without the keys it should hold. ` +
      "Create it (pnpm keys create NAME), fix the path or the mount, or unset API_KEYS_FILE."
    );
  if (!f.keysEnabled && !isLoopbackHost(f.host) && !f.allowAnonymous)
    return (
      `HOST=${f.host} listens beyond this machine but there are no API keys in ${f.keysFile}: refusing to start open to anyone. ` +
      "Create a key (pnpm keys create NAME), listen on loopback (HOST=127.0.0.1), or set ALLOW_ANONYMOUS=true to serve everyone."
    );
  return null;
}

/** One entry of `ALLOWED_HOSTS`: a host name, and a port or null for any. */
export interface AllowedHost {
  name: string;
  port: string | null;
}

/** The loopback names, any port: what a local instance answers by default. */
export const LOOPBACK_NAMES: AllowedHost[] = ["localhost", "127.0.0.1", "[::1]"].map((name) => ({
  name,
  port: null,
}));

/** Splits a `Host` header (or an `ALLOWED_HOSTS` entry) into a lower-case name and a port. */
function splitHost(value: string): AllowedHost {
  const v = value.trim().toLowerCase();
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(v);
  // A bare IPv6 address (no brackets) in ALLOWED_HOSTS: the whole value is the name.
  if (!m) return { name: isIP(v) === 6 ? `[${v}]` : v, port: null };
  return { name: m[1] ?? "", port: m[2] ? m[2] : null };
}

/**
 * The hosts the API answers: null for any. `ALLOWED_HOSTS` when set (`*` is any); unset, the
 * loopback names while listening on loopback (a page on another site that rebinds its own name
 * to 127.0.0.1 sends its name as Host), any otherwise (a server reached by many names, e.g. a
 * pod IP and a service name; set ALLOWED_HOSTS there to pin them).
 */
export function allowedHostsOf(setting: string | undefined, host: string): AllowedHost[] | null {
  if (setting === undefined || setting.trim() === "") return isLoopbackHost(host) ? LOOPBACK_NAMES : null;
  const entries = setting
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.includes("*")) return null;
  return entries.map(splitHost);
}

/** Whether a `Host` header names one of the allowed hosts. */
export function hostAllowed(header: string | undefined, allowed: AllowedHost[] | null): boolean {
  if (allowed === null) return true;
  if (!header) return false;
  const h = splitHost(header);
  return allowed.some((a) => a.name === h.name && (a.port === null || a.port === h.port));
}

/**
 * Content types a browser may send cross-site without asking first (a CORS "simple" request):
 * no route takes them, so refusing them keeps other sites' pages from submitting work.
 */
const SIMPLE_TYPES = /^\s*(?:text\/plain|application\/x-www-form-urlencoded|multipart\/form-data)\s*(?:;|$)/i;

/** Paths that answer whatever the Host: probes and scrapers address a pod by its IP. */
const ANY_HOST_PATHS = /^\/(?:health\/|metrics$)/;

export interface RequestGuardOptions {
  /** The hosts the API answers ({@link allowedHostsOf}); null for any. */
  allowedHosts: AllowedHost[] | null;
  /** Whether the service has API keys now (open mode also refuses cross-site browser requests). */
  keysEnabled: () => boolean;
}

/**
 * Checks every request before routing: the `Host` header against the allowed hosts (403: DNS
 * rebinding), a CORS-simple content type on a request with a body (415), and, while the service
 * runs without keys, a browser request from another origin (403): with no key to present, the
 * `Origin` header is what tells another site's page from this service's own playground.
 */
export function requestGuard(opts: RequestGuardOptions): RequestHandler {
  return (req, _res, next) => {
    if (!ANY_HOST_PATHS.test(req.path) && !hostAllowed(req.headers.host, opts.allowedHosts))
      return next(
        new AppError(
          "forbidden",
          "This service does not answer for that host name (its ALLOWED_HOSTS setting lists the names it does).",
        ),
      );
    if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") return next();
    const type = req.headers["content-type"];
    if (type !== undefined && SIMPLE_TYPES.test(type))
      return next(
        new AppError(
          "unsupported_media_type",
          `Content-Type ${type.split(";")[0]!.trim()} is not accepted: send JSON as application/json, tensors as tensor/binary (or application/octet-stream), images as image/png, image/jpeg or image/webp.`,
        ),
      );
    const origin = req.headers.origin;
    if (origin !== undefined && !opts.keysEnabled() && !sameOrigin(origin, req.headers.host))
      return next(
        new AppError(
          "forbidden",
          "Requests from another site's page are refused while this service has no API keys.",
        ),
      );
    next();
  };
}

/** Whether an `Origin` header names the host the request was sent to. */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    return new URL(origin).host.toLowerCase() === host.toLowerCase();
  } catch {
    // `Origin: null` (a sandboxed frame, a file: page) is never this service's own page.
    return false;
  }
}
