/**
 * The detectors as a TypeScript handle: which threads of the game a player feels (its input chain,
 * GPU-submit, audio and network threads), found by BPF programs in the kernel (zig/bpf/detect.bpf.c)
 * and the library's native thread (the game, the compositor, the audio server: zig/src/sched/roles.zig).
 * They run inside the scheduler (`sched run`, where they raise those threads' urgency) or alone
 * (`sched observe`, on any Linux kernel with BTF, sched_ext or not). TypeScript only starts them and
 * reads what they found.
 */
import { type Lib, load } from "../ffi/load.ts";
import { FastpathError, snake } from "../ffi/error.ts";
import { NativeHandle } from "../ffi/handle.ts";
import { readStruct, setAll, type StructBuilder } from "../ffi/layout.ts";
import type { DetectCounterName, EnumKey } from "../ffi/enums.ts";
import { ENUMS } from "../ffi/enums.ts";

export type SignalName = EnumKey<"Signal">;
export type ThreadClassName = EnumKey<"ThreadClass">;
export type RoleName = EnumKey<"Role">;
export type GameReason = EnumKey<"GameReason">;
export type DetectCounters = Record<DetectCounterName, number>;

/**
 * The detectors' knobs, each with its unit in its name: the one place a default is written (the
 * CLI's flags and help are made from this table; the library checks the ranges, abi.zig
 * `detect_limits`). Every one can change while the detectors run (`Detector.setKnobs`; no CLI command changes them).
 */
export const DETECT_KNOBS = {
  inputWindowUs: {
    default: 8000,
    help: "how long an input event favours the compositor's reader and the threads it wakes, µs",
  },
  urgentWindowUs: {
    default: 2000,
    help: "how long a wakeup from an interrupt or a real-time task favours its wakee, µs",
  },
  chainHops: {
    default: 2,
    help:
      "wake hops input and urgency travel on after the first wakee (with the scheduler and no CPU idle, an input hop waits first in line on its waker's CPU)",
  },
  gpuMinHz: { default: 20, help: "GPU submits per second from which a game thread is GPU-submit, Hz" },
  netMinHz: { default: 10, help: "INET sends per second from which a game thread is network, Hz" },
  evidenceMs: { default: 1000, help: "how long a submit, PCM write or send keeps its class, ms" },
  gameSwitchMs: {
    default: 5000,
    help: "how long a new game candidate must lead before it replaces the game, ms",
  },
} as const;

export type DetectKnob = keyof typeof DETECT_KNOBS;
export type DetectKnobs = Record<DetectKnob, number>;
/** DetectKnobs fields that are modes, not knobs. */
const DETECT_MODE_FIELDS = ["signals_off"];

export type DetectOptions = Partial<DetectKnobs> & {
  /**
   * The game: a PID or a process name (at most 15 bytes, as the kernel keeps it). Without it the
   * game is detected: a Steam game (SteamGameId in its environment) or a Windows .exe under Wine or
   * Proton, the one using most CPU when several are running.
   */
  game?: number | string;
  /** A compositor besides the known ones (X, Wayland, gamescope) and whoever holds evdev open. */
  compositor?: number | string;
  /** Detectors to leave off (each still named in `status().signals` only when on). */
  signalsOff?: SignalName[];
};

/** What the detectors know now. */
export interface DetectStatus {
  type: "detect_status";
  /** Detectors attached and on. */
  signals: SignalName[];
  /** Why each absent detector is absent ("GPU submit (no DRM driver loaded)"). */
  absent: string[];
  /** The game now, or null. */
  game: {
    type: "detect_game";
    pid: number;
    comm: string;
    reason: GameReason;
    /** From its exec to its detection, µs; null when a scan found it (it ran before the detectors). */
    foundAfterExecUs: number | null;
  } | null;
  compositors: number;
  audioServers: number;
  audioClients: number;
  counters: DetectCounters & { type: "detect_counters" };
}

