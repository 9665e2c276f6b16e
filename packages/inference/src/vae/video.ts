import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** x264 speed/size trade-offs, fastest first. */
export type X264Preset =
  | "ultrafast"
  | "superfast"
  | "veryfast"
  | "faster"
  | "fast"
  | "medium"
  | "slow"
  | "slower"
  | "veryslow";

/** How to encode an mp4 answer. */
export interface Mp4Options {
  /** Frames in the input, `[frames, height, width, 3]`. */
  frames: number;
  width: number;
  height: number;
  /** @defaultValue 15 */
  fps?: number;
  /** The ffmpeg binary. @defaultValue {@link defaultFfmpegPath} */
  ffmpegPath?: string;
  /** x264 constant rate factor, 0 (lossless) to 51. @defaultValue 18 (visually near-lossless) */
  crf?: number;
  /** @defaultValue "medium" (x264's own default; encoding is small next to the video VAE's run) */
  preset?: X264Preset;
  /** ffmpeg is killed and the call rejects after this long. @defaultValue 120000 */
  timeoutMs?: number;
}

/** ffmpeg failed to start, exited non-zero, or ran past its time limit. */
export class VideoEncodeError extends Error {
  override readonly name = "VideoEncodeError";
  /** The end of ffmpeg's stderr (it runs with `-loglevel error`, so this is its complaint). */
  readonly stderr: string;

  constructor(message: string, stderr: string, options?: ErrorOptions) {
    super(message, options);
    this.stderr = stderr;
  }
}

const STDERR_TAIL_CHARS = 4096;

let cachedDefault: string | undefined;

/**
 * The binary shipped by `@ffmpeg-installer/ffmpeg` when it is present and executable, else
 * `ffmpeg` from PATH. Resolved once per process.
 */
export function defaultFfmpegPath(): string {
  cachedDefault ??= installerFfmpegPath() ?? "ffmpeg";
  return cachedDefault;
}

function installerFfmpegPath(): string | null {
  try {
    // Loaded lazily, not imported: the installer throws at load time when its platform package
    // is missing, which would otherwise break every importer of this package, mp4 or not.
    const installer = createRequire(import.meta.url)("@ffmpeg-installer/ffmpeg") as { path?: unknown };
    if (typeof installer.path !== "string") return null;
    accessSync(installer.path, constants.X_OK);
    return installer.path;
  } catch {
    return null;
  }
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}.`);
}

/**
 * Encodes RGB frames (`[frames, height, width, 3]` uint8) as an H.264 mp4 (yuv420p, BT.709,
 * `+faststart` so the index precedes the data and browsers can start playing at once).
 * Odd sizes are padded with one black row/column, since 4:2:0 chroma needs even dimensions.
 *
 * @throws RangeError when the options or the byte length do not describe the frames.
 * @throws VideoEncodeError when ffmpeg cannot run, fails, or exceeds `timeoutMs`.
 */
export async function encodeMp4(frames: Uint8Array, opts: Mp4Options): Promise<Buffer> {
  const { width, height } = opts;
  positiveInt("frames", opts.frames);
  positiveInt("width", width);
  positiveInt("height", height);
  const expected = opts.frames * width * height * 3;
  if (frames.length !== expected) {
    throw new RangeError(
      `${opts.frames} frames of ${width}x${height} RGB need ${expected} bytes, got ${frames.length}.`,
    );
  }
  const fps = opts.fps ?? 15;
  if (!(fps > 0 && Number.isFinite(fps))) throw new RangeError(`fps must be a positive number, got ${fps}.`);
  const crf = opts.crf ?? 18;
  if (!(crf >= 0 && crf <= 51)) throw new RangeError(`crf must be between 0 and 51, got ${crf}.`);

  const filters = [
    ...(width % 2 || height % 2 ? ["pad=ceil(iw/2)*2:ceil(ih/2)*2"] : []),
    // swscale converts with BT.601 unless told otherwise; convert with the matrix the stream is tagged with.
    "scale=out_color_matrix=bt709:out_range=tv",
    "format=yuv420p",
  ];

  // faststart rewrites the file to move the index first, which needs a seekable output, hence
  // a temporary file rather than stdout (fragmented mp4 on a pipe plays in fewer places).
  const dir = await mkdtemp(join(tmpdir(), "hybrid-mp4-"));
  const file = join(dir, "out.mp4");
  // biome-ignore format: one ffmpeg option per line reads best
  const args = [
    "-hide_banner", "-loglevel", "error",
    "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", `${width}x${height}`, "-framerate", String(fps),
    "-i", "pipe:0",
    "-an",
    "-vf", filters.join(","),
    "-c:v", "libx264", "-preset", opts.preset ?? "medium", "-crf", String(crf),
    "-pix_fmt", "yuv420p",
    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
    "-movflags", "+faststart",
    "-f", "mp4", "-y", file,
  ];
  try {
    await runFfmpeg(opts.ffmpegPath ?? defaultFfmpegPath(), args, frames, opts.timeoutMs ?? 120_000);
    return await readFile(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function runFfmpeg(bin: string, args: string[], input: Uint8Array, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    let settled = false;
    const settle = (err?: VideoEncodeError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      // Settle now rather than on "close": a killed process's own children can hold its stderr
      // open indefinitely, and "close" waits for that.
      child.stdin.destroy();
      child.stderr.destroy();
      settle(new VideoEncodeError(`ffmpeg did not finish within ${timeoutMs} ms and was killed.`, stderr));
    }, timeoutMs);

    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
    });
    child.on("error", (e) => {
      settle(new VideoEncodeError(`Could not run ffmpeg (${bin}): ${e.message}`, stderr, { cause: e }));
    });
    // EPIPE lands here when ffmpeg exits before reading all frames; its exit status and stderr
    // explain the failure better, and an unhandled stream error would crash the process.
    child.stdin.on("error", () => {});
    child.on("close", (code, signal) => {
      if (code === 0) return settle();
      const status = code === null ? `signal ${signal}` : `code ${code}`;
      const detail = stderr.trim().split("\n").slice(-3).join(" | ");
      settle(new VideoEncodeError(`ffmpeg exited with ${status}${detail ? `: ${detail}` : "."}`, stderr));
    });
    child.stdin.end(input);
  });
}
