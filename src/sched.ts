/**
 * The sched_ext scheduler as a TypeScript handle. Scheduling runs in the kernel; this only starts,
 * stops, names the foreground processes and reads counters from shared memory.
 */
import { type Lib, load } from "../ffi/load.ts";
import { apiText, cliText, FastpathError, snake } from "../ffi/error.ts";
import { NativeHandle } from "../ffi/handle.ts";
import { CounterView, setAll, textAt } from "../ffi/layout.ts";
import type { SchedCounterName } from "../ffi/enums.ts";
import {
  detectKnobs,
  type DetectOptions,
  Detector,
  isPidSpec,
  optionsStruct,
  processSpec,
  procFacts,
} from "./detect.ts";

export type { SchedCounterName };
export const SCHED_EXT = "/sys/kernel/sched_ext";
/**
 * Why a kernel of this `release` (uname -r) has no sched_ext: too old, or 6.12+ built without it (then
 * "boot 6.12 or newer" would send the user after the kernel they run). The library says the same.
 */
export function noSchedExt(release: string = Deno.osRelease()): string {
  const [major, minor] = release.split(/[.-]/).map(Number);
  return major > 6 || (major === 6 && minor >= 12)
    ? "this kernel has no sched_ext: it was built without CONFIG_SCHED_CLASS_EXT=y; boot one built with it"
    : "this kernel has no sched_ext: boot Linux 6.12 or newer built with CONFIG_SCHED_CLASS_EXT=y";
}
/** This kernel's `noSchedExt()`. */
export const NO_SCHED_EXT: string = Deno.build.os === "linux" ? noSchedExt() : noSchedExt("0");

/**
 * The scheduler's tunables, each with its unit in its name: the one place its default is written
 * (the CLI's `sched run` flags and help are made from this table). The library checks the ranges and
 * names a knob as spelled here; sched.h says what each does in the kernel.
 */
export const SCHED_KNOBS = {
  sliceUs: { default: 5000, help: "slice of a task that rarely wakes, µs" },
  sliceMinUs: { default: 500, help: "floor for slices of tasks that wake often (and fastpath's own slice), µs" },
  lagUs: { default: 2000, help: "sleep credit of a rarely-waking task, µs" },
  lagMaxUs: { default: 20000, help: "ceiling of the sleep credit of tasks that wake often, µs" },
  wakeRefHz: { default: 30, help: "wake frequency above which slices shrink, Hz" },
  latencyHz: { default: 50, help: "wake frequency from which a wakeup may preempt, Hz" },
  busyHighPct: { default: 75, help: "CPU use above which the system counts as busy (wakeups stay in their LLC), %" },
  busyLowPct: { default: 50, help: "CPU use below which it counts as idle again, %" },
  foregroundWeightPct: { default: 400, help: "weight of --foreground tasks, % of their own" },
  watchdogMs: {
    default: 0,
    help: "eject the scheduler when a runnable task waits this long (0 = kernel default, 30000), ms",
  },
} as const;

export type SchedKnob = keyof typeof SCHED_KNOBS;
/** SchedOptions fields that are modes, not knobs. */
const MODE_FIELDS = ["stall_tgid", "partial", "signals", "detect"];
export type SchedKnobs = Record<SchedKnob, number>;

export type SchedulerOptions = Partial<SchedKnobs> & {
  /**
   * Processes (PIDs or names) whose threads run with `foregroundWeightPct` of their weight, at most
   * 64. A name matches a process's command name (a name over 15 bytes: its first 15, all the kernel
   * keeps) or its executable's base name. The kernel matches the names at each exec and at each
   * rename of a process (a Wine game execs as wine64-preloader, then takes its .exe's name), so a game
   * is foreground from its first instruction however late this process runs - in the VM beside eight
   * CPU hogs, with this process stopped, 190-196 runs as foreground for the 180 frames of a 3 s probe.
   * Not so, and up to a second later: an executable's name over 62 bytes (matched by the library at
   * the exec the detectors report), a set already full, partial mode (the game is ours only once the
   * library has moved its threads to SCHED_EXT). The library looks all names up again every second;
   * a PID whose process ended is dropped at that look.
   */
  foreground?: Array<number | string>;
  /**
   * Partial mode (SCX_OPS_SWITCH_PARTIAL): only the `foreground` processes' threads and the game the
   * detectors found (moved to the SCHED_EXT policy, SCHED_RESET_ON_FORK kept; when a process
   * leaves the foreground or stops being the game, and at stop, back to the policy they had, the
   * threads and processes they started since to SCHED_NORMAL) are scheduled by fastpath; every other
   * task stays on the kernel's default scheduler, with its protection against real-time hogs - and
   * runs first: the kernel ranks its fair class above sched_ext, so the game gets only the CPU time
   * the rest leaves (beside two CPU hogs in the VM, 6 frames of 480). For a machine where little else runs.
   */
  partial?: boolean;
  /**
   * The detectors (default on): the game, its input chain, GPU-submit, audio and network threads,
   * and wakeups from interrupts and real-time tasks raise a thread's urgency (src/detect.ts). Off:
   * the policy alone.
   */
  signals?: boolean;
  /** The detectors' options: the game, the compositor, their knobs (DETECT_KNOBS), signals left off. */
  detect?: DetectOptions;
  /** Test only: load the deliberately stalling build, which starves this process until the kernel ejects it. */
  testStallPid?: number;
};

