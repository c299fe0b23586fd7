/**
 * deno task bench:sched — what a game feels of the scheduler under load, for the kernel's default
 * scheduler, fastpath, fastpath with the game as --foreground, and the public sched_ext schedulers
 * (scx_bpfland, scx_lavd), all in one boot of one kernel, rounds interleaved.
 *
 * The game is fp-schedprobe (zig/tools/schedprobe.zig) run as its own process: a 16.6 ms frame loop
 * doing fixed CPU work, timing how late its thread wakes for each frame and how many frames miss
 * their deadline. Rows (loads, started before the probe and stopped after it):
 *   hogsN-Wms    N CPU hogs per CPU (stress-ng --cpu), W ms of work per frame (CPU time: a frame that
 *                gets less than W ms of CPU in its 16.6 ms misses, as a real one would)
 *   hogsN-Wms-wall  the same with the work measured in wall-clock time (a frame misses only when its
 *                thread is kept off the CPU: the probe a reporter used, on which EEVDF misses little)
 *   rt-4ms       1 hog per CPU, and a SCHED_FIFO hog pinned to the last CPU for the middle third of
 *                the run (a PipeWire-like real-time thread)
 *   fork-4ms     a fork/exit storm (stress-ng --fork, 2 per CPU)
 *   pthread-4ms  a thread create/exit storm (stress-ng --pthread, 2 per CPU): new threads start at
 *                the virtual clock and may preempt, where new processes start a slice behind
 *   affinity-4ms hogs re-pinned every 10 ms (stress-ng --affinity, 2 per CPU)
 *   quiet-4ms    no load; a 1 kHz waker beside the frame loop (its median wake-up is the row's point)
 *   input-hogsN  N CPU hogs per CPU, and input the way a desktop game gets it (fp-inputprobe,
 *                zig/tools/inputprobe.zig): a uinput device moved at 1 kHz, a compositor process
 *                reading evdev and forwarding each event over a UNIX socket, a game (found by the
 *                detectors through SteamGameId, as a Steam game is) whose input thread wakes a
 *                worker. Latency from the kernel's timestamp of each event to the compositor's
 *                read, the game's input thread and its worker; the frame probe runs beside it, so
 *                a gain in input latency cannot hide worse frame pacing - the game's own (a render
 *                thread in the game doing the row's frame work, "game render") and another
 *                application's (fp-schedprobe, a process of its own). Schedulers: the default,
 *                fastpath without its detectors (nosignals), fastpath, and the public ones.
 *                uinput runs input_event in the injector's process context; real USB input comes
 *                from an interrupt, where fastpath's IRQ signal fires as well.
 * Each cell is the median of its rounds with the range; ratios are against the default scheduler.
 *
 * On a kernel without sched_ext it boots ../shared/vm (Linux 6.12) and runs there. The public
 * schedulers are built from the Rust package registry into .tools/scx when missing (cargo and clang
 * needed; --no-build-scx to skip), at the versions this help ends with.
 *
 * usage: deno task bench:sched [--duration-s 15] [--rounds 3] [--rows LIST] [--schedulers LIST]
 *                              [--scx-dir DIR] [--no-build-scx] [--json FILE] [--baseline DIR] [--bpf-stats] [-h]
 *
 * Schedulers: default, minimal, fastpath, nosignals, foreground, baseline, bpfland, lavd (the list
 * defaults to default,fastpath,foreground,bpfland,lavd; input rows run nosignals in foreground's place).
 * Bad arguments are refused before the VM boots (exit 2), and so are loaded rows without stress-ng
 * on PATH, and --bpf-stats without bpftool (exit 6; scripts/setup --test installs both). A run whose load did not start or ended early,
 * or whose probe failed, is not measured: listed under "not measured" (and in --json), exit 1 as for an ejection. Ctrl-C or
 * SIGTERM (or SIGHUP) detaches the scheduler of the run in progress.
 *
 * --bpf-stats turns on the kernel's BPF run-time statistics (kernel.bpf_stats_enabled, put back as it
 * was when the bench ends) and prints, for each run, the BPF programs that ran between two bpftool
 * snapshots taken as the probe starts and as it ends: each one's mean µs per run and runs (programs of
 * one name summed, their number given; one unloaded meanwhile not counted), and the total of all of
 * them - every program on the machine, not only the scheduler's. What fastpath's callbacks and
 * detectors' tracepoints, and the public schedulers' own, cost per call. The statistics slow every
 * program a little (two clock reads a run). In --json each run has them as "bpf": {NAME: {runs,
 * run_time_ns, programs}}. Without bpftool on PATH: exit 6, as without stress-ng for a loaded row; a
 * snapshot that fails is a warning, and that run has no statistics.
 *
 * --baseline DIR adds the scheduler "baseline": fastpath as built in another checkout DIR (say a
 * `git worktree` of the commit before a change), so a change is measured against its parent in the
 * same boot, rounds interleaved. Both it and "fastpath" then run in a child process of their own
 * that only holds the scheduler, so neither pays for the bench's own work.
 *
 * The scheduler "minimal" (bench/minimal.bpf.c, built with clang-19, attached with bpftool) is the
 * floor: the kernel's own idle-CPU search and one FIFO queue, what sched_ext costs before any policy.
 */
import { parseArgs } from "node:util";
import { dirname, resolve } from "node:path";
import { schedStatus, Scheduler } from "../mod.ts";
import { table } from "../src/format.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const PROBE = `${ROOT}/zig/zig-out/bin/fp-schedprobe`;
const INPUT_PROBE = `${ROOT}/zig/zig-out/bin/fp-inputprobe`;
/** Seconds the input probe runs before it measures: the detectors find the compositor (a 5 s scan). */
const INPUT_WARMUP_S = 6;
const VM = `${ROOT}/../shared/vm/run-vm.sh`;

