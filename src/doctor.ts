/** What this machine offers fastpath, each missing piece with its fix. */
import { load } from "../ffi/load.ts";
import { run, type RunResult } from "./net.ts";
import { Detector } from "./detect.ts";

export type CheckStatus = "ok" | "missing" | "warn" | "info";

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  os: string;
  kernel: string;
  checks: Check[];
  /** Reflector dataplanes usable here, fastest first. */
  modes: { mode: string; available: boolean; why: string }[];
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
}

/** The running kernel's build configuration, when the system exposes it. */
async function kernelConfig(): Promise<Map<string, string> | undefined> {
  let text = await readText(`/boot/config-${Deno.osRelease()}`);
  if (!text && await exists("/proc/config.gz")) {
    const r = await run(["sh", "-c", "zcat /proc/config.gz"]);
    if (r.code === 0) text = r.stdout;
  }
  if (!text) return undefined;
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (line.startsWith("CONFIG_") && eq > 0) m.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return m;
}

function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const [a, b] = release.split(/[.-]/).map(Number);
  return a > major || (a === major && b >= minor);
}

/** `attach: false` leaves out the checks that attach BPF programs for a moment (fentry). */
export async function doctor(opts: { attach?: boolean } = {}): Promise<DoctorReport> {
  const kernel = Deno.osRelease();
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);
  const root = Deno.uid() === 0;
  add({
    name: "root",
    status: root ? "ok" : "missing",
    detail: root ? "running as root" : `running as uid ${Deno.uid()}`,
    fix: root
      ? undefined
      : Deno.build.os === "darwin"
      ? "run with sudo (/dev/bpf is root-only)"
      : "run as root (sudo), or grant CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON",
  });
  add({ name: "kernel", status: "info", detail: `${Deno.build.os} ${kernel}` });

  let libbpf = 0;
  try {
    const lib = await load();
    libbpf = lib.native.fp_libbpf_version();
    add({ name: "library", status: "ok", detail: `${lib.path} (ABI ${lib.layout.json.abi_version})` });
  } catch (err) {
    add({
      name: "library",
      status: "missing",
      detail: (err as Error).message.split("\n")[0],
      fix: "scripts/setup, then build with 'zig build' in zig/",
    });
  }

  if (Deno.build.os === "darwin") {
    const mac = await darwinChecks({ root, run, devices: () => bpfDevices("/dev") });
    return { os: Deno.build.os, kernel, checks: [...checks, ...mac.checks], modes: mac.modes };
  }
  if (Deno.build.os !== "linux") {
    return {
      os: Deno.build.os,
      kernel,
      checks,
      modes: [{
        mode: "bpf",
        available: false,
        why: `no dataplane for ${Deno.build.os}: fastpath runs on Linux and macOS`,
      }],
    };
  }

  const cfg = await kernelConfig();
  const flag = (name: string) => cfg?.get(name);
  const bpfOn = flag("CONFIG_BPF_SYSCALL") === "y" || await exists("/sys/fs/bpf");
  add({
    name: "bpf",
    status: bpfOn ? "ok" : "missing",
    detail: bpfOn ? "BPF system call available" : "no BPF system call",
    fix: bpfOn ? undefined : "a kernel built with CONFIG_BPF_SYSCALL=y",
  });
  const jit = (await readText("/proc/sys/net/core/bpf_jit_enable"))?.trim();
  add({
    name: "bpf-jit",
    status: jit === "1" || jit === "2" ? "ok" : jit === undefined ? "info" : "warn",
    detail: jit === undefined ? "JIT always on (no bpf_jit_enable knob)" : `bpf_jit_enable = ${jit}`,
    fix: jit === "0" ? "sysctl -w net.core.bpf_jit_enable=1" : undefined,
  });
  const xdp = cfg
    ? flag("CONFIG_XDP_SOCKETS") === "y" || flag("CONFIG_BPF_SYSCALL") === "y"
    : kernelAtLeast(kernel, 4, 18);
  add({
    name: "xdp",
    status: xdp ? "ok" : "missing",
    detail: xdp ? "kernel supports XDP" : "kernel lacks XDP",
    fix: xdp ? undefined : "kernel ≥ 4.18 with CONFIG_BPF_SYSCALL=y",
  });
  const afxdp = cfg ? flag("CONFIG_XDP_SOCKETS") === "y" : kernelAtLeast(kernel, 4, 18);
  add({
    name: "af_xdp",
    status: afxdp ? "ok" : "missing",
    detail: cfg
      ? `CONFIG_XDP_SOCKETS=${flag("CONFIG_XDP_SOCKETS") ?? "unset"}`
      : "kernel config not readable; assumed from version",
    fix: afxdp ? undefined : "a kernel built with CONFIG_XDP_SOCKETS=y",
  });
  const btf = await exists("/sys/kernel/btf/vmlinux");
  add({
    name: "btf",
    status: btf ? "ok" : "missing",
    detail: btf ? "/sys/kernel/btf/vmlinux present" : "no kernel BTF",
    fix: btf ? undefined : "a kernel built with CONFIG_DEBUG_INFO_BTF=y",
  });
  if (opts.attach !== false) add(await fentryCheck(root && btf && libbpf > 0));
  let scx: Check;
  if (await exists("/sys/kernel/sched_ext")) {
    const state = (await readText("/sys/kernel/sched_ext/state"))?.trim() ?? "?";
    const ops = (await readText("/sys/kernel/sched_ext/root/ops"))?.trim();
    scx = { name: "sched_ext", status: "ok", detail: `state ${state}${ops ? `, ops ${ops}` : ""}` };
  } else {
    scx = {
      name: "sched_ext",
      status: "missing",
      detail: `kernel ${kernel} has no sched_ext`,
      fix: "kernel ≥ 6.12 with CONFIG_SCHED_CLASS_EXT=y",
    };
  }
  add(scx);
  const bpftool = await run(["bpftool", "version"]).catch(() => undefined);
  const bpftoolVersion = bpftool?.code === 0 ? /bpftool v([\d.]+)/.exec(bpftool.stdout)?.[1] : undefined;
  const libbpfVersion = bpftool?.code === 0 ? /libbpf v([\d.]+)/.exec(bpftool.stdout)?.[1] : undefined;
  add({
    name: "bpftool",
    status: "info",
    detail: bpftoolVersion
      ? `bpftool ${bpftoolVersion} (libbpf ${libbpfVersion ?? "?"}); only needed to develop`
      : "not installed; only needed to develop",
  });
  add({
    name: "libbpf",
    status: libbpf >= 0x10004 ? "ok" : "missing",
    detail: libbpf ? `libbpf ${libbpf >> 16}.${libbpf & 0xffff}, linked into the library` : "no libbpf in this library",
    fix: libbpf >= 0x10004 ? undefined : "rebuild the library after scripts/setup (it fetches libbpf 1.4 sources)",
  });
  const ipOk = (await run(["ip", "-V"]).catch(() => undefined))?.code === 0;
  add({
    name: "iproute2",
    status: ipOk ? "ok" : "missing",
    detail: ipOk ? "ip found" : "ip not found",
    fix: ipOk ? undefined : "apt-get install iproute2",
  });
  const modes = [
    {
      mode: "xdp",
      available: root && bpfOn,
      why: root
        ? (bpfOn ? "XDP with BPF links (program leaves with the process)" : "no BPF system call")
        : "needs root (CAP_BPF, CAP_NET_ADMIN)",
    },
    {
      mode: "afxdp",
      available: root && afxdp,
      why: root
        ? (afxdp ? "AF_XDP sockets (zero-copy where the driver has it)" : "no CONFIG_XDP_SOCKETS")
        : "needs root",
    },
    { mode: "packet", available: root, why: root ? "AF_PACKET available" : "needs root (CAP_NET_RAW)" },
  ];
  return { os: Deno.build.os, kernel, checks, modes };
}