export type SchedCounters = Record<SchedCounterName, number>;

/** What ops.exit saw when the scheduler went away. */
export interface SchedExit {
  kind: number;
  /** SCX_EXIT_* without the prefix, lower case: "unreg", "error", "error_stall", … */
  kindName: string;
  exitCode: bigint;
  reason: string;
  /** The kernel's or the scheduler's message; the library's explanation of a stall appended. */
  msg: string;
  /** `msg` with option names still marked (ffi/error.ts), for the CLI to spell as flags. */
  msgMarked: string;
  /** kind >= 1024: the kernel ejected the scheduler for an error or a stall. */
  error: boolean;
}

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

/**
 * Threads whose policy is SCHED_EXT (7) - with no scheduler attached, those a partial-mode loader
 * killed by SIGKILL could not put back (or one re-attaching after a CPU hotplug right now): they run
 * as SCHED_NORMAL meanwhile, but the next sched_ext scheduler to attach takes them, partial mode or
 * not. `tids` are the threads, `pids` their processes (both ascending). Reads
 * /proc/PID/task/TID/stat (proc(5): field 41, policy); a thread gone meanwhile is skipped.
 */
export function extPolicyThreads(): { tids: number[]; pids: number[] } {
  const tids: number[] = [];
  const pids = new Set<number>();
  for (const p of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(p.name)) continue;
    let tasks: Deno.DirEntry[];
    try {
      tasks = [...Deno.readDirSync(`/proc/${p.name}/task`)];
    } catch {
      continue; // gone meanwhile
    }
    for (const t of tasks) {
      let stat: string;
      try {
        stat = Deno.readTextFileSync(`/proc/${p.name}/task/${t.name}/stat`);
      } catch {
        continue; // gone meanwhile
      }
      // Fields after the command name (which may hold spaces and parentheses) start at field 3.
      const policy = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[41 - 3]);
      if (policy !== SCHED_EXT_POLICY) continue;
      tids.push(Number(t.name));
      pids.add(Number(p.name));
    }
  }
  return { tids: tids.sort((a, b) => a - b), pids: [...pids].sort((a, b) => a - b) };
}

/** SCHED_EXT's policy number (include/uapi/linux/sched.h). */
const SCHED_EXT_POLICY = 7;

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
  const missing = new Set<string>(); // once each: `--foreground 12,12` names one missing process
  for (const spec of specs) {
    const s = String(spec).trim();
    if (isPidSpec(s)) {
      const facts = procFacts(Number(s)); // "01" is PID 1
      if (facts) tgids.add(facts.tgid);
      else missing.add(String(Number(s))); // 04194303 is 4194303
      continue;
    }
    const found = pidsNamed(s);
    if (found.length === 0) missing.add(s);
    for (const p of found) tgids.add(p);
  }
  return { tgids: [...tgids].sort((a, b) => a - b), missing: [...missing] };
}

/**
 * What `Scheduler.start` refuses before it loads anything, as a usage error naming the option: a
 * `foreground` entry, `detect.game` or `detect.compositor` that names no process (processSpec);
 * detector options with the detectors off; `partial` with neither a foreground nor the detectors.
 * `fastpath service print sched` runs it on a unit's flags, so a unit never holds what a start refuses.
 */
