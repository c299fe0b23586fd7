/**
 * The namespace lab: two network namespaces joined by a veth pair, the reflector in one and the probe
 * in the other. Traffic never leaves the pair. Addresses come from the RFC 2544 benchmarking range
 * (198.18.0.0/15) and RFC 5180's (2001:2::/48).
 */
import { FastpathError } from "../ffi/error.ts";
import { ip, run } from "./net.ts";
import { load } from "../ffi/load.ts";

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
    throw new FastpathError("usage", `lab prefix '${cfg.prefix}' must be 1-9 letters, digits or dashes`);
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

async function nsExists(name: string): Promise<boolean> {
  const r = await run(["ip", "netns", "list"]);
  return r.stdout.split("\n").some((l) => l.split(" ")[0] === name);
}

async function writeSys(ns: string, path: string, value: string): Promise<void> {
  const r = await run(["ip", "netns", "exec", ns, "sh", "-c", `echo ${value} > ${path}`]);
  if (r.code !== 0) throw new FastpathError("failed", `writing ${path} in ${ns}: ${r.stderr.trim()}`);
}

/** Creates the lab (replacing a stale one of the same prefix). */
export async function labUp(c: Partial<LabConfig> = {}): Promise<Lab> {
  if (Deno.uid() !== 0) {
    throw new FastpathError("permission_denied", "the lab creates network namespaces: run it as root (sudo)");
  }
  const lab = labNames(c);
  await labDown(lab);
  try {
    await ip(undefined, "netns", "add", lab.reflectorNs);
    await ip(undefined, "netns", "add", lab.probeNs);
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
    // Each side's receive processing runs on its own CPU, so CPU time per frame can be measured.
    await writeSys(
      lab.reflectorNs,
      `/sys/class/net/${lab.reflectorIf}/queues/rx-0/rps_cpus`,
      (1 << lab.reflectorCpu).toString(16),
    );
    await writeSys(lab.probeNs, `/sys/class/net/${lab.probeIf}/queues/rx-0/rps_cpus`, (1 << lab.probeCpu).toString(16));
  } catch (err) {
    await labDown(lab);
    throw err;
  }
  return lab;
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

/** Removes the lab's namespaces (and with them the veth pair). Idempotent. */
export async function labDown(c: Partial<LabConfig> | Lab = {}): Promise<string[]> {
  const lab = "reflectorNs" in c ? c as Lab : labNames(c);
  const removed: string[] = [];
  for (const ns of [lab.reflectorNs, lab.probeNs]) {
    if (await nsExists(ns)) {
      await ip(undefined, "netns", "del", ns);
      removed.push(ns);
    }
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
