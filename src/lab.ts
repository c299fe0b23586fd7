/**
 * The namespace lab: two network namespaces joined by a veth pair, the reflector in one and the probe
 * in the other. Traffic never leaves the pair. Addresses come from the RFC 2544 benchmarking range
 * (198.18.0.0/15) and RFC 5180's (2001:2::/48).
 */
import { FastpathError } from "../ffi/error.ts";
import { ip, requirePrivilege, run } from "./net.ts";
import { load } from "../ffi/load.ts";
import { RUN_DIR } from "./run_dir.ts";
import { STOP_SIGNALS } from "./signals.ts";

export interface LabConfig {
  /** Prefix of every name the lab creates, so several labs (and tests) can coexist. */
  prefix: string;
  mtu: number;
  /** CPU of the reflector side (receive softirq steered there with RPS) and of the probe side. */
  reflectorCpu: number;
  probeCpu: number;
}

export interface Lab extends LabConfig {
  reflectorNs: string;
  probeNs: string;
  reflectorIf: string;
  probeIf: string;
  reflectorIp: string;
  probeIp: string;
  reflectorIp6: string;
  probeIp6: string;
  reflectorMac: string;
  probeMac: string;
  /** From labUp with owner "lab up": the lab `lab up` had built was up already, whole, and was kept as it is. */
  kept?: boolean;
}

export function labNames(c: Partial<LabConfig> = {}): Lab {
  const cpus = navigator.hardwareConcurrency ?? 1;
  const cfg: LabConfig = {
    prefix: c.prefix ?? "fp",
    mtu: c.mtu ?? 9000,
    reflectorCpu: c.reflectorCpu ?? (cpus > 1 ? 1 : 0),
    probeCpu: c.probeCpu ?? 0,
  };
  if (!/^[a-z0-9][a-z0-9-]{0,8}$/i.test(cfg.prefix)) {
    throw new FastpathError(
      "usage",
      `lab prefix '${cfg.prefix}' must be 1-9 letters, digits or dashes, starting with a letter or digit`,
    );
  }
  return {
    ...cfg,
    reflectorNs: `${cfg.prefix}-refl`,
    probeNs: `${cfg.prefix}-probe`,
    reflectorIf: `${cfg.prefix}-r0`,
    probeIf: `${cfg.prefix}-p0`,
    reflectorIp: "198.18.0.1",
    probeIp: "198.18.0.2",
    reflectorIp6: "2001:2::1",
    probeIp6: "2001:2::2",
    reflectorMac: "02:00:00:00:00:01",
    // NetAlly's OUI, so the reflector's default OUI filter accepts the probe like a real handheld.
    probeMac: "00:c0:17:00:00:02",
  };
}

/** The lab's namespaces that exist. */
async function existing(lab: Lab): Promise<string[]> {
  const r = await run(["ip", "netns", "list"]);
  const names = r.stdout.split("\n").map((l) => l.split(" ")[0]);
  return [lab.reflectorNs, lab.probeNs].filter((ns) => names.includes(ns));
}

async function writeSys(ns: string, path: string, value: string): Promise<void> {
  const r = await run(["ip", "netns", "exec", ns, "sh", "-c", `echo ${value} > ${path}`]);
  if (r.code !== 0) throw new FastpathError("failed", `writing ${path} in ${ns}: ${r.stderr.trim()}`);
}

/**
 * Creates the lab. A lab of the same prefix is replaced only when it is stale (its builder is gone and
 * nothing runs in it), or `lab up` built it and asks again and a part of it is gone (a lab `lab up` built
 * and finds whole is kept as it is, with whatever was added to it: `kept` in the result); one in use,
 * one `lab up` built (for any other owner), and namespaces no fastpath lab made are refused
 * (FastpathError "busy", exit 7).
 *
 * `owner` is who the lab belongs to: "script" (the default) holds it while this process lives and
 * removes it when the process is interrupted (SIGINT, SIGTERM, SIGHUP or SIGQUIT: the lab goes, then the
 * process exits 130, 143, 129 or 131); "lab run" holds it likewise but handles the signals itself; "lab up" leaves it for
 * `labDown` in a later process.
 */
