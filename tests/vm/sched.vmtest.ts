/**
 * The scheduler on a kernel with sched_ext. `scripts/test` runs this file inside the test VM
 * (../shared/vm, Linux 6.12) or directly on a host whose kernel has sched_ext; never elsewhere.
 * Every step looks at what the kernel says: /sys/kernel/sched_ext, the kernel log, /proc.
 */
import assert from "node:assert/strict";
import { cli, DENO, ROOT, spawnCli, vmStep, waitFor } from "../helpers.ts";
import { Scheduler, type SchedulerOptions } from "../../mod.ts";
import { get, parsePrometheus, scxRequests } from "../stats_client.ts";

const SCX = "/sys/kernel/sched_ext";
const state = () => Deno.readTextFileSync(`${SCX}/state`).trim();
const ops = () => {
  try {
    return Deno.readTextFileSync(`${SCX}/root/ops`).trim();
  } catch {
    return "";
  }
};
const PROBE = `${ROOT}/zig/zig-out/bin/fp-schedprobe`;
const NCPU = navigator.hardwareConcurrency;

function kernelLog(): string {
  const out = new Deno.Command("dmesg", { stdout: "piped", stderr: "null" }).outputSync();
  return new TextDecoder().decode(out.stdout);
}

function badKernelLines(log: string): string[] {
  return log.split("\n").filter((l) =>
    /BUG:|WARNING:|stall|Oops|rcu_sched detected/i.test(l) &&
    !/sched_ext: .*(enabled|unregistered from user space)/.test(l)
  );
}

