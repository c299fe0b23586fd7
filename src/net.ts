/**
 * Interface and address facts: through iproute2 (`ip -j`, namespace-aware) on Linux, through
 * `ifconfig`, `arp -n` and `ndp -n` on macOS (their text parsed by the functions below).
 */
import { FastpathError } from "../ffi/error.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; never throws for a non-zero exit (callers decide). */
export async function run(cmd: string[], stdin?: string): Promise<RunResult> {
  let child;
  try {
    child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new FastpathError("unsupported", `${cmd[0]} is not installed: run scripts/setup (or install iproute2)`);
    }
    throw err;
  }
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The capabilities fastpath's operations need, by their bit in /proc/PID/status CapEff. */
const CAPS = { CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_SYS_ADMIN: 21 } as const;

/**
 * Refuses (FastpathError "permission_denied", exit 3) before `what` is tried without the capabilities it
 * needs: what fails later without them fails confusingly (an interface "missing" in a namespace that
 * cannot be entered, an ARP request that was never sent). Linux only.
 */
export async function requirePrivilege(what: string, caps: Array<keyof typeof CAPS>): Promise<void> {
  if (Deno.build.os !== "linux") return;
  const status = await Deno.readTextFile("/proc/self/status").catch(() => "");
  const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (eff === undefined) return;
  const missing = caps.filter((c) => ((BigInt(`0x${eff}`) >> BigInt(CAPS[c])) & 1n) === 0n);
  if (missing.length === 0) return;
  throw new FastpathError(
    "permission_denied",
    `${what}: run as root (or with ${missing.join("/")}), e.g. with sudo`,
  );
}

/** Runs `ip` (in `netns` when given) and throws with its message on failure. */
export async function ip(netns: string | undefined, ...args: string[]): Promise<string> {
  const cmd = ["ip", ...(netns ? ["-n", netns] : []), ...args];
  const r = await run(cmd);
  if (r.code !== 0) {
    throw new FastpathError("failed", `${cmd.join(" ")}: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
  return r.stdout;
}

export async function ipJson<T>(netns: string | undefined, ...args: string[]): Promise<T> {
  const out = await ip(netns, "-j", ...args);
  return (out.trim() ? JSON.parse(out) : []) as T;
}

export const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** "00:c0:17:12:34:56" as 6 bytes; `option` is the API name a refusal names (the CLI shows its flag). */
export function parseMac(s: string, option: string): Uint8Array {
  if (!MAC_RE.test(s)) {
    throw new FastpathError("usage", `\`${option}\` '${s}' is not a MAC address (like 00:c0:17:12:34:56)`);
  }
  return new Uint8Array(s.split(":").map((h) => parseInt(h, 16)));
}

export function formatMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/** Parses an IPv4 or IPv6 literal into 16 bytes (IPv4 in the first 4). */
export function parseIp(s: string): { bytes: Uint8Array; v6: boolean } | undefined {
  const out = new Uint8Array(16);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    if (parts.some((p) => p > 255)) return undefined;
    out.set(parts);
    return { bytes: out, v6: false };
  }
  if (!s.includes(":")) return undefined;
  const [head, tail, extra] = s.split("::");
  if (extra !== undefined) return undefined;
  const hs = head ? head.split(":") : [];
  const ts = tail !== undefined ? (tail ? tail.split(":") : []) : [];
  if (tail === undefined && hs.length !== 8) return undefined;
  const groups = [...hs, ...Array(8 - hs.length - ts.length).fill("0"), ...ts];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return { bytes: out, v6: true };
}

interface IpAddrInfo {
  ifname: string;
  operstate?: string;
  flags?: string[];
  address?: string;
  mtu?: number;
  addr_info?: Array<{ family: string; local: string; scope: string; prefixlen: number }>;
}

const darwin = Deno.build.os === "darwin";

function noNetnsOnMac(netns: string | undefined): void {
  if (netns && darwin) {
    throw new FastpathError("unsupported", "network namespaces are a Linux feature: leave out --netns on macOS");
  }
}

/** The error for `--netns NAME` naming no `ip netns` namespace; undefined when it exists (or elsewhere than Linux). */
export async function noSuchNetns(netns: string): Promise<FastpathError | undefined> {
  if (Deno.build.os !== "linux" || await Deno.stat(`/run/netns/${netns}`).then(() => true, () => false)) return;
  return new FastpathError("no_such_device", `no network namespace named '${netns}' (see 'ip netns list')`);
}

export async function linkInfo(netns: string | undefined, iface: string): Promise<IpAddrInfo | undefined> {
  noNetnsOnMac(netns);
  if (darwin) {
    const r = await run(["ifconfig", iface]);
    return r.code === 0 ? parseIfconfig(r.stdout) : undefined;
  }
  try {
    const list = await ipJson<IpAddrInfo[]>(netns, "addr", "show", "dev", iface);
    return list[0];
  } catch (err) {
    // Not being allowed into the namespace is not the interface's absence.
    if (netns && /not permitted|permission denied/i.test((err as Error).message)) {
      throw new FastpathError(
        "permission_denied",
        `entering network namespace ${netns} needs root (CAP_SYS_ADMIN): run as root or with sudo`,
      );
    }
    return undefined;
  }
}

/**
 * Frames the kernel dropped on `iface` since it came up, received (backlog full, no buffer) and sent,
 * or undefined where the counts are not available (macOS).
 */