export function checkSchedOptions(o: SchedulerOptions): void {
  checkForeground(o.foreground ?? []);
  if (o.detect?.game !== undefined) processSpec("game", o.detect.game);
  if (o.detect?.compositor !== undefined) processSpec("compositor", o.detect.compositor);
  if (o.signals === false) {
    const given = Object.entries(o.detect ?? {}).find(([, v]) => v !== undefined && !(Array.isArray(v) && !v.length));
    if (given) {
      throw new FastpathError(
        "usage",
        `\`${given[0]}\` is a detector setting, and the detectors are off (--no-signals): drop one of them`,
      );
    }
  }
  if (o.partial && !o.foreground?.length && o.signals === false) {
    throw new FastpathError(
      "usage",
      "`partial` schedules only the foreground and the detected game: name one with `foreground`, or leave the detectors on",
    );
  }
}

/**
 * A foreground list as `Scheduler.start` and `setForeground` take it: at most 64 entries, each a
 * PID from 1 to PID_MAX (a whole number) or a process name of at most 255 bytes with no '/' or NUL.
 * Throws FastpathError("usage") naming the entry.
 */
export function checkForeground(specs: Array<number | string>): void {
  for (const spec of specs) {
    if (String(spec).trim() === "") {
      throw new FastpathError(
        "usage",
        specs.every((x) => String(x).trim() === "")
          ? "`foreground` is empty: give a process name or a PID"
          : "`foreground` has an empty entry: give a process name or a PID in each (no comma at either end of the list, none doubled)",
      );
    }
    processSpec("foreground", spec, true);
    // What the library takes (sched.zig setForeground), refused here before anything attaches.
    const s = String(spec).trim();
    if (s.includes("\0") || new TextEncoder().encode(s).length > 255) {
      throw new FastpathError(
        "usage",
        `\`foreground\`: '${s.slice(0, 40)}${
          s.length > 40 ? "…" : ""
        }' is not a process name: give the command or executable's base name (at most 255 bytes, no '/') or a PID`,
      );
    }
  }
  if (specs.length > 64) {
    throw new FastpathError("usage", `\`foreground\` takes at most 64 entries, not ${specs.length}: name fewer`);
  }
  // The library's other limit (sched.zig setForeground), here too so a start refuses before it attaches.
  const names = specs.filter((x) => !isPidSpec(x)).map((x) => String(x).trim()).join("\0");
  if (new TextEncoder().encode(names).length > 4096) {
    throw new FastpathError("usage", "`foreground` names take at most 4096 bytes together: name fewer or shorter");
  }
}

/** struct fp_sched_options for a start with `o` and its knob values (each set checked against its C type). */
function schedOptionsBytes(lib: Lib, o: SchedulerOptions, knobs: SchedKnobs): Uint8Array {
  return setAll(lib.layout.builder("SchedOptions"), knobs)
    .set("stall_tgid", o.testStallPid ?? 0, "testStallPid")
    .set("partial", o.partial === true)
    .set("signals", o.signals !== false)
    .setStruct("detect", optionsStruct(lib, o.detect ?? {}))
    .bytes;
}

/**
 * What `Scheduler.start` checks before it attaches, but for the foreground's processes: the option
 * rules, that the library has no knob SCHED_KNOBS lacks (exit 8: the library and this side differ),
 * each knob's range and the relations between knobs (the library's own check). Loads the library;
 * works on a machine with or without sched_ext: for a command line kept for later (`service print
 * sched`). Throws FastpathError.
 */
export async function checkSchedStart(o: SchedulerOptions, what = "sched run would refuse it"): Promise<void> {
  await checkedStart(o, what);
}

/** checkSchedStart's checks; returns what they built, for `Scheduler.start` to attach with. */
async function checkedStart(
  o: SchedulerOptions,
  what: string,
): Promise<{ lib: Lib; knobs: SchedKnobs; bytes: Uint8Array }> {
  checkSchedOptions(o);
  const lib = await load();
  const unknown = Object.keys(lib.layout.struct("SchedOptions").fields)
    .filter((f) => !MODE_FIELDS.includes(f) && !Object.keys(SCHED_KNOBS).some((k) => snake(k) === f));
  if (unknown.length) {
    throw new FastpathError("library", `the library has knobs SCHED_KNOBS lacks: ${unknown.join(", ")}`);
  }
  const knobs = schedKnobs(o);
  const bytes = schedOptionsBytes(lib, o, knobs);
  lib.unwrap(lib.native.fp_sched_check(bytes), what);
  return { lib, knobs, bytes };
}

/** The knob values a start uses: each given one, else its default. */
export function schedKnobs(o: Partial<SchedKnobs> = {}): SchedKnobs {
  const out = {} as SchedKnobs;
  for (const k of Object.keys(SCHED_KNOBS) as SchedKnob[]) out[k] = o[k] ?? SCHED_KNOBS[k].default;
  return out;
}