/** One thread as the detectors see it. */
export interface DetectThread {
  type: "detect_thread";
  tid: number;
  pid: number;
  comm: string;
  /** Its classes as of `seenMsAgo`. */
  classes: ThreadClassName[];
  /** Its thread group's roles. */
  roles: RoleName[];
  seenMsAgo: number;
  /** The last input window it was part of, ms ago (null: none). */
  inputMsAgo: number | null;
  /** Its last GPU submit, PCM write and INET send, ms ago (null: none). */
  gpuMsAgo: number | null;
  pcmMsAgo: number | null;
  netMsAgo: number | null;
  inputHops: number;
  gpuHz: number;
  netHz: number;
  /** Who woke it last (the wake chain); 0 when an interrupt, a softirq or a timer woke it. */
  wakerTid: number;
  wokenByIrq: boolean;
  wokenByRt: boolean;
}

/** The knob values a start uses: each given one, else its default. */
export function detectKnobs(o: Partial<DetectKnobs> = {}): DetectKnobs {
  const out = {} as DetectKnobs;
  for (const k of Object.keys(DETECT_KNOBS) as DetectKnob[]) out[k] = o[k] ?? DETECT_KNOBS[k].default;
  return out;
}

function bits<E extends "Signal" | "ThreadClass" | "Role">(lib: Lib, e: E, value: number): EnumKey<E>[] {
  return (ENUMS[e] as readonly EnumKey<E>[]).filter((k) => value & lib.layout.value(e, k));
}

/** The DetectKnobs struct of `knobs` and `signalsOff` (the library checks the ranges). */
export function knobsStruct(lib: Lib, knobs: DetectKnobs, signalsOff: SignalName[] = []): StructBuilder {
  const unknown = Object.keys(lib.layout.struct("DetectKnobs").fields)
    .filter((f) => !DETECT_MODE_FIELDS.includes(f) && !Object.keys(DETECT_KNOBS).some((k) => snake(k) === f));
  if (unknown.length) {
    throw new FastpathError("library", `the library has knobs DETECT_KNOBS lacks: ${unknown.join(", ")}`);
  }
  const off = signalsOff.reduce((m, s) => m | lib.layout.value("Signal", s), 0);
  return setAll(lib.layout.builder("DetectKnobs"), knobs).set("signals_off", off, "signalsOff");
}

/** The DetectOptions struct (what `fp_detect_start` and the scheduler's start take). */
export function optionsStruct(lib: Lib, o: DetectOptions): StructBuilder {
  for (const s of o.signalsOff ?? []) {
    if (!(ENUMS.Signal as readonly string[]).includes(s)) {
      throw new FastpathError(
        "invalid_argument",
        `\`signalsOff\`: no signal '${s}': use ${ENUMS.Signal.join(", ")}`,
      );
    }
  }
  const b = lib.layout.builder("DetectOptions").setStruct("knobs", knobsStruct(lib, detectKnobs(o), o.signalsOff));
  const game = o.game === undefined ? "" : processSpec("game", o.game);
  if (/^\d+$/.test(game)) b.set("game_pid", Number(game), "game");
  else if (game) b.setBytes("game_name", game, "game");
  if (o.compositor !== undefined) b.setBytes("compositor", processSpec("compositor", o.compositor), "compositor");
  return b;
}

/**
 * The largest PID on any Linux: PID_MAX_LIMIT (include/linux/threads.h, 4194304) is the most
 * /proc/sys/kernel/pid_max may be, and PIDs stay below pid_max.
 */
const PID_MAX = 4_194_303;

/** Whether a `--game`/`--compositor`/`--foreground` value names a PID (all digits), not a process name. */
export function isPidSpec(value: number | string): boolean {
  return /^\d+$/.test(String(value).trim());
}

/**
 * What /proc says of a running PID: its thread group, and whether it is a kernel thread (PF_KTHREAD);
 * null when it is not running (or there is no /proc).
 */
export function procFacts(pid: number): { tgid: number; kthread: boolean } | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const flags = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[6]); // field 9
    return { tgid: Number(/^Tgid:\s+(\d+)/m.exec(status)?.[1] ?? pid), kthread: (flags & 0x00200000) !== 0 };
  } catch {
    return null; // not running (or no /proc): the start's own lookups say so
  }
}

