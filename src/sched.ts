/**
 * The sched_ext scheduler as a TypeScript handle. Scheduling runs in the kernel; this only starts,
 * stops, names the foreground processes and reads counters from shared memory.
 */
import { load, unwrap } from "../ffi/load.ts";
import { FastpathError } from "../ffi/error.ts";
import { NativeHandle } from "../ffi/handle.ts";
import { CounterView } from "../ffi/layout.ts";

export const SCHED_EXT = "/sys/kernel/sched_ext";
export const NO_SCHED_EXT =
  "this kernel has no sched_ext: boot Linux 6.12 or newer built with CONFIG_SCHED_CLASS_EXT=y";

export interface SchedulerOptions {
  /** Slice of a task that rarely wakes (µs; default 5000). */
  sliceUs?: number;
  /** Floor that frequent wakers' slices shrink to (µs; default 500). */
  sliceMinUs?: number;
  /** Sleep credit of a rarely-waking task against the virtual clock (µs; default 2000). */
  lagUs?: number;
  /** Ceiling of the sleep credit of frequent wakers (µs; default 20000). */
  lagMaxUs?: number;
  /** Wake frequency above which slices shrink (Hz; default 30). */
  wakeRefHz?: number;
  /** Wake frequency from which a wakeup may preempt (Hz; default 50). */
  latencyHz?: number;
  /** Busy/idle hysteresis watermarks (% of all CPUs; defaults 75 / 50). */
  busyHighPct?: number;
  busyLowPct?: number;
  /** Processes (PIDs or names) whose threads run with `foregroundWeightPct` of their weight. */
  foreground?: Array<number | string>;
  /** Weight of foreground tasks in % of their own (default 400). */
  foregroundWeightPct?: number;
  /** sched_ext watchdog: a runnable task waiting this long ejects the scheduler (ms; 0 = kernel default 30000). */
  watchdogMs?: number;
  /** Test only: load the deliberately stalling build, which starves this process until the kernel ejects it. */
  testStallPid?: number;
}

export const SCHED_DEFAULTS = {
  sliceUs: 5000,
  sliceMinUs: 500,
  lagUs: 2000,
  lagMaxUs: 20000,
  wakeRefHz: 30,
  latencyHz: 50,
  busyHighPct: 75,
  busyLowPct: 50,
  foregroundWeightPct: 400,
  watchdogMs: 0,
} as const;

export type SchedCounterName =
  | "enqueued"
  | "direct_idle"
  | "direct_local"
  | "dispatched"
  | "kept_running"
  | "preempt_kicks"
  | "foreground_runs"
  | "runs"
  | "busy_ns"
  | "wakeups"
  | "util_pct"
  | "busy"
  | "busy_flips"
  | "restarts"
  | "nr_cpus"
  | "nr_llcs";
export type SchedCounters = Record<SchedCounterName, number>;

/** What ops.exit saw when the scheduler went away. */
export interface SchedExit {
  kind: number;
  /** SCX_EXIT_* without the prefix, lower case: "unreg", "error", "error_stall", … */
  kindName: string;
  exitCode: bigint;
  reason: string;
  msg: string;
  /** kind >= 1024: the kernel ejected the scheduler for an error or a stall. */
  error: boolean;
}

const EXIT_KINDS: Record<number, string> = {
  0: "none",
  1: "done",
  64: "unreg",
  65: "unreg_bpf",
  66: "unreg_kern",
  67: "sysrq",
  1024: "error",
  1025: "error_bpf",
  1026: "error_stall",
};

/** The kernel's view, from /sys/kernel/sched_ext (no privilege needed). */
export interface SchedStatus {
  present: boolean;
  state?: string;
  /** Name of the attached scheduler ("" when none). */
  ops?: string;
  enableSeq?: number;
  hotplugSeq?: number;
}

function readSys(name: string): string | undefined {
  try {
    return Deno.readTextFileSync(`${SCHED_EXT}/${name}`).trim();
  } catch {
    return undefined;
  }
}

export function schedStatus(): SchedStatus {
  const state = readSys("state");
  if (state === undefined) return { present: false };
  return {
    present: true,
    state,
    ops: readSys("root/ops") ?? "",
    enableSeq: Number(readSys("enable_seq") ?? NaN),
    hotplugSeq: Number(readSys("hotplug_seq") ?? NaN),
  };
}

