// A small client of the async job API, as a user would write one with fetch.
import type { JobObject } from "@hybrid/protocol";
import { vi } from "vitest";
import { prepareDecode, type RemoteDecodeArgs } from "./diffusers-client.ts";

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: JobObject;
}

/** Parses a finished `text/event-stream` body into its events (comments skipped). */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split("\n\n")) {
    let id: string | undefined;
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":") || line === "") continue;
      const [field, ...rest] = line.split(":");
      const value = rest.join(":").replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length > 0) events.push({ id, event, data: JSON.parse(data.join("\n")) as JobObject });
  }
  return events;
}

/** The whole event stream of a job (it ends after the terminal event). */
export async function readEvents(base: string, id: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/v1/jobs/${id}/events`, { headers, signal: AbortSignal.timeout(60_000) });
  if (res.status !== 200) throw new Error(`events: ${res.status} ${await res.text()}`);
  return { res, events: parseSse(await res.text()) };
}

/** A decode request exactly as diffusers forms it, plus extra headers (Prefer, keys...). */
export function decodeRequest(base: string, args: RemoteDecodeArgs, extra: Record<string, string> = {}) {
  const { query, headers, body } = prepareDecode(args);
  return fetch(`${base}/v1/vae/sd-v1-tiny/decode?${query}`, {
    method: "POST",
    headers: { ...headers, ...extra },
    body,
  });
}

export async function getJob(
  base: string,
  id: string,
  headers: Record<string, string> = {},
): Promise<JobObject> {
  const res = await fetch(`${base}/v1/jobs/${id}`, { headers });
  if (res.status !== 200) throw new Error(`GET job: ${res.status} ${await res.text()}`);
  return (await res.json()) as JobObject;
}

/** Polls the job until `done(job)`, every 25 ms, failing after `timeoutMs`. */
export async function pollJob(
  base: string,
  id: string,
  done: (j: JobObject) => boolean,
  timeoutMs = 30_000,
  headers: Record<string, string> = {},
): Promise<JobObject> {
  return vi.waitFor(
    async () => {
      const job = await getJob(base, id, headers);
      if (!done(job)) throw new Error(`job ${id} still ${job.status} after ${timeoutMs} ms`);
      return job;
    },
    { timeout: timeoutMs, interval: 25 },
  );
}

export const finished = (j: JobObject) => ["succeeded", "failed", "canceled"].includes(j.status);

/** The bytes and the headers a client reads from an answer. */
export async function answer(res: Response) {
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    shape: res.headers.get("shape"),
    dtype: res.headers.get("dtype"),
    bytes: Buffer.from(await res.arrayBuffer()),
  };
}