/**
 * The public schedulers, pinned. scx_lavd 1.0.12 and later (1.1.4 included) fail the 6.12 verifier:
 * they write `scx.slice` of a CPU's current task through scx_bpf_cpu_rq()->curr, which 6.12 treats as
 * read-only; 1.0.11 is the newest release that loads there.
 */
const PUBLIC = [
  { name: "bpfland", crate: "scx_bpfland", version: "1.1.4", args: [] as string[] },
  { name: "lavd", crate: "scx_lavd", version: "1.0.11", args: ["--performance"] },
] as const;

const OPTIONS = {
  "duration-s": { type: "string", default: "15" },
  rounds: { type: "string", default: "3" },
  rows: { type: "string", default: "all" },
  schedulers: { type: "string", default: "default,fastpath,foreground,bpfland,lavd" },
  "scx-dir": { type: "string", default: `${ROOT}/.tools/scx` },
  "no-build-scx": { type: "boolean", default: false },
  json: { type: "string" },
  "in-vm": { type: "boolean", default: false },
  baseline: { type: "string" },
  "bpf-stats": { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;
const USAGE = "usage: deno task bench:sched [--duration-s 15] [--rounds 3] [--rows LIST] [--schedulers LIST] " +
  "[--scx-dir DIR] [--no-build-scx] [--json FILE] [--baseline DIR] [--bpf-stats] [-h]";
const { values: o, tokens } = (() => {
  try {
    return parseArgs({ args: Deno.args, options: OPTIONS, tokens: true });
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0];
    // node:util's words for a value that starts with a dash (--rounds -1) name no fix.
    const flag = /^Option '(--[\w-]+)[^']*' argument is ambiguous/.exec(msg)?.[1];
    const why = flag ? `${flag} needs a value (one that starts with "-" goes as ${flag}=VALUE)` : msg;
    console.error(`error: bench:sched: ${why} (${USAGE})`);
    Deno.exit(2);
  }
})();
// The last of a repeated flag would win without a word.
const given = tokens.flatMap((t) => t.kind === "option" ? [t.rawName] : []);
const repeated = given.find((n, i) => given.indexOf(n) !== i);
if (repeated) usage(`${repeated} is given twice: give it once`);
if (o.help) {
  // The module's own documentation.
  const doc = /\/\*\*\n([\s\S]*?)\*\//.exec(Deno.readTextFileSync(new URL(import.meta.url)))![1];
  console.log(doc.split("\n").map((l) => l.replace(/^ \* ?/, "")).join("\n").trimEnd());
  console.log(`\nPinned: ${PUBLIC.map((p) => [p.crate, p.version, ...p.args].join(" ")).join(", ")}.`);
  Deno.exit(0);
}

const binOf = (p: (typeof PUBLIC)[number]) => `${o["scx-dir"]}/${p.crate}-${p.version}/bin/${p.crate}`;
const statOf = (path: string) => {
  try {
    return Deno.statSync(path);
  } catch {
    return undefined;
  }
};
const exists = (path: string) => statOf(path) !== undefined;
const isDir = (path: string) => statOf(path)?.isDirectory ?? false;

