/**
 * The Prometheus exposition of a running command's latest interval (README "Metrics" lists the names).
 * prom-client writes the text format (# HELP, # TYPE, escaping); this file only says which JSON field
 * of the interval becomes which metric: counters end in `_total`, units are in the names (seconds,
 * bytes), and the labels are `interface`, `mode`, `signature` and `reason`.
 */
import { Counter, Gauge, Registry, Summary } from "prom-client";

/** A JSON object of the interval (snake_case keys, as docs/json.md documents it). */
export type Json = Record<string, unknown>;

/** What a metric is read from: the latest interval and the labels of the command that runs. */
export interface MetricSource {
  /** The latest interval object (reflect_interval, probe_interval, lab_interval, sched_interval), or null. */
  interval(): Json | null;
  /** Unix time the latest interval was taken, s. */
  timeS(): number | null;
  /** The reflector's interface and dataplane, the probe's interface. */
  labels(): { reflectorIface: string | null; mode: string | null; probeIface: string | null };
}

/** The reflector's counters, wherever the interval holds them (lab_interval nests them). */
function reflectorOf(iv: Json): Json | null {
  if (iv.type === "reflect_interval") return iv;
  if (iv.type === "lab_interval") return iv.reflector as Json;
  return null;
}

/** The probe's report, wherever the interval holds it. */
function probeOf(iv: Json): Json | null {
  if (iv.type === "probe_interval") return iv;
  if (iv.type === "lab_interval") return iv.probe as Json;
  return null;
}

function schedOf(iv: Json): Json | null {
  return iv.type === "sched_interval" ? iv : null;
}

const SIGNATURES = { probeot: "PROBEOT", dataot: "DATA:OT", latency: "LATENCY", rfc2544: "RFC2544", y1564: "Y.1564" };

/** drop_* counters of reflector_counters, by the reason label they get. */
const DROP_REASONS = [
  "too_short",
  "not_ours",
  "oui",
  "not_udp",
  "malformed",
  "port",
  "signature",
  "tx_error",
  "ring_full",
  "too_long",
];

/** Reflector counters exposed one to one: [metric name, help, field, scale]. */
const REFLECTOR_COUNTERS: Array<[string, string, string, number]> = [
  ["fastpath_reflector_received_frames_total", "frames the reflector received", "rx_packets", 1],
  ["fastpath_reflector_received_bytes_total", "bytes of the frames the reflector received", "rx_bytes", 1],
  ["fastpath_reflector_reflected_frames_total", "frames reflected", "tx_packets", 1],
  ["fastpath_reflector_reflected_bytes_total", "bytes of the frames reflected", "tx_bytes", 1],
  ["fastpath_reflector_batches_total", "receive batches processed", "batches", 1],
  ["fastpath_reflector_worker_cpu_seconds_total", "CPU time of the reflector's worker threads", "cpu_ns", 1e-9],
];

/** The sched_counters that only grow: [field, help]; busy_ns becomes seconds. */
export const SCHED_COUNTERS: Array<[string, string]> = [
  ["enqueued", "tasks put on the shared deadline queue"],
  ["direct_idle", "wakeups and new tasks that found an idle CPU"],
  ["direct_local", "pinned or migration-disabled tasks kept on their CPU"],
  ["dispatched", "tasks a CPU pulled from the shared queue"],
  ["kept_running", "slices renewed because nothing else was waiting"],
  ["preempt_kicks", "CPUs interrupted for a latency-critical wakeup, or for a new thread's first queueing"],
  ["foreground_runs", "times a foreground task got a CPU"],
  ["runs", "times any task got a CPU"],
  ["wakeups", "wakeups of sleeping tasks (not new tasks, not tasks queued again after a change)"],
  ["resumed", "latency-critical tasks put back first on their CPU after a wakeup preempted them"],
  ["rt_reenqueued", "times a real-time task took a CPU and the tasks queued there were queued again"],
  ["no_task_ctx", "tasks scheduled without per-task state"],
  ["signal_runs", "times a task got a CPU with its urgency raised by a detector"],
  ["handoffs", "latency-critical wakeups queued first on their waker's CPU (sync wakeups, input chains)"],
  ["busy_flips", "busy/idle transitions"],
  ["restarts", "re-attaches the kernel asked for (CPU hotplug)"],
  [
    "rt_rescues",
    "threads the real-time rescue queued again: a real-time task held their last CPU for over 20 ms with tasks left in its local queue",
  ],
];

