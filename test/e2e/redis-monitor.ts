// Counts the commands a Redis receives, from MONITOR, for the hot-path test and
// `pnpm bench:commands`. A Lua script counts as ONE command: MONITOR also prints every command a
// script runs (source `lua`), and those are left out. Windows are bounded by fences (an ECHO of a
// unique token sent on a connection of our own and seen come back through MONITOR), so a window
// holds exactly the commands Redis ran between two points of the caller's program.
import { randomUUID } from "node:crypto";
import { Socket } from "node:net";
import { Redis } from "ioredis";

/** One command as MONITOR reports it. */
export interface MonitoredCommand {
  /** Redis' clock when it ran the command, in ms since the epoch. */
  at: number;
  db: number;
  /** `ip:port` of the client, `unix:path`, or `lua` for a command run by a script. */
  source: string;
  /** The command name, upper case. */
  name: string;
  args: string[];
}

/** Commands that run a server-side script: each counts as one however many commands it runs. */
export const SCRIPT_COMMANDS: ReadonlySet<string> = new Set([
  "EVAL",
  "EVALSHA",
  "EVAL_RO",
  "EVALSHA_RO",
  "FCALL",
  "FCALL_RO",
]);

/** Reads one quoted MONITOR argument from `s` at `i` (just past the opening quote). */
function readQuoted(s: string, i: number): [string, number] {
  let out = "";
  while (i < s.length && s[i] !== '"') {
    if (s[i] === "\\" && i + 1 < s.length) {
      const c = s[i + 1]!;
      if (c === "x" && i + 3 < s.length) {
        out += String.fromCharCode(Number.parseInt(s.slice(i + 2, i + 4), 16));
        i += 4;
        continue;
      }
      out += c === "n" ? "\n" : c === "r" ? "\r" : c === "t" ? "\t" : c;
      i += 2;
      continue;
    }
    out += s[i];
    i++;
  }
  return [out, i + 1];
}

/**
 * Parses one MONITOR line, e.g. `1700000000.123456 [0 127.0.0.1:50000] "SET" "k" "v"` (a leading
 * `+` of the RESP simple string is allowed). Undefined for anything else (`OK`, blank lines).
 */
export function parseMonitorLine(line: string): MonitoredCommand | undefined {
  const m = /^\+?(\d+\.\d+) \[(\d+) ([^\]]+)\] "/.exec(line);
  if (!m) return undefined;
  const args: string[] = [];
  let i = m[0].length;
  for (;;) {
    const [arg, next] = readQuoted(line, i);
    args.push(arg);
    if (line[next] !== " " || line[next + 1] !== '"') break;
    i = next + 2;
  }
  const [name, ...rest] = args;
  return {
    at: Number(m[1]) * 1000,
    db: Number(m[2]),
    source: m[3]!,
    name: name!.toUpperCase(),
    args: rest,
  };
}

/** What a window of commands holds: the total and the count per command name. */
export interface CommandCount {
  total: number;
  byName: Map<string, number>;
  /** Length of the window on Redis' clock, in ms. */
  ms: number;
}

/** Counts `commands` the way the hot-path budget does: scripts once, their inner commands never. */
export function countCommands(commands: Iterable<MonitoredCommand>, ms = 0): CommandCount {
  const byName = new Map<string, number>();
  let total = 0;
  for (const c of commands) {
    if (c.source === "lua") continue;
    total++;
    byName.set(c.name, (byName.get(c.name) ?? 0) + 1);
  }
  return { total, byName, ms };
}

/**
 * `window` less the background measured in `idle`, scaled to the window's length (per name;
 * a name can come out negative when the background happened to be busier than the window).
 */
export function lessBackground(window: CommandCount, idle: CommandCount): CommandCount {
  const scale = idle.ms > 0 ? window.ms / idle.ms : 0;
  const byName = new Map<string, number>();
  for (const name of new Set([...window.byName.keys(), ...idle.byName.keys()]))
    byName.set(name, (window.byName.get(name) ?? 0) - (idle.byName.get(name) ?? 0) * scale);
  return { total: window.total - idle.total * scale, byName, ms: window.ms };
}

/** A point in the stream of monitored commands (see {@link RedisMonitor.fence}). */
export interface Fence {
  /** Index of the first command after the fence. */
  index: number;
  /** Redis' clock at the fence, in ms since the epoch. */
  at: number;
}

/**
 * A MONITOR connection recording every command a Redis runs (meant for a Redis of the test's
 * own: MONITOR slows a server down and sees every client). Open with {@link RedisMonitor.open}.
 */
export class RedisMonitor {
  private readonly seen: MonitoredCommand[] = [];
  private readonly token = `redis-monitor-fence:${randomUUID()}`;
  private fences = 0;
  private readonly waiting = new Map<string, (fence: Fence) => void>();

  private constructor(
    private readonly socket: Socket,
    private readonly fenceClient: Redis,
  ) {
    let buffered = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      buffered += chunk;
      let nl = buffered.indexOf("\r\n");
      while (nl >= 0) {
        this.take(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 2);
        nl = buffered.indexOf("\r\n");
      }
    });
  }

  /** Connects to `url` (`redis://host:port`) and starts monitoring; resolves once Redis said OK. */
  static async open(url: string): Promise<RedisMonitor> {
    const { hostname, port } = new URL(url);
    const socket = new Socket();
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(Number(port || 6379), hostname, () => resolve());
    });
    const ok = new Promise<void>((resolve, reject) => {
      socket.once("data", (d: Buffer | string) =>
        d.toString().startsWith("+OK") ? resolve() : reject(new Error(`MONITOR: ${d}`)),
      );
    });
    socket.write("MONITOR\r\n");
    await ok;
    const fenceClient = new Redis(url, { maxRetriesPerRequest: 1 });
    return new RedisMonitor(socket, fenceClient);
  }

  private take(line: string): void {
    const c = parseMonitorLine(line);
    if (!c) return;
    if (c.name === "ECHO" && c.args[0]?.startsWith(this.token)) {
      // The index is taken now: later lines of the same chunk are pushed before the caller resumes.
      this.waiting.get(c.args[0])?.({ at: c.at, index: this.seen.length });
      this.waiting.delete(c.args[0]);
      return;
    }
    this.seen.push(c);
  }

  /**
   * Marks the present: every command Redis ran before this call's ECHO is before the fence,
   * every later one after it. Resolves once MONITOR has delivered the ECHO.
   */
  async fence(): Promise<Fence> {
    const tag = `${this.token}:${++this.fences}`;
    const seen = new Promise<Fence>((resolve) => this.waiting.set(tag, resolve));
    await this.fenceClient.echo(tag);
    return seen;
  }

  /** The commands between two fences (`to` absent: up to now). */
  commands(from: Fence, to?: Fence): MonitoredCommand[] {
    return this.seen.slice(from.index, to?.index);
  }

  /** {@link countCommands} of the commands between two fences. */
  count(from: Fence, to: Fence): CommandCount {
    return countCommands(this.commands(from, to), to.at - from.at);
  }

  /** Stops monitoring and closes both connections. */
  close(): void {
    this.socket.destroy();
    this.fenceClient.disconnect();
  }
}
