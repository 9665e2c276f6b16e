import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { AppError, parseOrThrow } from "@hybrid/protocol";
import { z } from "zod";

/**
 * One API key as stored in the keys file. The key itself is never stored: only its SHA-256, so a
 * leaked keys file does not let anyone call the API (it does leak the webhook secrets).
 */
export const ApiKeyRecord = z.object({
  /** First 16 hex chars of the key's SHA-256: a stable owner id safe to log and to put in Redis keys. */
  id: z.string().regex(/^[0-9a-f]{16}$/, "must be 16 lowercase hex characters"),
  /** Unique human label, used by `pnpm keys revoke NAME`. */
  name: z.string().min(1).max(200),
  /** Hex SHA-256 of the full key. */
  hash: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex characters"),
  /** Models this key may use; `null` = all models. */
  models: z.array(z.string().min(1)).min(1).nullable(),
  /** Requests per minute, shared by every API instance; `null` = unlimited. */
  rate_per_minute: z.number().int().positive().nullable(),
  /** Jobs this key may have waiting or running at once; `null` = unlimited. */
  max_queued: z.number().int().positive().nullable(),
  /** Standard Webhooks secret (`whsec_` + base64 of 32 bytes) that signs this key's webhooks. */
  webhook_secret: z.string().regex(/^whsec_[A-Za-z0-9+/]+={0,2}$/, "must be whsec_ followed by base64"),
  /** ISO 8601 creation time. */
  created_at: z.iso.datetime({ offset: true }),
});
export type ApiKeyRecord = z.infer<typeof ApiKeyRecord>;

/** The whole keys file. Names must be unique: `revoke NAME` has to mean exactly one key. */
export const KeysFile = z.object({ keys: z.array(ApiKeyRecord) }).superRefine((file, ctx) => {
  const seen = new Set<string>();
  for (const [i, record] of file.keys.entries()) {
    if (seen.has(record.name)) {
      ctx.addIssue({ code: "custom", path: ["keys", i, "name"], message: `duplicate name "${record.name}"` });
    }
    seen.add(record.name);
  }
});
export type KeysFile = z.infer<typeof KeysFile>;

/** Options of {@link createKey}. Each limit left out (or `null`) means unlimited. */
export interface CreateKeyOptions {
  /** Models the key may use. @defaultValue `null` (all models) */
  models?: string[] | null;
  /** Requests per minute. @defaultValue `null` (unlimited) */
  ratePerMinute?: number | null;
  /** Jobs waiting or running at once. @defaultValue `null` (unlimited) */
  maxQueued?: number | null;
}

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();

const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException | undefined)?.code === "ENOENT";

/** Parses the file's text; any problem becomes one Error that names the file. */
function parseKeysFile(path: string, text: string): KeysFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`Keys file ${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  const result = KeysFile.safeParse(json);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new Error(`Keys file ${path} is invalid: ${issues.join("; ")}`, { cause: result.error });
  }
  return result.data;
}

async function readKeysFile(path: string): Promise<KeysFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if (isMissing(e)) return { keys: [] };
    throw e;
  }
  return parseKeysFile(path, text);
}

/**
 * Replaces the file in one step: readers (a running API) see the old or the new file, never half
 * of one. Mode 0600 because the file holds webhook secrets. Two writers at once are not serialized:
 * the last rename wins, which is fine for an operator's CLI.
 */
async function writeKeysFile(path: string, file: KeysFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await open(temp, "wx", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(file, null, 2)}\n`, "utf8");
    // Flush before the rename so a crash cannot leave an empty file under the real name.
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, path);
  } catch (e) {
    await unlink(temp).catch(() => undefined);
    throw e;
  }
}

/**
 * Creates a key named `name` and stores its record (never the key) in the keys file at `path`,
 * creating the file (mode 0600) if it is missing.
 *
 * @returns the key, to hand to its holder now (it cannot be recovered later), and its record.
 * @throws AppError `invalid_parameter` when the name is taken or an option is out of range.
 */
export async function createKey(
  path: string,
  name: string,
  options: CreateKeyOptions = {},
): Promise<{ key: string; record: ApiKeyRecord }> {
  const file = await readKeysFile(path);
  if (file.keys.some((k) => k.name === name)) {
    throw new AppError("invalid_parameter", `A key named "${name}" already exists.`);
  }
  // 32 random bytes: guessing is hopeless, so a fast unsalted hash is enough to store it.
  const key = `hik_${randomBytes(32).toString("base64url")}`;
  const hash = sha256(key).toString("hex");
  const record = parseOrThrow(ApiKeyRecord, {
    id: hash.slice(0, 16),
    name,
    hash,
    models: options.models ?? null,
    rate_per_minute: options.ratePerMinute ?? null,
    max_queued: options.maxQueued ?? null,
    webhook_secret: `whsec_${randomBytes(32).toString("base64")}`,
    created_at: new Date().toISOString(),
  } satisfies ApiKeyRecord);
  await writeKeysFile(path, { keys: [...file.keys, record] });
  return { key, record };
}

/**
 * Removes the key named `name` from the keys file. A running {@link KeyStore} that
 * {@link KeyStore.watch}es the file stops accepting it within about a second.
 *
 * @returns whether a key was removed (the file is left untouched when none matched).
 */
export async function revokeKey(path: string, name: string): Promise<boolean> {
  const file = await readKeysFile(path);
  const keys = file.keys.filter((k) => k.name !== name);
  if (keys.length === file.keys.length) return false;
  await writeKeysFile(path, { keys });
  return true;
}

/** The records in the keys file, in creation order; a missing file has none. */
export async function listKeys(path: string): Promise<ApiKeyRecord[]> {
  return (await readKeysFile(path)).keys;
}

