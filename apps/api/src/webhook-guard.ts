import { BlockList, isIP, type LookupFunction } from "node:net";
import { AppError } from "@hybrid/protocol";
import { isTransientLookupFailure, LookupError, WebhookResolver } from "./webhook-dns.ts";

/** Longest webhook URL accepted, in characters. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

type Family = "ipv4" | "ipv6";

// One BlockList per reason, so a refusal can say *why* an address is off limits.
const blockedRanges: ReadonlyArray<
  readonly [reason: string, ranges: ReadonlyArray<[string, number, Family]>]
> = [
  [
    "a loopback address",
    [
      ["127.0.0.0", 8, "ipv4"],
      ["::1", 128, "ipv6"],
    ],
  ],
  [
    "an unspecified address",
    [
      ["0.0.0.0", 8, "ipv4"],
      ["::", 128, "ipv6"],
    ],
  ],
  [
    "a private address",
    [
      ["10.0.0.0", 8, "ipv4"],
      ["172.16.0.0", 12, "ipv4"],
      ["192.168.0.0", 16, "ipv4"],
      // Unique local; also holds the AWS IMDS IPv6 endpoint fd00:ec2::254.
      ["fc00::", 7, "ipv6"],
      // Deprecated site-local, still routed inside some networks.
      ["fec0::", 10, "ipv6"],
    ],
  ],
  [
    // Holds the cloud metadata endpoint 169.254.169.254.
    "a link-local address",
    [
      ["169.254.0.0", 16, "ipv4"],
      ["fe80::", 10, "ipv6"],
    ],
  ],
  ["a carrier-grade NAT address", [["100.64.0.0", 10, "ipv4"]]],
  [
    "a multicast address",
    [
      ["224.0.0.0", 4, "ipv4"],
      ["ff00::", 8, "ipv6"],
    ],
  ],
  [
    "a reserved address",
    [
      // 240/4 includes the broadcast address 255.255.255.255.
      ["240.0.0.0", 4, "ipv4"],
      // IETF protocol assignments and the benchmarking net: never a real receiver.
      ["192.0.0.0", 24, "ipv4"],
      ["198.18.0.0", 15, "ipv4"],
    ],
  ],
  [
    // Examples in documentation: nothing real listens there, and some networks route them inside.
    "a documentation address",
    [
      ["192.0.2.0", 24, "ipv4"],
      ["198.51.100.0", 24, "ipv4"],
      ["203.0.113.0", 24, "ipv4"],
      ["2001:db8::", 32, "ipv6"],
    ],
  ],
  // Teredo hides its IPv4 server and client (obfuscated) inside the address: it cannot be
  // checked, and no webhook receiver needs it.
  ["a Teredo address", [["2001::", 32, "ipv6"]]],
  // The local-use NAT64 prefix (RFC 8215) maps to whatever the local translator decides.
  ["a local-use NAT64 address", [["64:ff9b:1::", 48, "ipv6"]]],
];

const blockLists: ReadonlyArray<readonly [string, BlockList]> = blockedRanges.map(([reason, ranges]) => {
  const list = new BlockList();
  for (const [network, prefix, family] of ranges) list.addSubnet(network, prefix, family);
  return [reason, list] as const;
});

function matchBlocked(address: string, family: Family): string | undefined {
  for (const [reason, list] of blockLists) if (list.check(address, family)) return reason;
  return undefined;
}

/** The eight 16-bit groups of an IPv6 address (no zone id), via the WHATWG URL canonical form. */
function ipv6Groups(address: string): number[] | undefined {
  let canonical: string;
  try {
    canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  // The canonical form is lower-case hex, with at most one "::" and no dotted tail.
  const [left = "", right] = canonical.split("::");
  const head = left ? left.split(":") : [];
  const tail = right ? right.split(":") : [];
  const groups =
    right === undefined
      ? head
      : [...head, ...Array<string>(8 - head.length - tail.length).fill("0"), ...tail];
  return groups.length === 8 ? groups.map((g) => Number.parseInt(g, 16)) : undefined;
}

const dotted = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;

/**
 * The IPv4 address carried inside an IPv6 one, for the forms that carry it in plain bits:
 * IPv4-mapped (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96),
 * NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16). Teredo obfuscates its address: skipped.
 */
function embeddedIpv4(g: readonly number[]): string | undefined {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0) {
    if (g4 === 0 && (g5 === 0 || g5 === 0xffff)) return dotted(g6, g7);
    if (g4 === 0xffff && g5 === 0) return dotted(g6, g7);
  }
  if (g0 === 0x64 && g1 === 0xff9b && (g2 === 1 || (g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0))) {
    return dotted(g6, g7);
  }
  if (g0 === 0x2002) return dotted(g1, g2);
  return undefined;
}

