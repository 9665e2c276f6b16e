import { spawn } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultFfmpegPath, encodeMp4, VideoEncodeError } from "./video.ts";

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "video-test-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Frames `[F,H,W,3]` where frame f is a flat colour that differs per frame and per channel. */
function flatFrames(
  frames: number,
  width: number,
  height: number,
  colour: (f: number) => [number, number, number],
) {
  const data = new Uint8Array(frames * width * height * 3);
  for (let f = 0; f < frames; f++) {
    const [r, g, b] = colour(f);
    for (let p = 0; p < width * height; p++) data.set([r, g, b], (f * width * height + p) * 3);
  }
  return data;
}

/** Top-level mp4 box types, in file order. */
function topLevelBoxes(mp4: Buffer): string[] {
  const types: string[] = [];
  for (let at = 0; at + 8 <= mp4.length; ) {
    const size = mp4.readUInt32BE(at);
    types.push(mp4.toString("latin1", at + 4, at + 8));
    if (size < 8) break; // 0 (to end) or 1 (64-bit size) never appear in these small files
    at += size;
  }
  return types;
}

/** Decodes an mp4 back to rgb24 with the same ffmpeg: its frame size and the raw frames. */
async function decodeBack(
  mp4: Buffer,
): Promise<{ width: number; height: number; frames: number; rgb: Buffer }> {
  const file = join(scratch, `${Math.random().toString(36).slice(2)}.mp4`);
  await writeFile(file, mp4);
  const child = spawn(defaultFfmpegPath(), [
    "-hide_banner",
    "-i",
    file,
    "-f",
    "rawvideo",
    "-pix_fmt",
    "rgb24",
    "pipe:1",
  ]);
  const out: Buffer[] = [];
  let err = "";
  child.stdout.on("data", (c: Buffer) => out.push(c));
  child.stderr.on("data", (c: Buffer) => {
    err += c.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  expect(code, err).toBe(0);
  const m = /Stream #0:0.*Video: h264.*?, (\d+)x(\d+)/.exec(err);
  expect(m, err).not.toBeNull();
  const width = Number(m![1]);
  const height = Number(m![2]);
  const rgb = Buffer.concat(out);
  expect(rgb.length % (width * height * 3)).toBe(0);
  return { width, height, frames: rgb.length / (width * height * 3), rgb };
}

describe("defaultFfmpegPath", () => {
  it("finds the binary shipped by @ffmpeg-installer", () => {
    expect(defaultFfmpegPath()).toMatch(/@ffmpeg-installer[/\\].+[/\\]ffmpeg(\.exe)?$/);
  });
});

describe("encodeMp4", () => {
  it("writes a faststart H.264 mp4 with every frame", async () => {
    const [F, W, H] = [9, 64, 48];
    const colour = (f: number): [number, number, number] => [20 + f * 20, 200 - f * 15, 100];
    const mp4 = await encodeMp4(flatFrames(F, W, H, colour), { frames: F, width: W, height: H });
    expect(mp4.toString("latin1", 4, 8)).toBe("ftyp");
    const boxes = topLevelBoxes(mp4);
    expect(boxes.indexOf("moov")).toBeGreaterThan(0);
    expect(boxes.indexOf("moov")).toBeLessThan(boxes.indexOf("mdat"));

    const back = await decodeBack(mp4);
    expect([back.width, back.height, back.frames]).toEqual([W, H, F]);
    // Colours survive (yuv420p + CRF 18 on flat frames): check the centre pixel of each frame.
    for (let f = 0; f < F; f++) {
      const o = (f * W * H + (H / 2) * W + W / 2) * 3;
      const got = [...back.rgb.subarray(o, o + 3)];
      const want = colour(f);
      for (let c = 0; c < 3; c++) {
        expect(Math.abs(got[c]! - want[c]!), `frame ${f} channel ${c}`).toBeLessThanOrEqual(6);
      }
    }
  });

  it("pads odd sizes to even and encodes a single frame", async () => {
    const [W, H] = [33, 17];
    const mp4 = await encodeMp4(
      flatFrames(1, W, H, () => [230, 230, 230]),
      { frames: 1, width: W, height: H, fps: 24 },
    );
    expect(mp4.toString("latin1", 4, 8)).toBe("ftyp");
    const back = await decodeBack(mp4);
    expect([back.width, back.height, back.frames]).toEqual([W + 1, H + 1, 1]);
    const px = (x: number, y: number) => back.rgb[(y * (W + 1) + x) * 3]!;
    expect(px(16, 8)).toBeGreaterThan(220); // the picture
    expect(px(W, H)).toBeLessThan(40); // the black padding corner
  });

  it("rejects a frame buffer that does not match the size", async () => {
    await expect(encodeMp4(new Uint8Array(10), { frames: 1, width: 2, height: 2 })).rejects.toThrow(
      RangeError,
    );
    await expect(encodeMp4(new Uint8Array(12), { frames: 1, width: 2, height: 2, fps: 0 })).rejects.toThrow(
      /fps/,
    );
  });

  it("reports a missing binary", async () => {
    const e = await encodeMp4(new Uint8Array(12), {
      frames: 1,
      width: 2,
      height: 2,
      ffmpegPath: join(scratch, "none"),
    }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(VideoEncodeError);
    expect((e as Error).message).toMatch(/Could not run ffmpeg/);
  });

  it("rejects with ffmpeg's complaint when it exits early, even with frames still unwritten", async () => {
    // 12 MB of frames: ffmpeg fails at encoder setup long before reading them (EPIPE on stdin).
    const [F, W, H] = [60, 256, 256];
    const e = await encodeMp4(new Uint8Array(F * W * H * 3), {
      frames: F,
      width: W,
      height: H,
      preset: "no-such-preset" as "medium",
    }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(VideoEncodeError);
    expect((e as Error).message).toMatch(/exited with code [1-9]/);
    expect((e as VideoEncodeError).stderr).toMatch(/preset/i);
  });

  it("kills an ffmpeg that hangs and rejects after timeoutMs", async () => {
    // Without exec, sh keeps a child that holds stderr open after sh itself is killed.
    const hang = join(scratch, "hang.sh");
    await writeFile(hang, "#!/bin/sh\nsleep 5\n");
    await chmod(hang, 0o755);
    const started = Date.now();
    const e = await encodeMp4(new Uint8Array(12), {
      frames: 1,
      width: 2,
      height: 2,
      ffmpegPath: hang,
      timeoutMs: 300,
    }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(VideoEncodeError);
    expect((e as Error).message).toMatch(/did not finish within 300 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
