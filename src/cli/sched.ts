/** `fastpath sched run|status|stats`: the sched_ext scheduler. */
import { FastpathError } from "../../ffi/error.ts";
import { table } from "../format.ts";
import {
  exitLine,
  NO_SCHED_EXT,
  SCHED_KNOBS,
  type SchedCounters,
  type SchedStatus,
  schedStatus,
  Scheduler,
} from "../sched.ts";
import { command, formatOption, knobs, num, Option, setExit, text } from "./flags.ts";
import { emit } from "./json.ts";
import { intervalOption, monitor, untilSignal } from "./monitor.ts";

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

/** The kernel's own view, as JSON or text. */
function statusOut(st: SchedStatus, json: boolean): void {
  if (json) {
    emit("sched_status", { state: st.state, ops: st.ops || null, enableSeq: st.enableSeq, hotplugSeq: st.hotplugSeq });
    return;
  }
  console.log(`state:       ${st.state}`);
  console.log(`scheduler:   ${st.ops || "(none: the kernel's default scheduler)"}`);
  console.log(`enable_seq:  ${st.enableSeq}`);
  console.log(`hotplug_seq: ${st.hotplugSeq}`);
}

const status = command("status", {
  summary: "what /sys/kernel/sched_ext says: state, the attached scheduler, enable_seq",
  usage: "[flags]",
  description: "",
  examples: [],
})
  .addOption(formatOption())
  .action((f) => {
    statusOut(requireSchedExt(), f.format === "json");
    setExit(0);
  });

const stats = command("stats", {
  summary: "the counters of the fastpath scheduler attached now (by any process)",
  usage: "[flags]",
  description: "",
  examples: [],
})
  .addOption(formatOption())
  .action(async (f) => {
    requireSchedExt();
    const c = await Scheduler.readAttached();
    if (f.format === "json") emit("sched_stats", { ...c });
    else console.log(table(["counter", "value"], Object.entries(c).map(([k, v]) => [k, String(v)])));
    setExit(0);
  });

const run = knobs(
  command("run", {
    summary: "attach the scheduler and show live counters until Ctrl-C or SIGTERM",
    usage: "[flags]",
    description: "",
    examples: [],
  }),
  SCHED_KNOBS,
)
  .addOption(
    text(
      "foreground",
      "comma list of PIDs or process names to favour (names are looked up again every second)",
      "LIST",
    ),
  )
  .addOption(
    new Option(
      "--partial",
      "schedule only the --foreground processes with fastpath; every other task stays on the kernel's default scheduler (and its protection against real-time hogs)",
    ),
  )
  .addOption(intervalOption())
  .addOption(num("duration-s", "detach after this many seconds (default: until stopped)"))
  .addOption(
    num(
      "test-stall-pid",
      "testing only: load a deliberately broken build that starves this process, to see the kernel eject it",
    ),
  )
  .addOption(formatOption())
  .action(async (f) => {
    const json = f.format === "json";
    requireSchedExt();
    const specs = (f.foreground ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    const stop = untilSignal();
    let s: Scheduler;
    try {
      s = await Scheduler.start({ ...f, foreground: specs, partial: f.partial === true, testStallPid: f.testStallPid });
    } catch (err) {
      stop.dispose();
      throw err;
    }
    try {
      const st = schedStatus();
      const c0 = s.stats();
      const o = s.options;
      if (json) {
        emit("sched_started", {
          state: st.state,
          ops: st.ops,
          enableSeq: st.enableSeq,
          nrCpus: c0.nr_cpus,
          nrLlcs: c0.nr_llcs,
          foreground: s.foreground,
          partial: s.partial,
          ...o,
        });
      } else {
        console.error(
          `fastpath scheduler attached: state ${st.state}, ops ${st.ops}, ${c0.nr_cpus} CPUs in ${c0.nr_llcs} LLC(s)`,
        );
        console.error(
          `  slice ${o.sliceUs} µs (down to ${o.sliceMinUs} µs for frequent wakers), preempt from ${o.latencyHz} Hz, foreground weight ${o.foregroundWeightPct} %` +
            (specs.length
              ? `, foreground ${specs.join(",")} → ${s.foreground.length ? s.foreground.join(",") : "not running yet"}`
              : ""),
        );
        console.error("  stop with Ctrl-C");
      }
      let fg = s.foreground;
      await monitor({
        json,
        intervalMs: f.intervalMs,
        durationS: f.durationS,
        stop: stop.promise,
        sample: () => s.stats(),
        line: (c, prev, dt) => line(c, prev, dt, s.foreground),
        interval: (c, _prev, dt) => ["sched_interval", { timeS: Date.now() / 1000, intervalS: dt, ...c }],
        wait: async (ms) => (await s.waitEjected(ms)) ? "ejected" : undefined,
        after: () => {
          const now = s.foreground;
          if (now.join() === fg.join()) return undefined;
          fg = now;
          return {
            notes: [[
              "sched_foreground",
              { tgids: now },
              `foreground now ${now.length ? now.join(",") : "empty (not running)"}`,
            ]],
          };
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
      stop.dispose();
      s.close();
    }
  });

export const sched = command("sched", {
  summary: "a sched_ext CPU scheduler that keeps a game responsive while the machine is busy",
  usage: "run|status|stats [flags]",
  description: `run: attaches the fastpath scheduler (a deadline policy in the kernel: tasks that sleep often and
    run briefly go first, idle cores first, the --foreground processes get more weight) and shows
    live counters until Ctrl-C or SIGTERM, then detaches and prints EXIT: reason (msg). If the loader
    dies (even by SIGKILL) the kernel detaches it; if the kernel ejects it, run exits with code 11.
status: what /sys/kernel/sched_ext says: state, the attached scheduler, enable_seq.
stats: the counters of the fastpath scheduler attached now (by any process).
Needs Linux 6.12 or newer built with CONFIG_SCHED_CLASS_EXT=y.`,
  examples: [
    "sudo fastpath sched run",
    "sudo fastpath sched run --foreground game.exe --foreground-weight-pct 400",
    "sudo fastpath sched run --slice-us 3000 --duration-s 60 --format json",
    "fastpath sched status",
    "sudo fastpath sched stats --format json | jq .preempt_kicks",
  ],
})
  .addCommand(run)
  .addCommand(status)
  .addCommand(stats);
