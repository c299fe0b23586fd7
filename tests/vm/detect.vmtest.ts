/**
 * The detectors on the test VM's kernel (uinput, DRM vgem/vkms, ALSA snd-dummy; ../shared/vm):
 * every step drives the real kernel path (an input event, a UDP send, a DRM ioctl, a PCM write, an
 * exec) from another process and checks what the detectors report from outside — their status, the
 * threads they classified, and the scheduler's counters.
 */
import assert from "node:assert/strict";
import { Detector, type DetectThread } from "../../src/detect.ts";
import { Scheduler } from "../../src/sched.ts";
import { cli, ROOT, vmStep, waitFor } from "../helpers.ts";

const INPUTPROBE = `${ROOT}/zig/zig-out/bin/fp-inputprobe`;
const PY = "/usr/bin/python3";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Python program run as its own process; `env` adds to the environment. */
function python(code: string, env: Record<string, string> = {}) {
  return new Deno.Command(PY, { args: ["-c", code], env, stdout: "piped", stderr: "inherit" }).spawn();
}

/** Kills `c` and waits for its exit — not for its stdout's end, which a grandchild may hold open. */
async function reap(c: Deno.ChildProcess): Promise<void> {
  try {
    c.kill("SIGKILL");
  } catch { /* ended */ }
  await c.status;
  try {
    await c.stdout.cancel();
  } catch { /* not piped, or already read */ }
}

const byComm = (ts: DetectThread[], comm: string) => ts.filter((t) => t.comm === comm);

/** A thread sending UDP datagrams to the discard port at 100 Hz, one sending on AF_UNIX at 100 Hz. */
const SENDERS = `
import ctypes, socket, threading, time
def named(name):  # the kernel's thread name (comm): Python before 3.14 leaves it "python3"
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
def udp():
    named("udp-sender")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while True:
        s.sendto(b"x", ("127.0.0.1", 9)); time.sleep(0.01)
def unix():
    named("unix-sender")
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    while True:
        a.send(b"x"); b.recv(1); time.sleep(0.01)
threading.Thread(target=udp, name="udp-sender", daemon=True).start()
threading.Thread(target=unix, name="unix-sender", daemon=True).start()
time.sleep(60)
`;

/** Driver command ioctls on every /dev/dri node at 60 Hz (vgem's fence ioctls: nr 0x41, 0x42). */
const GPU = `
import ctypes, fcntl, glob, os, threading, time
def submit():
    ctypes.CDLL(None).prctl(15, b"render", 0, 0, 0)  # the thread's comm (PR_SET_NAME)
    fds = [os.open(n, os.O_RDWR) for n in sorted(glob.glob("/dev/dri/card*"))]
    while True:
        for fd in fds:
            for nr in (0x41, 0x42):
                try: fcntl.ioctl(fd, (3 << 30) | (16 << 16) | (ord("d") << 8) | nr, bytearray(16))
                except OSError: pass
        time.sleep(1 / 60)
threading.Thread(target=submit, name="render", daemon=True).start()
time.sleep(60)
`;

/** A compositor-like reader on CPU 1: reads every evdev node, then spins 3 ms per event (comm spin-reader). */
const SPIN_READER = `
import ctypes, glob, os, select, time
ctypes.CDLL(None).prctl(15, b"spin-reader", 0, 0, 0)
os.sched_setaffinity(0, {1})
fds = [os.open(n, os.O_RDONLY | os.O_NONBLOCK) for n in glob.glob("/dev/input/event*")]
while True:
    for fd in select.select(fds, [], [])[0]:
        try: os.read(fd, 4096)
        except BlockingIOError: pass
    end = time.monotonic() + 0.003
    while time.monotonic() < end: pass
`;

/** A sleeper on the same CPU woken by its own 1 ms timer (comm tick-sleeper). */
const TICK_SLEEPER = `
import ctypes, os, time
ctypes.CDLL(None).prctl(15, b"tick-sleeper", 0, 0, 0)
os.sched_setaffinity(0, {1})
while True: time.sleep(0.001)
`;