/**
 * One process as `game`, `compositor` and each `foreground` entry name it: a PID from 1 to
 * PID_MAX (4194303) or a process name (trimmed; the kernel keeps 15 bytes of it, and that is what is
 * matched). Anything else - empty, 0, negative, too large, not a whole number, a list, a name
 * starting with '-' (a flag taken as a value), a path (a command name has no '/': `/usr/bin/game`
 * never matched) - is a usage error naming `option` ("`foreground` entries must each be" when
 * `entry`: that option takes a list). So is a PID that is init, a thread of init or a kernel thread
 * (in partial mode a moved init's or kthreadd's children would inherit SCHED_EXT), and, for `game`
 * and `compositor`, which are matched against processes, a thread of another process (its process
 * is named; `foreground` takes a thread for its process). Those are checked against /proc as it is
 * now: for a unit printed for a later boot (`service print`) they say only what the PID is today.
 */
export function processSpec(option: string, value: number | string, entry = false): string {
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw new FastpathError("usage", `\`${option}\`: ${value} is not a PID: give a whole number or a process name`);
  }
  const s = String(value).trim();
  const pid = isPidSpec(s) ? Number(s) : null;
  if (s === "" || s.startsWith("-") || s.includes(",") || pid !== null && !(pid > 0 && pid <= PID_MAX)) {
    throw new FastpathError(
      "usage",
      entry
        ? `\`${option}\` entries must each be a process name or a PID from 1 to ${PID_MAX}, not '${value}'`
        : `\`${option}\` must be one process name or a PID from 1 to ${PID_MAX}, not '${value}'`,
    );
  }
  if (s.includes("/")) {
    throw new FastpathError(
      "usage",
      `\`${option}\`: '${s.slice(0, 40)}${
        s.length > 40 ? "…" : ""
      }' is not a process name: give the command or executable's base name (no '/') or a PID`,
    );
  }
  if (pid === null) return new TextDecoder().decode(new TextEncoder().encode(s).slice(0, 15)).replace(/\uFFFD$/, "");
  const refuse = (what: string) => {
    throw new FastpathError("usage", `\`${option}\`: ${what}, not a game or an application: give another PID`);
  };
  if (pid === 1) refuse("PID 1 is init");
  const facts = procFacts(pid);
  if (facts?.tgid === 1) refuse(`PID ${pid} is a thread of init (PID 1)`);
  if (facts?.kthread) refuse(`PID ${pid} is a kernel thread`);
  if (facts && facts.tgid !== pid && !entry) {
    throw new FastpathError(
      "usage",
      `\`${option}\`: PID ${pid} is a thread of process ${facts.tgid}: give ${facts.tgid}`,
    );
  }
  return s;
}

/** Most threads one call returns: a buffer of this many rows is allocated for it. */
export const MAX_THREADS = 65536;

/** How many threads to list: a count this side allocates rows for, so it is checked here. */
export function checkThreads(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > MAX_THREADS) {
    throw new FastpathError("usage", `\`threads\` must be a whole number from 0 to ${MAX_THREADS}, not ${n}`);
  }
}

function readStatus(lib: Lib, bytes: Uint8Array): DetectStatus {
  const r = readStruct(lib.layout, "DetectStatus", bytes);
  const counters = r.counters as DetectCounters;
  const pid = r.game_tgid as number;
  return {
    type: "detect_status",
    signals: bits(lib, "Signal", r.signals as number),
    absent: String(r.absent).split("; ").filter(Boolean),
    game: pid
      ? {
        type: "detect_game",
        pid,
        comm: r.game_comm as string,
        reason: lib.layout.key("GameReason", r.game_reason as number),
        foundAfterExecUs: (r.game_found_after_exec_us as number) || null,
      }
      : null,
    compositors: r.compositors as number,
    audioServers: r.audio_servers as number,
    audioClients: r.audio_clients as number,
    counters: { type: "detect_counters", ...counters },
  };
}

