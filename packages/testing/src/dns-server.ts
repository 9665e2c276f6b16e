import { createSocket } from "node:dgram";
import { once } from "node:events";
import { isIP } from "node:net";

/** What a {@link startDnsServer} answers for one question: addresses, or `null` for NXDOMAIN. */
export type DnsAnswer = readonly string[] | null;

/**
 * How the server answers a question (`name` lower-cased, without the trailing dot; `type` "A" or
 * "AAAA"). `"silent"` never answers anything: a nameserver that hangs.
 */
export type DnsHandler = ((name: string, type: "A" | "AAAA") => DnsAnswer) | "silent";

export interface DnsServer {
  /** `127.0.0.1:PORT`, for `dns.Resolver#setServers` or WEBHOOK_DNS_SERVERS. */
  address: string;
  /** Questions received so far, as `TYPE name`. */
  questions: string[];
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;

function ipv6Bytes(address: string): Buffer {
  const [head = "", tail] = address.split("::");
  const parts = (s: string) => (s ? s.split(":") : []);
  const h = parts(head);
  const t = tail === undefined ? [] : parts(tail);
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return out;
}

/** Reads the question's name; returns it and the offset just past it. */
function readName(msg: Buffer, offset: number): [string, number] {
  const labels: string[] = [];
  let at = offset;
  while (at < msg.length) {
    const len = msg[at]!;
    at += 1;
    if (len === 0) break;
    labels.push(msg.subarray(at, at + len).toString("latin1"));
    at += len;
  }
  return [labels.join(".").toLowerCase(), at];
}

/**
 * A tiny authoritative DNS server over UDP on 127.0.0.1 (A and AAAA only), for tests of code
 * that resolves with c-ares (`dns.Resolver`): real queries, real sockets, answers from `handler`.
 * Other question types get an empty answer.
 */
export async function startDnsServer(handler: DnsHandler): Promise<DnsServer> {
  const socket = createSocket("udp4");
  const questions: string[] = [];
  socket.on("message", (msg, peer) => {
    if (msg.length < 12) return;
    const [name, end] = readName(msg, 12);
    const qtype = msg.readUInt16BE(end);
    const typeName = qtype === TYPE_A ? "A" : qtype === TYPE_AAAA ? "AAAA" : String(qtype);
    questions.push(`${typeName} ${name}`);
    if (handler === "silent") return;
    const question = msg.subarray(12, end + 4);
    const found = typeName === "A" || typeName === "AAAA" ? handler(name, typeName) : [];
    const wanted = qtype === TYPE_A ? 4 : 6;
    const addresses = (found ?? []).filter((a) => isIP(a) === wanted);
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0);
    // QR, AA, RD copied, RA; RCODE 3 (NXDOMAIN) for an unknown name.
    header.writeUInt16BE(0x8480 | (msg.readUInt16BE(2) & 0x0100) | (found === null ? 3 : 0), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(addresses.length, 6);
    const answers = addresses.map((a) => {
      const rdata = wanted === 4 ? Buffer.from(a.split(".").map(Number)) : ipv6Bytes(a);
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // a pointer to the question's name
      rr.writeUInt16BE(qtype, 2);
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([rr, rdata]);
    });
    socket.send(Buffer.concat([header, question, ...answers]), peer.port, peer.address);
  });
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  return {
    address: `127.0.0.1:${socket.address().port}`,
    questions,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