/**
 * Whether this kernel lets fentry programs (BPF trampolines) attach: the input, network and audio
 * detectors of `sched run` and `sched observe` are fentry programs. Found by attaching the detectors
 * for a moment, the way those commands do (root and kernel BTF only).
 */
async function fentryCheck(canTry: boolean): Promise<Check> {
  const name = "fentry";
  if (!canTry) return { name, status: "info", detail: "not tried: attaching needs root and kernel BTF" };
  let absent: string[];
  try {
    const d = await Detector.start();
    try {
      absent = d.status().absent;
    } finally {
      d.close();
    }
  } catch (err) {
    return { name, status: "info", detail: `not tried: ${(err as Error).message}` };
  }
  const refused = absent.filter((a) => /refuses fentry|fentry on \S+ does not attach/.test(a));
  if (refused.length === 0) return { name, status: "ok", detail: "fentry programs attach (the detectors' hooks)" };
  const why = /\(([^)]+)\)$/.exec(refused[0])?.[1] ?? "refused";
  return {
    name,
    status: "warn",
    detail: `this kernel refuses fentry programs (${why}): sched run and sched observe go without the ${
      refused.map((a) => a.split(":")[0]).join(", ")
    } detectors; the others still run`,
  };
}

/** What macOS checks need from the system; a test passes its own. */
export interface DarwinSystem {
  root: boolean;
  run(cmd: string[]): Promise<RunResult>;
  /** Names of the /dev/bpfN nodes that exist now (XNU adds one when the last is opened). */
  devices(): Promise<string[]>;
}