export async function linkDrops(
  netns: string | undefined,
  iface: string,
): Promise<{ rx: number; tx: number } | undefined> {
  if (darwin) return undefined;
  try {
    const [link] = await ipJson<Array<{ stats64?: { rx?: { dropped?: number }; tx?: { dropped?: number } } }>>(
      netns,
      "-s",
      "link",
      "show",
      "dev",
      iface,
    );
    const rx = link?.stats64?.rx?.dropped, tx = link?.stats64?.tx?.dropped;
    return rx === undefined || tx === undefined ? undefined : { rx, tx };
  } catch {
    return undefined;
  }
}

/**
 * Frames this host's kernel dropped because a CPU's receive backlog was full (net.core.netdev_max_backlog),
 * all CPUs together since boot: /proc/net/softnet_stat's second column. Undefined where unavailable.
 */
export async function backlogDrops(): Promise<number | undefined> {
  if (darwin) return undefined;
  try {
    const text = await Deno.readTextFile("/proc/net/softnet_stat");
    return text.split("\n").filter(Boolean).reduce((n, l) => n + parseInt(l.trim().split(/\s+/)[1], 16), 0);
  } catch {
    return undefined;
  }
}

/** The interface's first global address of the family. */
export async function ifaceAddress(netns: string | undefined, iface: string, v6: boolean): Promise<string | undefined> {
  const info = await linkInfo(netns, iface);
  return info?.addr_info?.find((a) => a.family === (v6 ? "inet6" : "inet") && a.scope === "global")?.local;
}

/** Reads the neighbour table for `addr` on `iface`. */
export async function neighbour(netns: string | undefined, iface: string, addr: string): Promise<string | undefined> {
  noNetnsOnMac(netns);
  if (darwin) {
    const v6 = addr.includes(":");
    const r = await run(v6 ? ["ndp", "-n", addr] : ["arp", "-n", addr]);
    return r.code === 0 ? (v6 ? parseNdp(r.stdout, addr, iface) : parseArp(r.stdout, addr, iface)) : undefined;
  }
  const list = await ipJson<Array<{ dst: string; lladdr?: string; state?: string[] }>>(
    netns,
    "neigh",
    "show",
    "to",
    addr,
    "dev",
    iface,
  );
  const e = list.find((n) =>
    n.lladdr && !(n.state ?? []).includes("FAILED") && !(n.state ?? []).includes("INCOMPLETE")
  );
  return e?.lladdr;
}

/** BSD tools print MACs without leading zeros ("0:c0:17:2:3:4"); this is the usual form. */
function normalMac(s: string): string | undefined {
  const parts = s.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-f]{1,2}$/i.test(p))) return undefined;
  return parts.map((p) => p.toLowerCase().padStart(2, "0")).join(":");
}

/** One interface as macOS `ifconfig IFACE` prints it, in the shape `ip -j addr` gives on Linux. */
export function parseIfconfig(text: string): IpAddrInfo | undefined {
  const head = /^([^\s:]+): flags=[0-9a-f]+<([^>]*)> mtu (\d+)/m.exec(text);
  if (!head) return undefined;
  const info: IpAddrInfo = {
    ifname: head[1],
    flags: head[2].split(",").filter(Boolean),
    mtu: Number(head[3]),
    addr_info: [],
  };
  info.operstate = info.flags!.includes("UP") ? "UP" : "DOWN";
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[0] === "ether") info.address = normalMac(f[1]);
    if (f[0] === "inet") {
      const mask = f[f.indexOf("netmask") + 1];
      const prefixlen = mask?.startsWith("0x") ? (parseInt(mask, 16) >>> 0).toString(2).replace(/0+$/, "").length : 32;
      info.addr_info!.push({
        family: "inet",
        local: f[1],
        scope: f[1].startsWith("127.") ? "host" : "global",
        prefixlen,
      });
    }
    if (f[0] === "inet6") {
      const local = f[1].split("%")[0];
      const prefixlen = Number(f[f.indexOf("prefixlen") + 1]) || 128;
      const scope = /^fe[89ab]/i.test(local) ? "link" : local === "::1" ? "host" : "global";
      info.addr_info!.push({ family: "inet6", local, scope, prefixlen });
    }
  }
  return info;
}

/** The MAC of `addr` in macOS `arp -n ADDR` output, when resolved on `iface`. */
export function parseArp(text: string, addr: string, iface: string): string | undefined {
  for (const line of text.split("\n")) {
    const m = /^\S+ \(([^)]+)\) at (\S+) on (\S+)/.exec(line.trim());
    if (m && m[1] === addr && m[3] === iface) {
      const mac = normalMac(m[2]);
      if (mac) return mac;
    }
  }
  return undefined;
}

/** The MAC of `addr` in macOS `ndp -n ADDR` output (a table), when resolved on `iface`. */
export function parseNdp(text: string, addr: string, iface: string): string | undefined {
  const want = parseIp(addr)?.bytes.join(",");
  for (const line of text.split("\n")) {
    const [neighbor, lladdr, netif] = line.trim().split(/\s+/);
    if (!neighbor || netif !== iface) continue;
    if (parseIp(neighbor.split("%")[0])?.bytes.join(",") !== want) continue;
    const mac = normalMac(lladdr);
    if (mac) return mac;
  }
  return undefined;
}