/** Probe report fields that only grow: [metric name, help, field]. */
const PROBE_COUNTERS: Array<[string, string, string]> = [
  ["fastpath_probe_sent_frames_total", "frames the probe sent", "sent"],
  ["fastpath_probe_received_frames_total", "distinct frames that came back", "received"],
  ["fastpath_probe_lost_frames_total", "frames that did not come back within the drain window", "lost"],
  ["fastpath_probe_duplicate_frames_total", "frames that came back more than once", "duplicates"],
  ["fastpath_probe_reordered_frames_total", "frames that came back after a later one", "reordered"],
  ["fastpath_probe_bad_rewrite_frames_total", "reflections whose bytes were not the expected swap", "bad_rewrite"],
  ["fastpath_probe_send_errors_total", "send errors", "tx_errors"],
];

/** The probe's RTT percentiles as summary quantiles: 0 and 1 are min and max, as in go_gc_duration_seconds. */
const RTT_QUANTILES: Array<[number, string]> = [[0, "min"], [0.5, "p50"], [0.99, "p99"], [0.999, "p999"], [1, "max"]];

const n = (v: unknown) => (typeof v === "number" ? v : 0);

/**
 * `v` without the binary noise of a unit conversion (3.115 µs / 1e6 is 0.0000031150000000000002 s):
 * 15 significant digits, what a double holds exactly; integers as they are.
 */
export function clean(v: number): number {
  return Number.isInteger(v) || !Number.isFinite(v) ? v : Number(v.toPrecision(15));
}

/**
 * A summary whose quantiles, sum and count fastpath has already measured (prom-client's Summary would
 * estimate them from observations it never sees): `fill` hands them over at every scrape.
 */
class MeasuredSummary extends Summary<string> {
  constructor(
    readonly config: { name: string; help: string; labelNames: string[]; registers: Registry[] },
    readonly fill: (
      set: (labels: Json, quantiles: Array<[number, number]>, sum: number, count: number) => void,
    ) => void,
  ) {
    super({ ...config, percentiles: RTT_QUANTILES.map(([q]) => q) });
  }

  override get(): ReturnType<Summary<string>["get"]> {
    const { name, help } = this.config;
    const values: Array<{ metricName?: string; labels: Record<string, string | number>; value: number }> = [];
    this.fill((labels, quantiles, sum, count) => {
      const l = labels as Record<string, string>;
      for (const [q, v] of quantiles) values.push({ labels: { ...l, quantile: q }, value: clean(v) });
      values.push({ metricName: `${name}_sum`, labels: l, value: clean(sum) });
      values.push({ metricName: `${name}_count`, labels: l, value: count });
    });
    // What the registry reads to write the text (the type's `collect` is never called on it).
    return Promise.resolve({ name, help, type: "summary", values, aggregator: "sum" }) as unknown as ReturnType<
      Summary<string>["get"]
    >;
  }
}

/** Which metric families a command has: its reflector's, its probe's, its scheduler's. */
export type Family = "reflector" | "probe" | "sched";

/** A registry whose metrics (those of `families`) read `src` at every scrape. */
export function metricsRegistry(
  src: MetricSource,
  info: { command: string; version: string },
  families: Family[],
): Registry {
  const reg = new Registry();
  const registers = [reg];
  /**
   * A metric filled at every scrape from the latest interval. Counters are set from the library's own
   * totals (reset, then incremented by the total): fastpath counts, this only reports.
   */
  const metric = (kind: "counter" | "gauge"): Make => (name, help, labelNames, fill) => {
    const config = { name, help, labelNames, registers };
    type Labels = Record<string, string>;
    if (kind === "gauge") {
      return new Gauge({
        ...config,
        collect() {
          this.reset();
          fill((l, v) => this.set(l as Labels, clean(v)));
        },
      });
    }
    return new Counter({
      ...config,
      collect() {
        this.reset();
        fill((l, v) => this.inc(l as Labels, clean(Math.max(0, v))));
      },
    });
  };
  const counter = metric("counter");
  const gauge = metric("gauge");
  const each: Each = (pick, f) => {
    const iv = src.interval();
    const x = iv && pick(iv);
    if (x) f(x);
  };

  gauge("fastpath_info", "the command serving these metrics (always 1)", ["command", "version"], (set) => set(info, 1));
  gauge("fastpath_last_interval_timestamp_seconds", "Unix time of the latest interval these numbers are from", [], (
    set,
  ) => {
    const t = src.timeS();
    if (t !== null) set({}, t);
  });

  if (families.includes("reflector")) reflectorMetrics(src, counter, each);
  if (families.includes("probe")) probeMetrics(src, counter, gauge, each, registers);
  if (families.includes("sched")) schedMetrics(counter, gauge, each);
  return reg;
}

