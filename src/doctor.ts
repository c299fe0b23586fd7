/** What this machine offers fastpath, each missing piece with its fix. */
import { load } from "../ffi/load.ts";
import { run } from "./net.ts";

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

export async function doctor(): Promise<DoctorReport> {
  const kernel = Deno.osRelease();
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);
  const root = Deno.uid() === 0;
  add({
    name: "root",
    status: root ? "ok" : "missing",
    detail: root ? "running as root" : `running as uid ${Deno.uid()}`,
    fix: root ? undefined : "run as root (sudo), or grant CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF",
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

  if (Deno.build.os !== "linux") {
    return {
      os: Deno.build.os,
      kernel,
      checks,
      modes: [{ mode: "bpf", available: false, why: "the macOS dataplane is not built yet" }],
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
