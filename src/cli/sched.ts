/** `fastpath sched run|status|stats`: the sched_ext scheduler. */
import { FastpathError } from "../../ffi/error.ts";
import { table } from "../format.ts";
import {
  exitLine,
  extPolicyThreads,
  NO_SCHED_EXT,
  SCHED_KNOBS,
  type SchedCounters,
  type SchedStatus,
  schedStatus,
  Scheduler,
} from "../sched.ts";
import { DETECT_KNOBS, Detector, type DetectStatus, type DetectThread } from "../detect.ts";
import { command, formatOption, knobs, num, Option, setExit, text } from "./flags.ts";
import type { Board } from "./dashboard.ts";
import { emit } from "./json.ts";
import { intervalOption, monitor, untilSignal } from "./monitor.ts";
import { socketName, startStats, type Stats, statsOptions, statsPlan } from "./stats.ts";
import {
  detectOptionsOf,
  gameOptions,
  observe,
  OBSERVE_EXAMPLES,
  signalsOption,
  statusText,
  threadsOption,
  threadTable,
} from "./observe.ts";

function requireSchedExt(): SchedStatus {
  const st = schedStatus();
  if (!st.present) throw new FastpathError("unsupported", NO_SCHED_EXT);
  return st;
}

function line(c: SchedCounters, prev: SchedCounters, dt: number, fg: number[]): string {
  const rate = (k: keyof SchedCounters) => Math.round((c[k] - prev[k]) / dt);
  const cpuPct = ((c.busy_ns - prev.busy_ns) / 1e9 / dt / Math.max(1, c.nr_cpus)) * 100;
  return `fastpath: ${rate("runs")} runs/s, ${rate("wakeups")} wakeups/s, idle-CPU placements ${
    rate("direct_idle")
  }/s, queued ${rate("enqueued")}/s, preemptions ${rate("preempt_kicks")}/s, CPU ${cpuPct.toFixed(0)} % (${
    c.busy ? "busy" : "idle"
  })` + (fg.length ? `, foreground ${fg.join(",")}: ${rate("foreground_runs")} runs/s` : "");
}

/** What `sched run`'s dashboard shows besides the counters. */
export interface SchedView {
  ops: string;
  partial: boolean;
  /** The --foreground specs as given, and the processes they match now. */
  specs: string[];
  foreground: number[];
  detectors: DetectStatus | null;
  prevDetectors: DetectStatus | null;
}

/** `sched run`'s dashboard: rates from the counters' deltas, the foreground, the game and what the detectors saw. */
export function schedBoard(c: SchedCounters, prev: SchedCounters, dt: number, v: SchedView): Board {
  const per = Math.max(dt, 1e-9);
  const rate = (k: keyof SchedCounters) => `${Math.round((c[k] - prev[k]) / per)}/s`;
  const cpuPct = ((c.busy_ns - prev.busy_ns) / 1e9 / per / Math.max(1, c.nr_cpus)) * 100;
  const det = v.detectors, pd = v.prevDetectors;
  const detRows: Array<[string, string]> = [];
  if (det) {
    const dc = det.counters, pc = pd?.counters ?? det.counters;
    const names: Array<[keyof typeof dc & string, string]> = [
      ["input_events", "input events"],
      ["input_boosts", "input boosts"],
      ["urgent_boosts", "urgent boosts"],
      ["irq_wakeups", "irq wakeups"],
      ["rt_wakeups", "rt wakeups"],
      ["gpu_submits", "GPU submits"],
      ["pcm_periods", "PCM periods"],
      ["net_sends", "game sends"],
      ["events_lost", "events lost"],
    ];
    for (const [k, label] of names) {
      const n = dc[k] as number;
      if (n > 0) detRows.push([label, `${Math.round((n - (pc[k] as number)) / per)}/s  total ${n}`]);
    }
  }
  const g = det?.game;
  return {
    title: `sched run (${c.nr_cpus} CPUs in ${c.nr_llcs} LLC(s))`,
    mode: v.partial
      ? [`partial: ${v.ops}`, "--partial: only the game and --foreground run on it, the rest on the kernel's scheduler"]
      : [`full: ${v.ops}`, "every task runs on it (--partial would take only the game and --foreground)"],
    sections: [
      {
        title: "scheduler",
        rows: [
          ["runs", `${rate("runs")}  wakeups ${rate("wakeups")}`],
          ["idle-CPU placed", `${rate("direct_idle")}  queued ${rate("enqueued")}`],
          ["preemptions", rate("preempt_kicks")],
          ["CPU", `${cpuPct.toFixed(0)} % (${c.busy ? "busy" : "idle"}, ${c.busy_flips} flips)`],
          ...(c.restarts > 0 ? [["restarts", String(c.restarts)] as [string, string]] : []),
        ],
      },
      {
        title: "foreground and game",
        rows: [
          [
            "foreground",
            v.specs.length
              ? `${v.specs.join(",")} → ${v.foreground.length ? v.foreground.join(",") : "not running"}  ${
                rate("foreground_runs")
              }`
              : "none (--foreground)",
          ],
          ["game", g ? `${g.comm} (pid ${g.pid}, ${g.reason.replace("_", " ")})` : det ? "none detected" : "-"],
        ],
      },
      { title: "detectors", rows: detRows, empty: det ? "nothing seen yet" : "off (--no-signals)" },
    ],
  };
}

