/**
 * fastpath for scripts.
 *
 * ```ts
 * import { Probe, Reflector } from "./mod.ts";
 *
 * await using r = await Reflector.start({ iface: "eth0", mode: "packet" });
 * await using p = await Probe.start({ iface: "eth1", to: "192.0.2.10", rate: { pps: 100_000 }, durationMs: 5000 });
 * const report = await p.done();
 * console.log(report.lossPct, report.rttUs?.p99, r.stats().tx_packets);
 * ```
 *
 * Frames are handled on native threads; these objects only start, stop and read counters from shared
 * memory. Every handle frees its native side on `close()` or at the end of an `await using` block.
 *
 * @module
 */
export {
  type CounterName,
  type Counters,
  type Fanout,
  type Profile,
  type ReflectMode,
  Reflector,
  type ReflectorInfo,
  type ReflectorOptions,
  type SignatureName,
  type SwapMode,
} from "./src/reflector.ts";
export { Probe, type ProbeOptions, type ProbeReport, probeSummary, type Rate, type RttSummary } from "./src/probe.ts";
export {
  exitLine,
  NO_SCHED_EXT,
  resolveForeground,
  type SchedCounters,
  type SchedExit,
  type SchedStatus,
  schedStatus,
  Scheduler,
  type SchedulerOptions,
} from "./src/sched.ts";
export { type Check, doctor, type DoctorReport } from "./src/doctor.ts";
export { type Lab, type LabConfig, labDown, labUp } from "./src/lab.ts";
export { type LabCase, type LabResult, runLabCase } from "./src/labrun.ts";
export { FastpathError } from "./ffi/error.ts";
