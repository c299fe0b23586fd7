/**
 * fastpath for scripts.
 *
 * ```ts
 * import { Probe, Reflector } from "./mod.ts";
 *
 * await using r = await Reflector.start({ iface: "eth0", mode: "packet" });
 * await using p = await Probe.start({ iface: "eth1", to: "192.0.2.10", rate: "100kpps", durationS: 5 });
 * const report = await p.done();
 * console.log(report.lossPct, report.rttUs?.p99, r.stats().tx_packets);
 * ```
 *
 * Frames are handled on native threads; these objects only start, stop and read counters from shared
 * memory. Every handle frees its native side on `close()` or at the end of an `await using` block.
 * Options are spelled as the CLI's flags in camelCase (`--duration-s` is `durationS`); each object's
 * defaults are one exported table (REFLECTOR_DEFAULTS, PROBE_DEFAULTS, SCHED_KNOBS, DETECT_KNOBS); the library checks
 * every value and its errors name the option as spelled here (FastpathError, with `exitCode`).
 *
 * @module
 */
export {
  type CounterName,
  type Counters,
  type Fanout,
  ITO_PORT,
  type Profile,
  type ReflectMode,
  Reflector,
  REFLECTOR_DEFAULTS,
  type ReflectorInfo,
  type ReflectorOptions,
  type SwapMode,
} from "./src/reflector.ts";
export {
  type FrameSize,
  Probe,
  PROBE_DEFAULTS,
  type ProbeOptions,
  type ProbeReport,
  probeSummary,
  type Rate,
  type RttSummary,
} from "./src/probe.ts";
export { parseRate, parseSize, type SignatureName } from "./src/parse.ts";
export {
  exitLine,
  NO_SCHED_EXT,
  resolveForeground,
  SCHED_KNOBS,
  type SchedCounters,
  type SchedExit,
  type SchedKnobs,
  type SchedStatus,
  schedStatus,
  Scheduler,
  type SchedulerOptions,
} from "./src/sched.ts";
export {
  DETECT_KNOBS,
  type DetectCounters,
  type DetectKnobs,
  type DetectOptions,
  Detector,
  type DetectStatus,
  type DetectThread,
  type RoleName,
  type SignalName,
  type ThreadClassName,
} from "./src/detect.ts";
export { type Check, doctor, type DoctorReport } from "./src/doctor.ts";
export { type Lab, type LabConfig, labDown, labUp } from "./src/lab.ts";
export { type LabCase, type LabResult, runLabCase, startLabCase } from "./src/labrun.ts";
export { FastpathError } from "./ffi/error.ts";