/** Options of {@link KeyStore.open}. */
export interface KeyStoreOptions {
  /**
   * Called when a reload fails (unreadable or malformed file); the store keeps its previous keys.
   * Called once per bad version of the file, not on every check.
   */
  onError?: (error: Error) => void;
  /** Least time between two checks of the file's mtime, in ms. @defaultValue 1000 */
  checkIntervalMs?: number;
}

interface LoadedKey {
  record: ApiKeyRecord;
  hash: Buffer;
}

/** What identifies one version of the file: a rename gives a new inode even within one mtime tick. */
type Signature = string;
const MISSING: Signature = "missing";

/**
 * The API's view of the keys file: authenticates presented keys and follows edits to the file
 * (`pnpm keys create/revoke`) without a restart.
 */
export class KeyStore {
  readonly path: string;
  private keys: LoadedKey[];
  private signature: Signature;
  private everEnabled: boolean;
  private lastCheck: number;
  private pending: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly onError: ((error: Error) => void) | undefined;
  private readonly checkIntervalMs: number;

  private constructor(path: string, file: KeysFile, signature: Signature, options: KeyStoreOptions) {
    this.path = path;
    this.keys = KeyStore.load(file);
    this.signature = signature;
    this.everEnabled = this.keys.length > 0;
    this.lastCheck = Date.now();
    this.onError = options.onError;
    this.checkIntervalMs = options.checkIntervalMs ?? 1000;
  }

  /**
   * Loads the keys file at `path`; a missing file means no keys.
   *
   * @throws Error naming the file when it is unreadable or malformed, so the API refuses to start
   *   rather than run with keys it did not mean to have.
   */
  static async open(path: string, options: KeyStoreOptions = {}): Promise<KeyStore> {
    const { file, signature } = await KeyStore.read(path);
    return new KeyStore(path, file, signature, options);
  }

  /**
   * Whether authentication is on: the file has held at least one key since the store opened.
   * It stays on once on, so revoking the last key (or deleting the file) locks everyone out
   * instead of silently opening the API to anyone; turning auth off takes a restart.
   */
  get enabled(): boolean {
    return this.everEnabled;
  }

  /** Number of keys currently loaded. */
  get size(): number {
    return this.keys.length;
  }

  /**
   * Reloads the file when it changed. Stats at most once per `checkIntervalMs`, and concurrent
   * callers share one check ({@link watch} calls it on a timer). Never throws: failures go to
   * `onError` and the previous keys stay in force.
   */
  refresh(): Promise<void> {
    if (this.pending !== undefined) return this.pending;
    const now = Date.now();
    if (now - this.lastCheck < this.checkIntervalMs) return Promise.resolve();
    this.lastCheck = now;
    this.pending = this.reload().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /**
   * The record whose key is `presented`, or `undefined`. Compares the SHA-256 of `presented` with
   * every stored hash in constant time and without stopping at a match, so response time does not
   * reveal which key (or how much of one) matched.
   */
  authenticate(presented: string | undefined): ApiKeyRecord | undefined {
    if (!presented) return undefined;
    const hash = sha256(presented);
    let found: ApiKeyRecord | undefined;
    for (const key of this.keys) {
      const equal = timingSafeEqual(hash, key.hash);
      if (equal && found === undefined) found = key.record;
    }
    return found;
  }

  /**
   * Re-checks the file every `checkIntervalMs` in the background, so that authentication never
   * waits for the file system: a `stat` runs on libuv's thread pool, which other work (file reads,
   * `dns.lookup`) can fill, and a request's auth must not queue behind it. Idempotent; the timer
   * does not keep the process alive.
   *
   * @returns a function that stops the checks.
   */
  watch(): () => void {
    if (this.timer === undefined) {
      this.timer = setInterval(() => void this.refresh(), Math.max(50, this.checkIntervalMs));
      this.timer.unref();
    }
    return () => {
      clearInterval(this.timer);
      this.timer = undefined;
    };
  }

  /** The record of a key id (the owner id of its jobs), if the key still exists. */
  byId(id: string): ApiKeyRecord | undefined {
    return this.keys.find((k) => k.record.id === id)?.record;
  }

  private async reload(): Promise<void> {
    try {
      const signature = await KeyStore.stat(this.path);
      if (signature === this.signature) return;
      const { file, signature: read } = await KeyStore.read(this.path);
      this.keys = KeyStore.load(file);
      this.signature = read;
      if (this.keys.length > 0) this.everEnabled = true;
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      // Remember the bad version so onError fires once for it; the next edit is tried again.
      const signature = await KeyStore.stat(this.path).catch(() => undefined);
      if (signature !== undefined && signature === this.signature) return;
      if (signature !== undefined) this.signature = signature;
      this.onError?.(error);
    }
  }

  private static async stat(path: string): Promise<Signature> {
    try {
      const s = await stat(path, { bigint: true });
      return `${s.ino}:${s.size}:${s.mtimeNs}`;
    } catch (e) {
      if (isMissing(e)) return MISSING;
      throw e;
    }
  }

  /** Stats before reading: if the file changes in between, the next check sees a new signature. */
  private static async read(path: string): Promise<{ file: KeysFile; signature: Signature }> {
    const signature = await KeyStore.stat(path);
    const file = await readKeysFile(path);
    return { file, signature };
  }

  private static load(file: KeysFile): LoadedKey[] {
    return file.keys.map((record) => ({ record, hash: Buffer.from(record.hash, "hex") }));
  }
}

/**
 * The token of an `Authorization: Bearer <token>` header (scheme matched case-insensitively), or
 * `undefined` when the header is absent or uses another scheme.
 */
export function bearerToken(authorizationHeader: string | undefined): string | undefined {
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(authorizationHeader ?? "");
  return match?.[1];
}