/** The running detectors (of `sched run` or `sched observe`), or why they cannot be read. */
async function attachedDetectors(max: number): Promise<{ status: DetectStatus; threads: DetectThread[] } | string> {
  try {
    return await Detector.readAttached(max);
  } catch (err) {
    // "cannot read the detectors: <why>": status prints it after "detectors: not read:".
    return (err instanceof Error ? err.message : String(err)).replace(/^cannot read the detectors: /, "");
  }
}

/** The kernel's own view and the detectors', as JSON or text. */
async function statusOut(st: SchedStatus, json: boolean, threads: number | undefined): Promise<void> {
  // The detectors of `sched run` or of `sched observe` (which needs no sched_ext).
  const det = await attachedDetectors(threads ?? 0);
  // With no scheduler attached, a SCHED_EXT thread was left by a partial-mode loader that was killed.
  const left = st.present && st.state === "disabled" ? extPolicyThreads() : undefined;
  if (json) {
    emit("sched_status", {
      state: st.present ? st.state : "unsupported",
      ops: st.ops || null,
      enableSeq: st.enableSeq ?? null,
      hotplugSeq: st.hotplugSeq ?? null,
      detectors: typeof det === "string" ? null : det.status,
      detectorsAbsentWhy: typeof det === "string" ? det : null,
      threads: typeof det === "string" || threads === undefined ? null : det.threads,
      extPolicyTids: left?.tids ?? null,
      extPolicyPids: left?.pids ?? null,
    });
    return;
  }
  if (!st.present) console.log(`state:       unsupported (${NO_SCHED_EXT})`);
  else {
    console.log(`state:       ${st.state}`);
    console.log(`scheduler:   ${st.ops || "(none: the kernel's default scheduler)"}`);
    console.log(`enable_seq:  ${st.enableSeq}`);
    console.log(`hotplug_seq: ${st.hotplugSeq}`);
    if (left?.tids.length) console.log(strandedText(left));
  }
  if (typeof det === "string") console.log(`detectors:   not read: ${det}`);
  else {
    for (const l of statusText(det.status)) console.log(l);
    if (threads !== undefined) console.log(threadTable(det.threads, threads));
  }
}

/**
 * The `sched status` line for threads left SCHED_EXT with no scheduler attached (extPolicyThreads):
 * the threads, their processes and the command that puts each back. Per thread, not per process
 * (`chrt --all-tasks`): that would also demote the process's real-time threads, which fastpath never moves.
 */