/**
 * In the game: a thread receiving UDP on 127.0.0.1:5599 (comm udp-recv), woken by the network
 * receive softirq, and one receiving with SO_RCVTIMEO 10 ms on a port nobody sends to (rcvtimeo),
 * woken by its timer.
 */
const IRQ_WAKES = `
import ctypes, socket, struct, threading, time
def named(name):
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
def recv():
    named("udp-recv")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 5599))
    while True: s.recv(64)
def timeo():
    named("rcvtimeo")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 5600))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 10000))
    while True:
        try: s.recv(64)
        except OSError: pass
threading.Thread(target=recv, daemon=True).start()
threading.Thread(target=timeo, daemon=True).start()
time.sleep(60)
`;

/**
 * In the game: a SCHED_FIFO thread (rt-waker) writing to a pipe every 10 ms, read by rt-wakee; the
 * main thread (rt-timer) pinned to CPU 1, sleeping 1 ms at a time - beside a real-time hog there,
 * every one of its wakeups is its timer's, interrupting that hog.
 */
const RT_WAKES = `
import ctypes, os, threading, time
def named(name):
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
r, w = os.pipe()
def waker():
    named("rt-waker")
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    while True:
        time.sleep(0.01)
        os.write(w, b"x")
def wakee():
    named("rt-wakee")
    while True: os.read(r, 1)
threading.Thread(target=wakee, daemon=True).start()
threading.Thread(target=waker, daemon=True).start()
named("rt-timer")
os.sched_setaffinity(0, {1})
while True: time.sleep(0.001)
`;

/** UDP to 127.0.0.1:5599 at 100 Hz, from another process. */
const UDP_SENDER = `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    s.sendto(b"x", ("127.0.0.1", 5599)); time.sleep(0.01)
`;