export async function labUp(c: Partial<LabConfig> & { owner?: LabOwner } = {}): Promise<Lab> {
  await requirePrivilege("the lab creates network namespaces", ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
  const lab = labNames(c);
  const owner = c.owner ?? "script";
  const rec = await claim(lab, owner);
  if (rec === "kept") {
    await unlock(lab.prefix, false);
    return { ...lab, kept: true };
  }
  try {
    for (const ns of [lab.reflectorNs, lab.probeNs]) {
      await ip(undefined, "netns", "add", ns);
      // On record as made here: one replaced by hand later is not ours to remove.
      rec.netns[ns] = (await nsInode(ns)) ?? 0;
      await writeRecord(lab.prefix, rec);
    }
    await ip(
      lab.reflectorNs,
      "link",
      "add",
      lab.reflectorIf,
      "type",
      "veth",
      "peer",
      "name",
      lab.probeIf,
      "netns",
      lab.probeNs,
    );
    for (
      const [ns, dev, mac, v4, v6] of [
        [lab.reflectorNs, lab.reflectorIf, lab.reflectorMac, lab.reflectorIp, lab.reflectorIp6],
        [lab.probeNs, lab.probeIf, lab.probeMac, lab.probeIp, lab.probeIp6],
      ]
    ) {
      await ip(ns, "link", "set", dev, "address", mac, "mtu", String(lab.mtu));
      await ip(ns, "addr", "add", `${v4}/24`, "dev", dev);
      await ip(ns, "addr", "add", `${v6}/64`, "dev", dev, "nodad");
      await ip(ns, "link", "set", dev, "up");
      await ip(ns, "link", "set", "lo", "up");
    }
    // Ready for the default mode (xdp) when used by hand: see peerForMode.
    if (Deno.build.os === "linux") await peerForMode(lab, "xdp");
  } catch (err) {
    await labDown(lab);
    throw err;
  }
  // `lab up`'s record stays for `lab down` in a later process; the lock goes now.
  if (owner === "lab up") await unlock(lab.prefix, false);
  return lab;
}

/** Who built a lab: on record in /run/fastpath/lab.PREFIX.owner, see `labUp`. */
export type LabOwner = "lab up" | "lab run" | "script";

/** The owner record: who built the lab, and the nsfs inode of each namespace it made, by name. */
interface OwnerRecord {
  owner: LabOwner;
  pid: number;
  netns: Record<string, number>;
}

/** The nsfs inode of network namespace `ns` (what identifies it, whatever its name); null without one. */
async function nsInode(ns: string): Promise<number | null> {
  return await Deno.stat(`/run/netns/${ns}`).then((st) => st.ino, () => null);
}

async function writeRecord(prefix: string, rec: OwnerRecord): Promise<void> {
  await Deno.writeTextFile(ownerFile(prefix), JSON.stringify(rec) + "\n");
}

const ownerName = (prefix: string) => `lab.${prefix}.owner`;
const ownerFile = (prefix: string) => `${RUN_DIR}/${ownerName(prefix)}`;
/**
 * The owner records this process holds, by prefix: the descriptor of each one's run lock (an flock the
 * library takes without waiting, zig/src/sys/runlock.zig; the kernel drops it when this process dies).
 */
const held = new Map<string, number>();
const enc = (s: string) => new TextEncoder().encode(s + "\0");

/**
 * Makes the lab this process's to build, or says who has it (see `labUp`). The owner record's lock is
 * taken first, so of two builders started together exactly one goes on (the other is refused naming
 * it), and every check below runs with no other builder or remover at work.
 */
async function claim(lab: Lab, owner: LabOwner): Promise<OwnerRecord | "kept"> {
  let prev: OwnerRecord | undefined;
  if (!held.has(lab.prefix)) {
    await takeOver(lab, (rec) => {
      prev = rec;
      if (rec.owner === "lab up" && owner !== "lab up") {
        throw new FastpathError(
          "busy",
          `lab ${lab.prefix} was built by 'fastpath lab up' (pid ${rec.pid}): remove it with 'fastpath lab down --prefix ${lab.prefix}', or choose another \`prefix\``,
        );
      }
    });
  }
  // `lab up` again on the lab it built: kept, with whatever was added to it since (addresses, routes).
  if (owner === "lab up" && prev?.owner === "lab up" && await intact(lab, prev)) return "kept";
  await removeNamespaces(lab);
  // On record before the first namespace exists: a builder killed half-way leaves a stale lab, not a foreign one.
  const rec: OwnerRecord = { owner, pid: Deno.pid, netns: {} };
  await writeRecord(lab.prefix, rec);
  if (owner === "script") onSignals(lab);
  return rec;
}

/** Whether both of the lab's namespaces are the ones `rec` made, and its veth pair is in them. */
async function intact(lab: Lab, rec: OwnerRecord): Promise<boolean> {
  for (const [ns, dev] of [[lab.reflectorNs, lab.reflectorIf], [lab.probeNs, lab.probeIf]]) {
    const made = rec.netns?.[ns];
    if (!made || made !== await nsInode(ns)) return false;
    if ((await run(["ip", "-n", ns, "link", "show", dev])).code !== 0) return false;
  }
  return true;
}

/**
 * Takes the lab's owner record, then checks that the lab's namespaces (if any) may go: nothing else
 * holds them, a fastpath lab made them, and `allow` accepts who built it. A refusal gives the record up.
 */
async function takeOver(lab: Lab, allow: (rec: OwnerRecord) => void = () => {}): Promise<void> {
  await lock(lab);
  try {
    const there = await existing(lab);
    if (there.length === 0) return;
    await refuseInUse(lab);
    const rec = await ownerOf(lab.prefix);
    if (!rec) throw notOurs(there[0]);
    for (const ns of there) {
      const made = rec.netns?.[ns];
      if (made !== undefined && made !== await nsInode(ns)) throw notOurs(ns, "replaced since");
    }
    allow(rec);
  } catch (err) {
    await unlock(lab.prefix, !(await ownerOf(lab.prefix)));
    throw err;
  }
}

/** How long a holder that is going away (killed, exiting) gets to let go before it is named as busy. */
const LET_GO_MS = 1000;

/** Takes the lab's owner record, or throws "busy" naming who holds it. */
async function lock(lab: Lab): Promise<void> {
  const lib = await load();
  const fd = new Int32Array(1);
  const end = Date.now() + LET_GO_MS;
  for (;;) {
    const status = lib.native.fp_run_lock(enc(ownerName(lab.prefix)), new Uint8Array(fd.buffer));
    if (status === 0) break;
    try {
      lib.unwrap(status, `lab ${lab.prefix}`);
    } catch (err) {
      if (!(err instanceof FastpathError && err.code === "busy") || Date.now() > end) {
        if (err instanceof FastpathError && err.code === "busy") await refuseInUse(lab, 0);
        throw err;
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  held.set(lab.prefix, fd[0]);
}

/** Gives up the lab's owner record this process holds; `remove` deletes it too. */
async function unlock(prefix: string, remove: boolean): Promise<void> {
  const fd = held.get(prefix);
  if (fd === undefined) return;
  held.delete(prefix);
  (await load()).native.fp_run_unlock(fd, enc(ownerName(prefix)), remove ? 1 : 0);
}

/** `why`: how a namespace of the lab's name came to be someone else's (it was replaced since). */
function notOurs(ns: string, why?: string): FastpathError {
  return new FastpathError(
    "busy",
    `${ns} was not made by 'fastpath lab up'${
      why ? ` (${why})` : ""
    }: remove it with 'ip netns del ${ns}', or choose another \`prefix\``,
  );
}

async function ownerOf(prefix: string): Promise<OwnerRecord | null> {
  try {
    return JSON.parse(await Deno.readTextFile(ownerFile(prefix)));
  } catch {
    return null;
  }
}

/**
 * Throws "busy" naming every other process that holds the lab (its builder, a reflector in it, a process
 * in its namespaces) after `letGoMs`: a holder that is going away (a `lab run` just killed) is not named.
 */
async function refuseInUse(lab: Lab, letGoMs = LET_GO_MS): Promise<void> {
  const end = Date.now() + letGoMs;
  let holders = await labHolders(lab);
  while (holders.length > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    holders = await labHolders(lab);
  }
  if (holders.length === 0) return;
  throw new FastpathError(
    "busy",
    `lab ${lab.prefix} is in use by ${holders.join(", ")}: stop it first, or choose another \`prefix\``,
  );
}

/**
 * Other processes that hold the lab, one description each: whoever holds the flock on its owner record
 * (a running `lab run` or script), on a reflector's lock of one of its interfaces (zig/src/reflect:
 * /run/fastpath/netINODE.IFACE.lock), or runs inside one of its namespaces. From /proc/locks, so a lock
 * left by a dead process counts for nothing.
 */
export async function labHolders(lab: Lab): Promise<string[]> {
  const locks = await flockHolders();
  const byPid = new Map<number, string>();
  const add = (pid: number | undefined, what: string) => {
    if (pid !== undefined && pid !== Deno.pid && !byPid.has(pid)) byPid.set(pid, `${what} (pid ${pid})`);
  };
  // The record names the builder; one that has just taken the lock may not have written it yet.
  const rec = await ownerOf(lab.prefix);
  const what = !rec ? "a fastpath lab builder" : rec.owner === "script" ? "a script" : `'fastpath ${rec.owner}'`;
  add(locks.get(await fileKey(ownerFile(lab.prefix))), what);
  // A reflector's lock is named by its namespace's inode (the nsfs inode of /run/netns/NS).
  const nss: string[] = [];
  for (const ns of [lab.reflectorNs, lab.probeNs]) {
    await Deno.stat(`/run/netns/${ns}`).then((st) => nss.push(`net${st.ino}`), () => {});
  }
  try {
    for await (const e of Deno.readDir(RUN_DIR)) {
      const ns = nss.find((n) => e.name.startsWith(`${n}.`) && e.name.endsWith(".lock"));
      if (!ns) continue;
      const iface = e.name.slice(ns.length + 1, -".lock".length);
      add(locks.get(await fileKey(`${RUN_DIR}/${e.name}`)), `a reflector on ${iface}`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  for (const ns of await existing(lab)) {
    const r = await run(["ip", "netns", "pids", ns]);
    for (const pid of r.stdout.split("\n").filter(Boolean).map(Number)) {
      const comm = await Deno.readTextFile(`/proc/${pid}/comm`).then((s) => s.trim(), () => "a process");
      add(pid, `${comm} in ${ns}`);
    }
  }
  return [...byPid.values()];
}

/** Device and inode of `path` as /proc/locks writes them ("fe:00:1234"); "" when there is no such file. */
async function fileKey(path: string): Promise<string> {
  try {
    const st = await Deno.stat(path);
    const dev = st.dev;
    const major = Math.floor(dev / 256) & 0xfff;
    const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
    const hex = (n: number) => n.toString(16).padStart(2, "0");
    return `${hex(major)}:${hex(minor)}:${st.ino}`;
  } catch {
    return "";
  }
}

/** Pid of each flock holder, by "major:minor:inode". */
async function flockHolders(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await Deno.readTextFile("/proc/locks")).split("\n")) {
    const m = /^\d+:\s+FLOCK\s+\S+\s+\S+\s+(\d+)\s+(\S+)/.exec(line);
    if (m) out.set(m[2], Number(m[1]));
  }
  return out;
}

/**
 * A script's labs go when it is interrupted: SIGINT, SIGTERM, SIGHUP and SIGQUIT (STOP_SIGNALS) remove
 * them, then the process exits with the signal's code.
 * Meanwhile whatever the script was doing in the lab (a probe resolving its reflector's address) fails
 * as the namespaces go: those failures are the interruption's, so they end nothing before the exit code.
 */
const signalLabs = new Set<Lab>();
const swallow = (e: Event) => e.preventDefault();
let exiting = false;
const listeners = STOP_SIGNALS.map(([sig, code]) =>
  [sig, async () => {
    // Once: a burst of signals ran labDown concurrently and could leave an owner file behind.
    if (exiting) return;
    exiting = true;
    addEventListener("unhandledrejection", swallow);
    addEventListener("error", swallow);
    for (const lab of [...signalLabs]) await labDown(lab).catch(() => {});
    Deno.exit(code);
  }] as const
);

function onSignals(lab: Lab): void {
  if (signalLabs.size === 0 && Deno.build.os !== "windows") {
    for (const [sig, fn] of listeners) Deno.addSignalListener(sig, fn);
  }
  signalLabs.add(lab);
}

function offSignals(prefix: string): void {
  for (const lab of signalLabs) if (lab.prefix === prefix) signalLabs.delete(lab);
  if (signalLabs.size === 0) { for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn); }
}

/**
 * Moves each side's receive processing to that side's CPU (RPS), so that CPU time per frame can be
 * measured per side (`deno task bench`). Not part of `lab up`: on a veth the receive work otherwise runs
 * in the sender's system call, and steering it turns every frame into an inter-processor interrupt per
 * direction - an emulated NIC interrupt that xdp mode (XDP runs in the sender's context) never pays.
 * Measured by hand on one lab at 20 kpps (`fastpath reflect … --cpu 1`, `fastpath probe … --cpu 0`) on
 * the 2-vCPU VM of the README: steered, packet mode's p50 was 28-44 µs and afxdp's 20-21 µs; not
 * steered, 5.0-5.5 and 4.7-6.0 µs.
 */
export async function steerReceive(lab: Lab): Promise<void> {
  await writeSys(
    lab.reflectorNs,
    `/sys/class/net/${lab.reflectorIf}/queues/rx-0/rps_cpus`,
    (1 << lab.reflectorCpu).toString(16),
  );
  await writeSys(lab.probeNs, `/sys/class/net/${lab.probeIf}/queues/rx-0/rps_cpus`, (1 << lab.probeCpu).toString(16));
}

/**
 * A veth hands XDP_TX frames (xdp mode) only to a peer that runs XDP itself, so the probe's side gets an
 * XDP_PASS program for xdp mode. For the other modes it must go: with XDP on the peer, every frame they
 * send detours through the peer's 256-entry XDP ring and NAPI on the sender's core.
 */
export async function peerForMode(lab: Lab, mode: string): Promise<void> {
  const lib = await load();
  const enc = (s: string) => new TextEncoder().encode(s + "\0");
  const on = mode === "xdp";
  lib.unwrap(
    lib.native.fp_xdp_pass(enc(lab.probeNs), enc(lab.probeIf), on ? 1 : 0),
    `lab: ${on ? "preparing" : "resetting"} ${lab.probeIf} for ${mode} mode`,
  );
}

/**
 * Removes the lab's namespaces (and with them the veth pair) and its owner record; returns the
 * namespaces removed. Idempotent. Removes only a lab this process built or one that `lab up` built (or
 * whose builder is gone) and that nothing else uses; anything else is refused (FastpathError "busy",
 * exit 7) naming the holder.
 */
export async function labDown(c: Partial<LabConfig> | Lab = {}): Promise<string[]> {
  const lab = "reflectorNs" in c ? c as Lab : labNames(c);
  await requirePrivilege("the lab removes network namespaces", ["CAP_SYS_ADMIN"]);
  if (!held.has(lab.prefix)) await takeOver(lab);
  const removed = await removeNamespaces(lab);
  await unlock(lab.prefix, true);
  offSignals(lab.prefix);
  return removed;
}

async function removeNamespaces(lab: Lab): Promise<string[]> {
  const removed: string[] = [];
  for (const ns of await existing(lab)) {
    await ip(undefined, "netns", "del", ns);
    removed.push(ns);
  }
  return removed;
}

/**
 * Busy time so far in ns of one CPU (`core`) and of every CPU together (`machine`), for CPU cost per
 * frame (only differences mean anything): wall time minus idle, iowait and steal time. Linux samples
 * user/system/softirq time at timer ticks (without IRQ_TIME_ACCOUNTING), which misses work that runs
 * between ticks — a worker woken by a jiffy-aligned timer, like AF_PACKET's block retirement, can look
 * nearly free — while idle time is measured at every idle entry and exit on NO_HZ kernels, so busy time
 * is derived from it. The machine's total does not depend on where the kernel ran the work.
 */
export async function cpuBusyNs(cpu: number): Promise<{ core: number; machine: number }> {
  const now = performance.now() * 1e6;
  const stat = await Deno.readTextFile("/proc/stat");
  const cpus = stat.split("\n").filter((l) => /^cpu\d+ /.test(l)).map((l) => Number(l.slice(3, l.indexOf(" "))));
  return {
    core: busyFromStat(stat, cpu, now),
    machine: cpus.reduce((sum, c) => sum + busyFromStat(stat, c, now), 0),
  };
}

/** `cpuBusyNs` from a /proc/stat text read at monotonic time `nowNs`. */
export function busyFromStat(stat: string, cpu: number, nowNs: number): number {
  const line = stat.split("\n").find((l) => l.startsWith(`cpu${cpu} `));
  if (!line) throw new Error(`lab: /proc/stat has no line for CPU ${cpu}`);
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [idle, iowait, steal] = [f[3], f[4], f[7] ?? 0];
  const hz = 100; // USER_HZ is 100 on every Linux architecture fastpath targets
  return nowNs - ((idle + iowait + steal) / hz) * 1e9;
}