export function strandedText(left: { tids: number[]; pids: number[] }): string {
  const list = (xs: number[]) =>
    xs.length > 8 ? `${xs.slice(0, 8).join(", ")}, … (${xs.length} in all)` : xs.join(", ");
  const one = left.tids.length === 1;
  const [have, them, they, run, each] = one
    ? ["thread has", "it", "it", "runs", "it"]
    : ["threads have", "them", "they", "run", "each"];
  const tids = `${one ? "TID" : "TIDs"} ${list(left.tids)}`;
  const pids = `${left.pids.length === 1 ? "process" : "processes"} ${list(left.pids)}`;
  return `stranded:    ${left.tids.length} ${have} the SCHED_EXT policy with no scheduler attached (${tids}; ${pids}): ` +
    `a partial-mode sched run killed before it put ${them} back may have left ${them}; ${they} ${run} as SCHED_NORMAL now, ` +
    `but the next sched_ext scheduler to attach takes ${them} - put ${each} back with: sudo chrt --other --pid 0 ${
      one ? left.tids[0] : "TID"
    }`;
}

/** Where a knob's range is, and the relations between knobs the library also checks (sched/sched.zig). */
const KNOB_RANGES = `Each knob's range is in brackets (the library's: not shown when it cannot load). Besides,
    --slice-min-us <= --slice-us, --lag-us <= --lag-max-us, --busy-low-pct <= --busy-high-pct.`;

/** Each action's examples, shown in its own help; `fastpath sched --help` shows them all. */
const RUN_EXAMPLES = [
  "sudo fastpath sched run",
  "sudo fastpath sched run --foreground game.exe --foreground-weight-pct 800",
  "sudo fastpath sched run --slice-us 3000 --duration-s 60 --format json",
  "sudo fastpath sched run --game eldenring.exe --input-window-us 4000",
  "sudo curl -s --unix-socket /run/fastpath/sched.sock http://fastpath/metrics   # while sched run runs",
];
const STATUS_EXAMPLES = [
  "sudo fastpath sched status",
  "sudo fastpath sched status --threads 20",
  "sudo fastpath sched status --format json | jq .state",
];
const STATS_EXAMPLES = [
  "sudo fastpath sched stats",
  "sudo fastpath sched stats --format json | jq .preempt_kicks",
];

const status = command("status", {
  summary:
    "what /sys/kernel/sched_ext says (state, the attached scheduler), threads left SCHED_EXT with none attached, and the detectors: the game and why",
  usage: "[flags]",
  description: "",
  examples: STATUS_EXAMPLES,
})
  .addOption(threadsOption("also the detectors' threads: which are classified as what and why (at most N)"))
  .addOption(formatOption())
  .action(async (f) => {
    await statusOut(schedStatus(), f.format === "json", f.threads);
    setExit(0);
  });

const stats = command("stats", {
  summary: "the counters of the fastpath scheduler attached now (by any process)",
  usage: "[flags]",
  description: "",
  examples: STATS_EXAMPLES,
})
  .addOption(formatOption())
  .action(async (f) => {
    requireSchedExt();
    const c = await Scheduler.readAttached();
    if (f.format === "json") emit("sched_stats", { ...c });
    else console.log(table(["counter", "value"], Object.entries(c).map(([k, v]) => [k, String(v)])));
    setExit(0);
  });

/** What a full foreground set left out, for the text lines ("" when nothing). */
function leftOutText(n: number): string {
  return n ? `; ${n} more processes match --foreground, left out: the set holds 64, name fewer` : "";
}

/** `--foreground a,b` as its entries, each as given ("a,,b" has an empty one, which start refuses). */
export function foregroundSpecs(v: string | undefined): string[] {
  return v === undefined ? [] : v.split(",");
}

const [game, compositor] = gameOptions();
const [statsSocket, noStatsSocket, http, httpAllowRemote] = statsOptions("sched");

