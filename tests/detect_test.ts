/**
 * The detectors on this host's kernel (no sched_ext needed): `fastpath sched observe` attaches what
 * the kernel allows, names every absent detector with its reason, finds a game as it starts, and
 * leaves nothing attached. The VM tests (tests/vm/detect.vmtest.ts) drive each signal's kernel path.
 */
import assert from "node:assert/strict";
import { Detector } from "../src/detect.ts";
import { ratesText } from "../src/cli/observe.ts";
import { cli, isRoot, skipUnless } from "./helpers.ts";

const lines = (stdout: string) => stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
const ALWAYS = ["wake", "irq", "exec"];
const OPTIONAL: Record<string, string> = {
  input: "input events",
  gpu: "GPU submit",
  nvidia: "NVIDIA submit",
  pcm: "PCM periods",
  pcm_write: "PCM writers",
  net: "INET sends",
};

Deno.test("sched observe: the detectors without a scheduler", async (t) => {
  await t.step(
    "bad knob values and unknown signals are refused before anything attaches, naming the flag",
    async () => {
      const hops = await cli(["sched", "observe", "--chain-hops", "9", "--duration-s", "1"]);
      assert.deepEqual(hops.code, 2, hops.stderr);
      assert.match(hops.stderr, /--chain-hops.*0 to 4.*9/);
      const sig = await cli(["sched", "observe", "--signals-off", "mouse"]);
      assert.deepEqual(sig.code, 2, sig.stderr);
      assert.match(sig.stderr, /--signals-off.*input.*'mouse'/);
    },
  );

  await t.step("the live line reads 'absent' or 'off' for a detector that is not on, not a rate of 0", () => {
    // It once read "0 GPU submits/s" on a kernel with no DRM driver, as if it had counted none.
    const rate = (k: string) => (k === "urgent_boosts" ? 7 : 0);
    assert.equal(
      ratesText(["wake", "irq", "exec", "net"], ["pcm", "pcm_write"], rate),
      "input absent, 7 urgent/s, GPU absent, PCM off, 0 game sends/s",
    );
    // The GPU line counts while either GPU detector is on.
    assert.match(ratesText(["nvidia"], [], rate), /0 GPU submits\/s/);
  });

  if (skipUnless(isRoot, "the detectors are BPF programs: run the tests as root")) return;

  await t.step(
    "its text says what it does not show: a named game that is not running, threads under --threads 0",
    async () => {
      // Both once read as if there were nothing: "game: none detected", "no threads ... yet".
      const r = await cli(["sched", "observe", "--game", "fp-nosuchgame", "--threads", "0", "--duration-s", "1"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /game: +none detected \(--game fp-nosuchgame: no process of that name runs yet\)/);
      assert.match(r.stderr, /threads: none listed \(--threads 0\)/);
      const pid = await cli(["sched", "observe", "--game", "4194000", "--duration-s", "1"]);
      assert.equal(pid.code, 0, pid.stderr);
      assert.match(pid.stderr, /none detected \(--game 4194000: no such process runs\)/);
    },
  );

  await t.step(
    "observe attaches the detectors this kernel allows and names each absent one with its reason",
    async () => {
      const r = await cli(["sched", "observe", "--duration-s", "1", "--interval-ms", "500", "--format", "json"]);
      assert.deepEqual(r.code, 0, r.stderr);
      const out = lines(r.stdout);
      const started = out.find((l) => l.type === "detect_started");
      assert.ok(started, r.stdout);
      for (const s of ALWAYS) assert.ok(started.signals.includes(s), `${s} attached: ${started.signals}`);
      for (const [signal, what] of Object.entries(OPTIONAL)) {
        // Named first by its --signals-off name, so a script can map it.
        const absent = started.absent.find((a: string) => a.startsWith(`${signal} (${what}): `));
        assert.ok(
          started.signals.includes(signal) !== (absent !== undefined),
          `${signal} is either attached or absent with a reason: ${started.signals} / ${started.absent.join("; ")}`,
        );
        if (absent) assert.ok(absent.length > what.length + 5, `a reason is given: ${absent}`);
      }
      console.log(`    attached: ${started.signals.join(", ")}; absent: ${started.absent.length}`);
      assert.ok(out.some((l) => l.type === "detect_summary"));
      // The kernel frees a detached program after an RCU grace period: give it a moment.
      const gone = async () => {
        for (let i = 0; i < 100; i++) {
          try {
            await Detector.readAttached();
          } catch (err) {
            if (/no fastpath detectors are running/.test(String(err))) return true;
            throw err;
          }
          await new Promise((r) => setTimeout(r, 20));
        }
        return false;
      };
      assert.ok(await gone(), "nothing left attached once observe exits");
    },
  );

  await t.step(
    "a process started with SteamGameId is the game, with its reason, and leaves with its exit",
    async () => {
      const d = await Detector.start();
      try {
        const game = new Deno.Command("sleep", { args: ["20"], env: { SteamGameId: "4000" } }).spawn();
        try {
          const t0 = Date.now();
          while (d.status().game?.pid !== game.pid) {
            assert.ok(Date.now() - t0 < 2000, "the game was found within 2 s");
            await new Promise((r) => setTimeout(r, 5));
          }
          assert.deepEqual(d.status().game?.reason, "steam");
          // Another process sees the same through `sched status`'s reader.
          const seen = await Detector.readAttached();
          assert.deepEqual(seen.status.game?.pid, game.pid);
        } finally {
          game.kill("SIGKILL");
          await game.status;
        }
        const t1 = Date.now();
        while (d.status().game !== null) {
          assert.ok(Date.now() - t1 < 2000, "its exit cleared the game");
          await new Promise((r) => setTimeout(r, 5));
        }
      } finally {
        d.close();
      }
    },
  );

  await t.step(
    "the detectors' thread sleeps between events: a wakeup a second on a quiet machine, not ten",
    async () => {
      const d = await Detector.start();
      try {
        // Its wakeups as the kernel counts them: the thread is named fp-detect (top -H shows it).
        const tasks = [...Deno.readDirSync("/proc/self/task")].map((e) => `/proc/self/task/${e.name}`);
        const task = tasks.find((t) => Deno.readTextFileSync(`${t}/comm`).trim() === "fp-detect");
        assert.ok(task, "a thread named fp-detect runs the detectors");
        const switches = () =>
          Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(Deno.readTextFileSync(`${task}/status`))![1]);
        // Every exec and exit on the machine is an event that wakes it (a host running a build
        // has tens a second): they are counted, and allowed for.
        const events = () => d.status().counters.execs + d.status().counters.exits;
        await new Promise((r) => setTimeout(r, 1500)); // past its first look at the game
        const [s0, e0] = [switches(), events()];
        await new Promise((r) => setTimeout(r, 4000));
        const woke = switches() - s0, evs = events() - e0;
        // It looked every 100 ms as well: 10-11 a second beside the events.
        assert.ok(woke <= 4 * 1.5 + 2 + evs, `fp-detect woke ${woke} times in 4 s, with ${evs} exec and exit events`);
      } finally {
        d.close();
      }
    },
  );

  await t.step("knobs change while the detectors run; a bad one is refused and the others stay", async () => {
    const d = await Detector.start({ inputWindowUs: 4000 });
    try {
      d.setKnobs({ chainHops: 1, gameSwitchMs: 2000 });
      assert.deepEqual(d.knobs.chainHops, 1);
      assert.deepEqual(d.knobs.inputWindowUs, 4000);
      assert.throws(() => d.setKnobs({ evidenceMs: 5 }), /evidenceMs must be 10 to 60000, not 5/);
      assert.deepEqual(d.knobs.evidenceMs, 1000, "the refused value did not stick");
    } finally {
      d.close();
    }
    assert.throws(() => d.status(), /closed/);
  });
});