async function bpfDevices(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (/^bpf\d+$/.test(e.name)) out.push(e.name);
  return out;
}

async function sysctl(sys: DarwinSystem, name: string): Promise<number | undefined> {
  const r = await sys.run(["sysctl", "-n", name]).catch(() => undefined);
  const v = r?.code === 0 ? Number(r.stdout.trim()) : NaN;
  return Number.isFinite(v) ? v : undefined;
}

/** The macOS part of `doctor`: /dev/bpf, its limits, and whether batched writes can be expected. */
export async function darwinChecks(sys: DarwinSystem): Promise<Pick<DoctorReport, "checks" | "modes">> {
  const checks: Check[] = [];
  const vr = await sys.run(["sw_vers", "-productVersion"]).catch(() => undefined);
  const version = vr?.code === 0 ? vr.stdout.trim() : undefined;
  const major = version ? Number(version.split(".")[0]) : NaN;
  checks.push({ name: "macos", status: "info", detail: version ? `macOS ${version}` : "sw_vers did not answer" });

  const devices = await sys.devices().catch(() => [] as string[]);
  const maxDevices = await sysctl(sys, "debug.bpf_maxdevices");
  checks.push({
    name: "bpf-devices",
    status: devices.length > 0 ? "ok" : "missing",
    detail: `${devices.length} /dev/bpf device${devices.length === 1 ? "" : "s"} now${
      maxDevices !== undefined ? `, up to ${maxDevices} (debug.bpf_maxdevices)` : ""
    }; the reflector takes 1, the probe 2`,
    fix: devices.length > 0 ? undefined : "no /dev/bpf: this macOS has no packet filter devices",
  });
  const cap = await sysctl(sys, "debug.bpf_bufsize_cap") ?? await sysctl(sys, "debug.bpf_maxbufsize");
  const want = 4 * 1024 * 1024;
  checks.push({
    name: "bpf-buffer",
    status: cap === undefined ? "info" : cap >= want ? "ok" : "warn",
    detail: cap === undefined
      ? "buffer cap not readable; the reflector reads back what BIOCSBLEN granted"
      : `BIOCSBLEN granted up to ${cap} bytes (fastpath asks for ${want})`,
    fix: cap !== undefined && cap < want ? `sudo sysctl -w debug.bpf_bufsize_cap=${want}` : undefined,
  });
  const batch = Number.isFinite(major) && major >= 14;
  checks.push({
    name: "batch-write",
    status: "info",
    detail: batch
      ? "BIOCSBATCHWRITE expected (macOS 14+): many frames per write(); confirmed at start"
      : "no BIOCSBATCHWRITE before macOS 14: one write() per frame",
  });
  checks.push({
    name: "sched_ext",
    status: "info",
    detail: "sched_ext is a Linux feature: fastpath sched runs on Linux 6.12+",
  });
  const available = sys.root && devices.length > 0;
  return {
    checks,
    modes: [{
      mode: "bpf",
      available,
      why: !sys.root
        ? "needs root: /dev/bpf* are root-only (run with sudo)"
        : devices.length === 0
        ? "no /dev/bpf devices"
        : `/dev/bpf + kqueue${batch ? ", batched writes" : ", one write() per frame"}`,
    }],
  };
}