const run = knobs(
  knobs(
    command("run", {
      summary: "attach the scheduler and show live counters until Ctrl-C or SIGTERM",
      usage: "[flags]",
      description: `${KNOB_RANGES}\nWhat it does: fastpath sched --help.`,
      examples: RUN_EXAMPLES,
    }),
    SCHED_KNOBS,
    "SchedOptions",
  ),
  DETECT_KNOBS,
  "DetectKnobs",
)
  .addOption(game)
  .addOption(compositor)
  .addOption(
    new Option(
      "--no-signals",
      "the policy alone: no detectors (the game, input, GPU, audio, network, interrupt and real-time wakers)",
    ),
  )
  .addOption(signalsOption())
  .addOption(
    text(
      "foreground",
      "comma list of PIDs or process names to favour (a name: the command or executable's base name, matched by the kernel at each exec and rename and looked up every second; 64 processes at most, more are left out and reported)",
      "LIST",
    ),
  )
  .addOption(
    new Option(
      "--partial",
      "schedule only the game and the --foreground processes with fastpath; every other task stays on the kernel's default scheduler (and its protection against real-time hogs) - and the kernel runs those first: for a machine where little else runs",
    ),
  )
  .addOption(intervalOption())
  .addOption(num("duration-s", "detach after this many seconds (default: until stopped)", { above: 0 }))
  .addOption(
    num(
      "test-stall-pid",
      "testing only: load a deliberately broken build that starves this process, to see the kernel eject it",
    ).hideHelp(),
  )
  .addOption(formatOption())
  .addOption(statsSocket)
  .addOption(noStatsSocket)
  .addOption(http)
  .addOption(httpAllowRemote)
  .action(async (f, cmd) => {
    const json = f.format === "json";
    const plan = statsPlan(f, socketName("sched"));
    const specs = foregroundSpecs(f.foreground);
    const stop = untilSignal();
    let s: Scheduler;
    try {
      s = await Scheduler.start({
        ...f,
        foreground: specs,
        partial: f.partial === true,
        signals: f.signals !== false,
        detect: detectOptionsOf(f, (k) => cmd.getOptionValueSource(k) === "cli"),
        testStallPid: f.testStallPid,
      });
    } catch (err) {
      stop.dispose();
      throw err;
    }
    let stats: Stats | null = null;
    try {
      const st = schedStatus();
      const c0 = s.stats();
      const o = s.options;
      const det = s.detector?.status() ?? null;
      const leftOut0 = s.foregroundLeftOut;
      if (json) {
        emit("sched_started", {
          state: st.state,
          ops: st.ops,
          enableSeq: st.enableSeq,
          nrCpus: c0.nr_cpus,
          nrLlcs: c0.nr_llcs,
          foreground: s.foreground,
          foregroundLeftOut: leftOut0,
          partial: s.partial,
          detectors: det,
          detectKnobs: s.detector ? { type: "detect_knobs", ...s.detector.knobs } : null,
          ...o,
        });
      } else {
        console.error(
          `fastpath scheduler attached: state ${st.state}, ops ${st.ops}, ${c0.nr_cpus} CPUs in ${c0.nr_llcs} LLC(s)`,
        );
        console.error(
          `  slice ${o.sliceUs} µs (down to ${o.sliceMinUs} µs for frequent wakers), preempt from ${o.latencyHz} Hz, foreground weight ${o.foregroundWeightPct} %` +
            (specs.length
              ? `, foreground ${specs.join(",")} → ${
                s.foreground.length ? s.foreground.join(",") : "not running yet"
              }` +
                leftOutText(leftOut0)
              : ""),
        );
        if (s.partial) {
          console.error(
            "  partial mode: only the game and the --foreground processes run on fastpath; the kernel runs every other task first, so they get only the CPU time the others leave",
          );
        }
        for (const l of det ? statusText(det) : ["signals:     off (--no-signals)"]) console.error(`  ${l}`);
        console.error("  stop with Ctrl-C");
      }
      // After attaching: a second loader is refused for that, naming the scheduler attached.
      stats = await startStats(plan, { command: "sched run", intervalMs: f.intervalMs, families: ["sched"] });
      let fg = s.foreground;
      let leftOut = leftOut0;
      let gamePid = det?.game?.pid ?? 0;
      let prevDetectors = det;
      await monitor({
        json,
        intervalMs: f.intervalMs,
        durationS: f.durationS,
        stop: stop.promise,
        sample: () => s.stats(),
        line: (c, prev, dt) => line(c, prev, dt, s.foreground),
        board: (c, prev, dt) => {
          const detectors = s.detector?.status() ?? null;
          const b = schedBoard(c, prev, dt, {
            ops: st.ops || "fastpath",
            partial: s.partial,
            specs,
            foreground: s.foreground,
            detectors,
            prevDetectors,
          });
          prevDetectors = detectors;
          return b;
        },
        interval: (c, _prev, dt) => ["sched_interval", { timeS: Date.now() / 1000, intervalS: dt, ...c }],
        wait: async (ms) => (await s.waitEjected(ms)) ? "ejected" : undefined,
        observe: stats ? (type, obj) => stats!.core.observe(type, obj) : undefined,
        after: () => {
          const notes: Array<[string, Record<string, unknown>, string]> = [];
          const now = s.foreground, out = s.foregroundLeftOut;
          if (now.join() !== fg.join() || out !== leftOut) {
            [fg, leftOut] = [now, out];
            notes.push([
              "sched_foreground",
              { tgids: now, left_out: out },
              `foreground now ${now.length ? now.join(",") : "empty (not running)"}` +
              leftOutText(out),
            ]);
          }
          const g = s.detector?.status().game ?? null;
          if ((g?.pid ?? 0) !== gamePid) {
            gamePid = g?.pid ?? 0;
            notes.push([
              "sched_game",
              { game: g },
              g ? `game now ${g.comm} (pid ${g.pid}, ${g.reason.replace("_", " ")})` : "game gone",
            ]);
          }
          return notes.length ? { notes } : undefined;
        },
      });
      const ejected = s.state() === "ejected";
      const e = s.stop();
      const total = s.stats();
      if (json) {
        emit("sched_exit", {
          kind: e.kind,
          kindName: e.kindName,
          exitCode: Number(e.exitCode),
          reason: e.reason,
          msg: e.msg,
          ejected,
          ...total,
        });
      }
      console.error(exitLine(e));
      if (!json) {
        console.error(
          `  ${total.runs} runs, ${total.wakeups} wakeups, ${total.preempt_kicks} preemptions, ${total.restarts} restarts; state now ${schedStatus().state}`,
        );
      }
      setExit(e.error || ejected ? 11 : 0);
    } finally {
      try {
        stats?.close();
        s.close(); // in partial mode: every thread it moved back to its policy
      } finally {
        stop.dispose(); // last: a second signal meanwhile must not kill the cleanup
      }
    }
  });

