/** One measured run in the lab: reflector in one namespace, probe in the other, CPU accounted. */
import { cpuBusyNs, type Lab, peerForMode } from "./lab.ts";
import { type Counters, Reflector, type ReflectorOptions } from "./reflector.ts";
import { Probe, type ProbeOptions, type ProbeReport } from "./probe.ts";
import type { FrameSize, Rate } from "./parse.ts";

export interface LabCase {
  size: FrameSize | string;
  rate: Rate | string;
  durationS?: number;
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
  /** CPU time of the reflector's worker thread alone per reflected frame (null in xdp mode: no worker). */
  workerNsPerFrame: number | null;
  /** afxdp mode: whether the device's receive interrupts were deferred (see ReflectorInfo). */
  irqDeferred: boolean | null;
  /** afxdp mode: the UMEM audit after stopping (both 0 when no frame was lost or held twice). */
  umem: { missing: number; duplicated: number } | null;
  /** The rate the probe was asked for, frames/s (0: as fast as it could). */
  ratePps: number;
}

/** A case in progress: both ends running; `done()` waits for the probe and measures. */
export interface RunningCase extends AsyncDisposable {
  readonly reflector: Reflector;
  readonly probe: Probe;
  /** Stops sending early; `done()` still resolves after the drain. */
  stop(): void;
  done(): Promise<LabResult>;
}

export interface LabRunHooks {
  /** Runs after the reflector started and before the probe does (benchmarks pin kernel threads here). */
  afterStart?: (reflector: Reflector) => Promise<void>;
  /** Aborting it ends the probe's start early (see ProbeOptions.signal). */
  signal?: AbortSignal;
}

/**
 * Starts the reflector on the lab's reflector side and a probe against it. The probe expects exactly
 * what the started reflector reports it does (its swap, its TOS toggle, its port), not a re-derivation.
 */
export async function startLabCase(lab: Lab, c: LabCase, hooks: LabRunHooks = {}): Promise<RunningCase> {
  // xdp mode (and auto, which would pick it) needs XDP on the probe's side from the start: without it
  // the veth could not hand XDP_TX frames over, and the reflector refuses xdp mode.
  await peerForMode(lab, !c.mode || c.mode === "auto" ? "xdp" : c.mode);
  const reflector = await Reflector.start({
    iface: lab.reflectorIf,
    netns: lab.reflectorNs,
    mode: c.mode,
    swap: c.swap,
    profile: c.profile,
    // xdp mode has no worker to pin (and refuses `cpu`): the kernel reflects where frames arrive.
    cpu: c.mode === "xdp" ? undefined : lab.reflectorCpu,
    coalesceUs: c.coalesceUs,
    nice: c.nice,
  });
  let probe: Probe;
  let busy0: { core: number; machine: number };
  let before: Counters;
  try {
    await peerForMode(lab, reflector.info.mode);
    await hooks.afterStart?.(reflector);
    busy0 = await cpuBusyNs(lab.reflectorCpu);
    before = reflector.stats();
    probe = await Probe.start({
      iface: lab.probeIf,
      netns: lab.probeNs,
      to: c.ipv6 ? lab.reflectorIp6 : lab.reflectorIp,
      size: c.size,
      rate: c.rate,
      durationS: c.durationS,
      count: c.count,
      port: reflector.info.port || undefined,
      expectSwap: reflector.info.swap,
      expectTosToggle: reflector.info.tosToggle,
      vlan: c.vlan,
      signature: c.signature,
      cpu: lab.probeCpu,
      rxCpu: lab.probeCpu,
      signal: hooks.signal,
    });
  } catch (err) {
    reflector.close();
    throw err;
  }
  const close = () => {
    probe.close();
    reflector.close();
  };
  return {
    reflector,
    probe,
    stop: () => probe.stop(),
    async done(): Promise<LabResult> {
      const report = await probe.done();
      const busy1 = await cpuBusyNs(lab.reflectorCpu);
      const after = reflector.stats();
      const reflected = after.tx_packets - before.tx_packets;
      const mode = reflector.info.mode;
      let umem: LabResult["umem"] = null;
      if (mode === "afxdp") {
        reflector.stop();
        const s = reflector.stats();
        umem = { missing: s.umem_missing, duplicated: s.umem_duplicated };
      }
      return {
        // The size the probe sent: "min" as the number it became.
        case: { ...c, size: probe.options.size },
        mode,
        probe: report,
        reflector: after,
        reflectorCoreNsPerFrame: reflected > 0 ? (busy1.core - busy0.core) / reflected : null,
        machineNsPerFrame: reflected > 0 ? (busy1.machine - busy0.machine) / reflected : null,
        // In xdp mode the kernel does the work: there is no worker thread to account.
        workerNsPerFrame: reflected > 0 && mode !== "xdp" ? (after.cpu_ns - before.cpu_ns) / reflected : null,
        irqDeferred: reflector.info.irqDeferred,
        umem,
        ratePps: probe.options.ratePps,
      };
    },
    [Symbol.asyncDispose]: () => Promise.resolve(close()),
  };
}

/** Runs one case to its end and returns what was measured. */
export async function runLabCase(lab: Lab, c: LabCase, hooks: LabRunHooks = {}): Promise<LabResult> {
  await using running = await startLabCase(lab, c, hooks);
  return await running.done();
}
