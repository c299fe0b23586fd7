/**
 * Every name TypeScript knows of the library: enumerations and counter fields. They are typed here
 * (so handlers and scripts get literal types) and checked against the library's own layout
 * description when it is loaded (`checkLayout`), so a value Zig gains that TypeScript does not know
 * fails at once, naming it, instead of printing as `state 5` or being dropped from a total.
 */
import type { LayoutJson } from "./layout.ts";

/** Enumerations that cross the boundary, each in the library's value order (abi.zig). */
export const ENUMS = {
  Status: [
    "ok",
    "invalid_argument",
    "no_such_device",
    "permission_denied",
    "interface_down",
    "unsupported",
    "busy",
    "out_of_memory",
    "system",
    "timeout",
  ],
  SwapMode: ["mac", "mac_ip", "all"],
  Profile: ["netally", "plain", "rfc2544", "y1564"],
  Signature: ["probeot", "dataot", "latency", "rfc2544", "y1564"],
  Verdict: ["reflect", "too_short", "not_ours", "oui", "not_udp", "malformed", "port", "signature"],
  Dataplane: ["auto", "packet", "xdp", "afxdp", "bpf"],
  Fanout: ["hash", "cpu", "lb"],
  XdpAttach: ["none", "driver", "generic", "offload"],
  ReflectorState: ["starting", "running", "stopped", "failed"],
  ProbeState: ["starting", "sending", "draining", "done", "failed"],
  SchedState: ["running", "stopped", "ejected"],
  /** The kernel's enum scx_exit_kind, as the library lists it. */
  SchedExitKind: ["none", "done", "unreg", "unreg_bpf", "unreg_kern", "sysrq", "error", "error_bpf", "error_stall"],
  /** The detectors (bits; zig/bpf/detect.h enum fp_signal). */
  Signal: ["input", "wake", "irq", "gpu", "nvidia", "pcm", "pcm_write", "net", "exec"],
  /** A thread's classes (bits; enum fp_class). */
  ThreadClass: ["input", "gpu", "audio", "net", "urgent"],
  /** A thread group's roles (bits; enum fp_role). */
  Role: ["game", "compositor", "audio_server", "audio_client"],
  /** Why the game is the game. */
  GameReason: ["none", "named", "steam", "wine_exe"],
} as const;

export type EnumName = keyof typeof ENUMS;
export type EnumKey<E extends EnumName> = (typeof ENUMS)[E][number];

/** A reflector worker's counters (abi.Counters), every u64 field. */
export const COUNTER_NAMES = [
  "rx_packets",
  "rx_bytes",
  "tx_packets",
  "tx_bytes",
  "sig_probeot",
  "sig_dataot",
  "sig_latency",
  "sig_rfc2544",
  "sig_y1564",
  "drop_too_short",
  "drop_not_ours",
  "drop_oui",
  "drop_not_udp",
  "drop_malformed",
  "drop_port",
  "drop_signature",
  "drop_tx_error",
  "drop_ring_full",
  "batches",
  "cpu_ns",
  "link_down",
  "link_up",
  "umem_missing",
  "umem_duplicated",
  "drop_too_long",
  "mac_changes",
] as const;

/** The probe's live statistics (abi.ProbeStats), every u64 field but the RTT histogram. */
export const PROBE_STAT_NAMES = [
  "sent",
  "sent_bytes",
  "received",
  "received_bytes",
  "unique",
  "duplicates",
  "reordered",
  "bad_rewrite",
  "foreign",
  "tx_errors",
  "rx_ring_drops",
  "tx_slipped",
  "tx_late_max_ns",
  "rtt_min_ns",
  "rtt_max_ns",
  "rtt_sum_ns",
  "first_tx_ns",
  "last_tx_ns",
] as const;

/** The scheduler's counters (abi.SchedCounters). */
export const SCHED_COUNTER_NAMES = [
  "enqueued",
  "direct_idle",
  "direct_local",
  "dispatched",
  "kept_running",
  "preempt_kicks",
  "foreground_runs",
  "runs",
  "busy_ns",
  "wakeups",
  "resumed",
  "rt_reenqueued",
  "no_task_ctx",
  "signal_runs",
  "handoffs",
  "util_pct",
  "busy",
  "busy_flips",
  "restarts",
  "rt_rescues",
  "nr_cpus",
  "nr_llcs",
] as const;

/** The detectors' counters (abi.DetectCounters). */
export const DETECT_COUNTER_NAMES = [
  "input_events",
  "input_windows",
  "input_boosts",
  "urgent_boosts",
  "irq_wakeups",
  "rt_wakeups",
  "gpu_submits",
  "pcm_periods",
  "pcm_writes",
  "net_sends",
  "execs",
  "exits",
  "events_lost",
] as const;

export const STRUCT_COUNTERS = {
  Counters: COUNTER_NAMES,
  ProbeStats: PROBE_STAT_NAMES,
  SchedCounters: SCHED_COUNTER_NAMES,
  DetectCounters: DETECT_COUNTER_NAMES,
} as const;

export type CounterName = (typeof COUNTER_NAMES)[number];
export type ProbeStatName = (typeof PROBE_STAT_NAMES)[number];
export type SchedCounterName = (typeof SCHED_COUNTER_NAMES)[number];
export type DetectCounterName = (typeof DETECT_COUNTER_NAMES)[number];

/**
 * Throws an Error naming every difference between what TypeScript knows (above) and what the
 * library describes: an enum value or counter one side lacks. Run on every load.
 */
export function checkLayout(json: LayoutJson): void {
  const problems: string[] = [];
  for (const [name, keys] of Object.entries(ENUMS) as Array<[EnumName, readonly string[]]>) {
    const lib = json.enums[name];
    if (!lib) {
      problems.push(`enum ${name} is not described by the library`);
      continue;
    }
    const libKeys = Object.entries(lib).sort((a, b) => a[1] - b[1]).map(([k]) => k);
    const unknown = libKeys.filter((k) => !keys.includes(k));
    const missing = keys.filter((k) => !libKeys.includes(k));
    if (unknown.length) problems.push(`enum ${name} has ${unknown.join(", ")}, which TypeScript does not know`);
    if (missing.length) problems.push(`enum ${name} lacks ${missing.join(", ")}`);
    if (!unknown.length && !missing.length && libKeys.join() !== keys.join()) {
      problems.push(`enum ${name} is ordered ${libKeys.join(", ")} in the library`);
    }
  }
  for (const [struct, names] of Object.entries(STRUCT_COUNTERS)) {
    const fields = json.structs[struct]?.fields ?? {};
    const lib = Object.entries(fields).filter(([, f]) => f.type === "u64").map(([k]) => k);
    const unknown = lib.filter((k) => !(names as readonly string[]).includes(k));
    const missing = names.filter((k) => !lib.includes(k));
    if (unknown.length) {
      problems.push(`struct ${struct} has counters ${unknown.join(", ")}, which TypeScript does not know`);
    }
    if (missing.length) problems.push(`struct ${struct} lacks counters ${missing.join(", ")}`);
  }
  if (problems.length) throw new Error(`the library and TypeScript disagree: ${problems.join("; ")}`);
}