/**
 * Why an IP address may not receive webhooks, or `undefined` when it is a public address.
 *
 * @param address - an IPv4 or IPv6 literal without brackets; an IPv6 zone id (`%eth0`) is ignored.
 * @returns a phrase such as `"a loopback address"`, or `"not an IP address"` for anything else.
 */
export function blockedAddressReason(address: string): string | undefined {
  const bare = address.replace(/%.*$/, "");
  const version = isIP(bare);
  if (version === 4) return matchBlocked(bare, "ipv4");
  if (version !== 6) return "not an IP address";
  const direct = matchBlocked(bare, "ipv6");
  if (direct) return direct;
  const groups = ipv6Groups(bare);
  if (!groups) return "not an IP address";
  const v4 = embeddedIpv4(groups);
  const embedded = v4 === undefined ? undefined : matchBlocked(v4, "ipv4");
  return embedded && `${embedded} (embedded IPv4 ${v4})`;
}

/**
 * Hosts exempt from the address and port checks, from a comma-separated setting such as
 * `WEBHOOK_ALLOWED_HOSTS="127.0.0.1,hooks.internal:8443,[::1]:3000"`. An entry without a port
 * allows that host on any port; `host:port` (an IPv6 address in brackets) only on that port.
 *
 * @returns trimmed, lower-cased entries; empty entries dropped; `[]` for `undefined`.
 */
export function parseAllowedHosts(csv: string | undefined): string[] {
  if (!csv) return [];
  return csv
    .split(",")
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== "");
}

interface AllowedEntry {
  host: string;
  /** `null`: any port. */
  port: number | null;
}

/** `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address (no port). */
function parseAllowedEntry(entry: string): AllowedEntry {
  const e = entry.trim().toLowerCase();
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(e);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] ? Number(bracketed[2]) : null };
  const withPort = /^([^:]+):(\d+)$/.exec(e);
  if (withPort) return { host: withPort[1]!, port: Number(withPort[2]) };
  return { host: e, port: null };
}

/** Whether `host` (lower-case, IPv6 without brackets) is allowed, on `port` or on any port. */
function isAllowed(allowedHosts: readonly string[], host: string, port: number | null): boolean {
  return allowedHosts.some((entry) => {
    const a = parseAllowedEntry(entry);
    return a.host === host && (a.port === null || port === null || a.port === port);
  });
}

/** Ports a webhook may use on a host not in the allow list. */
const WEBHOOK_PORTS: ReadonlySet<number> = new Set([80, 443]);

function refuse(message: string, cause?: unknown): AppError {
  return new AppError("invalid_webhook", message, cause === undefined ? {} : { cause });
}

/** Used when a caller passes no resolver: the system's nameservers, default caps. */
let defaultResolver: WebhookResolver | undefined;
function resolverOr(r: WebhookResolver | undefined): WebhookResolver {
  if (r) return r;
  defaultResolver ??= new WebhookResolver();
  return defaultResolver;
}

// A refusal names the host, never an address a name resolved to: echoing those would make this
// check a free DNS lookup of internal names for anyone who can submit a job.
const withoutAddress = (reason: string): string => reason.replace(/ \(embedded IPv4 [^)]*\)$/, "");

/** Options of {@link checkWebhookUrl}. */
export interface CheckWebhookOptions {
  /** @defaultValue one with the system's nameservers */
  resolver?: WebhookResolver;
  /** The key the lookup counts against (a submission); none for a delivery's re-check. */
  owner?: string;
}

/**
 * Checks that a webhook URL is safe for the service to call, so a client cannot make it reach
 * internal services or cloud metadata (SSRF).
 *
 * The URL must be absolute `http:`/`https:`, without credentials and at most
 * {@link MAX_WEBHOOK_URL_LENGTH} characters. A host in `allowedHosts` (see
 * {@link parseAllowedHosts}) is accepted as is; any other host must use port 80 or 443 and is
 * resolved (A and AAAA, with `resolver`: c-ares, bounded in time and count) and refused if any of
 * its addresses is loopback, unspecified, private, link-local, carrier-grade NAT, multicast,
 * reserved, documentation, Teredo or local-use NAT64, including those addresses embedded in IPv6
 * (mapped, compatible, NAT64, 6to4). A refusal names the host and the reason, never the address a
 * name resolved to.
 *
 * This checks at one moment only: DNS may answer differently when the request is sent, so the
 * sender checks again just before each delivery.
 *
 * @param raw - the URL as the client sent it.
 * @param allowedHosts - entries exempt from the address and port checks (see {@link parseAllowedHosts}).
 * @returns the parsed URL.
 * @throws AppError `invalid_webhook` when the URL is malformed, refused, or its host does not
 *   resolve (its `cause` is the {@link LookupError}); `rate_limited` / `overloaded` (429) when
 *   too many lookups are in flight (see {@link WebhookResolver.resolve}).
 */