/** Whether an executable `cmd` is in a directory on PATH, as a spawn looks (not sh, which has a PATH of its own when none is set). */
const onPath = (cmd: string) =>
  (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).some((dir) => {
    try {
      const st = Deno.statSync(`${dir}/${cmd}`);
      return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  });

/** bench/minimal.bpf.c built for the bpf target: the floor (what sched_ext costs before any policy). */
const MINIMAL_SRC = `${ROOT}/bench/minimal.bpf.c`;
const MINIMAL_OBJ = () => `${o["scx-dir"]}/minimal.bpf.o`;
const MINIMAL_PIN = "/sys/fs/bpf/fastpath-bench-minimal";

/** Compiles the minimal scheduler when its object is missing or older than its source; why it is absent otherwise. */
async function ensureMinimal(): Promise<string | undefined> {
  const obj = MINIMAL_OBJ();
  if (exists(obj) && Deno.statSync(obj).mtime! >= Deno.statSync(MINIMAL_SRC).mtime!) return undefined;
  const versions = Deno.readTextFileSync(`${ROOT}/scripts/versions.env`);
  const libbpf = `${ROOT}/.tools/src/libbpf-${/^LIBBPF_SRC_VERSION=(\S+)/m.exec(versions)?.[1]}/src`;
  if (!exists(`${libbpf}/bpf_helpers.h`)) return `${libbpf} is missing (scripts/setup fetches it)`;
  const inc = Deno.makeTempDirSync({ prefix: "fastpath-minimal-" });
  Deno.symlinkSync(libbpf, `${inc}/bpf`);
  Deno.mkdirSync(o["scx-dir"], { recursive: true });
  const args = ["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall"];
  args.push(`-I${ROOT}/zig/bpf/vmlinux`, `-I${inc}`, "-c", MINIMAL_SRC, "-o", obj);
  try {
    const r = await new Deno.Command("clang-19", { args, stderr: "piped" }).output();
    return r.success ? undefined : `clang-19 could not build it: ${new TextDecoder().decode(r.stderr).slice(0, 300)}`;
  } catch (e) {
    return `clang-19 is not installed (${(e as Error).message})`;
  } finally {
    Deno.removeSync(inc, { recursive: true });
  }
}

/** Builds a pinned public scheduler with cargo when it is missing; the reason it is absent otherwise. */
async function ensurePublic(p: (typeof PUBLIC)[number]): Promise<string | undefined> {
  if (exists(binOf(p))) return undefined;
  if (o["no-build-scx"]) return `not built (--no-build-scx): ${binOf(p)} is missing`;
  if (!onPath("cargo")) return "cargo is not installed (the Rust toolchain builds it from the package registry)";
  const toolbin = `${o["scx-dir"]}/toolbin`;
  Deno.mkdirSync(toolbin, { recursive: true });
  for (const [name, target] of [["clang", "/usr/bin/clang-19"], ["llvm-strip", "/usr/bin/llvm-strip-19"]]) {
    if (!exists(`${toolbin}/${name}`)) Deno.symlinkSync(target, `${toolbin}/${name}`);
  }
  const target = Deno.makeTempDirSync({ prefix: "fastpath-scx-" });
  console.error(`building ${p.crate} ${p.version} with cargo (several minutes; --no-build-scx to skip)`);
  const st = await new Deno.Command("nice", {
    args: [
      "-n",
      "10",
      "cargo",
      "install",
      "--locked",
      "--root",
      `${o["scx-dir"]}/${p.crate}-${p.version}`,
      `${p.crate}@${p.version}`,
    ],
    env: {
      PATH: `${toolbin}:${Deno.env.get("PATH")}`,
      CARGO_TARGET_DIR: target,
      LIBCLANG_PATH: "/usr/lib/llvm-19/lib",
    },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  Deno.removeSync(target, { recursive: true });
  return st.success ? undefined : `cargo install ${p.crate}@${p.version} failed (exit ${st.code})`;
}

interface Result {
  frames: number;
  misses: number;
  miss_ratio: number;
  frame_worst_us: number;
  frame_worst_at_ms: number;
  /** When the frame thread first ran, µs after the probe started (its first frame starts after that). */
  thread_start_us: number;
  frame_wake_p50_us: number;
  frame_wake_p99_us: number;
  frame_wake_p999_us: number;
  frame_wake_max_us: number;
  wakeups: number;
  wake_p50_us: number;
  wake_p99_us: number;
  /** input rows: fp-inputprobe's figures */
  input?: InputResult;
  /** --bpf-stats: the BPF programs that ran during the probe, by name (progDelta) */
  bpf?: Record<string, ProgRun>;
}

/** What BPF programs of one name ran: runs, total run time (ns), and how many programs that is. */
interface ProgRun {
  runs: number;
  run_time_ns: number;
  programs: number;
}
type ProgSnapshot = Map<number, { name: string; runs: number; ns: number }>;

/**
 * --bpf-stats: every loaded BPF program's name, runs and total run time (ns), by id, from bpftool;
 * undefined, with a warning, when bpftool fails (that run then has no statistics, and is measured).
 */
async function progTimes(): Promise<ProgSnapshot | undefined> {
  try {
    const out = await new Deno.Command("bpftool", { args: ["-j", "prog", "show"], stdout: "piped", stderr: "piped" })
      .output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim() || `exit ${out.code}`);
    const progs = JSON.parse(new TextDecoder().decode(out.stdout)) as Array<
      { id: number; name?: string; run_cnt?: number; run_time_ns?: number }
    >;
    return new Map(
      progs.map((p) => [p.id, { name: p.name ?? `id ${p.id}`, runs: p.run_cnt ?? 0, ns: p.run_time_ns ?? 0 }]),
    );
  } catch (e) {
    console.error(`  warning: bpftool prog show failed (${(e as Error).message}): this run has no BPF statistics`);
    return undefined;
  }
}

/**
 * What ran between two snapshots, by program name: a program loaded in between counts from 0, one
 * unloaded in between is not in `after` and is not counted.
 */
function progDelta(before: ProgSnapshot, after: ProgSnapshot): Record<string, ProgRun> {
  const d: Record<string, ProgRun> = {};
  for (const [id, a] of after) {
    const runs = a.runs - (before.get(id)?.runs ?? 0);
    if (runs <= 0) continue;
    const e = (d[a.name] ??= { runs: 0, run_time_ns: 0, programs: 0 });
    e.runs += runs;
    e.run_time_ns += a.ns - (before.get(id)?.ns ?? 0);
    e.programs++;
  }
  return d;
}

/** One line of `progDelta`: the total of all programs, then each by total time with its mean µs per run and runs. */
function progLine(d: Record<string, ProgRun>): string {
  const rows = Object.entries(d).sort((a, b) => b[1].run_time_ns - a[1].run_time_ns);
  const total = rows.reduce((n, [, e]) => n + e.run_time_ns, 0);
  const each = ([n, e]: [string, ProgRun]) =>
    `${n}${e.programs > 1 ? ` (${e.programs} programs)` : ""} ${
      (e.run_time_ns / e.runs / 1000).toFixed(2)
    } µs × ${e.runs}`;
  return `BPF, all programs, ${(total / 1e6).toFixed(1)} ms: ${rows.map(each).join(", ")}`;
}

interface InputResult {
  events_sent: number;
  events_seen: number;
  /** % of events the worker took on the CPU its input thread handed them over on */
  worker_same_cpu_pct: number;
  compositor_p50_us: number;
  compositor_p99_us: number;
  compositor_p999_us: number;
  compositor_max_us: number;
  input_p50_us: number;
  input_p99_us: number;
  input_p999_us: number;
  input_max_us: number;
  worker_p50_us: number;
  worker_p99_us: number;
  worker_p999_us: number;
  worker_max_us: number;
  /** The game's render thread (--frame-work-us): its frames, those that missed, how late it woke (p99). */
  game_frames: number;
  game_misses: number;
  game_frame_wake_p99_us: number;
}

const ncpu = navigator.hardwareConcurrency;
const duration = Number(o["duration-s"]);

type Load = () => Deno.ChildProcess | Promise<Deno.ChildProcess>;
// Killed when its run ends; the timeout only bounds a bench that died. It covers the second the load
// runs alone first and an input row's warm-up: at duration + 5 the hogs of input-hogs1/4 ended 2 s before the
// run did (an 8 s run measured its last 2 s unloaded).
const stress = (...args: string[]): Load => () =>
  new Deno.Command("stress-ng", {
    args: [...args, "--timeout", `${duration + INPUT_WARMUP_S + 30}s`, "--quiet"],
    // stress-ng writes its temporary files in its working directory: one that is always writable (a
    // checkout on the VM's read-only root made the fork stressor run light).
    cwd: "/tmp",
    stdout: "null",
    stderr: "null",
  }).spawn();
/** A SCHED_FIFO hog on the last CPU for the middle third of the run. */
const rtHog: Load = async () => {
  await new Promise((r) => setTimeout(r, 1000 + (duration * 1000) / 3));
  return new Deno.Command("chrt", {
    args: [
      "-f",
      "40",
      "taskset",
      "-c",
      String(ncpu - 1),
      "stress-ng",
      "--cpu",
      "1",
      "-t",
      `${Math.round(duration / 3)}s`,
      "--quiet",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
};

interface Row {
  what: string;
  loads: Load[];
  workUs: number;
  waker: boolean;
  /** The clock the frame's work is measured on (fp-schedprobe --work-clock): cpu unless said. */
  clock?: "wall";
  /** Input latency through a compositor (fp-inputprobe) beside the frame probe. */
  input?: boolean;
}
const hogs = (n: number, w: number): Row => ({
  what: `${n} hog${n > 1 ? "s" : ""}/CPU, ${w} ms frames`,
  loads: [stress("--cpu", String(n * ncpu))],
  workUs: w * 1000,
  waker: false,
});
const ROWS: Record<string, Row> = {
  "hogs1-4ms": hogs(1, 4),
  "hogs1-6ms": hogs(1, 6),
  "hogs2-4ms": hogs(2, 4),
  "hogs2-6ms": hogs(2, 6),
  "hogs4-4ms": hogs(4, 4),
  "hogs4-6ms": hogs(4, 6),
  "hogs1-4ms-wall": { ...hogs(1, 4), what: "1 hog/CPU, 4 ms frames of wall-clock work", clock: "wall" },
  "hogs4-6ms-wall": { ...hogs(4, 6), what: "4 hogs/CPU, 6 ms frames of wall-clock work", clock: "wall" },
  "rt-4ms": {
    what: "1 hog/CPU + SCHED_FIFO hog on one CPU",
    loads: [stress("--cpu", String(ncpu)), rtHog],
    workUs: 4000,
    waker: false,
  },
  "fork-4ms": { what: "fork/exit storm", loads: [stress("--fork", String(2 * ncpu))], workUs: 4000, waker: false },
  "pthread-4ms": {
    what: "thread create/exit storm",
    loads: [stress("--pthread", String(2 * ncpu))],
    workUs: 4000,
    waker: false,
  },
  "affinity-4ms": {
    what: "hogs re-pinned every 10 ms",
    loads: [stress("--affinity", String(2 * ncpu), "--affinity-delay", "10000000")],
    workUs: 4000,
    waker: false,
  },
  "quiet-4ms": { what: "no load, 1 kHz waker", loads: [], workUs: 4000, waker: true },
  "input-hogs1": { ...hogs(1, 4), what: "1 hog/CPU, 1 kHz input through a compositor, 4 ms frames", input: true },
  "input-hogs4": { ...hogs(4, 4), what: "4 hogs/CPU, 1 kHz input through a compositor, 4 ms frames", input: true },
};

type Sched = "default" | "fastpath" | "nosignals" | "foreground" | "bpfland" | "lavd" | "baseline" | "minimal";
/** The schedulers of input rows: the detectors on and off, against the default and the public ones. */
const INPUT_SCHEDS: Sched[] = ["default", "minimal", "nosignals", "fastpath", "baseline", "bpfland", "lavd"];

/** Attaches a scheduler for one run; `detach` returns an ejection message, if any. */
async function attach(
  s: Sched,
): Promise<{ detach: () => Promise<string | undefined>; setGame: (pid: number) => void; counters: () => string }> {
  if (s === "default") {
    const st = schedStatus();
    if (st.state !== "disabled") throw new Error(`default: a sched_ext scheduler (${st.ops}) is still attached`);
    return { detach: () => Promise.resolve(undefined), setGame: () => {}, counters: () => "" };
  }
  if (o.baseline && (s === "fastpath" || s === "baseline")) {
    return await attachChild(s === "baseline" ? o.baseline : ROOT);
  }
  if (s === "fastpath" || s === "foreground" || s === "nosignals") {
    const f = await Scheduler.start({ signals: s !== "nosignals" });
    return {
      setGame: (pid) => s === "foreground" && f.setForeground([pid]),
      counters: () => {
        const c = f.stats();
        return `runs ${c.runs}, idle ${c.direct_idle}, local ${c.direct_local}, queued ${c.enqueued}, preempt ${c.preempt_kicks}, handoffs ${c.handoffs}, kept ${c.kept_running}, fg runs ${c.foreground_runs}, signal runs ${c.signal_runs}`;
      },
      detach: () => {
        const ejected = f.state() === "ejected";
        const e = f.stop();
        f.close();
        return Promise.resolve(ejected || e.error ? `ejected: ${e.reason} (${e.msg})` : undefined);
      },
    };
  }
  if (s === "minimal") return await attachMinimal();
  const p = PUBLIC.find((x) => x.name === s)!;
  const child = new Deno.Command(binOf(p), { args: [...p.args], stdout: "null", stderr: "piped" }).spawn();
  const stderr = (async () => new TextDecoder().decode((await child.output()).stderr))();
  if (!(await untilEnabled(p.name))) {
    child.kill("SIGKILL");
    const why = (await stderr).slice(-500);
    await untilDisabled();
    throw new Error(`${p.crate} ${p.version} did not attach within 60 s: ${why}`);
  }
  return {
    setGame: () => {},
    counters: () => "",
    detach: async () => {
      const ejected = !(schedStatus().ops ?? "").startsWith(p.name);
      try {
        child.kill("SIGINT");
      } catch { /* gone */ }
      await stderr;
      await untilDisabled();
      return ejected
        ? `ejected: ${(await stderr).split("\n").filter((l) => /EXIT|error/i.test(l)).join(" ")}`
        : undefined;
    },
  };
}

/** The minimal scheduler through `bpftool struct_ops register` (a pinned link: unpinning detaches it). */
async function attachMinimal(): ReturnType<typeof attach> {
  removeMinimalPin(); // left by a run that was interrupted
  Deno.mkdirSync(MINIMAL_PIN, { recursive: true });
  let why = "";
  try {
    const r = await new Deno.Command("bpftool", {
      args: ["struct_ops", "register", MINIMAL_OBJ(), MINIMAL_PIN],
      stdout: "null",
      stderr: "piped",
    }).output();
    why = r.success ? "" : new TextDecoder().decode(r.stderr).trim();
  } catch (e) {
    why = `bpftool did not run (${(e as Error).message}): install it (Debian: bpftool)`;
  }
  if (!why && !(await untilEnabled("minimal"))) why = "it was not enabled within 60 s";
  if (why) {
    removeMinimalPin();
    await untilDisabled();
    throw new Error(`the minimal scheduler did not attach: ${why}`);
  }
  return {
    setGame: () => {},
    counters: () => "",
    detach: async () => {
      const ejected = schedStatus().ops !== "minimal";
      removeMinimalPin();
      await untilDisabled();
      return ejected ? "ejected (see dmesg)" : undefined;
    },
  };
}

/** Removes the minimal scheduler's pinned link and its directory (unpinning detaches it); none is fine. */
function removeMinimalPin() {
  try {
    Deno.removeSync(MINIMAL_PIN, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Waits until the scheduler whose ops name starts with `ops` is enabled; false after `ms`. */
async function untilEnabled(ops: string, ms = 60_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!(schedStatus().state === "enabled" && (schedStatus().ops ?? "").startsWith(ops))) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/** Waits until no sched_ext scheduler is attached; an error after `ms`. */
async function untilDisabled(ms = 30_000) {
  const until = Date.now() + ms;
  while (schedStatus().state !== "disabled") {
    if (Date.now() > until) throw new Error(`sched_ext is still ${schedStatus().state} after ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * fastpath as checkout `dir` builds it, in a child process that only holds the scheduler (--baseline):
 * it prints "attached", and on SIGTERM detaches and prints how it ended.
 */
async function attachChild(dir: string): ReturnType<typeof attach> {
  const code = `import { Scheduler } from ${JSON.stringify(`${dir}/mod.ts`)};
const s = await Scheduler.start({});
console.log("attached");
await new Promise((r) => Deno.addSignalListener("SIGTERM", r));
const ejected = s.state() === "ejected";
const e = s.stop();
s.close();
console.log(JSON.stringify({ ejected, error: e.error, reason: e.reason, msg: e.msg }));`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-ffi", code],
    env: { FASTPATH_LIB: `${dir}/zig/zig-out/lib/libfastpath.so` },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = (async () => {
    const o = await child.output();
    return { stdout: new TextDecoder().decode(o.stdout), stderr: new TextDecoder().decode(o.stderr) };
  })();
  if (!(await untilEnabled("fastpath"))) {
    child.kill("SIGKILL");
    const why = (await out).stderr.slice(-500);
    await untilDisabled();
    throw new Error(`fastpath from ${dir} did not attach within 60 s: ${why}`);
  }
  return {
    setGame: () => {},
    counters: () => "",
    detach: async () => {
      child.kill("SIGTERM");
      const { stdout, stderr } = await out;
      await untilDisabled();
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        const e = JSON.parse(last);
        return e.ejected || e.error ? `ejected: ${e.reason} (${e.msg})` : undefined;
      } catch {
        return `fastpath from ${dir} ended without its report: ${stderr.slice(-300)}`;
      }
    },
  };
}

/** The attached scheduler's detach, for a signal that ends the bench in the middle of a run. */
let detachOnSignal: (() => Promise<unknown>) | undefined;

/**
 * A run that measured nothing - its load did not start or ended early, or a probe failed - and is no
 * ejection: listed as not measured.
 */
class NotMeasured extends Error {}
/** A probe's one JSON object, or NotMeasured naming the probe and its exit code (its stderr says why). */
function probeResult<T>(name: string, out: Deno.CommandOutput): T {
  const text = new TextDecoder().decode(out.stdout);
  try {
    if (out.code === 0) return JSON.parse(text) as T;
  } catch { /* reported below */ }
  throw new NotMeasured(`${name} failed (exit ${out.code}${out.signal ? `, ${out.signal}` : ""})`);
}

async function oneRun(row: Row, s: Sched, label: string): Promise<Result> {
  const sched = await attach(s);
  detachOnSignal = sched.detach;
  const loads: Deno.ChildProcess[] = [];
  let pending: Promise<unknown>[] = [];
  let r: Result | undefined;
  let ejected: string | undefined;
  /** Why the run measured nothing (its load, a probe). */
  let whyNot: string | undefined;
  // Each load's exit code once it ends: one that ends before it is killed did not load the run (a
  // stress-ng refusing an option, a chrt without the right to SCHED_FIFO), though it started.
  // (The real-time hog runs a third of the run and ends on its own: only a failure of it counts.)
  const exits = new Map<Deno.ChildProcess, { code: number; finite: boolean }>();
  const endedEarly = () => [...exits.values()].find((e) => !e.finite || e.code !== 0)?.code;
  try {
    pending = row.loads.map(async (l) => {
      const c = await l();
      loads.push(c);
      c.status.then((st) => exits.set(c, { code: st.code, finite: l === rtHog }));
    });
    pending.forEach((p) => p.catch(() => {})); // a load that failed to start is reported below
    await new Promise((r) => setTimeout(r, 1000)); // the load is running everywhere first
    if (endedEarly() !== undefined) throw new NotMeasured(`its load ended at once (exit ${endedEarly()})`);
    const input = row.input
      ? new Deno.Command(INPUT_PROBE, {
        args: [
          ...["--warmup-s", String(INPUT_WARMUP_S), "--duration-s", String(duration), "--rate-hz", "1000"],
          ...["--frame-work-us", String(row.workUs)],
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn()
      : undefined;
    if (input) await new Promise((r) => setTimeout(r, INPUT_WARMUP_S * 1000));
    const probe = new Deno.Command(PROBE, {
      args: [
        ...["--duration-s", String(duration), "--frame-work-us", String(row.workUs)],
        ...(row.waker ? [] : ["--wake-period-us", "0"]),
        ...(row.clock ? ["--work-clock", row.clock] : []),
      ],
      stdout: "piped",
    }).spawn();
    sched.setGame(probe.pid);
    const progsBefore = o["bpf-stats"] ? await progTimes() : undefined;
    const out = await probe.output();
    const progsAfter = progsBefore && await progTimes();
    const io = input && await input.output();
    r = probeResult<Result>("fp-schedprobe", out);
    if (progsBefore && progsAfter) r.bpf = progDelta(progsBefore, progsAfter);
    if (io) {
      r.input = probeResult<InputResult>("fp-inputprobe", io);
      const i = r.input;
      console.error(
        `  ${label}: input ${i.events_seen}/${i.events_sent} events; p50/p99/max µs: compositor ${i.compositor_p50_us}/${i.compositor_p99_us}/${i.compositor_max_us}, input thread ${i.input_p50_us}/${i.input_p99_us}/${i.input_max_us}, worker ${i.worker_p50_us}/${i.worker_p99_us}/${i.worker_max_us}; game render ${i.game_misses}/${i.game_frames} missed, wake p99 ${i.game_frame_wake_p99_us} µs`,
      );
    }
    console.error(
      `  ${label}: ${r.frames} frames, ${r.misses} missed (worst ${r.frame_worst_us} µs at ${r.frame_worst_at_ms} ms), thread up at ${r.thread_start_us} µs, frame wake p50 ${r.frame_wake_p50_us} p99 ${r.frame_wake_p99_us} max ${r.frame_wake_max_us} µs` +
        (row.waker ? `, 1 kHz wake p50 ${r.wake_p50_us} p99 ${r.wake_p99_us} µs` : "") +
        (sched.counters() ? ` — ${sched.counters()}` : ""),
    );
    if (r.bpf && Object.keys(r.bpf).length) console.error(`  ${label}: ${progLine(r.bpf)}`);
  } catch (err) {
    if (!(err instanceof NotMeasured)) throw err;
    whyNot = err.message;
  } finally {
    try {
      const failed = (await Promise.allSettled(pending)).find((p) => p.status === "rejected");
      if (failed) whyNot = `its load did not start (${(failed.reason as Error)?.message ?? String(failed.reason)})`;
      else if (!whyNot && endedEarly() !== undefined) {
        whyNot = `its load ended before the run did (exit ${endedEarly()})`;
      }
      for (const l of loads) {
        try {
          l.kill("SIGKILL");
        } catch { /* ended */ }
        await l.status;
      }
      // stress-ng's workers are its children: make sure none outlive the row.
      await new Deno.Command("pkill", { args: ["-KILL", "stress-ng"] }).output();
    } finally {
      // Detached on every path: a scheduler left attached would be what the next "default" run measures.
      detachOnSignal = undefined;
      ejected = await sched.detach();
    }
  }
  if (ejected) throw new Error(`${label}: ${ejected}`);
  if (whyNot || !r) throw new NotMeasured(`${label}: ${whyNot ?? "no result"}: not measured`);
  return r;
}

/** A usage error: one line naming the problem and the fix, exit 2 (before any VM is booted). */
function usage(msg: string): never {
  console.error(`error: bench:sched: ${msg}`);
  Deno.exit(2);
}
const SCHEDS: Sched[] = ["default", "minimal", "fastpath", "nosignals", "foreground", "baseline", "bpfland", "lavd"];
const rowNames = o.rows === "all" ? Object.keys(ROWS) : o.rows.split(",");
for (const n of rowNames) {
  if (!Object.hasOwn(ROWS, n)) usage(`unknown row "${n}": use one of ${Object.keys(ROWS).join(", ")}, or all alone`);
}
const scheds = o.schedulers.split(",") as Sched[];
for (const s of scheds) {
  if (!SCHEDS.includes(s)) usage(`unknown scheduler "${s}": use one of ${SCHEDS.join(", ")}`);
}
for (const [what, list] of [["row", rowNames], ["scheduler", scheds as string[]]] as const) {
  const twice = list.find((x, i) => list.indexOf(x) !== i);
  if (twice) usage(`${what} ${twice} is named twice: name it once`);
}
// --baseline adds its scheduler; naming the scheduler needs the directory (absolute: it is imported).
if (o.baseline) o.baseline = resolve(o.baseline);
if (o.baseline && !scheds.includes("baseline")) scheds.push("baseline");
if (scheds.includes("baseline") && !o.baseline) {
  usage("the scheduler baseline needs --baseline DIR (a checkout with a built library)");
}
if (o.baseline && !isDir(o.baseline)) {
  usage(`--baseline ${o.baseline} is not a directory: give a checkout (git worktree add DIR COMMIT)`);
}
if (o.baseline && !exists(`${o.baseline}/zig/zig-out/lib/libfastpath.so`)) {
  usage(`--baseline ${o.baseline} has no built library: run scripts/build there`);
}
for (const [k, max] of [["rounds", 100], ["duration-s", 3600]] as const) {
  if (!/^[1-9][0-9]*$/.test(o[k]) || Number(o[k]) > max) {
    usage(`--${k} must be a whole number from 1 to ${max}, not ${o[k]}`);
  }
}
// The JSON is written after the whole run: a path that cannot take it is refused now.
for (const k of ["json", "baseline"] as const) {
  if (o[k] === "") usage(`--${k} is empty: give a ${k === "json" ? "file name" : "directory"}`);
}
if (o.json) {
  const dir = dirname(resolve(o.json));
  if (!isDir(dir)) usage(`--json ${o.json}: ${dir} is not a directory: create it or give another path`);
  if (isDir(o.json)) usage(`--json ${o.json} is a directory: give a file name`);
}

/** Whether this run boots the VM (this kernel has no sched_ext): its own argument checks come first. */
const hasSchedExt = schedStatus().present;
if (o["in-vm"] && !hasSchedExt) usage("--in-vm is the bench's own flag in the VM it boots: run without it");
const bootsVm = !o["in-vm"] && !hasSchedExt;
if (bootsVm) {
  if (!exists(VM)) {
    console.error(
      "error: bench:sched: this kernel has no sched_ext and ../shared/vm is not here: run it on Linux 6.12+ with CONFIG_SCHED_CLASS_EXT=y",
    );
    Deno.exit(6);
  }
  // The guest sees the host's / read-only and the project read-write, but /tmp, /var/tmp and /run
  // are its own (tmpfs): a path there outside the project is not what the host has, or is lost.
  for (const k of ["baseline", "scx-dir"] as const) {
    const path = o[k] && resolve(o[k]);
    if (path && /^\/(tmp|var\/tmp|run)\//.test(path) && !path.startsWith(`${ROOT}/`)) {
      usage(`--${k} ${o[k]} is under /tmp, /var/tmp or /run, which the test VM does not share: use a path elsewhere`);
    }
  }
  // What the guest writes outside the project vanishes with it (or fails, on the read-only root).
  if (o.json && !resolve(o.json).startsWith(`${ROOT}/`)) {
    usage(`--json ${o.json} is outside ${ROOT}, the only directory the test VM writes back: give a path inside it`);
  }
}

// Without it a loaded row would measure an idle machine, each run then failing as its load did not
// start: refused after the arguments are checked and before anything is built or booted.
const loaded = rowNames.filter((r) => ROWS[r].loads.length);
// The probes come from scripts/build (deno task bench:sched runs it first; bench/sched.ts alone does not).
for (const [probe, needed] of [[PROBE, true], [INPUT_PROBE, rowNames.some((r) => ROWS[r].input)]] as const) {
  if (needed && !exists(probe)) {
    console.error(`error: bench:sched: ${probe} is not built: run scripts/build`);
    Deno.exit(6);
  }
}
if (loaded.length && !onPath("stress-ng")) {
  const rows = loaded.length === 1 ? `row ${loaded[0]} loads` : `rows ${loaded.join(", ")} load`;
  console.error(
    `error: bench:sched: stress-ng is not on PATH, and ${rows} the CPUs with it: install it (scripts/setup --test) or put it on PATH`,
  );
  Deno.exit(6);
}
if (o["bpf-stats"] && !onPath("bpftool")) {
  console.error(
    "error: bench:sched: --bpf-stats reads the programs' run times with bpftool, which is not on PATH: install it (Debian: bpftool)",
  );
  Deno.exit(6);
}

if (bootsVm) {
  for (const p of PUBLIC.filter((p) => scheds.includes(p.name))) {
    const why = await ensurePublic(p);
    if (why) console.error(`${p.name}: ${why}`);
  }
  if (scheds.includes("minimal")) await ensureMinimal(); // here, where it is quick; the guest says why if it failed
  // Each run: the duration, a second of load first, attaching and detaching (some seconds under
  // emulation), the input probe's warm-up; twice all that, and the boot, is the VM's time limit.
  const runs = rowNames.reduce((n, r) => n + Number(o.rounds) * (scheds.length + (ROWS[r].input ? 1 : 0)), 0);
  const perRun = Number(o["duration-s"]) + 12 + (rowNames.some((r) => ROWS[r].input) ? INPUT_WARMUP_S : 0);
  const timeoutS = Math.max(1800, 2 * runs * perRun + 600);
  console.error(`no sched_ext on this kernel (${Deno.osRelease()}): booting the sched_ext VM (${VM})`);
  const args = [
    "--share",
    ROOT,
    "--timeout",
    String(timeoutS),
    "--",
    Deno.execPath(),
    "run",
    "-A",
    "--unstable-ffi",
    `${ROOT}/bench/sched.ts`,
    "--in-vm",
    ...Deno.args,
  ];
  const st = await new Deno.Command(VM, { args, stdout: "inherit", stderr: "inherit" }).spawn().status;
  Deno.exit(st.code);
}

const absent = new Map<Sched, string>();
for (const p of PUBLIC) {
  if (scheds.includes(p.name) && !exists(binOf(p))) absent.set(p.name, `${binOf(p)} was not built`);
}
if (scheds.includes("minimal")) {
  const why = await ensureMinimal();
  if (why) absent.set("minimal", why);
}
const active = scheds.filter((s) => !absent.has(s));
/** The schedulers a row runs: input rows compare the detectors on and off. */
const schedsOf = (row: Row): Sched[] =>
  row.input ? INPUT_SCHEDS.filter((s) => !absent.has(s) && (scheds.includes(s) || s === "nosignals")) : active;
const inputRow = rowNames.map((n) => ROWS[n]).find((r) => r.input);
console.error(
  `bench:sched on ${Deno.osRelease()}, ${ncpu} CPUs, ${duration} s per run, ${o.rounds} round(s), schedulers ${
    active.join(", ")
  }` +
    (inputRow ? `; input rows: ${schedsOf(inputRow).join(", ")}` : "") +
    [...absent].map(([s, why]) => `; ${s} absent: ${why}`).join(""),
);

// A bench interrupted before this one may have left the floor scheduler attached through its pin.
removeMinimalPin();
await untilDisabled().catch((e) => usage(`${(e as Error).message}: detach it first (fastpath sched status)`));
// --bpf-stats: the kernel counts every BPF program's runs and run time until this is put back.
const BPF_STATS = "/proc/sys/kernel/bpf_stats_enabled";
const bpfStatsWas = o["bpf-stats"] ? Deno.readTextFileSync(BPF_STATS).trim() : undefined;
if (bpfStatsWas !== undefined) Deno.writeTextFileSync(BPF_STATS, "1");
const restoreBpfStats = () => bpfStatsWas !== undefined && Deno.writeTextFileSync(BPF_STATS, bpfStatsWas);
// Put back first on a signal (synchronous: a detach that hangs cannot keep it on), and at any exit.
globalThis.addEventListener("unload", restoreBpfStats);
for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const) {
  Deno.addSignalListener(sig, async () => {
    restoreBpfStats();
    await detachOnSignal?.().catch(() => {});
    await new Deno.Command("pkill", { args: ["-KILL", "stress-ng"] }).output().catch(() => {});
    Deno.exit(code);
  });
}

const results: Record<string, Record<string, Result[]>> = {};
const ejections: string[] = [];
/** Runs that measured nothing (NotMeasured): a load that did not start or ended early, a probe that failed. */
const unmeasured: string[] = [];
for (const rowName of rowNames) {
  const row = ROWS[rowName];
  results[rowName] = {};
  console.error(`${rowName}: ${row.what}`);
  const rowScheds = schedsOf(row);
  for (let i = 0; i < Number(o.rounds); i++) {
    // Interleaved and rotated, so slow drift of the machine hits every scheduler alike.
    const order = rowScheds.map((_, j) => rowScheds[(i + j) % rowScheds.length]);
    for (const s of order) {
      try {
        (results[rowName][s] ??= []).push(await oneRun(row, s, `round ${i + 1} ${s}`));
      } catch (err) {
        (err instanceof NotMeasured ? unmeasured : ejections).push((err as Error).message);
        console.error(`  ${(err as Error).message}`);
      }
    }
  }
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cell = (xs: number[], fmt: (x: number) => string) =>
  xs.length === 0
    ? "-"
    : xs.length === 1
    ? fmt(xs[0])
    : `${fmt(med(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
const ms = (x: number) => (x / 1000).toFixed(2);
const metrics: Array<[string, (r: Result) => number, (x: number) => string]> = [
  ["misses", (r) => r.miss_ratio, pct],
  ["worst frame ms", (r) => r.frame_worst_us, ms],
  ["wake p50 ms", (r) => r.frame_wake_p50_us, ms],
  ["wake p99 ms", (r) => r.frame_wake_p99_us, ms],
  ["wake p99.9 ms", (r) => r.frame_wake_p999_us, ms],
  ["thread start ms", (r) => r.thread_start_us, ms],
];
const usCell = (x: number) => x.toFixed(0);
const inputMetrics: Array<[string, (r: Result) => number, (x: number) => string]> = [
  ["events reached worker", (r) => (r.input ? r.input.events_seen / Math.max(1, r.input.events_sent) : 0), pct],
  ["worker on input thread's CPU", (r) => (r.input ? r.input.worker_same_cpu_pct / 100 : NaN), pct],
  ["game render misses", (r) => (r.input ? r.input.game_misses / Math.max(1, r.input.game_frames) : NaN), pct],
  ["game render wake p99 ms", (r) => (r.input ? r.input.game_frame_wake_p99_us : NaN), ms],
  ...(["compositor", "input", "worker"] as const).flatMap((hop) =>
    (["p50", "p99", "p999", "max"] as const).map((q) =>
      [
        `event→${hop === "input" ? "input thread" : hop} ${q === "p999" ? "p99.9" : q} µs`,
        (r: Result) => (r.input ? r.input[`${hop}_${q}_us`] : NaN),
        usCell,
      ] as (typeof metrics)[number]
    )
  ),
];
for (const rowName of rowNames) {
  const row = ROWS[rowName];
  const active = schedsOf(row);
  const ms_ = row.input
    ? [...inputMetrics, metrics[0], metrics[3]]
    : row.waker
    ? [...metrics, ["1 kHz wake p50 ms", (r: Result) => r.wake_p50_us, ms] as (typeof metrics)[number]]
    : metrics;
  console.log(`\n${rowName}: ${row.what} (medians of ${o.rounds}, range in brackets; ratio = median ÷ default's)`);
  const d = results[rowName].default ?? [];
  console.log(table(
    ["metric", ...active.flatMap((s) => (s === "default" ? [s] : [s, "÷"]))],
    ms_.map(([name, get, fmt]) => [
      name,
      ...active.flatMap((s) => {
        const xs = (results[rowName][s] ?? []).map(get);
        if (s === "default") return [cell(xs, fmt)];
        const base = med(d.map(get));
        const ratio = xs.length && d.length
          ? (base === 0 ? (med(xs) === 0 ? "1.00" : "inf") : (med(xs) / base).toFixed(2))
          : "-";
        return [cell(xs, fmt), ratio];
      }),
    ]),
  ));
}
// The input rows' point: the worker's p99 with fastpath's detectors against every other scheduler.
for (const rowName of rowNames.filter((n) => ROWS[n].input)) {
  const p99 = (s: Sched) => {
    const xs = (results[rowName][s] ?? []).map((r) => r.input?.worker_p99_us ?? NaN).filter((x) => !isNaN(x));
    return xs.length ? med(xs) : NaN;
  };
  const fp = p99("fastpath");
  const others = schedsOf(ROWS[rowName]).filter((s) => s !== "fastpath");
  console.log(
    `${rowName}: event→worker p99, fastpath ÷ ` +
      others.map((s) => `${s} ${(fp / p99(s)).toFixed(2)}`).join(", "),
  );
}
for (const [s, why] of absent) console.log(`${s}: absent (${why})`);
console.log(`ejections: ${ejections.length ? ejections.join("; ") : "none"}`);
if (unmeasured.length) console.log(`not measured: ${unmeasured.join("; ")}`);
restoreBpfStats();
if (o.json) {
  Deno.writeTextFileSync(
    o.json,
    JSON.stringify({ kernel: Deno.osRelease(), ncpu, duration, results, ejections, unmeasured }, null, 2),
  );
}
Deno.exit(ejections.length || unmeasured.length ? 1 : 0);