function readThreads(lib: Lib, bytes: Uint8Array, n: number, nowNs: number): DetectThread[] {
  const size = lib.layout.struct("DetectThread").size;
  const out: DetectThread[] = [];
  for (let i = 0; i < n; i++) {
    const r = readStruct(lib.layout, "DetectThread", bytes, i * size);
    const ago = (t: number) => Math.max(0, Math.round((nowNs - t) / 1e6));
    out.push({
      type: "detect_thread",
      tid: r.tid as number,
      pid: r.tgid as number,
      comm: r.comm as string,
      classes: bits(lib, "ThreadClass", r.class as number),
      roles: bits(lib, "Role", r.roles as number),
      seenMsAgo: ago(r.seen as number),
      inputMsAgo: r.input_at ? ago(r.input_at as number) : null,
      gpuMsAgo: r.gpu_last ? ago(r.gpu_last as number) : null,
      pcmMsAgo: r.pcm_last ? ago(r.pcm_last as number) : null,
      netMsAgo: r.net_last ? ago(r.net_last as number) : null,
      inputHops: r.input_hops as number,
      gpuHz: r.gpu_hz as number,
      netHz: r.net_hz as number,
      wakerTid: r.waker_tid as number,
      wokenByIrq: r.woken_by_irq !== 0,
      wokenByRt: r.woken_by_rt !== 0,
    });
  }
  return out.sort((a, b) => a.seenMsAgo - b.seenMsAgo);
}

export class Detector extends NativeHandle {
  readonly #lib: Lib;
  readonly #owned: boolean;
  #knobs: DetectKnobs;
  #signalsOff: SignalName[];

  /** @internal — `Detector.start`, or `Scheduler.detector` for the scheduler's own. */
  constructor(handle: Deno.PointerObject, lib: Lib, owned: boolean, knobs: DetectKnobs, signalsOff: SignalName[]) {
    super(handle, "detector");
    this.#lib = lib;
    this.#owned = owned;
    this.#knobs = knobs;
    this.#signalsOff = signalsOff;
  }

  /** Attaches the detectors alone (no scheduler): needs root and a kernel with BTF. Throws FastpathError. */
  static async start(o: DetectOptions = {}): Promise<Detector> {
    const lib = await load();
    const b = optionsStruct(lib, o);
    const out = new BigUint64Array(1);
    lib.unwrap(lib.native.fp_detect_start(b.bytes, out), "cannot start the detectors");
    return new Detector(Deno.UnsafePointer.create(out[0])!, lib, true, detectKnobs(o), o.signalsOff ?? []);
  }

  /** What the detectors run by any process (`sched run`, `sched observe`) know now, and their threads. */
  static async readAttached(maxThreads = 256): Promise<{ status: DetectStatus; threads: DetectThread[] }> {
    checkThreads(maxThreads);
    const lib = await load();
    const st = lib.layout.builder("DetectStatus");
    const rows = new Uint8Array(lib.layout.struct("DetectThread").size * maxThreads);
    const n = new Uint32Array(1);
    lib.unwrap(
      lib.native.fp_detect_read_attached(st.bytes, rows, maxThreads, new Uint8Array(n.buffer)),
      "cannot read the detectors",
    );
    return {
      status: readStatus(lib, st.bytes),
      threads: readThreads(lib, rows, n[0], Number(lib.native.fp_monotonic_ns())),
    };
  }

  /** The knob values they run with. */
  get knobs(): DetectKnobs {
    return { ...this.#knobs };
  }

  status(): DetectStatus {
    const b = this.#lib.layout.builder("DetectStatus");
    this.#lib.native.fp_detect_status(this.live(), b.bytes);
    return readStatus(this.#lib, b.bytes);
  }

  /** Threads with a role or in an input chain (at most `max`), the most recently seen first. */
  threads(max = 256): DetectThread[] {
    checkThreads(max);
    const rows = new Uint8Array(this.#lib.layout.struct("DetectThread").size * max);
    const n = this.#lib.native.fp_detect_threads(this.live(), rows, max);
    return readThreads(this.#lib, rows, n, Number(this.#lib.native.fp_monotonic_ns()));
  }

  /** Changes knobs while they run (the others keep their values). Throws FastpathError naming a bad one. */
  setKnobs(k: Partial<DetectKnobs>): void {
    const next = { ...this.#knobs, ...k };
    const b = knobsStruct(this.#lib, next, this.#signalsOff);
    this.#lib.unwrap(this.#lib.native.fp_detect_set_knobs(this.live(), b.bytes), "cannot change the detectors' knobs");
    this.#knobs = next;
  }

  protected free(handle: Deno.PointerObject): void {
    if (this.#owned) this.#lib.native.fp_detect_close(handle);
  }
}