Deno.test("the detectors in a kernel with uinput, DRM and ALSA", async (t) => {
  const d = await Detector.start({ chainHops: 0 });
  try {
    await vmStep(t, "every detector attaches where the kernel has its target; none is absent", () => {
      const st = d.status();
      for (const s of ["input", "wake", "irq", "gpu", "pcm", "pcm_write", "net", "exec"] as const) {
        assert.ok(st.signals.includes(s), `${s} attached: ${st.signals.join(",")}; absent: ${st.absent.join("; ")}`);
      }
      assert.ok(
        st.absent.every((a) => a.startsWith("nvidia (NVIDIA submit): ")),
        `only NVIDIA is absent: ${st.absent}`,
      );
    });

    await vmStep(
      t,
      "exec of a process with SteamGameId is the game within 100 ms, and its exit clears it",
      async () => {
        const game = new Deno.Command("sleep", { args: ["30"], env: { SteamGameId: "1091500" } }).spawn();
        try {
          // Not polled: this test's own polling (one status() costs 20-100 ms of CPU in the emulated
          // VM) would compete with the detector's thread for the two CPUs.
          await sleep(500);
          const g = d.status().game;
          assert.ok(g?.pid === game.pid, `the game detected: ${JSON.stringify(g)}`);
          assert.deepEqual(g.reason, "steam");
          // From the exec event's time to the detector's decision, both on the kernel's clock.
          const found = (g.foundAfterExecUs ?? Infinity) / 1000;
          console.log(`    detected ${found.toFixed(1)} ms after its exec`);
          assert.ok(found <= 100, `detected within 100 ms of its exec, not ${found.toFixed(1)} ms`);
          game.kill("SIGKILL");
          await game.status;
          await sleep(100);
          assert.deepEqual(d.status().game, null, "its exit cleared it within 100 ms");
        } finally {
          await reap(game);
        }
      },
    );

    await vmStep(
      t,
      "input opens a window; the compositor's reader holds it, and with chainHops 2 the game's input thread and worker too",
      async () => {
        const c0 = d.status().counters;
        const probe = new Deno.Command(INPUTPROBE, {
          args: ["--warmup-s", "12", "--duration-s", "1", "--rate-hz", "200"],
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        try {
          // The compositor is found holding evdev open by the next scan (every 5 s).
          await waitFor(() => d.status().compositors >= 1, "the compositor found", 8000);
          await sleep(500);
          let ts = d.threads(512);
          const reader = byComm(ts, "fp-compositor");
          assert.ok(reader.length === 1, `the reader seen: ${JSON.stringify(ts.map((x) => x.comm))}`);
          assert.ok(reader[0].roles.includes("compositor"));
          assert.ok(reader[0].classes.includes("input") && reader[0].inputHops === 0, JSON.stringify(reader[0]));
          // chainHops 0: the window stops at the reader.
          assert.ok(byComm(ts, "input").every((x) => !x.classes.includes("input")), "no hop with chainHops 0");

          // The knob changes while they run: now the window reaches the game's input thread and worker.
          d.setKnobs({ chainHops: 2 });
          await sleep(500);
          ts = d.threads(512);
          const input = byComm(ts, "input"), worker = byComm(ts, "worker");
          assert.ok(input.some((x) => x.classes.includes("input") && x.inputHops === 1), JSON.stringify(input));
          assert.ok(worker.some((x) => x.classes.includes("input") && x.inputHops === 2), JSON.stringify(worker));
          assert.ok(input.every((x) => x.roles.includes("game")), "the game (SteamGameId) is their thread group");
          const c1 = d.status().counters;
          assert.ok(c1.input_events - c0.input_events >= 200, `input events counted: ${c1.input_events}`);
          assert.ok(c1.input_windows > c0.input_windows && c1.input_boosts > c0.input_boosts);
        } finally {
          await reap(probe);
          d.setKnobs({ chainHops: 0 });
        }
      },
    );

    await vmStep(
      t,
      "a sleeper its timer wakes while the compositor's reader runs is not in the input chain (the timer woke it, not the reader)",
      async () => {
        d.setKnobs({ chainHops: 2 });
        const probe = new Deno.Command(INPUTPROBE, {
          // Injecting until killed below, however long the waits before the check take.
          args: ["--warmup-s", "120", "--duration-s", "1", "--rate-hz", "200"],
          stdout: "null",
          stderr: "inherit",
        }).spawn();
        const procs: Deno.ChildProcess[] = [];
        try {
          // The probe's compositor holds its uinput device's evdev node: the node exists.
          await waitFor(() => d.status().compositors >= 1, "the probe's compositor found", 8000);
          procs.push(python(SPIN_READER));
          await waitFor(() => d.status().compositors >= 2, "the spinning reader found holding evdev open", 8000);
          const readerOf = () => byComm(d.threads(512), "spin-reader").find((x) => x.classes.includes("input"));
          await waitFor(() => readerOf()?.inputHops === 0, "the spinning reader is the input reader", 10_000);
          procs.push(python(TICK_SLEEPER));
          const e0 = d.status().counters.input_events;
          // 1 kHz timer wakeups for 3 s, most while the reader spins on the same CPU inside a window.
          await sleep(3000);
          const ts = d.threads(512);
          // The window was open all along: input kept coming and the reader kept being woken by it.
          assert.ok(d.status().counters.input_events - e0 >= 300, "input events during the 3 s");
          const reader = byComm(ts, "spin-reader").find((x) => x.classes.includes("input"));
          assert.ok(reader && reader.seenMsAgo < 100, `the reader is in a live window: ${JSON.stringify(reader)}`);
          // The sleeper ran all along (a Python that failed to start would pass the check below).
          assert.ok(Deno.statSync(`/proc/${procs[1].pid}`).isDirectory, "the sleeper is alive");
          // Listed only if it ever carried a window (the threads map records roles and input).
          const sleeper = byComm(ts, "tick-sleeper").filter((x) =>
            x.classes.includes("input") || x.inputMsAgo !== null
          );
          assert.deepEqual(sleeper, [], "the timer's wakeups carried no input window");
        } finally {
          for (const p of procs) await reap(p);
          await reap(probe);
          d.setKnobs({ chainHops: 0 });
        }
      },
    );

    await vmStep(
      t,
      "a thread woken by a network receive (softirq) is woken from an interrupt; one woken by its own timer is not",
      async () => {
        const c0 = d.status().counters;
        const game = python(IRQ_WAKES, { SteamGameId: "440" });
        const sender = python(UDP_SENDER);
        try {
          await waitFor(() => d.status().game?.pid === game.pid, "the game detected", 3000);
          const of = (comm: string) => d.threads(512).find((x) => x.pid === game.pid && x.comm === comm);
          await waitFor(
            () => of("udp-recv")?.wokenByIrq === true,
            `udp-recv woken from an interrupt: ${JSON.stringify(of("udp-recv"))}`,
            15_000,
          );
          // The timed-out receive (SO_RCVTIMEO: a timer-wheel timer, run in the timer softirq) wakes
          // it 100 times a second; each wakeup rewrites woken_by_irq and waker_tid. Sometimes its last
          // wakeup is udp-recv's instead (handing it Python's interpreter lock: a task, not a timer):
          // wait for one the timer made. Without the timer softirq told apart, none looks like that.
          await waitFor(() => of("rcvtimeo") !== undefined, "the timed-out receiver seen", 15_000);
          const byTimer = (x = of("rcvtimeo")) => x !== undefined && x.wakerTid === 0;
          await waitFor(
            () => byTimer() && !of("rcvtimeo")!.wokenByIrq && !of("rcvtimeo")!.classes.includes("urgent"),
            `a timer's wakeup is no interrupt's and names no waker: ${JSON.stringify(of("rcvtimeo"))}`,
            10_000,
          );
          assert.ok(d.status().counters.irq_wakeups > c0.irq_wakeups, "interrupt wakeups counted");
        } finally {
          await reap(game);
          await reap(sender);
        }
      },
    );

    await vmStep(
      t,
      "a thread a real-time thread wakes is woken by RT; one its timer wakes on a CPU a real-time hog holds is not",
      async () => {
        // The timer interrupts the hog, which is then the current task but not the waker: that
        // wakeup was once counted as an RT wakeup (urgent), covering for the scheduler.
        const game = python(RT_WAKES, { SteamGameId: "570" });
        const hog = new Deno.Command("chrt", {
          // Longer than every wait below (it is killed at the end): a timer wakeup seen after it ended
          // would come from idle and pass on the old rule too; checked alive when the wait is over.
          args: ["-f", "40", "taskset", "-c", "1", "stress-ng", "--cpu", "1", "-t", "120s", "--quiet"],
          stdout: "null",
          stderr: "null",
        }).spawn();
        try {
          const t0 = Date.now();
          await waitFor(() => d.status().game?.pid === game.pid, "the game detected", 3000);
          const of = (comm: string) => d.threads(512).find((x) => x.pid === game.pid && x.comm === comm);
          await waitFor(
            () => of("rt-wakee")?.wokenByRt === true,
            `rt-wakee woken by the SCHED_FIFO rt-waker: ${JSON.stringify(of("rt-wakee"))}`,
            15_000,
          );
          // Its last wakeup is sometimes a thread's (Python's interpreter lock): wait for one its
          // timer made, as the step before does. With the old rule none looks like that.
          await waitFor(
            () => {
              const x = of("rt-timer");
              return x !== undefined && x.wakerTid === 0 && !x.wokenByRt && !x.classes.includes("urgent");
            },
            `a timer's wakeup on the RT hog's CPU is no RT wakeup: ${JSON.stringify(of("rt-timer"))}`,
            15_000,
          );
          // chrt and taskset exec stress-ng: its parent lives as long as its worker.
          assert.ok(Deno.statSync(`/proc/${hog.pid}`).isDirectory, "the RT hog still ran when the wakeup was seen");
          console.log(`    both seen ${((Date.now() - t0) / 1000).toFixed(1)} s after the game started`);
        } finally {
          await reap(hog);
          await new Deno.Command("pkill", { args: ["-KILL", "stress-ng"] }).output();
          await reap(game);
        }
      },
    );

    await vmStep(
      t,
      "a game thread sending UDP is network; an AF_UNIX sender and another process's UDP are not",
      async () => {
        const game = python(SENDERS, { SteamGameId: "730" });
        const other = python(SENDERS);
        try {
          await waitFor(() => d.status().game?.pid === game.pid, "the game detected", 3000);
          // Python takes seconds to start its threads in the emulated VM: wait for the sender.
          const udpOf = (ts: DetectThread[]) => ts.find((x) => x.pid === game.pid && x.comm === "udp-sender");
          await waitFor(
            () => {
              const u = udpOf(d.threads(512));
              return u !== undefined && u.classes.includes("net") && u.netHz >= 50;
            },
            `the UDP sender is network: ${JSON.stringify(udpOf(d.threads(512)))}`,
            15_000,
          );
          await sleep(1000);
          const ts = d.threads(512);
          const mine = ts.filter((x) => x.pid === game.pid);
          const unix = mine.find((x) => x.comm === "unix-sender");
          assert.ok(!unix?.classes.includes("net"), `AF_UNIX sender: ${JSON.stringify(unix)}`);
          assert.ok(
            ts.filter((x) => x.pid === other.pid).every((x) => !x.classes.includes("net") && x.netMsAgo === null),
            "another process's UDP sends are not the game's",
          );
        } finally {
          await reap(game);
          await reap(other);
        }
      },
    );

    await vmStep(t, "a game thread issuing DRM driver ioctls at 60 Hz is GPU-submit", async () => {
      const game = python(GPU, { SteamGameId: "570" });
      try {
        await waitFor(() => d.status().game?.pid === game.pid, "the game detected", 3000);
        const renderOf = () => d.threads(512).find((x) => x.pid === game.pid && x.comm === "render");
        await waitFor(
          () => (renderOf()?.classes.includes("gpu") ?? false) && renderOf()!.gpuHz >= 20,
          `the render thread is GPU-submit: ${JSON.stringify(renderOf())}`,
          15_000,
        );
        await waitFor(() => d.status().counters.gpu_submits >= 60, "60 submits counted", 15_000);
      } finally {
        await reap(game);
      }
    });

    await vmStep(t, "a thread playing to the dummy sound card is audio, and PCM periods are counted", async () => {
      const c0 = d.status().counters;
      const play = new Deno.Command("aplay", {
        args: ["-q", "-D", "hw:0,0", "-f", "S16_LE", "-r", "48000", "-c", "2", "-d", "2", "/dev/zero"],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      try {
        await sleep(1000);
        const a = d.threads(512).filter((x) => x.comm === "aplay");
        assert.ok(a.some((x) => x.classes.includes("audio") && x.pcmMsAgo !== null), `aplay: ${JSON.stringify(a)}`);
      } finally {
        const out = await play.output();
        assert.deepEqual(out.code, 0, new TextDecoder().decode(out.stderr));
      }
      const c1 = d.status().counters;
      assert.ok(c1.pcm_writes > c0.pcm_writes && c1.pcm_periods > c0.pcm_periods, JSON.stringify(c1));
    });

    await vmStep(t, "10 000 short-lived threads of the game leave no state behind", async () => {
      const game = python(
        `
import threading, time
time.sleep(1.5)
for i in range(100):
    ts = [threading.Thread(target=time.sleep, args=(0.001,)) for _ in range(100)]
    for t in ts: t.start()
    for t in ts: t.join()
print("done", flush=True)
time.sleep(60)
`,
        { SteamGameId: "440" },
      );
      try {
        await waitFor(() => d.status().game?.pid === game.pid, "the game detected", 3000);
        const before = d.threads(8192).length;
        const reader = game.stdout.getReader();
        const { value } = await reader.read();
        reader.releaseLock();
        assert.match(new TextDecoder().decode(value), /done/);
        const after = d.threads(8192);
        console.log(`    threads tracked: ${before} before, ${after.length} after 10 000 threads came and went`);
        assert.ok(after.length <= before + 16, `state did not grow: ${before} → ${after.length}`);
      } finally {
        await reap(game);
      }
    });
  } finally {
    d.close();
  }

  await vmStep(t, "observe's detectors are gone after it stops: none left attached", async () => {
    const r = await cli(["sched", "status", "--threads", "1", "--format", "json"]);
    const s = JSON.parse(r.stdout);
    assert.deepEqual(s.detectors, null, "no detectors left running");
  });

  await vmStep(
    t,
    "with the scheduler, the game's input chain runs boosted (signal_runs), sched status names the game from another process, beside hogs the worker runs on the CPU its input thread handed it the event on, and --no-signals boosts nothing",
    async () => {
      const s = await Scheduler.start({ detect: { gameSwitchMs: 1000 } });
      try {
        const probe = new Deno.Command(INPUTPROBE, {
          // Long enough that the game still runs when `sched status` (a new Deno, 3-8 s to start
          // in the emulated VM under this load, and over 14 s in a slow spell of a CI run: the game
          // had exited, and status rightly named none) reads it.
          args: ["--warmup-s", "40", "--duration-s", "2", "--rate-hz", "250"],
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        await sleep(3000);
        // Another process reads the running scheduler's detectors from the kernel.
        const st = await cli(["sched", "status", "--threads", "64", "--format", "json"]);
        assert.deepEqual(st.code, 0, st.stderr);
        const j = JSON.parse(st.stdout);
        assert.deepEqual(j.detectors.game?.comm, "fp-inputprobe", st.stdout);
        assert.deepEqual(j.detectors.game?.reason, "steam");
        assert.ok(j.threads.some((x: { comm: string }) => x.comm === "fp-compositor"), "its threads listed");
        const out = await probe.output();
        assert.deepEqual(out.code, 0);
        const r = JSON.parse(new TextDecoder().decode(out.stdout));
        // The worker takes the newest event when it is done with the last (as a game's frame does):
        // events it had no time for are folded, not lost; most must still reach it one by one.
        assert.ok(
          r.events_seen >= 0.8 * r.events_sent,
          `events reached the worker: ${r.events_seen} of ${r.events_sent}`,
        );
        assert.ok(s.stats().signal_runs > 500, `signal_runs ${s.stats().signal_runs}`);
        assert.deepEqual(s.state(), "running");
      } finally {
        s.stop();
        s.close();
      }
      // Beside four CPU hogs there is no idle CPU: the worker goes to the input thread's CPU and
      // takes it (a handoff), instead of preempting a hog on the other CPU through an interrupt.
      const s2 = await Scheduler.start({});
      const hogs = new Deno.Command("stress-ng", {
        args: ["--cpu", "4", "--timeout", "40s", "--quiet"],
        stdout: "null",
        stderr: "inherit",
      }).spawn();
      try {
        const h0 = s2.stats().handoffs;
        const probe = new Deno.Command(INPUTPROBE, {
          args: ["--warmup-s", "10", "--duration-s", "4", "--rate-hz", "250"],
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        // The compositor is found by the detectors' scan (every 5 s; slower beside the hogs).
        await waitFor(() => (s2.detector?.status().compositors ?? 0) >= 1, "the compositor found", 10_000);
        const out = await probe.output();
        assert.deepEqual(out.code, 0);
        const r = JSON.parse(new TextDecoder().decode(out.stdout));
        console.log(
          `    beside 4 hogs: worker on its input thread's CPU for ${r.worker_same_cpu_pct} % of ${r.events_seen} events`,
        );
        assert.ok(r.worker_same_cpu_pct >= 70, `the worker ran where it was handed the event: ${JSON.stringify(r)}`);
        // The probe counts what it sent as the game counts what it saw: never more seen than sent.
        assert.ok(r.events_seen <= r.events_sent, `events seen ${r.events_seen} of ${r.events_sent} sent`);
        // (Sync wakeups count too: the compositor's socket write to the game's input thread is one.)
        assert.ok(s2.stats().handoffs > h0, `handoffs counted: ${s2.stats().handoffs - h0}`);
        assert.deepEqual(s2.state(), "running");
      } finally {
        try {
          hogs.kill("SIGKILL");
        } catch { /* ended */ }
        await hogs.status;
        s2.stop();
        s2.close();
      }

      const off = await Scheduler.start({ signals: false });
      try {
        await sleep(1000);
        assert.deepEqual(off.detector, null);
        assert.deepEqual(off.stats().signal_runs, 0, "no signals: nothing boosted");
      } finally {
        off.stop();
        off.close();
      }
    },
  );
});
