/**
 * `pnpm keys`: creates, lists and revokes API keys in the keys file (`API_KEYS_FILE`, default
 * `./keys.json`). A running API picks the changes up within about a second.
 *
 * Exit codes: 0 done, 1 failed (name taken, no such key, unreadable file), 2 bad usage.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { isAppError, ModelId } from "@hybrid/protocol";
import { type ApiKeyRecord, createKey, listKeys, revokeKey } from "./keys.ts";

const USAGE = `Usage:
  pnpm keys create NAME [--models a,b] [--rate-per-minute N] [--max-queued N]
  pnpm keys list
  pnpm keys revoke NAME

The keys file is $API_KEYS_FILE (default ./keys.json).
`;

/** Bad command line: exits 2 with the usage text. */
class UsageError extends Error {}

const out = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

function positiveInt(flag: string, value: string | undefined): number | null {
  if (value === undefined) return null;
  if (!/^[1-9][0-9]*$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new UsageError(`--${flag} must be a positive integer, got "${value}".`);
  }
  return Number(value);
}

function modelList(value: string | undefined): string[] | null {
  if (value === undefined) return null;
  const models = [...new Set(value.split(",").map((m) => m.trim()))].filter((m) => m.length > 0);
  if (models.length === 0) throw new UsageError("--models needs at least one model name.");
  // A model no route could ever name would make the key silently useless for it.
  for (const m of models) {
    const parsed = ModelId.safeParse(m);
    if (!parsed.success) throw new UsageError(`--models: ${parsed.error.issues[0]?.message}.`);
  }
  return models;
}

const limits = (r: ApiKeyRecord): string =>
  `rate ${r.rate_per_minute === null ? "unlimited" : `${r.rate_per_minute}/min`}, ` +
  `max queued ${r.max_queued ?? "unlimited"}, models ${r.models === null ? "all" : r.models.join(",")}`;

function oneName(positionals: string[], command: string): string {
  const [name, ...extra] = positionals;
  if (name === undefined || name.length === 0) throw new UsageError(`${command} needs a NAME.`);
  if (extra.length > 0) throw new UsageError(`Unexpected arguments: ${extra.join(" ")}`);
  return name;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      models: { type: "string" },
      "rate-per-minute": { type: "string" },
      "max-queued": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    out(USAGE.trimEnd());
    return 0;
  }
  // Resolved like the API resolves it (against the working directory): `pnpm keys` and
  // `pnpm start` both run from the repository root, so they mean the same file.
  const file = resolve(process.env.API_KEYS_FILE ?? "keys.json");
  const [command, ...rest] = positionals;
  const limitFlags = values.models ?? values["rate-per-minute"] ?? values["max-queued"];
  if (command !== "create" && limitFlags !== undefined) {
    throw new UsageError("--models, --rate-per-minute and --max-queued only apply to create.");
  }

  switch (command) {
    case "create": {
      const name = oneName(rest, "create");
      const { key, record } = await createKey(file, name, {
        models: modelList(values.models),
        ratePerMinute: positiveInt("rate-per-minute", values["rate-per-minute"]),
        maxQueued: positiveInt("max-queued", values["max-queued"]),
      });
      out(`Created key "${record.name}" (id ${record.id}) in ${file}: ${limits(record)}.`);
      out(`Webhook secret (verifies the webhook-signature header of this key's webhooks):`);
      out(`  ${record.webhook_secret}`);
      out("Send the key as 'Authorization: Bearer <key>'. Only its hash is stored: copy it now.");
      // Last line, alone, so scripts can take it with `tail -n 1`.
      out(key);
      return 0;
    }
    case "list": {
      if (rest.length > 0) throw new UsageError(`Unexpected arguments: ${rest.join(" ")}`);
      const records = await listKeys(file);
      if (records.length === 0) {
        out(`No keys in ${file}.`);
        return 0;
      }
      // The webhook secret is shown: its holder needs it to verify webhooks, and whoever can run
      // this can read it from the keys file anyway. The key itself is not stored, so never shown.
      for (const r of records) {
        out(
          `${r.name}\tid ${r.id}\t${limits(r)}\tcreated ${r.created_at}\twebhook secret ${r.webhook_secret}`,
        );
      }
      return 0;
    }
    case "revoke": {
      const name = oneName(rest, "revoke");
      if (!(await revokeKey(file, name))) {
        process.stderr.write(`No key named "${name}" in ${file}.\n`);
        return 1;
      }
      out(`Revoked key "${name}"; a running API rejects it within a second.`);
      return 0;
    }
    default:
      throw new UsageError(command === undefined ? "Missing command." : `Unknown command "${command}".`);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  // parseArgs signals unknown or malformed flags with ERR_PARSE_ARGS_* codes.
  const code = (e as NodeJS.ErrnoException).code ?? "";
  if (e instanceof UsageError || code.startsWith("ERR_PARSE_ARGS")) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`${isAppError(e) ? e.message : String((e as Error).message ?? e)}\n`);
    process.exitCode = 1;
  }
}