type Fill = (set: (l: Json, v: number) => void) => void;
type Make = (name: string, help: string, labelNames: string[], fill: Fill) => unknown;
type Each = <T>(pick: (iv: Json) => T | null, f: (x: T) => void) => void;

function reflectorMetrics(src: MetricSource, counter: Make, each: Each): void {
  const rl = () => {
    const l = src.labels();
    return { interface: l.reflectorIface ?? "", mode: l.mode ?? "" };
  };
  const rlabels = ["interface", "mode"];
  for (const [name, help, field, scale] of REFLECTOR_COUNTERS) {
    counter(name, help, rlabels, (set) => each(reflectorOf, (c) => set(rl(), n(c[field]) * scale)));
  }
  counter(
    "fastpath_reflector_signature_frames_total",
    "frames reflected, by the ITO signature they carried",
    [...rlabels, "signature"],
    (set) =>
      each(reflectorOf, (c) => {
        for (const [k, sig] of Object.entries(SIGNATURES)) set({ ...rl(), signature: sig }, n(c[`sig_${k}`]));
      }),
  );
  counter(
    "fastpath_reflector_dropped_frames_total",
    "frames not reflected, by why (reason: too_short, not_ours, oui, not_udp, malformed, port, signature, tx_error, ring_full, too_long)",
    [...rlabels, "reason"],
    (set) => each(reflectorOf, (c) => DROP_REASONS.forEach((r) => set({ ...rl(), reason: r }, n(c[`drop_${r}`])))),
  );
  counter(
    "fastpath_reflector_link_transitions_total",
    "times the interface went down or came back up",
    [...rlabels, "state"],
    (set) =>
      each(reflectorOf, (c) => {
        set({ ...rl(), state: "down" }, n(c.link_down));
        set({ ...rl(), state: "up" }, n(c.link_up));
      }),
  );
  counter(
    "fastpath_reflector_mac_changes_total",
    "changes of the interface's MAC the reflector followed (several within a moment can count as one; it answers for the new MAC only)",
    rlabels,
    (set) => each(reflectorOf, (c) => set(rl(), n(c.mac_changes))),
  );
}

function probeMetrics(src: MetricSource, counter: Make, gauge: Make, each: Each, registers: Registry[]): void {
  const pl = () => ({ interface: src.labels().probeIface ?? "" });
  for (const [name, help, field] of PROBE_COUNTERS) {
    counter(name, help, ["interface"], (set) => each(probeOf, (p) => set(pl(), n(p[field]))));
  }
  gauge(
    "fastpath_probe_in_flight_frames",
    "frames sent within the drain window and not back yet",
    ["interface"],
    (set) => each(probeOf, (p) => set(pl(), n(p.in_flight))),
  );
  gauge(
    "fastpath_probe_frame_loss_ratio",
    "frame loss rate so far (RFC 2544): lost of the frames sent before the drain window, 0 to 1",
    ["interface"],
    (set) => each(probeOf, (p) => set(pl(), n(p.loss_pct) / 100)),
  );
  new MeasuredSummary({
    name: "fastpath_probe_rtt_seconds",
    help: "round-trip time of the frames that came back so far: quantile 0 is the minimum, 1 the maximum",
    labelNames: ["interface"],
    registers,
  }, (set) =>
    each(probeOf, (p) => {
      const rtt = p.rtt_us as Json | null;
      if (!rtt) return;
      const count = n(p.received);
      set(pl(), RTT_QUANTILES.map(([q, k]) => [q, n(rtt[k]) / 1e6]), (n(rtt.mean) * count) / 1e6, count);
    }));
}

function schedMetrics(counter: Make, gauge: Make, each: Each): void {
  for (const [field, help] of SCHED_COUNTERS) {
    counter(`fastpath_sched_${field}_total`, help, [], (set) => each(schedOf, (s) => set({}, n(s[field]))));
  }
  counter(
    "fastpath_sched_busy_seconds_total",
    "time CPUs spent running tasks fastpath schedules",
    [],
    (set) => each(schedOf, (s) => set({}, n(s.busy_ns) / 1e9)),
  );
  gauge(
    "fastpath_sched_utilization_ratio",
    "utilisation of the last 100 ms, of all CPUs, 0 to 1",
    [],
    (set) => each(schedOf, (s) => set({}, n(s.util_pct) / 100)),
  );
  gauge(
    "fastpath_sched_busy",
    "1 while utilisation is above the busy watermark",
    [],
    (set) => each(schedOf, (s) => set({}, n(s.busy))),
  );
  gauge("fastpath_sched_cpus", "CPUs scheduled", [], (set) => each(schedOf, (s) => set({}, n(s.nr_cpus))));
}
