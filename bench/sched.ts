/**
 * deno task bench:sched — what a game feels of the scheduler, under full CPU load, default scheduler
 * vs fastpath, in one boot of one kernel.
 *
 * Each run: `stress-ng --cpu N` (N = CPUs) plus fp-schedprobe (a 16.6 ms frame loop doing fixed
 * work, and a thread waking every 1 ms measuring how late it wakes; both SCHED_OTHER). Runs: the
 * kernel's default scheduler, fastpath, and fastpath with the probe named as --foreground. Prints
 * the results side by side with ratios against the default scheduler.
 *
 * On a kernel without sched_ext it boots ../shared/vm (Linux 6.12) and runs there.
 *
 * usage: deno task bench:sched [--duration-s 20] [--frame-work-us 4000] [--rounds 1] [--json FILE]
 *                              [--only default,fastpath,foreground]
 */
import { parseArgs } from "node:util";
import { schedStatus, Scheduler } from "../mod.ts";
import { table } from "../src/format.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const PROBE = `${ROOT}/zig/zig-out/bin/fp-schedprobe`;
const VM = `${ROOT}/../shared/vm/run-vm.sh`;

const { values: o } = parseArgs({
  args: Deno.args,
  options: {
    "duration-s": { type: "string", default: "20" },
    "frame-work-us": { type: "string", default: "4000" },
    rounds: { type: "string", default: "1" },
    // Only for digging into one configuration; the ratios need "default" in the same invocation.
    only: { type: "string", default: "default,fastpath,foreground" },
    json: { type: "string" },
    "in-vm": { type: "boolean", default: false },
  },
});