async function probe(args: string[]) {
  const out = await new Deno.Command(PROBE, { args, stdout: "piped", stderr: "inherit" }).output();
  assert.deepEqual(out.code, 0, "fp-schedprobe failed");
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

function stress(seconds: number, ...args: string[]) {
  return new Deno.Command("stress-ng", {
    args: [...(args.length ? args : ["--cpu", String(NCPU)]), "--timeout", `${seconds}s`, "--quiet"],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** A CPU hog of the fair class: a shell loop that never sleeps (its own process, its own tgid). */
function spinHog(): Deno.ChildProcess {
  return new Deno.Command("sh", { args: ["-c", "while :; do :; done"], stdout: "null", stderr: "null" }).spawn();
}

/** CPU time of process `pid` so far, in clock ticks: utime + stime (fields 14 and 15 of /proc/PID/stat). */
function cpuTicks(pid: number): number {
  const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return Number(f[11]) + Number(f[12]);
}

/** The policy of thread `tid` (/proc/TID/sched: 0 SCHED_NORMAL, 3 SCHED_BATCH, 7 SCHED_EXT). */
function policy(tid: number): number {
  return Number(/^policy\s*:\s*(\d+)/m.exec(Deno.readTextFileSync(`/proc/${tid}/sched`))?.[1]);
}

/** A child process of `pid` (its parent, field 4 of /proc/PID/stat, is `pid`); undefined while none. */
function childOf(pid: number): number | undefined {
  return [...Deno.readDirSync("/proc")].map((e) => Number(e.name)).find((p) => {
    try {
      return p > 0 && Deno.readTextFileSync(`/proc/${p}/stat`).split(") ")[1].split(" ")[1] === String(pid);
    } catch {
      return false;
    }
  });
}

/** A SCHED_FIFO hog on the last CPU for `seconds`, after `delayMs` (a PipeWire-like thread gone wrong). */
async function rtHog(seconds: number, delayMs: number) {
  await new Promise((r) => setTimeout(r, delayMs));
  const cpu = String(NCPU - 1);
  return await new Deno.Command("chrt", {
    args: ["-f", "40", "taskset", "-c", cpu, "stress-ng", "--cpu", "1", "-t", `${seconds}s`, "--quiet"],
    stdout: "null",
    stderr: "null",
  }).output();
}

/** Two processes passing a byte back and forth through two pipes, as fast as they can. */
const PING_PONG = `
import ctypes, os
a_r, a_w = os.pipe(); b_r, b_w = os.pipe()
if os.fork() == 0:
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: gone with its parent
    while True:
        os.read(a_r, 1); os.write(b_w, b"x")
while True:
    os.write(a_w, b"x"); os.read(b_r, 1)
`;

/** A 100 Hz sleeper named fp-strand (the stall build strands it), for ARGV[1] s: prints its worst gap in ms. */
const STRANDED_SLEEPER = `
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, b"fp-strand")  # PR_SET_NAME
end = time.monotonic() + float(sys.argv[1]); last = time.monotonic(); worst = 0.0
while last < end:
    time.sleep(0.01)
    now = time.monotonic(); worst = max(worst, now - last); last = now
print(int(worst * 1000))
`;

/** A CPU hog for ARGV[1] s that prints the longest it went without running, in ms. */
const GAP_HOG = `
import sys, time
end = time.monotonic() + float(sys.argv[1]); last = time.monotonic(); worst = 0.0
while last < end:
    now = time.monotonic(); worst = max(worst, now - last); last = now
print(int(worst * 1000))
`;

interface ProbeResult {
  pid: number;
  frames: number;
  misses: number;
  miss_ratio: number;
  frame_worst_us: number;
  frame_wake_p99_us: number;
  wake_max_us: number;
}

/**
 * How long `sched run` may take to say it attached: starting Deno, loading the library and passing
 * the verifier took over 30 s in a slow spell of the emulated VM (TCG) during a CI run.
 */
const ATTACH_TIMEOUT_MS = 90_000;

/**
 * `fastpath sched run ARGS` around `body`, checked to attach; whatever happens in `body`, it is
 * stopped (SIGINT, SIGKILL if that fails) and the kernel's state is disabled again afterwards. The
 * CLI is killed after `lifetimeMs` (spawnCli's 120 s unless given).
 */
async function withScheduler<T>(
  args: string[],
  body: (run: ReturnType<typeof spawnCli>) => Promise<T>,
  lifetimeMs?: number,
): Promise<T> {
  const run = spawnCli(["sched", "run", "--interval-ms", "500", "--format", "json", ...args], { lifetimeMs });
  try {
    await run.waitFor('"type":"sched_started"', ATTACH_TIMEOUT_MS);
    return await body(run);
  } finally {
    try {
      run.child.kill("SIGINT");
    } catch { /* already exited */ }
    const stopped = await Promise.race([run.finish(), new Promise((r) => setTimeout(r, 10_000))]);
    if (!stopped) {
      try {
        run.child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
      await run.finish();
    }
    await waitFor(() => state() === "disabled", "state disabled after the step", 10_000);
  }
}

/** SIGKILL to `pid` if it is set and still runs (a process the test did not spawn itself). */
function killPid(pid: number | undefined): void {
  try {
    if (pid) Deno.kill(pid, "SIGKILL");
  } catch { /* ended */ }
}

/** Stops and closes a scheduler this process started (mod.ts), if any, and waits for the kernel to say so. */
async function closeScheduler(sched: Scheduler | undefined): Promise<void> {
  sched?.stop();
  sched?.close();
  await waitFor(() => state() === "disabled", "state disabled after the step", 10_000);
}

/** Kills a child if it still runs and waits for it. */
async function reap(c: Deno.ChildProcess): Promise<void> {
  try {
    c.kill("SIGKILL");
  } catch { /* ended */ }
  await c.status;
}

/**
 * The test build (`sched run --test-stall-pid`: it starves the given process, a `sleep` that never
 * wakes here, strands threads named fp-strand and moves nothing in ops.cpu_release) around `body`.
 */
async function withStallBuild<T>(body: (run: ReturnType<typeof spawnCli>) => Promise<T>): Promise<T> {
  const idle = new Deno.Command("sleep", { args: ["120"] }).spawn();
  try {
    return await withScheduler(["--test-stall-pid", String(idle.pid)], body);
  } finally {
    await reap(idle);
  }
}

/**
 * The frame probe under `load` (stress-ng arguments), on the default scheduler, `sched run ARGS`
 * (flags) or the scheduler started in this process with options (mod.ts, as the CLI does in its own:
 * the same defaults, without a Deno start of 13-18 s in the emulated VM for each round).
 */
async function frameRun(
  probeArgs: string[],
  loadArgs: string[],
  sched: string[] | "default" | SchedulerOptions,
  during?: () => Promise<unknown>,
): Promise<ProbeResult> {
  const measure = async () => {
    const load = stress(12, ...loadArgs);
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const side = during?.();
      const out = await new Deno.Command(PROBE, { args: probeArgs, stdout: "piped", stderr: "inherit" }).output();
      await side;
      assert.deepEqual(out.code, 0, "fp-schedprobe failed");
      return JSON.parse(new TextDecoder().decode(out.stdout)) as ProbeResult;
    } finally {
      await reap(load);
      await new Deno.Command("pkill", { args: ["-KILL", "stress-ng"] }).output();
    }
  };
  if (sched === "default") return await measure();
  if (Array.isArray(sched)) return await withScheduler(sched, measure);
  const s = await Scheduler.start(sched);
  try {
    return await measure();
  } finally {
    await closeScheduler(s);
  }
}

/**
 * `frameRun` for each of `scheds` (name → its flags, or "default"), `rounds` times, interleaved (a
 * spell in which the emulated VM runs slow falls on every scheduler alike), and the median round of
 * each by its misses: one run each let such a spell decide the comparison (a CI run once lost
 * --foreground's round to one, at 32 misses where the rounds before and after had 2-7).
 */
async function frameRounds<K extends string>(
  probeArgs: string[],
  loadArgs: string[],
  scheds: Record<K, string[] | "default" | SchedulerOptions>,
  rounds = 3,
): Promise<Record<K, ProbeResult & { all: ProbeResult[] }>> {
  const all = Object.fromEntries(Object.keys(scheds).map((k) => [k, [] as ProbeResult[]])) as Record<K, ProbeResult[]>;
  for (let i = 0; i < rounds; i++) {
    for (const k of Object.keys(scheds) as K[]) all[k].push(await frameRun(probeArgs, loadArgs, scheds[k]));
  }
  const median = (rs: ProbeResult[]) => {
    const by = (f: (r: ProbeResult) => number) => [...rs].sort((a, b) => f(a) - f(b))[Math.floor(rs.length / 2)];
    return {
      ...by((r) => r.miss_ratio),
      frame_worst_us: by((r) => r.frame_worst_us).frame_worst_us,
      frame_wake_p99_us: by((r) => r.frame_wake_p99_us).frame_wake_p99_us,
    };
  };
  return Object.fromEntries(
    (Object.keys(scheds) as K[]).map((k) => [k, { ...median(all[k]), all: all[k] }]),
  ) as Record<K, ProbeResult & { all: ProbeResult[] }>;
}

/** "8/472 missed, worst 30.8 ms, wake p99 2.43 ms" for each round of a `frameRounds` result. */
function roundsText(r: { all: ProbeResult[] }): string {
  return r.all.map((x) =>
    `${x.misses}/${x.frames} missed, worst ${(x.frame_worst_us / 1000).toFixed(1)} ms, wake p99 ${
      (x.frame_wake_p99_us / 1000).toFixed(2)
    } ms`
  ).join("; ");
}

/**
 * At most one round stalls a frame for 300 ms: the bugs these steps guard against stalled frames for
 * 0.3-2.9 s in every round, and a spell in which the host starves the emulated VM can stall one
 * (a round then runs far fewer frames than its duration holds, under every scheduler).
 */
function assertFewStalls(r: { all: ProbeResult[] }) {
  const stalled = r.all.filter((x) => x.frame_worst_us >= 300_000).length;
  assert.ok(stalled <= 1, `at most one round stalls a frame for 300 ms: ${roundsText(r)}`);
}

const lines = (stdout: string) => stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));

/** A step body that starts `fastpath sched run`; whatever happens, no loader survives the step. */
async function withLoader(args: string[], body: (run: ReturnType<typeof spawnCli>) => Promise<void>) {
  const run = spawnCli(["sched", "run", ...args]);
  try {
    await body(run);
  } finally {
    try {
      run.child.kill("SIGKILL");
    } catch { /* already exited */ }
    await run.finish();
    await waitFor(() => state() === "disabled", "state disabled after the step", 10_000);
  }
}

Deno.test("the fastpath scheduler in a sched_ext kernel", async (t) => {
  assert.ok(Deno.statSync(SCX).isDirectory, "this file runs only where the kernel has sched_ext");
  assert.deepEqual(state(), "disabled", "another scheduler is attached before the tests");
  const logBefore = kernelLog().split("\n").length;

  await vmStep(t, "sched status reports the kernel's own state", async () => {
    const r = await cli(["sched", "status", "--format", "json"]);
    assert.deepEqual(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.deepEqual(s.state, "disabled");
    assert.deepEqual(s.ops, null);
  });

  await vmStep(
    t,
    "run attaches, survives 30 s of stress-ng with a frame loop running, and detaches on SIGTERM",
    async () => {
      const seqBefore = Number(Deno.readTextFileSync(`${SCX}/enable_seq`));
      const run = spawnCli([
        "sched",
        "run",
        "--foreground",
        "fp-schedprobe",
        "--interval-ms",
        "500",
        "--format",
        "json",
      ]);
      await run.waitFor('"type":"sched_started"', ATTACH_TIMEOUT_MS);
      assert.deepEqual(state(), "enabled");
      assert.deepEqual(ops(), "fastpath");
      assert.deepEqual(Number(Deno.readTextFileSync(`${SCX}/enable_seq`)), seqBefore + 1);

      // Tasks really run on sched_ext: /proc/PID/sched shows ext.enabled for our own process.
      const sched = Deno.readTextFileSync(`/proc/${Deno.pid}/sched`);
      assert.match(sched, /ext\.enabled\s*:\s*1/);

      const load = stress(30);
      const frames = await probe(["--duration-s", "28", "--frame-work-us", "4000"]);
      await load.status;
      // A missed frame skips to the next period, so a loop that keeps running makes at least a third of its frames.
      assert.ok(frames.frames >= 28 * 20, `the frame loop kept running: ${frames.frames} frames in 28 s`);
      console.log(
        `    frames ${frames.frames}, missed ${frames.misses} (${
          (frames.miss_ratio * 100).toFixed(2)
        } %), wakeup p99 ${frames.wake_p99_us} µs`,
      );
      assert.deepEqual(state(), "enabled", "still attached after 30 s of load");

      // Another process reads the same counters from the kernel.
      const stats = await cli(["sched", "stats", "--format", "json"]);
      assert.deepEqual(stats.code, 0, stats.stderr);
      const c = JSON.parse(stats.stdout);
      assert.ok(c.runs > 1000 && c.dispatched > 0 && c.direct_idle > 0, `counters move: ${stats.stdout}`);
      assert.ok(c.foreground_runs > 0, "the frame loop, named with --foreground, ran as foreground");
      assert.ok(c.busy_flips >= 1, "the busy/idle hysteresis noticed the load");

      run.child.kill("SIGTERM");
      const r = await run.finish();
      assert.deepEqual(r.code, 0, r.stderr);
      assert.ok(r.stderr.includes("EXIT: "), r.stderr);
      const exit = r.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((e) => e.type === "sched_exit");
      assert.deepEqual(exit.kind, 64, "SCX_EXIT_UNREG: we unregistered it");
      assert.deepEqual(state(), "disabled");
      const bad = badKernelLines(kernelLog().split("\n").slice(logBefore).join("\n"));
      assert.deepEqual(bad, [], "no BUG/WARNING/stall in the kernel log");
    },
  );

  await vmStep(
    t,
    "a nice-19 CPU hog and a SCHED_IDLE one beside four hogs per CPU get turns within a 5 s watchdog, and stay behind the others",
    async () => {
      // Weight 1 in sched_ext's scale for both: a deadline's runtime term counted 20 ms of runtime
      // as 2 s of virtual time, a turn every ~9 s beside eight hogs, and the watchdog ejected the
      // scheduler ("nice[157] failed to run for 6.650s"). Now at most 200 ms (sched.h, fp_lead_vtime).
      const low = (args: string[]) =>
        new Deno.Command(args[0], { args: [...args.slice(1), "sh", "-c", "while :; do :; done"], stdout: "null" })
          .spawn();
      const hogs: Deno.ChildProcess[] = [];
      const lows: Deno.ChildProcess[] = [];
      try {
        // Started after the attach: beside ten hogs of the default scheduler the CLI took over 90 s to start.
        await withScheduler(["--watchdog-ms", "5000"], async (run) => {
          for (let i = 0; i < 4 * NCPU; i++) hogs.push(spinHog());
          lows.push(low(["nice", "-n", "19"]));
          lows.push(low(["chrt", "--idle", "0"]));
          await new Promise((r) => setTimeout(r, 2000));
          const [h0, l0] = [hogs.map((h) => cpuTicks(h.pid)), lows.map((l) => cpuTicks(l.pid))];
          await new Promise((r) => setTimeout(r, 20_000));
          if (state() !== "enabled") {
            await Promise.race([run.finish(), new Promise((r) => setTimeout(r, 5000))]);
            assert.fail(`ejected: ${run.stderr.split("\n").filter((l) => /EXIT|stall|error/.test(l)).join(" ")}`);
          }
          const hog = hogs.map((h, i) => cpuTicks(h.pid) - h0[i]).sort((a, b) => a - b);
          const got = lows.map((l, i) => cpuTicks(l.pid) - l0[i]);
          console.log(`    CPU ticks in 20 s: nice 19 ${got[0]}, SCHED_IDLE ${got[1]}, hogs ${hog.join(", ")}`);
          const median = hog[hog.length >> 1];
          for (const [i, name] of ["nice 19", "SCHED_IDLE"].entries()) {
            assert.ok(got[i] > 0, `the ${name} hog ran: ${got[i]} ticks`);
            assert.ok(got[i] < median / 4, `the ${name} hog stayed behind: ${got[i]} ticks, a hog ${median}`);
          }
        }, 180_000);
      } finally {
        for (const p of [...hogs, ...lows]) {
          try {
            p.kill("SIGKILL");
          } catch { /* ended */ }
        }
        await Promise.all([...hogs, ...lows].map((p) => p.status));
      }
    },
  );

  await vmStep(t, "more CPU hogs than CPUs share the CPUs and queue by deadline, none treated as pinned", async () => {
    await withLoader([], async (run) => {
      await run.waitFor("fastpath scheduler attached", ATTACH_TIMEOUT_MS);
      const stats = async () => {
        const r = await cli(["sched", "stats", "--format", "json"]);
        assert.deepEqual(r.code, 0, r.stderr);
        return JSON.parse(r.stdout);
      };
      const before = await stats();
      const hogs = Array.from({ length: NCPU + 1 }, spinHog);
      try {
        await new Promise((r) => setTimeout(r, 6000));
        const ticks = hogs.map((h) => cpuTicks(h.pid));
        const total = ticks.reduce((a, b) => a + b, 0);
        const fair = total / hogs.length;
        console.log(`    CPU ticks of ${hogs.length} hogs on ${NCPU} CPUs: ${ticks.join(", ")}`);
        // A hog that never left its CPU would leave the last one near zero.
        assert.ok(Math.min(...ticks) >= fair / 2, `every hog got at least half its fair share: ${ticks.join(", ")}`);
      } finally {
        for (const h of hogs) h.kill("SIGKILL");
        await Promise.all(hogs.map((h) => h.status));
      }
      assert.deepEqual(state(), "enabled");
      // The hogs may run on any CPU, so at the end of each slice they go back to the shared queue,
      // ordered by deadline. (BPF runs with migration disabled for the current task; mistaking
      // that for the task's own pinning sent every hog back to its own CPU's FIFO instead.)
      const after = await stats();
      const queued = after.enqueued - before.enqueued, pinned = after.direct_local - before.direct_local;
      console.log(`    queued by deadline ${queued}, placed as pinned ${pinned}`);
      assert.ok(queued > 4 * pinned, `slice ends go to the shared queue: ${queued} queued, ${pinned} as pinned`);
    });
  });

  await vmStep(
    t,
    "a foreground PID whose process ended is dropped within seconds, so a reused PID is not favoured",
    async () => {
      // Once the library held given PIDs for the whole run (the JS timer that re-resolved them was gone).
      const sched = await Scheduler.start({ signals: false });
      const gone = new Deno.Command("sleep", { args: ["30"] }).spawn(),
        stays = new Deno.Command("sleep", { args: ["30"] }).spawn();
      try {
        sched.setForeground([gone.pid, stays.pid]);
        assert.deepEqual(sched.foreground, [gone.pid, stays.pid].sort((a, b) => a - b));
        gone.kill("SIGKILL");
        await gone.status;
        await waitFor(() => sched.foreground.join() === String(stays.pid), "the ended PID dropped", 10_000);
      } finally {
        for (const p of [gone, stays]) {
          try {
            p.kill("SIGKILL");
          } catch { /* ended */ }
          await p.status;
        }
        await closeScheduler(sched);
      }
    },
  );

  await vmStep(
    t,
    "a foreground name that matches more processes than the set holds says how many it left out, and they join as room frees",
    async () => {
      // Once the 65th match was dropped without a word (the set holds FP_MAX_FOREGROUND = 64).
      const exe = "/tmp/fp-fullset";
      Deno.copyFileSync("/bin/sleep", exe);
      const procs = Array.from({ length: 70 }, () => new Deno.Command(exe, { args: ["300"] }).spawn());
      const notes = (run: ReturnType<typeof spawnCli>) =>
        run.stdout.split("\n").filter((l) => l.startsWith('{"type":"sched_foreground"') && l.endsWith("}"))
          .map((l) => JSON.parse(l));
      try {
        await withScheduler(["--foreground", "fp-fullset"], async (run) => {
          // Said at the start, or in a note once a look found them all.
          const started = JSON.parse(run.stdout.split("\n").find((l) => l.startsWith('{"type":"sched_started"'))!);
          await waitFor(
            () => started?.foreground_left_out === 6 || notes(run).some((e) => e.left_out === 6),
            `left out 6; the run said: ${run.stdout}`,
            10_000,
          );
          const full = notes(run).at(-1) ?? { tgids: started.foreground };
          assert.deepEqual(full.tgids.length, 64);
          // Ten of the foreground end: the six left out take their place at the next look.
          const ended = procs.filter((p) => full.tgids.includes(p.pid)).slice(0, 10);
          for (const p of ended) await reap(p);
          await waitFor(
            () => notes(run).at(-1)?.left_out === 0 && notes(run).at(-1)?.tgids.length === 60,
            `60 foreground, none left out; the run said: ${JSON.stringify(notes(run).at(-1))}`,
            10_000,
          );
          const now = new Set(notes(run).at(-1).tgids);
          assert.ok(procs.every((p) => ended.includes(p) || now.has(p.pid)), "every running one is foreground");
        });
      } finally {
        for (const p of procs) await reap(p);
        Deno.removeSync(exe);
      }
    },
  );

  await vmStep(t, "CPU hogs marked foreground do not starve the other CPU hogs", async () => {
    // Spinning before they are named: a task that never sleeps used to be looked up in the
    // foreground set only when it woke, so these were never foreground (they got what the others
    // got). Foreground, each is due a slice after its virtual runtime, a hog 20 ms after its own:
    // the others must still run. The scheduler runs in this process (mod.ts), so no CLI child has
    // to win CPU time from the spinners to report.
    const sched = await Scheduler.start({ signals: false });
    const game = Array.from({ length: NCPU }, spinHog), others = Array.from({ length: NCPU }, spinHog);
    try {
      await new Promise((r) => setTimeout(r, 500));
      sched.setForeground(game.map((g) => g.pid));
      const t0 = others.map((h) => cpuTicks(h.pid)), g0 = game.map((h) => cpuTicks(h.pid));
      await new Promise((r) => setTimeout(r, 6000));
      const got = others.map((h, i) => cpuTicks(h.pid) - t0[i]), fg = game.map((h, i) => cpuTicks(h.pid) - g0[i]);
      console.log(`    CPU ticks in 6 s: foreground ${fg.join(", ")}; others ${got.join(", ")}`);
      assert.deepEqual(state(), "enabled");
      // Fair at 400 % weight: a fifth of a CPU each for the others (120 ticks in 6 s).
      assert.ok(Math.min(...got) >= 15, `every other hog ran (>= 15 ticks): ${got.join(", ")}`);
      assert.ok(Math.min(...fg) > Math.max(...got), `the foreground got more: ${fg.join(", ")} vs ${got.join(", ")}`);
    } finally {
      for (const h of [...game, ...others]) h.kill("SIGKILL");
      await Promise.all([...game, ...others].map((h) => h.status));
      await closeScheduler(sched);
    }
  });

  await vmStep(
    t,
    "fastpath's own threads never preempt: a 1 kHz sleeper in the loader's process interrupts no hog, the same in another process does",
    async () => {
      // The loader's threads (here this test's: mod.ts) get no favour (sched.h fp_task_class). Before,
      // a frequent waker among them was latency-critical like any other and took CPUs from hogs; the
      // CLI's threads so ran in 20 of 23 long waits of a frame thread beside eight hogs.
      const ticker = `self.onmessage = (e) => {
        const ia = new Int32Array(new SharedArrayBuffer(4)), end = Date.now() + e.data;
        while (Date.now() < end) Atomics.wait(ia, 0, 0, 1);
        self.postMessage("done");
      };
      self.postMessage("ready");`;
      const sleeper = "import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end: time.sleep(0.001)";
      const sched = await Scheduler.start({ signals: false });
      const hogs: Deno.ChildProcess[] = [];
      let worker: Worker | undefined;
      const within = async <T>(p: Promise<T>, what: string): Promise<T> => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          return await Promise.race([
            p,
            new Promise<never>((_, no) => timer = setTimeout(() => no(new Error(`${what} took over 60 s`)), 60_000)),
          ]);
        } finally {
          clearTimeout(timer);
        }
      };
      try {
        for (let i = 0; i < 2 * NCPU; i++) hogs.push(spinHog());
        await new Promise((r) => setTimeout(r, 500));
        const kicks = () => sched.stats().preempt_kicks;
        worker = new Worker(`data:text/javascript,${encodeURIComponent(ticker)}`, { type: "module" });
        const w = worker;
        const next = () => new Promise((r) => w.onmessage = r);
        await within(next(), "starting the loader's worker"); // a V8 isolate: seconds beside hogs
        const k0 = kicks(), done = next();
        worker.postMessage(3000);
        await within(done, "the loader's 3 s sleeper");
        const own = kicks() - k0;
        const k1 = kicks();
        const py = await within(new Deno.Command("python3", { args: ["-c", sleeper] }).output(), "the 3 s sleeper");
        assert.ok(py.success, "the sleeper ran");
        const other = kicks() - k1;
        console.log(
          `    preemptions in 3 s beside ${hogs.length} hogs: the loader's 1 kHz sleeper ${own}, another process's ${other}`,
        );
        assert.deepEqual(state(), "enabled");
        assert.ok(other >= 300, `a 1 kHz sleeper in another process preempts hogs (>= 300 in 3 s): ${other}`);
        assert.ok(own * 5 < other, `the loader's own sleeper preempts next to none: ${own} against ${other}`);
      } finally {
        worker?.terminate();
        for (const h of hogs) h.kill("SIGKILL");
        await Promise.all(hogs.map((h) => h.status));
        try {
          sched.stop();
        } finally {
          sched.close();
        }
        await waitFor(() => state() === "disabled", "state disabled after the step", 10_000);
      }
    },
  );

  await vmStep(t, "a second loader is refused while one runs, with the reason", async () => {
    await withLoader([], async (run) => {
      await run.waitFor("fastpath scheduler attached", ATTACH_TIMEOUT_MS);
      const second = await cli(["sched", "run", "--duration-s", "1"]);
      assert.deepEqual(second.code, 7, second.stderr);
      assert.match(
        second.stderr,
        /^error: cannot attach the scheduler: another sched_ext scheduler is attached \(fastpath, state enabled\): stop it first\n$/,
      );
      assert.deepEqual(ops(), "fastpath", "the first one is untouched");
      run.child.kill("SIGINT");
      assert.deepEqual((await run.finish()).code, 0);
      assert.deepEqual(state(), "disabled");
    });
  });

  await vmStep(
    t,
    "its stats socket serves /metrics and answers scx_stats' stats and stats_meta with the run's own counters",
    async () => {
      const sock = "/run/fastpath/vmtest-sched.sock";
      let printed = () => "";
      let scraped = 0;
      let scx = 0;
      await withScheduler(["--stats-socket", sock], async (run) => {
        await waitFor(() => run.stdout.includes('"type":"sched_interval"'), "the first interval", 5000);
        assert.equal(Deno.lstatSync(sock).mode! & 0o777, 0o660);
        const m = await get(sock, "/metrics");
        assert.deepEqual(m.status, 200, m.body);
        const runs = parsePrometheus(m.body).find((f) => f.name === "fastpath_sched_runs_total");
        assert.ok(runs, `no fastpath_sched_runs_total in:\n${m.body}`);
        assert.deepEqual(runs.type, "COUNTER");
        scraped = Number(runs.metrics[0].value);
        const [meta, stats] = await scxRequests(sock, ['{"req":"stats_meta"}', '{"req":"stats"}']);
        assert.deepEqual(meta.errno, 0, JSON.stringify(meta));
        const top = Object.values(meta.args.resp as Record<string, { top?: string; fields: object }>)
          .find((x) => x.top === "true");
        assert.ok(top && "runs" in top.fields, JSON.stringify(meta));
        assert.deepEqual(stats.errno, 0, JSON.stringify(stats));
        scx = stats.args.resp.runs;
        printed = () => run.stdout; // read after the run ended: every interval it printed
      });
      // Both are the counters of one of the intervals the run printed (at most one interval old).
      const intervals = lines(printed()).filter((l) => l.type === "sched_interval").map((l) => l.runs);
      for (const v of [scraped, scx]) {
        assert.ok(v > 0, "the scheduler ran tasks");
        assert.ok(intervals.includes(v), `${v} is one of the printed intervals' runs: ${intervals.join(", ")}`);
      }
      assert.throws(() => Deno.lstatSync(sock), Deno.errors.NotFound, "the socket is removed when the run ends");
    },
  );

  await vmStep(
    t,
    "with only the capabilities its service unit gives, no new privileges and a read-only file system, sched run attaches and stops cleanly; without CAP_BPF it fails saying so",
    async () => {
      const unit = (await cli(["service", "print", "sched"])).stdout;
      const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unit)?.[1].split(" ") ?? [];
      assert.ok(caps.includes("CAP_BPF"), unit);
      const set = (list: string[]) => ["-all", ...list.map((c) => `+${c.slice(4).toLowerCase()}`)].join(",");
      // As the unit runs it: root's uid with the bounding set only (no inheritable caps, so after
      // exec the permitted set is the bounding set); ProtectSystem=strict and PrivateTmp: a
      // read-only / but /run/fastpath, a /tmp of its own.
      await Deno.mkdir("/run/fastpath", { recursive: true });
      const run = (bounding: string) =>
        new Deno.Command("unshare", {
          args: [
            "-m",
            "sh",
            "-c",
            "mount --make-rprivate / && mount --bind /run/fastpath /run/fastpath && " +
            'mount -o bind,remount,ro / && mount -t tmpfs tmpfs /tmp && exec "$@"',
            "sh",
            "setpriv",
            "--no-new-privs",
            `--bounding-set=${bounding}`,
            "--inh-caps=-all",
            DENO,
            "run",
            "-A",
            "--unstable-ffi",
            "--quiet",
            `${ROOT}/main.ts`,
            "sched",
            "run",
            "--duration-s",
            "3",
            "--format",
            "json",
          ],
          env: { NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(90_000),
        }).output();
      const dec = new TextDecoder();
      const ok = await run(set(caps));
      assert.deepEqual(ok.code, 0, dec.decode(ok.stderr));
      assert.match(dec.decode(ok.stdout), /"type":"sched_started"/);
      assert.deepEqual(state(), "disabled");
      // CAP_SYS_ADMIN stands in for CAP_BPF (bpf_capable()), so both go.
      const without = await run(set(caps.filter((c) => c !== "CAP_BPF" && c !== "CAP_SYS_ADMIN")));
      const err = dec.decode(without.stderr);
      assert.notDeepEqual(without.code, 0, "attached without CAP_BPF");
      assert.match(err, /^error: .*\n$/, "one line");
      assert.deepEqual(state(), "disabled");
    },
  );

  await vmStep(
    t,
    "SIGKILL of the loader detaches the scheduler (the link dies with the process); in partial mode sched status then names the threads left SCHED_EXT and the command that puts them back",
    async () => {
      await withLoader([], async (run) => {
        await run.waitFor("fastpath scheduler attached", ATTACH_TIMEOUT_MS);
        assert.deepEqual(state(), "enabled");
        run.child.kill("SIGKILL");
        await run.finish();
        await waitFor(() => state() === "disabled", "state disabled after SIGKILL", 10_000);
      });
      // A partial-mode loader killed so cannot put the threads it moved back: they run as
      // SCHED_NORMAL, but the next sched_ext scheduler takes them. Nothing said so.
      const sleeper = new Deno.Command("sleep", { args: ["120"] }).spawn();
      try {
        await withLoader(["--partial", "--foreground", String(sleeper.pid)], async (run) => {
          await run.waitFor("fastpath scheduler attached", ATTACH_TIMEOUT_MS);
          await waitFor(() => policy(sleeper.pid) === 7, "the foreground moved to SCHED_EXT", 10_000);
          run.child.kill("SIGKILL");
          await run.finish();
          await waitFor(() => state() === "disabled", "state disabled after SIGKILL", 10_000);
        });
        const status = async () => lines((await cli(["sched", "status", "--format", "json"])).stdout)[0];
        const before = await status();
        assert.deepEqual([before.ext_policy_tids, before.ext_policy_pids], [[sleeper.pid], [sleeper.pid]]);
        const text = (await cli(["sched", "status"])).stdout;
        const line = text.split("\n").find((l) => l.startsWith("stranded:"));
        assert.match(
          line ?? text,
          new RegExp(
            `^stranded: +1 thread has the SCHED_EXT policy .*\\(TID ${sleeper.pid}; process ${sleeper.pid}\\)`,
          ),
        );
        // The command it names, as named (root already: no sudo), puts it back.
        const fix = line!.split("back with: sudo ")[1].split(" ");
        assert.deepEqual(fix, ["chrt", "--other", "--pid", "0", String(sleeper.pid)]);
        assert.deepEqual((await new Deno.Command(fix[0], { args: fix.slice(1) }).output()).code, 0);
        assert.deepEqual(policy(sleeper.pid), 0);
        const after = await status();
        assert.deepEqual([after.ext_policy_tids, after.ext_policy_pids], [[], []]);
        assert.doesNotMatch((await cli(["sched", "status"])).stdout, /stranded/);
      } finally {
        await reap(sleeper);
      }
    },
  );

  await vmStep(t, "a stalling build is ejected with kind 1026 and the CLI exits 11 saying why", async () => {
    const victim = spinHog();
    try {
      const r = await cli([
        "sched",
        "run",
        "--test-stall-pid",
        String(victim.pid),
        "--watchdog-ms",
        "2000",
        "--duration-s",
        "40",
        "--format",
        "json",
      ]);
      assert.deepEqual(r.code, 11, r.stderr);
      const exit = r.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((e) => e.type === "sched_exit");
      assert.deepEqual(exit.kind, 1026);
      assert.deepEqual(exit.kind_name, "error_stall");
      assert.match(r.stderr, /EXIT: .*stall/i);
      assert.deepEqual(state(), "disabled");
      assert.ok(
        /sched_ext: BPF scheduler "fastpath" disabled \(runnable task stall\)/.test(kernelLog()),
        "the kernel says it ejected us for a stall",
      );
    } finally {
      victim.kill("SIGKILL");
      await victim.status;
    }
  });

  await vmStep(
    t,
    "a game named by --foreground that starts beside four hogs per CPU is foreground from its first frames, even while the loader's process is stopped, and so is one that takes the name by renaming itself, as Wine does",
    async () => {
      // The kernel matches the names at each exec (fastpath_exec, sched.bpf.c). Before, the loader's
      // exec hook did, on a thread that gets no favour: beside eight hogs in the VM it ran 0.5-1.8 s
      // late in some runs (CI: 135 and 86 runs as foreground for 180 frames), and a JS timer before
      // it in 4 of 5. SIGSTOP makes late never: only the kernel can find the game now. A Wine game
      // execs as wine64-preloader and takes its .exe's name with prctl(PR_SET_NAME) (fastpath_rename).
      await withScheduler(["--foreground", "fp-schedprobe,fp-renamed"], async (run) => {
        const before = (await Scheduler.readAttached()).foreground_runs;
        const load = stress(60, "--cpu", String(4 * NCPU));
        Deno.kill(run.child.pid, "SIGSTOP");
        try {
          await new Promise((r) => setTimeout(r, 1000));
          const r: ProbeResult = await probe([
            "--duration-s",
            "3",
            "--frame-work-us",
            "6000",
            "--wake-period-us",
            "0",
            "--work-clock",
            "wall",
          ]);
          const runs = (await Scheduler.readAttached()).foreground_runs - before;
          console.log(`    ${r.frames} frames, ${runs} runs as foreground, ${r.misses} missed`);
          assert.deepEqual(state(), "enabled");
          assert.ok(
            runs >= 0.9 * r.frames,
            `the probe ran as foreground from its first frames: ${runs} runs, ${r.frames} frames`,
          );
          // It prints how many times it woke after its rename: each wakeup is a run at least.
          const renamed = new Deno.Command("python3", {
            args: [
              "-c",
              "import ctypes,time\n" +
              "ctypes.CDLL(None).prctl(15, b'fp-renamed', 0, 0, 0)\n" +
              "n, end = 0, time.monotonic() + 2\n" +
              "while time.monotonic() < end:\n    time.sleep(0.005)\n    n += 1\n" +
              "print(n)",
            ],
            stdout: "piped",
          });
          const at = (await Scheduler.readAttached()).foreground_runs;
          const wakes = Number(new TextDecoder().decode((await renamed.output()).stdout).trim());
          const renamedRuns = (await Scheduler.readAttached()).foreground_runs - at;
          console.log(`    renamed: ${wakes} wakeups after the rename, ${renamedRuns} runs as foreground`);
          assert.ok(
            wakes > 0 && renamedRuns >= 0.9 * wakes,
            `the renamed process ran as foreground: ${renamedRuns} runs, ${wakes} wakeups`,
          );
        } finally {
          Deno.kill(run.child.pid, "SIGCONT");
          await reap(load);
          await new Deno.Command("pkill", { args: ["-KILL", "stress-ng"] }).output();
        }
      });
    },
  );

  await vmStep(
    t,
    "a 60 Hz frame loop beside four hogs per CPU fares no worse under fastpath than under the default, and no worse as --foreground",
    async () => {
      // Wall-clock work: a frame misses only when its thread is kept off the CPU (the probe on which
      // EEVDF misses little). Before the fix fastpath missed 40-65 % here and stalled frames for up
      // to 2.9 s: its virtual clock ran ahead of the queued hogs.
      const args = ["--duration-s", "5", "--frame-work-us", "6000", "--wake-period-us", "0", "--work-clock", "wall"];
      const hogs = ["--cpu", String(4 * NCPU)];
      // Five rounds, interleaved: the assertions take the median round (the log shows each), and
      // at most one round may stall a frame for 300 ms (the bug stalled them for 0.3-2.9 s in every
      // round; a spell in which the host starved the VM once stalled one round of plain fastpath
      // for 361 ms, 189 of its 300 frames run, where the other four rounds' worst was 32-181 ms).
      // Three were too few for those spells: one covered two rounds of the default and of fastpath
      // (114-283 of 300 frames under every scheduler).
      const { dflt, plain, fg } = await frameRounds(args, hogs, {
        dflt: "default",
        plain: {},
        fg: { foreground: ["fp-schedprobe"] },
      }, 5);
      console.log(
        `    default: ${roundsText(dflt)}\n    fastpath: ${roundsText(plain)}\n    --foreground: ${roundsText(fg)}`,
      );
      const bound = Math.max(2 * dflt.miss_ratio, dflt.miss_ratio + 0.03);
      assert.ok(plain.miss_ratio <= bound, `fastpath misses ${plain.miss_ratio} vs default ${dflt.miss_ratio}`);
      assert.ok(fg.miss_ratio <= bound, `--foreground misses ${fg.miss_ratio} vs default ${dflt.miss_ratio}`);
      assert.ok(fg.miss_ratio <= plain.miss_ratio + 0.01, "marking the game foreground never makes it worse off");
      for (const r of [plain, fg]) {
        assert.ok(r.frame_worst_us < 150_000, `no frame stalls for long: median round's worst ${r.frame_worst_us} µs`);
        assertFewStalls(r);
      }
    },
  );

  await vmStep(
    t,
    "a 60 Hz frame loop doing 6 ms of CPU work beside four hogs per CPU misses at most one frame in 200, as --foreground too",
    async () => {
      // CPU-time work (the bench's probe): the frame thread asks 36 % of a CPU where nine tasks on two
      // CPUs have 22 % each, so it is always in debt. Held two slices ahead of the virtual clock, it
      // queued behind hogs queued earlier: 4, 6, 3, 2 misses of ~480 in 8 s rounds (one boot, parent
      // 3804304); owing one of its slices, 1, 0, 1, 1. The default misses nearly every frame here
      // (its work stretches past the period), so the bound is the public schedulers' level
      // (scx_bpfland 0.63 % in the README's matrix), not the default's. The --foreground half is a
      // guard (the parent passed it too: 0, 1, 0, 0): marking the game must not cost it frames.
      const args = ["--duration-s", "8", "--frame-work-us", "6000", "--wake-period-us", "0", "--work-clock", "cpu"];
      const { plain, fg } = await frameRounds(args, ["--cpu", String(4 * NCPU)], {
        plain: {},
        fg: { foreground: ["fp-schedprobe"] },
      }, 5);
      console.log(`    fastpath: ${roundsText(plain)}\n    --foreground: ${roundsText(fg)}`);
      assert.ok(plain.miss_ratio <= 0.005, `fastpath misses ${plain.miss_ratio} (median of 5) > 0.005`);
      assert.ok(fg.miss_ratio <= 0.005, `--foreground misses ${fg.miss_ratio} (median of 5) > 0.005`);
      for (const r of [plain, fg]) assertFewStalls(r);
    },
  );

  await vmStep(
    t,
    "CPU hogs re-pinned every 10 ms do not count as waking, so they never crowd out a frame loop",
    async () => {
      // stress-ng --affinity moves each hog to another CPU every 10 ms (sched_setaffinity). The kernel
      // queues each moved hog again (ops.enqueue without SCX_ENQ_WAKEUP); counted as wakeups, they made
      // the hogs latency-critical and a frame loop beside them got 74-99 frames in 10 s with stalls of
      // 0.3-0.7 s.
      const args = ["--duration-s", "5", "--frame-work-us", "4000", "--wake-period-us", "0"];
      const load = ["--affinity", String(2 * NCPU), "--affinity-delay", "10000000"];
      // The median of five interleaved rounds; and at most one stalls a frame for 300 ms (the bug
      // stalled every round; a slow spell of the emulated VM once stalled one of three for 360 ms,
      // 156 of its 300 frames run, as it did the default's rounds: 77-114 frames).
      const { dflt, ours } = await frameRounds(args, load, { dflt: "default", ours: {} }, 5);
      console.log(`    default: ${roundsText(dflt)}\n    fastpath: ${roundsText(ours)}`);
      assert.ok(
        ours.frame_worst_us < 150_000,
        `no frame stalls for long: median round's worst ${ours.frame_worst_us} µs`,
      );
      assertFewStalls(ours);
      assert.ok(ours.miss_ratio <= dflt.miss_ratio + 0.02, `misses ${ours.miss_ratio} vs default ${dflt.miss_ratio}`);
    },
  );

  await vmStep(
    t,
    "a fork storm's children start a slice behind the virtual clock, so a frame loop beside it misses no more than under the default",
    async () => {
      // Children placed at the virtual clock queued ahead of everything and held the clock: the frame
      // thread's wake-up p99 was 8-11 ms against the default's 5-7 ms.
      const args = ["--duration-s", "8", "--frame-work-us", "4000", "--wake-period-us", "0"];
      const load = ["--fork", String(2 * NCPU)];
      const dflt = await frameRun(args, load, "default");
      const ours = await frameRun(args, load, []);
      console.log(
        `    default: ${dflt.misses}/${dflt.frames} missed, wake p99 ${
          (dflt.frame_wake_p99_us / 1000).toFixed(2)
        } ms; ` +
          `fastpath: ${ours.misses}/${ours.frames} missed, wake p99 ${(ours.frame_wake_p99_us / 1000).toFixed(2)} ms`,
      );
      assert.ok(ours.miss_ratio <= dflt.miss_ratio + 0.02, `misses ${ours.miss_ratio} vs default ${dflt.miss_ratio}`);
      assert.ok(ours.frame_worst_us < 150_000, `no frame stalls for long: worst ${ours.frame_worst_us} µs`);
    },
  );

  await vmStep(
    t,
    "a real-time hog on one CPU: unpinned tasks move, nothing is ejected, and the frame loop misses no more than under the default, with the detectors and without",
    async () => {
      // A 1 kHz sleeper and a frame loop, neither pinned; a SCHED_FIFO hog takes the last CPU for 6 s.
      // With --no-signals too: the detectors once counted a timer wakeup on the RT hog's CPU as an RT
      // wakeup (urgent), and that alone moved the sleeper - without it, it waited 6.2 s there.
      const args = ["--duration-s", "9", "--frame-work-us", "4000"];
      const load = ["--cpu", String(NCPU)];
      const dflt = await frameRun(args, load, "default", () => rtHog(6, 1000));
      for (const extra of [[], ["--no-signals"]]) {
        let stats: Record<string, number> = {};
        const ours = await frameRun(args, load, extra, async () => {
          await rtHog(6, 1000);
          stats = lines((await cli(["sched", "stats", "--format", "json"])).stdout)[0];
        });
        const name = ["fastpath", ...extra].join(" ");
        console.log(
          `    default: ${dflt.misses}/${dflt.frames} missed, 1 kHz sleeper's worst wake ${
            (dflt.wake_max_us / 1000).toFixed(1)
          } ms; ${name}: ${ours.misses}/${ours.frames} missed, worst wake ${
            (ours.wake_max_us / 1000).toFixed(1)
          } ms, ${stats.rt_reenqueued} re-enqueues for the RT task`,
        );
        assert.ok(stats.rt_reenqueued > 0, `${name}: the RT task's takeover was seen (ops.cpu_release)`);
        assert.ok(
          ours.wake_max_us < 500_000,
          `${name}: the unpinned sleeper moved off the RT CPU: worst ${ours.wake_max_us} µs`,
        );
        assert.ok(
          ours.miss_ratio <= dflt.miss_ratio + 0.02,
          `${name}: misses ${ours.miss_ratio} vs default ${dflt.miss_ratio}`,
        );
      }
    },
  );

  await vmStep(
    t,
    "a thread left in the local queue of a CPU a real-time task holds is queued again by the loader within 250 ms",
    async () => {
      // On 6.12 the kernel does not always call ops.cpu_release when an RT task takes a CPU (from
      // idle; a task that makes itself real-time; a blocked RT task picked again while ops.dispatch
      // had dropped the run-queue lock): what waits in that CPU's local queue then waits out the RT
      // task. In CI an unpinned 1 kHz sleeper waited out a whole 6 s RT hog so. The stall build
      // strands a thread named fp-strand there at each wakeup, the same way, on purpose. The loader
      // counts what waits there (a BPF run every 20 ms while a CPU is held) and walks /proc only
      // then: when it walked on a guess every 0.1-0.2 s, the worst gap was 196-397 ms (three CI runs);
      // with the count 94, 116 and 136 ms (a walk of /proc is most of it in the emulator).
      await withStallBuild(async () => {
        const sleeper = new Deno.Command("python3", {
          args: ["-c", STRANDED_SLEEPER, "7"],
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        await rtHog(4, 1500);
        const worstMs = Number(new TextDecoder().decode((await sleeper.output()).stdout).trim());
        const stats = lines((await cli(["sched", "stats", "--format", "json"])).stdout)[0];
        console.log(
          `    the stranded 100 Hz sleeper's worst gap: ${worstMs} ms; ${stats.rt_rescues} threads rescued`,
        );
        assert.ok(stats.rt_rescues > 0, `the loader queued threads again: ${stats.rt_rescues}`);
        assert.ok(worstMs < 250, `the stranded sleeper waited at most 250 ms at a time: ${worstMs} ms`);
        assert.deepEqual(state(), "enabled");
      });
    },
  );

  await vmStep(
    t,
    "a task a real-time task takes the CPU from moves to another CPU at once, also when the kernel skips ops.cpu_release",
    async () => {
      // The kernel skips ops.cpu_release while it holds the CPU as already released (after a pick that
      // no balance preceded, 6.12-6.18): the preempted task, put back first in that CPU's local queue,
      // waited for the loader's rescue - a 1 kHz sleeper 1.1-1.3 s (tracefs), the RT step above
      // failing in about one CI run in five. The stall build never moves anything in
      // ops.cpu_release, and its sched_switch program raises an error (the scheduler is ejected)
      // when a real-time task takes the CPU from a task of ours and the kernel leaves it in that CPU's
      // local queue.
      // One CPU hog per CPU, a SCHED_FIFO hog takes the last CPU for 3 s. Without ops.stopping's
      // change this step was ejected in 2 of 2 rounds in one boot (a hog, a thread of Deno); with it
      // the hogs' longest gaps were 20-105 ms in four rounds. (The loader's rescue count is no test: its walk also queues again threads that
      // wait where they should - 0 to 3 with the fix, 1 to 3 without.)
      await withStallBuild(async (run) => {
        const hogs = Array.from(
          { length: NCPU },
          () => new Deno.Command("python3", { args: ["-c", GAP_HOG, "5"], stdout: "piped" }).spawn(),
        );
        await rtHog(3, 1000);
        const gaps = await Promise.all(
          hogs.map(async (h) => Number(new TextDecoder().decode((await h.output()).stdout).trim())),
        );
        assert.deepEqual(
          state(),
          "enabled",
          `no task was left in the RT CPU's local queue: ${
            run.stdout.split("\n").find((l) => l.includes('"sched_exit"')) ?? "(no exit line)"
          }`,
        );
        const stats = lines((await cli(["sched", "stats", "--format", "json"])).stdout)[0];
        console.log(`    the hogs' longest gaps: ${gaps.join(", ")} ms; ${stats.rt_rescues} threads rescued`);
        assert.ok(Math.max(...gaps) < 200, `each hog ran within 200 ms at a time: ${gaps.join(", ")} ms`);
      });
    },
  );

  await vmStep(
    t,
    "a pipe ping-pong pair beside four hogs per CPU and a pinned 10 Hz sleeper on each CPU: every one of them runs, nothing is ejected",
    async () => {
      // Each side's pipe write is a sync wakeup of the other, queued first on the writer's CPU (ahead of
      // tasks waiting in its local queue at most FP_OVERTAKES_MAX times in a row). The kernel calls
      // ops.dispatch - which alone serves the tasks pinned to a CPU, a per-CPU kernel worker or this
      // sleeper (too rare a waker to preempt) - only once that queue is empty: a pair that never let
      // it empty would starve them. In one full VM test run the watchdog (3 s here) ejected the
      // scheduler in an earlier form of this step, with no message kept: it now says why.
      const procs: Deno.ChildProcess[] = [];
      const sched = (pid: number) => Deno.readTextFileSync(`/proc/${pid}/schedstat`).split(" ").map(Number);
      // The counters from the loader's own interval lines: a new CLI takes most of a minute to start
      // beside this load in the emulated VM.
      const intervals = (out: string) =>
        out.split("\n").filter((l) => l.startsWith('{"type":"sched_interval"') && l.endsWith("}"))
          .map((l) => JSON.parse(l).handoffs as number);
      try {
        await withScheduler(["--watchdog-ms", "3000"], async (run) => {
          const sleepers = Array.from({ length: NCPU }, (_, cpu) =>
            new Deno.Command("taskset", {
              args: ["-c", String(cpu), "python3", "-c", "import time\nwhile True: time.sleep(0.1)"],
              stdout: "null",
              stderr: "inherit",
            }).spawn());
          procs.push(...sleepers);
          const hogs = Array.from({ length: 4 * NCPU }, spinHog);
          procs.push(...hogs);
          procs.push(
            new Deno.Command("python3", { args: ["-c", PING_PONG], stdout: "null", stderr: "inherit" }).spawn(),
          );
          await new Promise((r) => setTimeout(r, 3000));
          const [h0, p0] = [hogs.map((h) => sched(h.pid)[0]), sleepers.map((p) => sched(p.pid)[2])];
          await new Promise((r) => setTimeout(r, 8000));
          const [h1, p1] = [hogs.map((h) => sched(h.pid)[0]), sleepers.map((p) => sched(p.pid)[2])];
          if (state() !== "enabled") {
            await Promise.race([run.finish(), new Promise((r) => setTimeout(r, 5000))]);
            const exit = run.stderr.split("\n").filter((l) => /EXIT|held|stall/.test(l));
            assert.fail(`ejected: ${exit.join(" ")}`);
          }
          // Shown, not checked: the loader itself prints late beside this load (in one CI run no line
          // came in the first 11 s).
          const seen = intervals(run.stdout);
          const [s0, s1] = [seen[0] ?? NaN, seen.at(-1) ?? NaN];
          const ms = h1.map((t, i) => Math.round((t - h0[i]) / 1e6));
          const runs = p1.map((n, i) => n - p0[i]);
          console.log(
            `    ${s1 - s0} hand-offs in ${seen.length - 1} intervals; each hog's time on a CPU, ms: ${
              ms.join(" ")
            }; ` +
              `each pinned sleeper's runs: ${runs.join(" ")}`,
          );
          // A fair share is 8 s * NCPU / (4 NCPU + 2) each, about 1.6 s; a hog kept waiting gets none.
          assert.ok(ms.every((t) => t >= 200), `every hog ran at least 0.2 s of the 8: ${ms.join(" ")}`);
          assert.ok(
            runs.every((n) => n >= 40),
            `every pinned sleeper ran at least 40 of its 80 times: ${runs.join(" ")}`,
          );
        });
      } finally {
        for (const p of procs) await reap(p);
      }
    },
  );

  await vmStep(
    t,
    "partial mode: only the foreground runs on fastpath, so a pinned sleeper keeps running beside a real-time hog, and when Ctrl-\\ (SIGQUIT) stops it every thread it moved - and the threads and processes they started - has its policy back",
    async () => {
      // Both outlive the scheduler's attach (up to ATTACH_TIMEOUT_MS in a slow spell of the VM).
      const game = new Deno.Command(PROBE, { args: ["--duration-s", "300"], stdout: "null" }).spawn();
      // A second foreground process that starts a thread and forks a process (and sets a thread to
      // SCHED_BATCH) only when told, once fastpath has moved it: the new thread and process inherit
      // SCHED_EXT and must come back too.
      const late = new Deno.Command("python3", {
        args: [
          "-c",
          "import os,sys,threading,time\n" +
          "def batch():\n os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0)); time.sleep(300)\n" +
          "threading.Thread(target=batch, daemon=True).start()\n" +
          "sys.stdin.readline()\n" +
          "threading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n" +
          "if os.fork() == 0:\n time.sleep(300)\n os._exit(0)\n" +
          "time.sleep(300)",
        ],
        stdin: "piped",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const go = late.stdin.getWriter();
      let pinned: Deno.ChildProcess | undefined;
      let forked: number | undefined;
      try {
        const threads = (pid: number) => [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name)).sort();
        const policies = (pid: number) => threads(pid).map(policy);
        await waitFor(() => policies(late.pid).includes(3), "python's SCHED_BATCH thread to start", 30_000);
        // Without partial mode the pinned sleeper is ours and gets no CPU at all while the RT hog
        // runs (before Linux 7.0 no deadline server reserves time for sched_ext tasks): the step
        // after this one shows that stall. Here it stays on the default scheduler, whose deadline
        // server gives it 50 ms a second. It starts once the scheduler is attached: loading takes
        // seconds in this emulated VM, and a sleeper started before could end before the check.
        await withScheduler(["--partial", "--foreground", `${game.pid},${late.pid}`], async (run) => {
          pinned = new Deno.Command("taskset", {
            args: ["-c", String(NCPU - 1), PROBE, "--duration-s", "10", "--frame-work-us", "200"],
            stdout: "piped",
          }).spawn();
          assert.deepEqual(policy(game.pid), 7, "the foreground runs as SCHED_EXT");
          assert.deepEqual(policy(pinned.pid), 0, "everything else stays SCHED_NORMAL");
          await go.write(new TextEncoder().encode("go\n"));
          await waitFor(() => threads(late.pid).length === 3, "python's later thread to start", 30_000);
          await waitFor(() => (forked = childOf(late.pid)) !== undefined, "python's child process", 30_000);
          assert.deepEqual(policies(late.pid), [7, 7, 7], "a thread started after the move inherits SCHED_EXT");
          assert.deepEqual(policy(forked!), 7, "a process forked after the move inherits SCHED_EXT");
          await rtHog(5, 500);
          assert.deepEqual(state(), "enabled", "not ejected by the 5 s RT hog");
          // Ctrl-\ stops it as Ctrl-C does: SIGQUIT killed the loader, and every thread it moved
          // stayed SCHED_EXT.
          run.child.kill("SIGQUIT");
          const r = await run.finish();
          assert.deepEqual(r.code, 0, `sched run stopped by SIGQUIT exits 0: ${r.stderr}`);
        });
        assert.deepEqual(policy(game.pid), 0, "the foreground is back to SCHED_NORMAL after stop");
        assert.deepEqual(
          policies(late.pid).sort(),
          [0, 0, 3],
          "every thread of it is back, the later one included, and the SCHED_BATCH one to SCHED_BATCH",
        );
        assert.deepEqual(policy(forked!), 0, "the process it forked is back to SCHED_NORMAL");
        const r = JSON.parse(new TextDecoder().decode((await pinned!.output()).stdout));
        console.log(`    the pinned sleeper's worst wake beside the RT hog: ${(r.wake_max_us / 1000).toFixed(0)} ms`);
        assert.ok(r.wake_max_us < 2_000_000, "the default scheduler's deadline server kept it running");
      } finally {
        await reap(game);
        await go.close().catch(() => {});
        killPid(forked);
        await reap(late);
        if (pinned) await reap(pinned);
      }
    },
  );

  await vmStep(
    t,
    "partial mode: a process that leaves the foreground goes back to its policy at once, with the process it forked, and a thread with SCHED_RESET_ON_FORK is moved too and keeps the flag",
    async () => {
      // sched_getscheduler(2) as python returns it: the policy ORed with SCHED_RESET_ON_FORK.
      const RESET = 0x40000000;
      const raw = async (tids: number[]) => {
        const out = await new Deno.Command("python3", {
          args: [
            "-c",
            "import os,sys\nprint(*(os.sched_getscheduler(int(t)) for t in sys.argv[1:]))",
            ...tids.map(String),
          ],
          stdout: "piped",
        }).output();
        return new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
      };
      const threads = (pid: number) => [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name)).sort();
      // Audio and game threads often run with SCHED_RESET_ON_FORK (rtkit asks for it): the main
      // thread here has it, the second thread not.
      const flagged = new Deno.Command("python3", {
        args: [
          "-c",
          "import os,threading,time\n" +
          "os.sched_setscheduler(0, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))\n" +
          "threading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n" +
          "time.sleep(300)",
        ],
        stdout: "null",
      }).spawn();
      // Forks a child when told, once it has been moved: the child inherits SCHED_EXT.
      const leaving = new Deno.Command("python3", {
        args: ["-c", "import os,sys,time\nsys.stdin.readline()\nos.fork()\ntime.sleep(300)"],
        stdin: "piped",
        stdout: "null",
      }).spawn();
      const go = leaving.stdin.getWriter();
      let sched: Scheduler | undefined;
      let child: number | undefined;
      try {
        await waitFor(
          async () => (await raw(threads(flagged.pid))).sort((a, b) => a - b).join() === `0,${RESET}`,
          "python's flag",
          30_000,
        );
        const tids = threads(flagged.pid);
        sched = await Scheduler.start({ partial: true, signals: false, foreground: [flagged.pid, leaving.pid] });
        assert.deepEqual(
          (await raw(tids)).sort((a, b) => a - b),
          [7, 7 | RESET],
          "both threads run as SCHED_EXT, and the flagged one keeps SCHED_RESET_ON_FORK",
        );
        await go.write(new TextEncoder().encode("go\n"));
        await waitFor(
          () => (child = childOf(leaving.pid)) !== undefined,
          "the leaving process's child",
          30_000,
        );
        assert.deepEqual(await raw([leaving.pid, child!]), [7, 7], "the process and its child run as SCHED_EXT");
        sched.setForeground([flagged.pid]);
        assert.deepEqual(
          await raw([leaving.pid, child!]),
          [0, 0],
          "the process that left the foreground and its child are back to SCHED_NORMAL",
        );
        assert.deepEqual(
          (await raw(tids)).sort((a, b) => a - b),
          [7, 7 | RESET],
          "the foreground still runs as SCHED_EXT",
        );
        assert.deepEqual(state(), "enabled");
        sched.stop();
        assert.deepEqual((await raw(tids)).sort((a, b) => a - b), [0, RESET], "at stop both are back, the flag kept");
      } finally {
        await closeScheduler(sched);
        await go.close().catch(() => {});
        killPid(child);
        await reap(flagged);
        await reap(leaving);
      }
    },
  );

  await vmStep(
    t,
    "partial mode: a thread made SCHED_OTHER after the move moves too, a process orphaned since is put back at stop, one SCHED_EXT before the start stays so, and init and kernel threads are refused",
    async () => {
      const threads = (pid: number) => [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name)).sort();
      const orphanFile = "/tmp/fp-orphan.pid";
      try {
        Deno.removeSync(orphanFile);
      } catch { /* none */ }
      // SCHED_EXT before fastpath starts (another program's choice): left so at stop.
      const pre = new Deno.Command("python3", {
        args: ["-c", "import os,time\nos.sched_setscheduler(0, 7, os.sched_param(0))\ntime.sleep(300)"],
        stdout: "null",
      }).spawn();
      // When told: a thread that sets itself SCHED_OTHER (born SCHED_EXT), and a grandchild whose
      // parent exits at once, so init adopts it.
      const fam = new Deno.Command("python3", {
        args: [
          "-c",
          "import os,sys,threading,time\n" +
          "sys.stdin.readline()\n" +
          "def other():\n os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0)); time.sleep(300)\n" +
          "threading.Thread(target=other, daemon=True).start()\n" +
          "if os.fork() == 0:\n" +
          " if os.fork() == 0:\n" +
          `  open('${orphanFile}', 'w').write(str(os.getpid())); time.sleep(300); os._exit(0)\n` +
          " os._exit(0)\n" +
          "os.wait()\n" +
          "time.sleep(300)",
        ],
        stdin: "piped",
        stdout: "null",
      }).spawn();
      const go = fam.stdin.getWriter();
      let sched: Scheduler | undefined;
      let orphan: number | undefined;
      try {
        await waitFor(() => policy(pre.pid) === 7, "python's SCHED_EXT", 30_000);
        sched = await Scheduler.start({ partial: true, signals: false, foreground: [fam.pid, pre.pid] });
        // In partial mode everything init or kthreadd starts later would inherit SCHED_EXT.
        assert.throws(() => sched!.setForeground([1]), /PID 1 is init/);
        assert.throws(() => sched!.setForeground([2]), /PID 2 is a kernel thread/);
        assert.throws(() => sched!.setForeground([""]), /foreground is empty/);
        assert.throws(() => sched!.setForeground(["a", ""]), /foreground has an empty entry/);
        assert.deepEqual(sched.foreground, [fam.pid, pre.pid].sort((a, b) => a - b), "the set is as it was");
        await go.write(new TextEncoder().encode("go\n"));
        await waitFor(() => threads(fam.pid).length === 2, "python's second thread", 30_000);
        await waitFor(
          () => {
            try {
              orphan = Number(Deno.readTextFileSync(orphanFile));
              return orphan > 0 && Deno.readTextFileSync(`/proc/${orphan}/stat`).split(") ")[1].split(" ")[1] !== "";
            } catch {
              return false;
            }
          },
          "the orphan",
          30_000,
        );
        await waitFor(
          () => threads(fam.pid).every((t) => policy(t) === 7),
          `the thread that made itself SCHED_OTHER moved again: ${threads(fam.pid).map(policy)}`,
          10_000,
        );
        assert.deepEqual(policy(orphan!), 7, "the orphan inherited SCHED_EXT");
        sched.stop();
        assert.deepEqual(policy(orphan!), 0, "the orphan is back to SCHED_NORMAL");
        assert.deepEqual(threads(fam.pid).map(policy), [0, 0], "the process's threads are back");
        assert.deepEqual(policy(pre.pid), 7, "the process SCHED_EXT before the start is left so");
      } finally {
        await closeScheduler(sched);
        await go.close().catch(() => {});
        killPid(orphan);
        await reap(fam);
        await reap(pre);
      }
    },
  );

  await vmStep(t, "a stall caused by a real-time hog says so in the exit message and names partial mode", async () => {
    const pinned = new Deno.Command("taskset", {
      args: ["-c", String(NCPU - 1), PROBE, "--duration-s", "40", "--frame-work-us", "200"], // reaped at the end
      stdout: "null",
    }).spawn();
    const run = spawnCli(["sched", "run", "--watchdog-ms", "2000", "--format", "json"]);
    try {
      await run.waitFor('"type":"sched_started"', ATTACH_TIMEOUT_MS);
      await rtHog(6, 200);
      const r = await run.finish();
      assert.deepEqual(r.code, 11, r.stderr);
      const exit = lines(r.stdout).find((e) => e.type === "sched_exit");
      assert.deepEqual(exit.kind_name, "error_stall");
      assert.match(exit.msg, /CPU \d was held by a real-time task for \d+\.\d s/);
      assert.match(
        r.stderr,
        /use Linux 7\.0 or newer, or run with --partial so only the game is scheduled by fastpath \(the kernel then runs every other task before it\)/,
      );
    } finally {
      await reap(run.child);
      await run.finish();
      await reap(pinned);
      await waitFor(() => state() === "disabled", "state disabled", 10_000);
    }
  });

  await vmStep(
    t,
    "CPU hotplug: the scheduler re-attaches with its foreground, and its counters never go backwards",
    async () => {
      const online = `/sys/devices/system/cpu/cpu${NCPU - 1}/online`;
      // Outlives the attach (up to ATTACH_TIMEOUT_MS in a slow spell of the VM); killed at the end.
      const game = new Deno.Command(PROBE, { args: ["--duration-s", "300"], stdout: "null" }).spawn();
      try {
        // The CLI lives up to 5 min here (spawnCli's default is 2): attach, flips and re-attach
        // may each take most of a minute and a half in a slow spell of the VM.
        await withScheduler(["--foreground", "fp-schedprobe"], async (run) => {
          const flip = async (n: number, gapMs: number) => {
            for (let i = 0; i < n; i++) {
              Deno.writeTextFileSync(online, "0");
              await new Promise((r) => setTimeout(r, gapMs));
              Deno.writeTextFileSync(online, "1");
              await new Promise((r) => setTimeout(r, gapMs));
            }
          };
          await flip(3, 1000);
          await flip(2, 0);
          // Each re-attach loads and verifies the programs again (2-3 s in this emulated VM, a
          // tenth of that on hardware); CPUs that come and go meanwhile fold into one restart.
          // Passing runs took 7.4-20.4 s after the last change; a CI run whose whole VM suite
          // ran 1.6 times slower than usual took over 30 s, so the wait is 90 s.
          const t0 = Date.now();
          await waitFor(
            () => state() === "enabled",
            () =>
              `enabled again; state ${state()}, restarts so far ${
                lines(run.stdout).filter((e) => e.type === "sched_interval").at(-1)?.restarts
              }; the run said: ${run.stderr}`,
            90_000,
          );
          console.log(`    enabled again ${((Date.now() - t0) / 1000).toFixed(1)} s after the last change`);
          await new Promise((r) => setTimeout(r, 1500));
          const before = lines(run.stdout).filter((e) => e.type === "sched_interval").at(-1);
          await new Promise((r) => setTimeout(r, 2000));
          const intervals = lines(run.stdout).filter((e) => e.type === "sched_interval");
          const after = intervals.at(-1);
          assert.deepEqual(state(), "enabled", `the run said: ${run.stderr}`);
          assert.ok(after.restarts >= 2, `re-attached after hotplug: ${after.restarts} restarts`);
          assert.ok(
            after.foreground_runs > before.foreground_runs,
            "the foreground is foreground again after restarts",
          );
          for (const k of ["runs", "wakeups", "enqueued", "foreground_runs", "busy_ns"]) {
            for (let i = 1; i < intervals.length; i++) {
              assert.ok(intervals[i][k] >= intervals[i - 1][k], `${k} went backwards at interval ${i}`);
            }
          }
        }, 300_000);
      } finally {
        Deno.writeTextFileSync(online, "1");
        await reap(game);
      }
    },
  );

  await vmStep(t, "a fork/exit storm beside a memory hog holding most of memory ejects nothing", async () => {
    await withScheduler([], async () => {
      const vm = stress(14, "--vm", "1", "--vm-bytes", "80%", "--vm-keep");
      const forks = stress(12, "--fork", String(2 * NCPU));
      try {
        await Promise.all([vm.status, forks.status]);
        assert.deepEqual(state(), "enabled", "still attached");
        const c = lines((await cli(["sched", "stats", "--format", "json"])).stdout)[0];
        console.log(`    tasks scheduled without per-task state: ${c.no_task_ctx}`);
      } finally {
        await new Deno.Command("pkill", { args: ["-KILL", "stress-ng"] }).output();
      }
    });
  });

  await vmStep(t, "bad flags are refused before anything is attached", async () => {
    const r = await cli(["sched", "run", "--slice-min-us", "9000", "--slice-us", "5000"]);
    assert.deepEqual(r.code, 2);
    assert.match(
      r.stderr,
      /^error: --slice-min-us must be 10 to --slice-us \(5000\), not 9000\n$/,
    );
    assert.deepEqual(state(), "disabled");
  });
});
