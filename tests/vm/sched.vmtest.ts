/**
 * The scheduler on a kernel with sched_ext. `scripts/test` runs this file inside the test VM
 * (../shared/vm, Linux 6.12) or directly on a host whose kernel has sched_ext; never elsewhere.
 * Every step looks at what the kernel says: /sys/kernel/sched_ext, the kernel log, /proc.
 */
import assert from "node:assert/strict";
import { cli, ROOT, spawnCli, waitFor } from "../helpers.ts";

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

function stress(seconds: number) {
  return new Deno.Command("stress-ng", {
    args: ["--cpu", String(NCPU), "--timeout", `${seconds}s`, "--quiet"],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

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

  await t.step("sched status reports the kernel's own state", async () => {
    const r = await cli(["sched", "status", "--format", "json"]);
    assert.deepEqual(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.deepEqual(s.state, "disabled");
    assert.deepEqual(s.ops, null);
  });

  await t.step(
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
      await run.waitFor('"type":"sched_started"', 30_000);
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

  await t.step("more CPU hogs than CPUs share the CPUs and queue by deadline, none treated as pinned", async () => {
    await withLoader([], async (run) => {
      await run.waitFor("fastpath scheduler attached", 30_000);
      const stats = async () => {
        const r = await cli(["sched", "stats", "--format", "json"]);
        assert.deepEqual(r.code, 0, r.stderr);
        return JSON.parse(r.stdout);
      };
      const before = await stats();
      const hogs = Array.from(
        { length: NCPU + 1 },
        () => new Deno.Command("sh", { args: ["-c", "while :; do :; done"], stdout: "null", stderr: "null" }).spawn(),
      );
      const cpuTicks = (pid: number) => {
        const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
        return Number(f[11]) + Number(f[12]); // utime + stime (fields 14 and 15 of stat)
      };
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

  await t.step("a second loader is refused while one runs, with the reason", async () => {
    await withLoader([], async (run) => {
      await run.waitFor("fastpath scheduler attached", 30_000);
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

  await t.step("SIGKILL of the loader detaches the scheduler (the link dies with the process)", async () => {
    await withLoader([], async (run) => {
      await run.waitFor("fastpath scheduler attached", 30_000);
      assert.deepEqual(state(), "enabled");
      run.child.kill("SIGKILL");
      await run.finish();
      await waitFor(() => state() === "disabled", "state disabled after SIGKILL", 10_000);
    });
  });

  await t.step("a stalling build is ejected with kind 1026 and the CLI exits 11 saying why", async () => {
    const victim = new Deno.Command("sh", { args: ["-c", "while :; do :; done"], stdout: "null", stderr: "null" })
      .spawn();
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

  await t.step("bad flags are refused before anything is attached", async () => {
    const r = await cli(["sched", "run", "--slice-min-us", "9000", "--slice-us", "5000"]);
    assert.deepEqual(r.code, 2);
    assert.match(
      r.stderr,
      /^error: cannot attach the scheduler: --slice-min-us must be 10 to --slice-us \(5000\), not 9000\n$/,
    );
    assert.deepEqual(state(), "disabled");
  });
});