if (!schedStatus().present) {
  try {
    Deno.statSync(VM);
  } catch {
    console.error(
      "error: bench:sched: this kernel has no sched_ext and ../shared/vm is not here: run it on Linux 6.12+ with CONFIG_SCHED_CLASS_EXT=y",
    );
    Deno.exit(6);
  }
  console.error(`no sched_ext on this kernel (${Deno.osRelease()}): booting the sched_ext VM (${VM})`);
  const args = [
    "--share",
    ROOT,
    "--timeout",
    "1800",
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

interface Result {
  frames: number;
  misses: number;
  miss_ratio: number;
  frame_worst_us: number;
  frame_worst_at_ms: number;
  wakeups: number;
  wake_p50_us: number;
  wake_p99_us: number;
  wake_p999_us: number;
  wake_max_us: number;
  wake_max_at_ms: number;
}

const ncpu = navigator.hardwareConcurrency;
const duration = Number(o["duration-s"]);
const work = Number(o["frame-work-us"]);

async function oneRun(label: string, scheduler: "default" | "fastpath" | "foreground"): Promise<Result> {
  let sched: Scheduler | undefined;
  let result: Result, ejected = "";
  if (scheduler !== "default") sched = await Scheduler.start({});
  const load = new Deno.Command("stress-ng", {
    args: ["--cpu", String(ncpu), "--timeout", `${duration + 3}s`, "--quiet"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await new Promise((r) => setTimeout(r, 1000)); // the load is running everywhere first
    const probe = new Deno.Command(PROBE, {
      args: ["--duration-s", String(duration), "--frame-work-us", String(work)],
      stdout: "piped",
    }).spawn();
    if (scheduler === "foreground") sched!.setForeground([probe.pid]);
    const out = await probe.output();
    const r = JSON.parse(new TextDecoder().decode(out.stdout)) as Result;
    const state = schedStatus();
    if (sched && (sched.state() !== "running" || state.ops !== "fastpath")) {
      throw new Error(`${label}: the scheduler was ejected: ${JSON.stringify(sched.exitInfo())}`);
    }
    const c = sched?.stats();
    console.error(
      `  ${label}: ${r.frames} frames, ${r.misses} missed (worst ${r.frame_worst_us} µs at ${r.frame_worst_at_ms} ms), ` +
        `wakeup p99 ${r.wake_p99_us} µs, max ${r.wake_max_us} µs at ${r.wake_max_at_ms} ms (state ${state.state})` +
        (c
          ? ` — runs ${c.runs}, wakeups ${c.wakeups}, idle placements ${c.direct_idle}, queued ${c.enqueued}, preemptions ${c.preempt_kicks}, kept ${c.kept_running}, foreground runs ${c.foreground_runs}`
          : ""),
    );
    result = r;
  } finally {
    load.kill("SIGKILL");
    await load.status;
    if (sched) {
      const e = sched.stop();
      sched.close();
      if (e.error) ejected = `${label}: ejected: ${e.reason} (${e.msg})`;
    }
  }
  if (ejected) throw new Error(ejected);
  return result;
}

function merge(rs: Result[]): Result {
  const sum = (k: keyof Result) => rs.reduce((a, r) => a + r[k], 0);
  const frames = sum("frames"), misses = sum("misses");
  const med = (k: keyof Result) => rs.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(rs.length / 2)];
  return {
    frames,
    misses,
    miss_ratio: frames ? misses / frames : 0,
    frame_worst_us: Math.max(...rs.map((r) => r.frame_worst_us)),
    frame_worst_at_ms: 0,
    wakeups: sum("wakeups"),
    wake_p50_us: med("wake_p50_us"),
    wake_p99_us: med("wake_p99_us"),
    wake_p999_us: med("wake_p999_us"),
    wake_max_us: Math.max(...rs.map((r) => r.wake_max_us)),
    wake_max_at_ms: 0,
  };
}

console.error(
  `bench:sched on ${Deno.osRelease()}, ${ncpu} CPUs: stress-ng --cpu ${ncpu} + a 16.6 ms frame loop with ${work} µs of work + a 1 kHz waker, ${duration} s per run, ${o.rounds} round(s)`,
);
const runs = { default: [] as Result[], fastpath: [] as Result[], foreground: [] as Result[] };
const only = new Set(o.only.split(","));
for (let i = 0; i < Number(o.rounds); i++) {
  // Interleaved, so slow drift of the machine hits every scheduler alike.
  if (only.has("default")) runs.default.push(await oneRun(`round ${i + 1} default scheduler`, "default"));
  if (only.has("fastpath")) runs.fastpath.push(await oneRun(`round ${i + 1} fastpath`, "fastpath"));
  if (only.has("foreground")) runs.foreground.push(await oneRun(`round ${i + 1} fastpath --foreground`, "foreground"));
}
if (only.size < 3) Deno.exit(0); // no side-by-side table without all three
const d = merge(runs.default), f = merge(runs.fastpath), g = merge(runs.foreground);
const ratio = (a: number, b: number) => (b === 0 ? (a === 0 ? "1.00" : "inf") : (a / b).toFixed(2));
const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
const row = (
  name: string,
  k: keyof Result,
  fmt: (x: number) => string,
) => [name, fmt(d[k]), fmt(f[k]), ratio(f[k], d[k]), fmt(g[k]), ratio(g[k], d[k])];
const usf = (x: number) => x.toFixed(0);
console.log(table(["metric", "default", "fastpath", "÷ default", "fastpath --foreground", "÷ default"], [
  row("frame deadline misses", "miss_ratio", pct),
  row("worst frame (µs)", "frame_worst_us", usf),
  row("wakeup p50 (µs)", "wake_p50_us", usf),
  row("wakeup p99 (µs)", "wake_p99_us", usf),
  row("wakeup p99.9 (µs)", "wake_p999_us", usf),
  row("wakeup max (µs)", "wake_max_us", usf),
]));
console.log(`frames: ${d.frames} / ${f.frames} / ${g.frames}; wakeups: ${d.wakeups} / ${f.wakeups} / ${g.wakeups}`);
console.log("schbench: not packaged in Debian bookworm or bookworm-backports, so not run");
const bar = (name: string, r: Result) =>
  `${name}: miss ratio ${ratio(r.miss_ratio, d.miss_ratio)}× default (bar ≤ 0.5), wakeup p99 ${
    ratio(r.wake_p99_us, d.wake_p99_us)
  }× default (bar ≤ 1)`;
console.log(bar("fastpath", f));
console.log(bar("fastpath --foreground", g));
if (o.json) {
  Deno.writeTextFileSync(
    o.json,
    JSON.stringify(
      { kernel: Deno.osRelease(), ncpu, duration, work, runs, merged: { default: d, fastpath: f, foreground: g } },
      null,
      2,
    ),
  );
}
