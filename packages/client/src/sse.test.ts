import { describe, expect, it } from "vitest";
import { readSse, type SseMessage, SseParser } from "./sse.ts";

// Every feature of the format at once: LF, CRLF and CR line ends, comments, multi-line data,
// a field without a colon, no space after the colon, an id kept across events, an event with
// no data (not dispatched), retry, non-ASCII text, and an unfinished event at the end.
const STREAM =
  "\uFEFF: keep-alive\n\n" +
  'id: 1-0\nevent: queued\ndata: {"a":1}\n\n' +
  "id: 2-0\r\nevent: started\r\ndata: line one\r\ndata:line two\r\n\r\n" +
  "event: progress\rdata: no new id \u00e9 \ud83d\ude00\r\r" +
  ": a comment\nevent: ignored\n\n" +
  "retry: 1500\ndata\ndata: : colon kept\n\n" +
  'id: 3-0\nunknown: field\nevent: succeeded\ndata: {"done":true}\n\n' +
  "id: 4-0\nevent: never\ndata: unfinished";

const EXPECTED: SseMessage[] = [
  { id: "1-0", event: "queued", data: '{"a":1}' },
  { id: "2-0", event: "started", data: "line one\nline two" },
  { id: "2-0", event: "progress", data: "no new id \u00e9 \ud83d\ude00" },
  { id: "2-0", event: "message", data: "\n: colon kept" },
  { id: "3-0", event: "succeeded", data: '{"done":true}' },
];

function parseChunks(chunks: string[]): { events: SseMessage[]; parser: SseParser } {
  const parser = new SseParser();
  const events = chunks.flatMap((c) => parser.push(c));
  parser.end();
  return { events, parser };
}

/** A deterministic PRNG for the random splits. */
function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const streamOf = (chunks: Uint8Array[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });

async function collect(it: AsyncIterable<SseMessage>) {
  const out: SseMessage[] = [];
  for await (const m of it) out.push(m);
  return out;
}

describe("SseParser", () => {
  it("parses the whole stream in one chunk", () => {
    const { events, parser } = parseChunks([STREAM]);
    expect(events).toEqual(EXPECTED);
    expect(parser.retry).toBe(1500);
    expect(parser.lastEventId).toBe("4-0");
  });

  it("gives the same events for every split into two chunks", () => {
    for (let i = 0; i <= STREAM.length; i++)
      expect(parseChunks([STREAM.slice(0, i), STREAM.slice(i)]).events, `split at ${i}`).toEqual(EXPECTED);
  });

  it("gives the same events one character at a time and for random splits", () => {
    expect(parseChunks([...STREAM]).events).toEqual(EXPECTED);
    const random = mulberry32(42);
    for (let round = 0; round < 500; round++) {
      const chunks: string[] = [];
      let at = 0;
      while (at < STREAM.length) {
        const n = Math.floor(random() * 12);
        chunks.push(STREAM.slice(at, at + n));
        at += n;
      }
      expect(parseChunks(chunks).events, JSON.stringify(chunks)).toEqual(EXPECTED);
    }
  });

  it("keeps a CR at a chunk's end and an LF opening the next as one line end", () => {
    expect(parseChunks(["data: a\r", "\n\r", "\n"]).events).toEqual([
      { id: undefined, event: "message", data: "a" },
    ]);
    // CR CR is two line ends: the blank line dispatches.
    expect(parseChunks(["data: b\r", "\r"]).events).toEqual([{ id: undefined, event: "message", data: "b" }]);
  });

  it("starts from a given last event id and ignores ids with NUL", () => {
    const parser = new SseParser("9-9");
    expect(parser.push("id: bad\0id\ndata: x\n\n")).toEqual([{ id: "9-9", event: "message", data: "x" }]);
  });
});

describe("readSse", () => {
  it("decodes UTF-8 split anywhere, even inside a character", async () => {
    const bytes = new TextEncoder().encode(STREAM.slice(1)); // TextDecoder drops the BOM itself
    for (let i = 0; i <= bytes.length; i++) {
      const events = await collect(readSse(streamOf([bytes.subarray(0, i), bytes.subarray(i)])));
      expect(events, `split at byte ${i}`).toEqual(EXPECTED);
    }
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes]);
    expect(await collect(readSse(streamOf([bom.subarray(0, 2), bom.subarray(2)])))).toEqual(EXPECTED);
  });

  it("cancels the body when the consumer stops early", async () => {
    let canceled = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new TextEncoder().encode("data: tick\n\n"));
      },
      cancel() {
        canceled = true;
      },
    });
    for await (const m of readSse(body)) {
      expect(m.data).toBe("tick");
      break;
    }
    expect(canceled).toBe(true);
  });
});