export const sched = command("sched", {
  summary: "a sched_ext CPU scheduler that keeps a game responsive while the machine is busy",
  usage: "run|observe|status|stats [flags]",
  description: `run: attaches the fastpath scheduler (a deadline policy in the kernel: tasks that sleep often and
    run briefly go first, idle cores first, the --foreground processes get more weight) and shows
    live counters until Ctrl-C or SIGTERM, then detaches and prints EXIT: reason (msg). If the loader
    dies (even by SIGKILL) the kernel detaches it; if the kernel ejects it, run exits with code 11.
    With the detectors (default; --no-signals turns them off) the game is found (--game, else Steam's
    SteamGameId or a Proton/Wine .exe, the busiest one, sticky for --game-switch-ms) and its input
    chain, GPU-submit, audio and network threads, and threads woken from interrupts or by real-time
    tasks, go first while their evidence is fresh. fastpath's own process gets no favour while
    attached (never first in line, never preempting, --slice-min-us slices).
    ${KNOB_RANGES}
observe: the detectors alone (no sched_ext needed): which threads are classified as what, and why.
status: what /sys/kernel/sched_ext says (state, the attached scheduler) and the detectors: the game
    and why; --threads N lists the classified threads.
stats: the counters of the fastpath scheduler attached now (by any process).
Needs Linux 6.12 or newer built with CONFIG_SCHED_CLASS_EXT=y.`,
  examples: [
    ...RUN_EXAMPLES,
    ...OBSERVE_EXAMPLES,
    ...STATUS_EXAMPLES,
    ...STATS_EXAMPLES,
  ],
})
  .addCommand(run)
  .addCommand(observe)
  .addCommand(status)
  .addCommand(stats);
