/** One dispatched Server-Sent Event. */
export interface SseMessage {
  /** The last event id seen so far (ids persist across events, as in `EventSource`). */
  id: string | undefined;
  /** The `event:` field, `"message"` when absent. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
}

/**
 * An incremental `text/event-stream` parser following the WHATWG HTML spec's "event stream
 * interpretation": fed text in chunks split anywhere (inside a line, between `\r` and `\n`), it
 * returns each event once its blank line arrives. Handles `\n`, `\r\n` and `\r` line ends, a
 * leading BOM, `:` comments, multi-line `data`, `id` (kept across events) and `retry`.
 */
export class SseParser {
  /** The last `retry:` value (ms), if the server sent one. */
  retry: number | undefined;
  private lastId: string | undefined;
  private partial = "";
  private data: string[] = [];
  private event = "";
  private started = false;
  /** The previous chunk ended with `\r`: a `\n` opening the next one ends the same line. */
  private afterCR = false;

  constructor(lastEventId?: string) {
    this.lastId = lastEventId;
  }

  /** The id of the last event seen (what to send as `Last-Event-ID` when reconnecting). */
  get lastEventId(): string | undefined {
    return this.lastId;
  }

  /** Feeds decoded text; returns the events it completed. */
  push(text: string): SseMessage[] {
    const out: SseMessage[] = [];
    if (text.length === 0) return out;
    if (this.afterCR) {
      this.afterCR = false;
      if (text.charCodeAt(0) === 10) text = text.slice(1);
    }
    if (!this.started) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.partial + text.slice(start, i);
      this.partial = "";
      this.line(line, out);
      if (c === 13) {
        if (i + 1 === text.length) this.afterCR = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.partial += text.slice(start);
    return out;
  }

  /**
   * Ends the stream. An event without its closing blank line is discarded, as the spec (and
   * `EventSource`) does: the server had not finished writing it.
   */
  end(): void {
    this.partial = "";
    this.data = [];
    this.event = "";
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === "") {
      if (this.data.length > 0)
        out.push({ id: this.lastId, event: this.event || "message", data: this.data.join("\n") });
      this.data = [];
      this.event = "";
      return;
    }
    if (line.charCodeAt(0) === 58 /* ":" comment */) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
      // unknown fields are ignored
    }
  }
}

/**
 * The events of a `text/event-stream` body, read as they arrive. Stops reading (and cancels the
 * body) when the consumer stops iterating.
 */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  parser: SseParser = new SseParser(),
): AsyncGenerator<SseMessage, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  let done = false;
  try {
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      yield* parser.push(decoder.decode(chunk.value, { stream: true }));
    }
    done = true;
    yield* parser.push(decoder.decode());
    parser.end();
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