export class Scheduler extends NativeHandle {
  readonly #lib: Lib;
  readonly #counters: CounterView<SchedCounterName>;
  readonly #exitPtr: Deno.PointerObject;
  /** The knob values it runs with. */
  readonly options: SchedKnobs;
  /** Partial mode: only the foreground is scheduled by fastpath. */
  readonly partial: boolean;
  #detector: Detector | undefined;

  private constructor(handle: Deno.PointerObject, lib: Lib, options: SchedKnobs, partial: boolean) {
    super(handle, "scheduler");
    this.#lib = lib;
    const spec = lib.layout.struct("SchedCounters");
    this.#counters = new CounterView(
      lib.native.fp_sched_counters(handle)!,
      spec.size,
      lib.layout.u64Fields("SchedCounters"),
    );
    this.#exitPtr = lib.native.fp_sched_exit_info(handle)!;
    this.options = options;
    this.partial = partial;
  }

  /** Throws the reason a scheduler cannot attach now (no sched_ext, not root, another one attached). */
  static async preflight(): Promise<void> {
    const lib = await load();
    lib.unwrap(lib.native.fp_sched_preflight(), "cannot attach a scheduler");
  }

  /** Counters of the fastpath scheduler attached now, by whichever process attached it. */
  static async readAttached(): Promise<SchedCounters> {
    const lib = await load();
    const b = lib.layout.builder("SchedCounters");
    lib.unwrap(lib.native.fp_sched_read_attached(b.bytes), "cannot read the scheduler's counters");
    const words = new BigUint64Array(b.bytes.buffer);
    const out = {} as SchedCounters;
    for (const [name, i] of lib.layout.u64Fields("SchedCounters")) out[name as SchedCounterName] = Number(words[i]);
    return out;
  }

  /**
   * Attaches the scheduler: from here every normal task is scheduled by it, in the kernel. The
   * library checks every knob (errors name it as spelled in SCHED_KNOBS). Throws FastpathError.
   * While it is attached, the calling process (every thread of it) gets no favour: never
   * latency-critical, no sleep credit, the shortest slice (zig/bpf/sched.h, fp_task_class) - run a
   * game, or anything that must be prompt, in another process.
   */
  static async start(o: SchedulerOptions = {}): Promise<Scheduler> {
    // What start checks first, with nothing in front of its message: a knob's fault is the
    // caller's, not a failure to attach. The library's layout is checked there before the knobs
    // cross into it.
    const { lib, knobs, bytes } = await checkedStart(o, "");
    // Only a list of PIDs alone can name no process now: names are the library's to match, later
    // too (setForeground), and a scan of /proc here would be done again there.
    const pids = o.foreground?.filter(isPidSpec) ?? [];
    const fg = pids.length ? resolveForeground(pids) : null;
    if (fg && fg.tgids.length === 0 && pids.length === o.foreground!.length) {
      throw new FastpathError(
        "usage",
        `\`foreground\`: no process ${fg.missing.join(", ")}: give a running PID or a process name`,
      );
    }
    // What setForeground would refuse after the attach (init, a kernel thread), refused before it.
    if (fg?.tgids.length) {
      const arr = new Uint32Array(fg.tgids);
      lib.unwrap(lib.native.fp_sched_check_foreground(new Uint8Array(arr.buffer), arr.length), "`foreground`");
    }
    const signals = o.signals !== false;
    const out = new BigUint64Array(1);
    lib.unwrap(lib.native.fp_sched_start(bytes, out), "cannot attach the scheduler");
    const s = new Scheduler(Deno.UnsafePointer.create(out[0])!, lib, knobs, o.partial === true);
    if (signals) {
      const d = lib.native.fp_sched_detector(s.live());
      if (d) s.#detector = new Detector(d, lib, false, detectKnobs(o.detect), o.detect?.signalsOff ?? []);
    }
    try {
      if (o.foreground?.length) s.setForeground(o.foreground);
    } catch (e) {
      s.close(); // detaches: no scheduler is left attached without a handle to stop it
      throw e;
    }
    return s;
  }

  /** Live counters from shared memory (folded from per-CPU counters every 100 ms). */
  stats(): SchedCounters {
    this.live();
    return this.#counters.snapshot();
  }

  /** "running", "stopped" (detached on request) or "ejected" (by the kernel; see `exitInfo()`). */
  state(): "running" | "stopped" | "ejected" {
    return this.#lib.layout.key("SchedState", this.#lib.native.fp_sched_state(this.live()));
  }

  /** The detectors feeding the policy (null with `signals: false`); closed with the scheduler. */
  get detector(): Detector | null {
    this.live();
    return this.#detector ?? null;
  }

  /**
   * Changes knobs while the scheduler runs (no reload; the others keep their values). The library
   * checks them as at start. Throws FastpathError naming a bad one.
   */
  setKnobs(k: Partial<SchedKnobs>): void {
    const next = { ...this.options, ...k };
    const b = setAll(this.#lib.layout.builder("SchedOptions"), next);
    this.#lib.unwrap(this.#lib.native.fp_sched_set_knobs(this.live(), b.bytes), "cannot change the scheduler's knobs");
    Object.assign(this.options, next);
  }

  /** Foreground thread groups now (tgids): the PIDs given and the processes the names match now. */
  get foreground(): number[] {
    const out = new Uint32Array(64); // FP_MAX_FOREGROUND
    const n = this.#lib.native.fp_sched_foreground(this.live(), new Uint8Array(out.buffer), out.length);
    return [...out.subarray(0, Math.min(n, out.length))].sort((a, b) => a - b);
  }

  /**
   * How many processes the foreground names match that are not foreground because the set holds 64
   * already (as of the library's last look, every second, and the execs since): name fewer.
   */
  get foregroundLeftOut(): number {
    return this.#lib.native.fp_sched_foreground_left_out(this.live());
  }

  /**
   * Replaces the foreground: PIDs (a thread's PID counts as its process; one that is gone is left
   * out, one that ends is dropped within a second) and process names, matched as `foreground` in
   * SchedulerOptions says, in the library's threads. In partial mode a process left out goes back to
   * the default scheduler before this returns. Throws FastpathError (an entry `start` refuses:
   * checkForeground; PID 1 or a kernel thread; a bad weight).
   */
  setForeground(specs: Array<number | string>, weightPct = this.options.foregroundWeightPct): void {
    checkForeground(specs);
    const pids = specs.filter(isPidSpec);
    const names = specs.filter((x) => !isPidSpec(x)).map((x) => String(x).trim());
    const arr = new Uint32Array(pids.length ? resolveForeground(pids).tgids : []);
    const nameBytes = new TextEncoder().encode(names.join("\0"));
    const status = this.#lib.native.fp_sched_set_foreground(
      this.live(),
      new Uint8Array(arr.buffer),
      arr.length,
      nameBytes,
      nameBytes.length,
      weightPct,
    );
    this.#lib.unwrap(status, "setting the foreground");
  }

  /** Resolves true as soon as the kernel ejects the scheduler, false after `timeoutMs`. */
  async waitEjected(timeoutMs: number): Promise<boolean> {
    if (this.state() === "ejected") return true;
    await this.#lib.native.fp_sched_wait(this.live(), Math.max(0, Math.round(timeoutMs)));
    return this.state() === "ejected";
  }

  /** Why the scheduler went away (kind 0 while it runs). */
  exitInfo(): SchedExit {
    this.live();
    const spec = this.#lib.layout.struct("SchedExit");
    const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(this.#exitPtr, spec.size).slice(0));
    const view = new DataView(bytes.buffer);
    const f = (n: string) => spec.fields[n];
    const kind = view.getInt32(f("kind").offset, true);
    return {
      kind,
      kindName: this.#lib.layout.enumName("SchedExitKind", kind) ?? `kind_${kind}`,
      exitCode: view.getBigInt64(f("exit_code").offset, true),
      reason: textAt(bytes, f("reason").offset, f("reason").type),
      msg: apiText(textAt(bytes, f("msg").offset, f("msg").type)),
      msgMarked: textAt(bytes, f("msg").offset, f("msg").type),
      error: kind >= this.#lib.layout.value("SchedExitKind", "error"),
    };
  }

  /** Detaches (the kernel runs ops.exit; every task goes back to the fair class) and says why it ended. */
  stop(): SchedExit {
    this.#lib.native.fp_sched_stop(this.live());
    return this.exitInfo();
  }

  protected free(handle: Deno.PointerObject): void {
    this.#detector?.close();
    this.#lib.native.fp_sched_close(handle);
  }
}

/** `EXIT: reason (msg)`, the line the CLI prints when a scheduler goes away (options spelled as flags). */
export function exitLine(e: SchedExit): string {
  const reason = e.reason || e.kindName;
  return `EXIT: ${reason}${e.msg ? ` (${cliText(e.msgMarked)})` : ""}`;
}
