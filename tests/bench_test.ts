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
      [["--rounds", "0"], /--rounds must be a whole number of at least 1, not 0/],
      [["--duration-s", "1e3"], /--duration-s must be a whole number of at least 1, not 1e3/],
      [["--bogus"], /Unknown option '--bogus'/],
      [["--rows", "constructor"], /unknown row "constructor"/],
      [["--rows", "quiet-4ms,quiet-4ms"], /row quiet-4ms is named twice: name it once/],
      [["--schedulers", "default,baseline"], /the scheduler baseline needs --baseline DIR/],
      [["--baseline", "/nonexistent"], /--baseline \/nonexistent has no built library: run scripts\/build there/],
      // Where the VM is booted: its writes outside the project vanish with it.
      ...(bootsVm
        ? [[["--json", "/var/x.json"], /--json \/var\/x.json is outside .*: give a path inside it/]] as const
        : []),
    ] as const
  ) {
    await t.step(`refuses ${args.join(" ")} with exit 2 and the fix, before it builds or boots anything`, async () => {
      const r = await benchSched([...args]);
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
      // Bad arguments are named first (exit 2), and one loaded row is one row.
      for (
        const [args, says, code] of [
          [["--rows", "fork-4ms", "--rounds", "0"], /--rounds must be a whole number/, 2],
          [["--rows", "hogs1-4ms,hogs1-4ms"], /row hogs1-4ms is named twice/, 2],
          [["--rows", "quiet-4ms,rt-4ms", "--rounds", "x"], /--rounds must be/, 2],
          [["--rows", "quiet-4ms,rt-4ms"], /stress-ng is not on PATH, and row rt-4ms loads the CPUs/, 6],
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
  });
});
