import assert from "node:assert/strict";
import { run } from "../src/net.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const there = (path: string) => Deno.stat(path).then(() => true, () => false);
/** Whether the bench boots ../shared/vm here (a kernel with sched_ext runs it in place). */
const bootsVm = !(await there("/sys/kernel/sched_ext")) && await there(`${ROOT}/../shared/vm/run-vm.sh`);

/** bench/sched.ts with `args`, as `deno task bench:sched` runs it. */
const benchSched = (args: string[]) =>
  run([Deno.execPath(), "run", "-A", "--unstable-ffi", `${ROOT}/bench/sched.ts`, ...args]);

/** bench/sched.ts with `args` and a PATH without stress-ng: its exit code and stderr. */
async function benchSchedWithoutPath(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-ffi", `${ROOT}/bench/sched.ts`, ...args],
    env: { PATH: "/nonexistent", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("bench:sched", async (t) => {
  for (
    const [args, says] of [
      [["--rows", "hogs4-6ms,nosuch"], /unknown row "nosuch": use one of hogs1-4ms, .*quiet-4ms/],
      [["--schedulers", "default,scx_bpfland"], /unknown scheduler "scx_bpfland": use one of default, minimal, /],
      [["--rounds", "0"], /--rounds must be a whole number from 1 to 100, not 0/],
      [["--rounds", "-1"], /--rounds needs a value \(one that starts with "-" goes as --rounds=VALUE\)/],
      [["--duration-s", "1e3"], /--duration-s must be a whole number from 1 to 3600, not 1e3/],
      // Once passed on to stress-ng, the VM's time limit and the probe as 2e+21.
      [["--duration-s", "99999999999999999999"], /--duration-s must be a whole number from 1 to 3600/],
      [["--rounds", "3", "--rounds", "5"], /--rounds is given twice: give it once/],
      // The JSON is written after the whole run: a path that cannot take it wasted the run.
      [["--json", "no-such-dir/x.json"], /--json no-such-dir\/x.json: .*no-such-dir is not a directory: create it/],
      [["--json", "docs"], /--json docs is a directory: give a file name/],
      [["--baseline", "README.md"], /--baseline .*README.md is not a directory: give a checkout/],
      [["--json", ""], /--json is empty: give a file name/],
      [["--baseline", ""], /--baseline is empty: give a directory/],
      [["--in-vm"], /--in-vm is the bench's own flag in the VM it boots: run without it/],
      [["--bogus"], /Unknown option '--bogus'/],
      [["--rows", "constructor"], /unknown row "constructor"/],
      [["--rows", "quiet-4ms,quiet-4ms"], /row quiet-4ms is named twice: name it once/],
      [["--schedulers", "default,baseline"], /the scheduler baseline needs --baseline DIR/],
      [["--baseline", "/nonexistent"], /--baseline \/nonexistent is not a directory: give a checkout/],
      [["--baseline", "docs"], /--baseline .*docs has no built library: run scripts\/build there/],
      // Where the VM is booted: its writes outside the project vanish with it.
      ...(bootsVm
        ? [[["--json", "/var/x.json"], /--json \/var\/x.json is outside .*: give a path inside it/]] as const
        : []),
    ] as const
  ) {
    await t.step(`refuses ${args.join(" ")} with exit 2 and the fix, before it builds or boots anything`, async () => {
      // Without stress-ng on PATH: a refusal that regressed ends at its check (exit 6), not in a VM.
      const r = await benchSchedWithoutPath(
        (args as readonly string[]).includes("--rows") ? [...args] : [...args, "--rows", "hogs1-4ms"],
      );
      assert.equal(r.code, 2, r.stderr);
      const first = r.stderr.split("\n")[0];
      assert.match(first, /^error: bench:sched: /);
      assert.match(first, says);
      assert.doesNotMatch(r.stderr, /booting|building|cargo/);
    });
  }

  await t.step(
    "refuses loaded rows with exit 6 when stress-ng is missing, naming the rows and the fix, before it boots anything",
    async () => {
      // A PATH without stress-ng: once, its rounds ran unloaded and each then failed as "Failed to spawn".
      const { code, stderr } = await benchSchedWithoutPath(["--rows", "quiet-4ms,hogs4-6ms,fork-4ms"]);
      assert.equal(code, 6, stderr);
      assert.equal(
        stderr.split("\n")[0],
        "error: bench:sched: stress-ng is not on PATH, and rows hogs4-6ms, fork-4ms load the CPUs with it: install it (scripts/setup --test) or put it on PATH",
      );
      assert.doesNotMatch(stderr, /booting|building|cargo/);
      // Bad arguments are named first (exit 2), and one loaded row is one row; the limits themselves pass.
      for (
        const [args, says, code] of [
          [["--rows", "fork-4ms", "--rounds", "0"], /--rounds must be a whole number/, 2],
          [["--rows", "hogs1-4ms,hogs1-4ms"], /row hogs1-4ms is named twice/, 2],
          [["--rows", "quiet-4ms,rt-4ms", "--rounds", "x"], /--rounds must be/, 2],
          [["--rows", "quiet-4ms,rt-4ms"], /stress-ng is not on PATH, and row rt-4ms loads the CPUs/, 6],
          [["--rows", "fork-4ms", "--rounds", "100", "--duration-s", "3600"], /stress-ng is not on PATH/, 6],
          // The quiet row needs no stress-ng, --bpf-stats needs bpftool: named before anything boots.
          [
            ["--rows", "quiet-4ms", "--bpf-stats"],
            /^error: bench:sched: --bpf-stats reads the programs' run times with bpftool, which is not on PATH: install it \(Debian: bpftool\)$/,
            6,
          ],
          [["--rows", "quiet-4ms", "--bpf-stats", "--bpf-stats"], /--bpf-stats is given twice/, 2],
        ] as const
      ) {
        const r = await benchSchedWithoutPath([...args]);
        assert.equal(r.code, code, r.stderr);
        assert.match(r.stderr.split("\n")[0], says);
      }
    },
  );

  await t.step("-h prints what it measures, its rows and schedulers, and exits 0", async () => {
    const r = await benchSched(["-h"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^deno task bench:sched/);
    assert.match(r.stdout, /Schedulers: default, minimal, fastpath/);
    assert.match(r.stdout, /quiet-4ms/);
    assert.match(r.stdout, /Pinned: scx_bpfland 1\.1\.4, scx_lavd 1\.0\.11/);
  });

  // The probes the bench runs: a value that reached them as 0 ns looped for ever, one past a u64
  // was undefined behaviour (no output, or a hang), and a run of no frame "succeeded".
  for (
    const [probe, args, says] of [
      ["fp-schedprobe", ["--frame-period-us", "0.0001"], "--frame-period-us takes 100 to 10000000 µs, not '0.0001'"],
      ["fp-schedprobe", ["--duration-s", "1e30"], "--duration-s takes 0.01 to 86400 s, not '1e30'"],
      ["fp-schedprobe", ["--frame-work-us", "nan"], "--frame-work-us takes 1 to 10000000 µs, not 'nan'"],
      ["fp-schedprobe", ["--wake-period-us", "0.5"], "--wake-period-us takes 0 (off) or 10 to 10000000 µs, not '0.5'"],
      [
        "fp-schedprobe",
        ["--frame-work-us", "20000"],
        "--frame-work-us 20000 is not less than the frame period (16666.667 µs): every frame would miss; give less work or a longer period",
      ],
      [
        "fp-schedprobe",
        ["--duration-s", "0.01", "--frame-period-us", "20000"],
        "--duration-s 0.01 is shorter than one frame (20000 µs): give a longer duration",
      ],
      ["fp-schedprobe", ["--duration-s", "1", "--duration-s", "2"], "--duration-s is given twice: give it once"],
      ["fp-schedprobe", ["--work-clock", "gpu"], "--work-clock takes cpu or wall, not 'gpu'"],
      ["fp-schedprobe", ["--bogus", "1"], "unknown flag --bogus: see --help"],
      ["fp-schedprobe", ["--duration-s"], "--duration-s needs a value"],
      [
        "fp-schedprobe",
        ["--duration-s", "0.05", "--wake-period-us", "1000000"],
        "--wake-period-us 1000000 is longer than the run (0.05 s): the waker would never wake; give a shorter period, or 0 for none",
      ],
      ["fp-schedprobe", ["--frame-work-us=0x10"], "--frame-work-us takes 1 to 10000000 µs, not '0x10'"],
      [
        "fp-inputprobe",
        ["--rate-hz", "99999999999999999999"],
        "--rate-hz takes 1 to 100000 Hz, not '99999999999999999999'",
      ],
      ["fp-inputprobe", ["--rate-hz", "0.5"], "--rate-hz takes 1 to 100000 Hz, not '0.5'"],
      ["fp-inputprobe", ["--frame-work-us", "20000"], "--frame-work-us takes 0 to 16000 µs, not '20000'"],
    ] as const
  ) {
    await t.step(
      `${probe} refuses ${args.join(" ")} in one line naming the flag and what it takes, exit 2`,
      async () => {
        // Killed after 5 s: a value that reached the loop as 0 ns once made it spin for ever.
        const out = await new Deno.Command(`${ROOT}/zig/zig-out/bin/${probe}`, {
          args: [...args],
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(5000),
        })
          .output();
        assert.equal(out.code, 2);
        assert.equal(new TextDecoder().decode(out.stderr), `${probe}: ${says}\n`);
        assert.equal(out.stdout.length, 0);
      },
    );
  }

  await t.step("fp-schedprobe prints one typed JSON object whose first frame follows its thread's start", async () => {
    const out = await new Deno.Command(`${ROOT}/zig/zig-out/bin/fp-schedprobe`, {
      args: ["--duration-s", "0.5", "--frame-work-us", "1000", "--wake-period-us", "0"],
      stdout: "piped",
    }).output();
    assert.equal(out.code, 0);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(r.type, "schedprobe_result");
    assert.ok(r.frames >= 1 && r.frames <= 31, `frames ${r.frames}`); // 0.5 s of 16.7 ms frames
    assert.ok(r.thread_start_us > 0 && r.thread_start_us < 500_000, `thread_start_us ${r.thread_start_us}`);
    const help = await new Deno.Command(`${ROOT}/zig/zig-out/bin/fp-schedprobe`, { args: ["--help"], stdout: "piped" })
      .output();
    assert.equal(help.code, 0);
    assert.match(new TextDecoder().decode(help.stdout), /^usage: fp-schedprobe .*\n[\s\S]*--work-clock cpu\|wall/);
  });
});
