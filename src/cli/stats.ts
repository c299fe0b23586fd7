/**
 * The stats flags of the long-running commands (reflect, probe, lab run, sched run) and starting their
 * stats listener: a UNIX socket by default (`--stats-socket PATH`, under /run/fastpath/, mode 0660;
 * `--no-stats-socket` for none) and loopback HTTP when asked (`--http 127.0.0.1:PORT`; another address
 * needs `--http-allow-remote` and is warned about). src/stats/ serves them.
 */
import { FastpathError } from "../../ffi/error.ts";
import { type StatsContext, StatsCore } from "../stats/core.ts";
import { StatsServer } from "../stats/server.ts";
import { Option } from "./flags.ts";
import { RUN_DIR } from "../run_dir.ts";

/** The stats flags; `name` is the default socket's name as help shows it (`reflect-IFACE[@NETNS]`). */
export function statsOptions(name: string) {
  return [
    new Option(
      "--stats-socket <PATH>",
      `serve GET /metrics (Prometheus), /stats (JSON) and /health on this UNIX socket, mode 0660 (default: ${RUN_DIR}/${name}.sock)`,
    ),
    new Option("--no-stats-socket", "serve no stats socket"),
    new Option("--http <HOST:PORT>", "also serve them over HTTP here, e.g. 127.0.0.1:9100 (default: off)"),
    new Option("--http-allow-remote", "let --http bind an address other machines reach (no authentication)"),
  ] as const;
}

export interface StatsFlags {
  statsSocket?: string | boolean;
  http?: string;
  httpAllowRemote?: boolean;
}

/** Checked stats flags, ready to start (before anything is attached, so a bad flag leaves nothing behind). */
export interface StatsPlan {
  socket: string | null;
  http: { hostname: string; port: number } | null;
  remote: boolean;
}

/**
 * The default socket's name (without `.sock`) of `job` on `name` (an interface, a lab's prefix) in
 * namespace `netns`: `reflect-eth0`, `reflect-r0@lab`, `lab-fp`, `sched`. Two different jobs never get
 * the same name: each part keeps [A-Za-z0-9_.-] and spells every other byte %XX (`%` too), so `@`, which
 * joins them, appears in no part.
 */
export function socketName(job: string, name?: string, netns?: string): string {
  return [job, name && `-${pathPart(name)}`, netns && `@${pathPart(netns)}`].filter(Boolean).join("");
}

function pathPart(s: string): string {
  return [...new TextEncoder().encode(s)].map((b) => {
    const c = String.fromCharCode(b);
    return /[A-Za-z0-9_.-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }).join("");
}

/** The flags checked; `defaultName` names the default socket (socketName: `reflect-eth0`). */
export function statsPlan(f: StatsFlags, defaultName: string): StatsPlan {
  const socket = f.statsSocket === false
    ? null
    : typeof f.statsSocket === "string"
    ? f.statsSocket
    : `${RUN_DIR}/${defaultName}.sock`;
  if (socket !== null && !socket.startsWith("/")) {
    throw new FastpathError("usage", `--stats-socket needs an absolute path, not '${socket}'`);
  }
  if (f.http === undefined) {
    if (f.httpAllowRemote) throw new FastpathError("usage", "--http-allow-remote needs --http HOST:PORT");
    return { socket, http: null, remote: false };
  }
  const http = parseHostPort(f.http);
  const remote = !isLoopback(http.hostname);
  if (remote && !f.httpAllowRemote) {
    throw new FastpathError(
      "usage",
      `--http ${f.http} is not a loopback address: use 127.0.0.1:PORT, or add --http-allow-remote to serve other machines (read-only, no authentication)`,
    );
  }
  return { socket, http, remote };
}

/** "127.0.0.1:9100", "[::1]:9100", "localhost:9100". */
export function parseHostPort(v: string): { hostname: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new FastpathError(
      "usage",
      `--http needs HOST:PORT with a port of 0 (any free one) to 65535, e.g. 127.0.0.1:9100, not '${v}'`,
    );
  }
  return { hostname: m[1] ?? m[2], port };
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A running stats listener: the core to hand intervals to, and how to stop it. */
export interface Stats {
  core: StatsCore;
  server: StatsServer;
  close(): void;
}

/** Starts serving `plan` (null when it serves nothing); says where on stderr. */
export async function startStats(plan: StatsPlan, ctx: StatsContext): Promise<Stats | null> {
  if (!plan.socket && !plan.http) return null;
  const core = new StatsCore(ctx);
  const server = new StatsServer(core);
  try {
    if (plan.socket) await server.listenUnix(plan.socket, plan.socket.startsWith(`${RUN_DIR}/`) ? RUN_DIR : null);
    if (plan.http) server.listenTcp(plan.http.hostname, plan.http.port);
  } catch (err) {
    server.close();
    throw err;
  }
  const where = [plan.socket, plan.http && `http://${hostText(plan.http.hostname)}:${server.tcpPort}`].filter(Boolean);
  console.error(`  stats: GET /metrics, /stats, /health on ${where.join(" and ")}`);
  if (plan.remote) {
    console.error(
      `  warning: --http ${plan.http!.hostname} serves the stats to other machines, without authentication`,
    );
  }
  return { core, server, close: () => server.close() };
}

function hostText(h: string): string {
  return h.includes(":") ? `[${h}]` : h;
}