export async function checkWebhookUrl(
  raw: string,
  allowedHosts: readonly string[],
  opts: CheckWebhookOptions = {},
): Promise<URL> {
  if (raw.length > MAX_WEBHOOK_URL_LENGTH) {
    throw refuse(`The webhook URL is longer than ${MAX_WEBHOOK_URL_LENGTH} characters.`);
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch (e) {
    throw refuse("The webhook URL is not a valid absolute URL.", e);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw refuse(`The webhook URL must use http or https, not ${url.protocol.slice(0, -1)}.`);
  }
  if (url.username !== "" || url.password !== "") {
    throw refuse("The webhook URL must not contain credentials (user:password@).");
  }
  const host = url.hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (host === "") throw refuse("The webhook URL has no host.");
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
  if (isAllowed(allowedHosts, host, port)) return url;

  // An address literal is judged before its port: its reason is the more useful answer.
  if (isIP(host) !== 0) {
    const reason = blockedAddressReason(host);
    if (reason) throw refuse(`The webhook host ${host} is ${reason}; webhooks must go to a public address.`);
  }
  if (!WEBHOOK_PORTS.has(port)) {
    throw refuse(
      `The webhook URL must use port 80 or 443, not ${port} (other ports only for hosts in WEBHOOK_ALLOWED_HOSTS).`,
    );
  }
  if (isIP(host) !== 0) return url;

  let addresses: readonly string[];
  try {
    addresses = await resolverOr(opts.resolver).resolve(host, opts.owner);
  } catch (e) {
    if (e instanceof AppError) throw e;
    const why =
      e instanceof LookupError && e.code === "ETIMEOUT" ? ": its nameservers did not answer in time" : "";
    throw refuse(`The webhook host ${host} could not be resolved${why}.`, e);
  }
  // Every address counts: the HTTP client may pick any of them, so one internal address is enough to refuse.
  for (const address of addresses) {
    const reason = blockedAddressReason(address);
    if (reason) {
      throw refuse(
        `The webhook host ${host} resolves to ${withoutAddress(reason)}; webhooks must go to a public address.`,
      );
    }
  }
  return url;
}

/** Whether a refusal of {@link checkWebhookUrl} came from a lookup that may work when tried again. */
export function isTransientRefusal(e: AppError): boolean {
  const cause = e.cause;
  return cause instanceof LookupError && isTransientLookupFailure(cause.code);
}

/** The `code` of a connection refused by {@link guardedLookup}. */
export const REFUSED_ADDRESS = "EWEBHOOKADDRESS";

/**
 * A DNS lookup for the HTTP client that refuses internal addresses at connect time, so a host
 * that passed {@link checkWebhookUrl} cannot answer differently when the connection is made
 * (DNS rebinding). It resolves with `resolver` (c-ares), never with getaddrinfo. Hosts in
 * `allowedHosts` (any port: the URL's port was checked before) resolve as usual.
 */
export function guardedLookup(allowedHosts: readonly string[], resolver?: WebhookResolver): LookupFunction {
  const r = resolverOr(resolver);
  return (hostname, options, callback) => {
    const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
    r.resolve(host).then(
      (found) => {
        if (!isAllowed(allowedHosts, host, null)) {
          for (const address of found) {
            const reason = blockedAddressReason(address);
            if (reason) {
              const refused = Object.assign(new Error(`${hostname} resolves to ${address}, ${reason}.`), {
                code: REFUSED_ADDRESS,
              });
              return callback(refused, "", 0);
            }
          }
        }
        const wanted = options.family === 4 || options.family === 6 ? options.family : 0;
        const addresses = found
          .map((address) => ({ address, family: isIP(address) }))
          .filter((a) => wanted === 0 || a.family === wanted);
        const [first] = addresses;
        if (options.all) return callback(null, addresses);
        if (!first)
          return callback(
            Object.assign(new Error(`${hostname} has no address.`), { code: "ENOTFOUND" }),
            "",
            0,
          );
        callback(null, first.address, first.family);
      },
      (err: Error) => callback(err as NodeJS.ErrnoException, "", 0),
    );
  };
}