/** Every PID whose command name (comm, or the executable's base name) is `name`. */
export function pidsNamed(name: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const comm = Deno.readTextFileSync(`/proc/${e.name}/comm`).trim();
      let exe = "";
      try {
        exe = Deno.readLinkSync(`/proc/${e.name}/exe`).split("/").pop() ?? "";
      } catch { /* kernel threads and other users' processes */ }
      if (comm === name || comm === name.slice(0, 15) || exe === name) out.push(Number(e.name));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/** Resolves PIDs and names to thread group ids (a PID that is a thread maps to its process). */
export function resolveForeground(specs: Array<number | string>): { tgids: number[]; missing: string[] } {
  const tgids = new Set<number>();
  const missing: string[] = [];
  for (const spec of specs) {
    const s = String(spec).trim();
    if (/^\d+$/.test(s)) {
      try {
        const status = Deno.readTextFileSync(`/proc/${s}/status`);
        tgids.add(Number(/^Tgid:\s+(\d+)/m.exec(status)?.[1] ?? s));
      } catch {
        missing.push(s);
      }
      continue;
    }
    const found = pidsNamed(s);
    if (found.length === 0) missing.push(s);
    for (const p of found) tgids.add(p);
  }
  return { tgids: [...tgids].sort((a, b) => a - b), missing };
}

function check(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new FastpathError("usage", `--${name} must be a whole number from ${min} to ${max}, not ${v}`);
  }
  return v;
}

export class Scheduler extends NativeHandle {
  readonly #native;
  readonly #layout;
  readonly #counters: CounterView<SchedCounterName>;
  readonly #exitPtr: Deno.PointerObject;
  readonly #exitSpec;
  readonly options: Required<Omit<SchedulerOptions, "foreground" | "testStallPid">>;
  #foreground: number[] = [];

