/** One measured run in the lab: reflector in one namespace, probe in the other, CPU accounted. */
import { cpuBusyNs, type Lab, peerForMode } from "./lab.ts";
import { type Counters, Reflector, type ReflectorOptions } from "./reflector.ts";
import { Probe, type ProbeOptions, type ProbeReport, type Rate } from "./probe.ts";

export interface LabCase {
  size: number | "imix";
  rate: Rate;
  durationMs?: number;
  count?: number;
  swap?: ReflectorOptions["swap"];
  profile?: ReflectorOptions["profile"];
  mode?: ReflectorOptions["mode"];
  vlan?: number;
  ipv6?: boolean;
  signature?: ProbeOptions["signature"];
  coalesceUs?: ReflectorOptions["coalesceUs"];
  nice?: ReflectorOptions["nice"];
}

export interface LabResult {
  case: LabCase;
  mode: string;
  probe: ProbeReport;
  reflector: Counters;
  /** Busy time of the reflector's CPU (worker, syscalls, receive softirq) per reflected frame. */
  reflectorCoreNsPerFrame: number | null;
  /**
   * Busy time of the whole machine per reflected frame: the probe's share is the same whichever mode
   * reflects, so differences between modes are differences in reflecting, wherever the kernel ran it.
   */
  machineNsPerFrame: number | null;
  /** CPU time of the reflector's worker thread alone per reflected frame. */
  workerNsPerFrame: number | null;
  /** afxdp mode: whether the device's receive interrupts were deferred (see ReflectorInfo). */
  irqDeferred?: boolean;
  /** afxdp mode: the UMEM audit after stopping (both 0 when no frame was lost or held twice). */
  umem?: { missing: number; duplicated: number };
}

function auditAfterStop(reflector: Reflector): { missing: number; duplicated: number } {
  reflector.stop();
  const s = reflector.stats();
  return { missing: s.umem_missing, duplicated: s.umem_duplicated };
}

export interface LabRunHooks {
  /** Called about every `intervalMs` with the live probe report and reflector counters. */
  onInterval?: (probe: ProbeReport, reflector: Counters) => void;
  intervalMs?: number;
  signal?: AbortSignal;
  /** Runs after the reflector started and before the probe does (benchmarks pin kernel threads here). */
  afterStart?: (reflector: Reflector) => Promise<void>;
}

export async function runLabCase(lab: Lab, c: LabCase, hooks: LabRunHooks = {}): Promise<LabResult> {
  const swap = c.swap ?? "mac-ip";
  const profile = c.profile ?? "netally";
  await using reflector = await Reflector.start({
    iface: lab.reflectorIf,
    netns: lab.reflectorNs,
    mode: c.mode ?? "auto",
    swap,
    profile,
    cpu: lab.reflectorCpu,
    coalesceUs: c.coalesceUs,
    nice: c.nice,
  });
  await peerForMode(lab, reflector.info.mode);
  await hooks.afterStart?.(reflector);
  const busy0 = await cpuBusyNs(lab.reflectorCpu);
  const before = reflector.stats();
  await using probe = await Probe.start({
    iface: lab.probeIf,
    netns: lab.probeNs,
    to: c.ipv6 ? lab.reflectorIp6 : lab.reflectorIp,
    size: c.size,
    rate: c.rate,
    durationMs: c.durationMs,
    count: c.count,
    expectSwap: swap,
    expectTosToggle: profile === "netally",
    vlan: c.vlan,
    signature: c.signature,
    cpu: lab.probeCpu,
    rxCpu: lab.probeCpu,
  });
  const onAbort = () => probe.stop();
  hooks.signal?.addEventListener("abort", onAbort);
  const timer = hooks.onInterval
    ? setInterval(() => hooks.onInterval!(probe.report(), reflector.stats()), hooks.intervalMs ?? 1000)
    : undefined;
  try {
    const report = await probe.done();
    const busy1 = await cpuBusyNs(lab.reflectorCpu);
    const after = reflector.stats();
    const reflected = after.tx_packets - before.tx_packets;
    return {
      case: c,
      mode: reflector.info.mode,
      probe: report,
      reflector: after,
      reflectorCoreNsPerFrame: reflected > 0 ? (busy1.core - busy0.core) / reflected : null,
      machineNsPerFrame: reflected > 0 ? (busy1.machine - busy0.machine) / reflected : null,
      // In xdp mode the kernel does the work: there is no worker thread to account.
      workerNsPerFrame: reflected > 0 && reflector.info.mode !== "xdp"
        ? (after.cpu_ns - before.cpu_ns) / reflected
        : null,
      irqDeferred: reflector.info.irqDeferred,
      umem: reflector.info.mode === "afxdp" ? auditAfterStop(reflector) : undefined,
    };
  } finally {
    if (timer !== undefined) clearInterval(timer);
    hooks.signal?.removeEventListener("abort", onAbort);
  }
}
