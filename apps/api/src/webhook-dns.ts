import { promises as dnsPromises } from "node:dns";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { AppError } from "@hybrid/protocol";

/** Options of {@link WebhookResolver}. */
export interface WebhookResolverOptions {
  /** Nameservers (`ip` or `ip:port`, `[v6]:port`); empty: the system's (resolv.conf). */
  servers?: readonly string[];
  /** The most a lookup (A and AAAA together, every try) may take, in ms. @defaultValue 5000 */
  timeoutMs?: number;
  /** Lookups made for submissions at once, over all keys (more: 429 `overloaded`). @defaultValue 64 */
  maxLookups?: number;
  /** Lookups made for one key's submissions at once (more: 429 `rate_limited`). @defaultValue 4 */
  maxLookupsPerKey?: number;
  /** A hosts file read once, on the first lookup, and consulted before DNS. @defaultValue `/etc/hosts` */
  hostsFile?: string | null;
}

/** A failed lookup: `code` is c-ares' (`ENOTFOUND` when the name has no address, `ETIMEOUT`, ...). */
export class LookupError extends Error {
  readonly code: string;
  constructor(message: string, code: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
  }
}

/** Codes that say the name has no address, as opposed to a nameserver that did not answer. */
const NOT_FOUND = new Set(["ENOTFOUND", "ENODATA", "ENONAME"]);

/** Whether a failed lookup may succeed when tried again (the nameserver failed, not the name). */
export const isTransientLookupFailure = (code: unknown): boolean =>
  typeof code === "string" && !NOT_FOUND.has(code);

/** RFC 6761: `localhost` and every name under it is loopback, whatever DNS says. */
const LOOPBACK = ["127.0.0.1", "::1"] as const;
const isLocalhost = (host: string): boolean => host === "localhost" || host.endsWith(".localhost");

/** `/etc/hosts` → name → addresses (in file order; comments and malformed lines skipped). */
export function parseHostsFile(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
    if (!address || isIP(address.replace(/%.*$/, "")) === 0) continue;
    for (const name of names) {
      const key = name.toLowerCase();
      const list = out.get(key) ?? [];
      if (!list.includes(address)) list.push(address);
      out.set(key, list);
    }
  }
  return out;
}

/**
 * Resolves webhook hosts with c-ares (`dns.Resolver`), never with `dns.lookup`: getaddrinfo runs
 * on libuv's small thread pool, which `fs` shares, so a few names whose nameserver never answers
 * would stall every request's file reads. c-ares waits on sockets instead, and every lookup here
 * has a deadline (then it is canceled) and a place under two caps, overall and per key, so
 * lookups in flight are bounded by settings rather than by what clients send.
 *
 * The hosts file is read once (asynchronously) and consulted first, as getaddrinfo would;
 * `localhost` names are loopback without asking anyone.
 */
export class WebhookResolver {
  private readonly servers: readonly string[];
  private readonly timeoutMs: number;
  private readonly maxLookups: number;
  private readonly maxLookupsPerKey: number;
  private readonly hostsFile: string | null;
  private hosts: Promise<Map<string, string[]>> | undefined;
  private inFlight = 0;
  private readonly perKey = new Map<string, number>();

  constructor(opts: WebhookResolverOptions = {}) {
    this.servers = opts.servers ?? [];
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.maxLookups = opts.maxLookups ?? 64;
    this.maxLookupsPerKey = opts.maxLookupsPerKey ?? 4;
    this.hostsFile = opts.hostsFile === undefined ? "/etc/hosts" : opts.hostsFile;
    // Fails at startup, not at the first webhook, when a server is not an address.
    if (this.servers.length > 0) this.newResolver();
  }

  /** Lookups in flight for submissions (for tests and metrics). */
  get pending(): number {
    return this.inFlight;
  }

  /**
   * The addresses of `host` (IPv4 and IPv6), counted against the caps when `owner` is given
   * (submissions); lookups without an owner (deliveries, already bounded by the webhook worker's
   * concurrency) are not counted.
   *
   * @throws AppError `rate_limited` (429) when `owner` has its most lookups in flight, or
   *   `overloaded` (429) when the service has; both with `Retry-After: 1`.
   * @throws LookupError when the name has no address or no nameserver answered in time.
   */
  async resolve(host: string, owner?: string): Promise<string[]> {
    if (owner === undefined) return this.lookup(host);
    const mine = this.perKey.get(owner) ?? 0;
    if (mine >= this.maxLookupsPerKey)
      throw new AppError(
        "rate_limited",
        `This API key already has ${mine} webhook host lookups in flight (its limit is ${this.maxLookupsPerKey}); try again shortly.`,
        { retryAfterSeconds: 1 },
      );
    if (this.inFlight >= this.maxLookups)
      throw new AppError(
        "overloaded",
        `The service is resolving ${this.inFlight} webhook hosts already; try again shortly.`,
        { retryAfterSeconds: 1 },
      );
    this.inFlight++;
    this.perKey.set(owner, mine + 1);
    try {
      return await this.lookup(host);
    } finally {
      this.inFlight--;
      const left = (this.perKey.get(owner) ?? 1) - 1;
      if (left > 0) this.perKey.set(owner, left);
      else this.perKey.delete(owner);
    }
  }

  private async lookup(rawHost: string): Promise<string[]> {
    const host = rawHost.toLowerCase().replace(/\.$/, "");
    if (isIP(host) !== 0) return [host];
    const listed = (await this.hostsTable()).get(host);
    if (listed) return [...listed];
    if (isLocalhost(host)) return [...LOOPBACK];

    // One resolver per lookup: cancel() cancels everything on a resolver, so the deadline of one
    // lookup must not cut another's. Two tries of a third each; the deadline bounds the rest.
    const resolver = this.newResolver();
    const timer = setTimeout(() => resolver.cancel(), this.timeoutMs);
    try {
      const [v4, v6] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
      const addresses = [v4, v6].flatMap((r) => (r.status === "fulfilled" ? r.value : []));
      if (addresses.length > 0) return addresses;
      const codes = [v4, v6].flatMap((r) =>
        r.status === "rejected" ? [String((r.reason as { code?: unknown }).code ?? "EUNKNOWN")] : [],
      );
      const failed = codes.find((c) => !NOT_FOUND.has(c));
      if (failed === undefined) throw new LookupError(`${host} has no address`, "ENOTFOUND");
      if (failed === "ECANCELLED" || failed === "ETIMEOUT")
        throw new LookupError(`no nameserver answered for ${host} within ${this.timeoutMs} ms`, "ETIMEOUT");
      throw new LookupError(`looking up ${host} failed (${failed})`, failed);
    } finally {
      clearTimeout(timer);
    }
  }

  private newResolver(): dnsPromises.Resolver {
    const resolver = new dnsPromises.Resolver({
      timeout: Math.max(50, Math.floor(this.timeoutMs / 3)),
      tries: 2,
    });
    if (this.servers.length > 0) resolver.setServers([...this.servers]);
    return resolver;
  }

  private hostsTable(): Promise<Map<string, string[]>> {
    if (this.hosts === undefined) {
      const file = this.hostsFile;
      this.hosts =
        file === null
          ? Promise.resolve(new Map())
          : readFile(file, "utf8").then(parseHostsFile, () => new Map<string, string[]>());
    }
    return this.hosts;
  }
}

/**
 * Nameservers from a comma-separated setting such as `WEBHOOK_DNS_SERVERS="10.0.0.2,1.1.1.1:53"`;
 * `[]` (the system's) when unset or empty.
 */
export function parseDnsServers(csv: string | undefined): string[] {
  if (!csv) return [];
  return csv
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}