  private constructor(
    handle: Deno.PointerObject,
    lib: Awaited<ReturnType<typeof load>>,
    options: Required<Omit<SchedulerOptions, "foreground" | "testStallPid">>,
  ) {
    super(handle, "scheduler");
    this.#native = lib.native;
    this.#layout = lib.layout;
    const spec = lib.layout.struct("SchedCounters");
    this.#counters = new CounterView(
      lib.native.fp_sched_counters(handle)!,
      spec.size,
      lib.layout.u64Fields("SchedCounters"),
    );
    this.#exitPtr = lib.native.fp_sched_exit_info(handle)!;
    this.#exitSpec = lib.layout.struct("SchedExit");
    this.options = options;
  }

  /** Throws the reason a scheduler cannot attach now (no sched_ext, not root, another one attached). */
  static async preflight(): Promise<void> {
    const { native, layout } = await load();
    unwrap(native, layout, native.fp_sched_preflight(), "cannot attach a scheduler");
  }

  /** Counters of the fastpath scheduler attached now, by whichever process attached it. */
  static async readAttached(): Promise<SchedCounters> {
    const { native, layout } = await load();
    const b = layout.builder("SchedCounters");
    unwrap(native, layout, native.fp_sched_read_attached(b.bytes), "cannot read the scheduler's counters");
    const words = new BigUint64Array(b.bytes.buffer);
    const out = {} as SchedCounters;
    for (const [name, i] of layout.u64Fields("SchedCounters")) out[name as SchedCounterName] = Number(words[i]);
    return out;
  }

  /** Attaches the scheduler: from here every normal task is scheduled by it, in the kernel. */
  static async start(o: SchedulerOptions = {}): Promise<Scheduler> {
    const lib = await load();
    const { native, layout } = lib;
    const d = { ...SCHED_DEFAULTS };
    for (const [k, v] of Object.entries(o)) {
      if (v !== undefined && k in d) (d as Record<string, number>)[k] = v as number;
    }
    const opts = {
      sliceUs: check("slice-us", d.sliceUs, 50, 100_000),
      sliceMinUs: check("slice-min-us", d.sliceMinUs, 10, 100_000),
      lagUs: check("lag-us", d.lagUs, 0, 1_000_000),
      lagMaxUs: check("lag-max-us", d.lagMaxUs, 0, 1_000_000),
      wakeRefHz: check("wake-ref-hz", d.wakeRefHz, 1, 1_000_000),
      latencyHz: check("latency-hz", d.latencyHz, 1, 1_000_000),
      busyHighPct: check("busy-high-pct", d.busyHighPct, 0, 100),
      busyLowPct: check("busy-low-pct", d.busyLowPct, 0, 100),
      foregroundWeightPct: check("foreground-weight-pct", d.foregroundWeightPct, 1, 10_000),
      watchdogMs: check("watchdog-ms", d.watchdogMs, 0, 30_000),
    };
    const fg = o.foreground?.length ? resolveForeground(o.foreground) : { tgids: [], missing: [] };
    if (fg.missing.length && fg.tgids.length === 0 && o.foreground?.every((s) => /^\d+$/.test(String(s)))) {
      throw new FastpathError(
        "usage",
        `--foreground: no process ${fg.missing.join(", ")}: give a running PID or a process name`,
      );
    }
    const b = layout.builder("SchedOptions")
      .set("slice_us", opts.sliceUs)
      .set("slice_min_us", opts.sliceMinUs)
      .set("lag_us", opts.lagUs)
      .set("lag_max_us", opts.lagMaxUs)
      .set("wake_ref_hz", opts.wakeRefHz)
      .set("latency_hz", opts.latencyHz)
      .set("busy_high_pct", opts.busyHighPct)
      .set("busy_low_pct", opts.busyLowPct)
      .set("foreground_weight_pct", opts.foregroundWeightPct)
      .set("watchdog_ms", opts.watchdogMs)
      .set("stall_tgid", o.testStallPid ?? 0);
    const out = new BigUint64Array(1);
    unwrap(native, layout, native.fp_sched_start(b.bytes, out), "cannot attach the scheduler");
    const s = new Scheduler(Deno.UnsafePointer.create(out[0])!, lib, opts);
    if (fg.tgids.length) s.setForeground(fg.tgids);
    return s;
  }

  /** Live counters from shared memory (folded from per-CPU counters every 100 ms). */
  stats(): SchedCounters {
    this.live();
    return this.#counters.snapshot();
  }

  /** "running", "stopped" (detached on request) or "ejected" (by the kernel; see `exitInfo()`). */
  state(): "running" | "stopped" | "ejected" {
    const s = this.#native.fp_sched_state(this.live());
    return s === 1 ? "running" : s === 2 ? "stopped" : "ejected";
  }

  /** Foreground thread groups now (tgids). */
  get foreground(): number[] {
    return [...this.#foreground];
  }

  /** Replaces the foreground set (PIDs; resolve names with `resolveForeground`). */
  setForeground(tgids: number[], weightPct = this.options.foregroundWeightPct): void {
    const arr = new Uint32Array(tgids);
    const status = this.#native.fp_sched_set_foreground(this.live(), new Uint8Array(arr.buffer), arr.length, weightPct);
    unwrap(this.#native, this.#layout, status, "setting the foreground");
    this.#foreground = [...tgids];
  }

  /** Resolves true as soon as the kernel ejects the scheduler, false after `timeoutMs`. */
  async waitEjected(timeoutMs: number): Promise<boolean> {
    if (this.state() === "ejected") return true;
    await this.#native.fp_sched_wait(this.live(), Math.max(0, Math.round(timeoutMs)));
    return this.state() === "ejected";
  }

  /** Why the scheduler went away (kind 0 while it runs). */
  exitInfo(): SchedExit {
    this.live();
    const size = this.#exitSpec.size;
    const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(this.#exitPtr, size).slice(0));
    const view = new DataView(bytes.buffer);
    const f = (n: string) => this.#exitSpec.fields[n].offset;
    const str = (n: string, len: number) => {
      const raw = bytes.subarray(f(n), f(n) + len);
      const end = raw.indexOf(0);
      return new TextDecoder().decode(raw.subarray(0, end < 0 ? len : end));
    };
    const kind = view.getInt32(f("kind"), true);
    return {
      kind,
      kindName: EXIT_KINDS[kind] ?? `kind_${kind}`,
      exitCode: view.getBigInt64(f("exit_code"), true),
      reason: str("reason", 128),
      msg: str("msg", 1024),
      error: kind >= 1024,
    };
  }

  /** Detaches (the kernel runs ops.exit; every task goes back to the fair class) and says why it ended. */
  stop(): SchedExit {
    this.#native.fp_sched_stop(this.live());
    return this.exitInfo();
  }

  protected free(handle: Deno.PointerObject): void {
    this.#native.fp_sched_close(handle);
  }
}

/** `EXIT: reason (msg)`, the line the CLI prints when a scheduler goes away. */
export function exitLine(e: SchedExit): string {
  const reason = e.reason || e.kindName;
  return `EXIT: ${reason}${e.msg ? ` (${e.msg})` : ""}`;
}
