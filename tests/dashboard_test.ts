/**
 * The live dashboard: each command's board from sample counters (sched run's too: this host has no
 * sched_ext, so its board is checked from counter objects, not from a running scheduler), and a real
 * `lab run` on a pseudo-terminal (tests/pty_run.py) whose screen is read back through a terminal
 * emulator (xterm.js, headless).
 */
import assert from "node:assert/strict";
import xterm from "@xterm/headless";
import {
  cli,
  DENO,
  isRoot,
  labPrefix,
  netnsList,
  ROOT,
  sampleProbeReport,
  skipUnless,
  smallLabRun,
} from "./helpers.ts";
import { labDown, labUp } from "../src/lab.ts";
import { COUNTER_NAMES, DETECT_COUNTER_NAMES, SCHED_COUNTER_NAMES } from "../ffi/enums.ts";
import type { Counters, ReflectorInfo } from "../src/reflector.ts";
import type { SchedCounters } from "../src/sched.ts";
import type { DetectStatus } from "../src/detect.ts";
import { type Board, colorWanted, dashboardWanted, render, terminalSize } from "../src/cli/dashboard.ts";
import { labBoard } from "../src/cli/lab.ts";
import { reflectBoard } from "../src/cli/reflect.ts";
import { probeProgress, probeSections } from "../src/cli/probe.ts";
import { schedBoard } from "../src/cli/sched.ts";

const PREFIX = labPrefix("fpdash");
const ESC = String.fromCharCode(27);
/** A colour or style (SGR) escape sequence. */
const SGR = new RegExp(`${ESC}\\[[0-9;]*m`);

function zeros<K extends string>(names: readonly K[]): Record<K, number> {
  return Object.fromEntries(names.map((n) => [n, 0])) as Record<K, number>;
}

function screen(b: Board, columns = 80, rows = 40, color = false): string[] {
  return render(b, { columns, rows, color, elapsedS: 65, footer: "stop with Ctrl-C" });
}

const info = {
  mode: "afxdp",
  reason: "auto: afxdp started",
  mac: "02:00:00:00:00:01",
  xdpAttach: "generic",
  zerocopy: false,
  coalesceUs: 0,
} as unknown as ReflectorInfo;

/** Runs `args` of the CLI on a pseudo-terminal; returns its exit code and its output after each step. */
async function onTerminal(args: string[], size: [number, number], steps: unknown[], env: Record<string, string>) {
  const cfg = {
    argv: [DENO, "run", "-A", "--unstable-ffi", "--quiet", `${ROOT}/main.ts`, ...args],
    env,
    size,
    timeout_s: 90,
    steps,
  };
  const out = await new Deno.Command("python3", {
    args: [`${ROOT}/tests/pty_run.py`, JSON.stringify(cfg)],
    stdout: "piped",
    stderr: "inherit",
    signal: AbortSignal.timeout(120_000),
  }).output();
  assert.equal(out.code, 0, "pty_run.py failed");
  const r = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    code: number;
    timed_out: boolean;
    chunks: Array<[number, string]>;
  };
  const bytes = (upTo: number) =>
    r.chunks.filter(([s]) => s <= upTo).map(([, b]) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0)));
  return { code: r.code, timedOut: r.timed_out, bytes };
}

/** A terminal emulator fed `chunks`: its visible lines, which screen is up, and its scrollback. */
async function emulate(chunks: Uint8Array[], cols: number, rows: number, resizeTo?: [number, number], resizeAt = -1) {
  const term = new xterm.Terminal({ cols, rows, scrollback: 1000, allowProposedApi: true });
  for (const [i, c] of chunks.entries()) {
    if (i === resizeAt && resizeTo) term.resize(...resizeTo);
    await new Promise<void>((r) => term.write(c, r));
  }
  const buf = term.buffer.active;
  const lines = (from: number, to: number) => {
    const out: string[] = [];
    for (let y = from; y < to; y++) {
      const line = buf.getLine(y);
      // Up to the width: cells past a shrink stay stored. A line the terminal wrapped joins the one before.
      const text = line?.translateToString(true, 0, term.cols) ?? "";
      if (line?.isWrapped && out.length) out[out.length - 1] += text;
      else out.push(text);
    }
    return out;
  };
  const result = {
    type: buf.type,
    visible: lines(buf.viewportY, buf.viewportY + term.rows),
    all: lines(0, buf.length),
  };
  term.dispose();
  return result;
}

Deno.test("the live dashboard", async (t) => {
  await t.step(
    "reflect's board shows rates from the counters' deltas and only the non-zero signatures and drops",
    () => {
      const prev = { ...zeros(COUNTER_NAMES), rx_packets: 1000, tx_packets: 900, sig_dataot: 900 } as Counters;
      const now = {
        ...prev,
        rx_packets: 3000,
        tx_packets: 2900,
        tx_bytes: 2000 * 64,
        sig_dataot: 2900,
        drop_not_ours: 7,
        drop_oui: 0,
      } as Counters;
      const text = screen(reflectBoard("eth0", info, now, prev, 2)).join("\n");
      assert.match(text, /^fastpath reflect eth0 \(02:00:00:00:00:01\) +running 1:05$/m);
      assert.match(text, /^mode +afxdp \(XDP generic, copy mode, a wake-up per frame\)$/m);
      assert.match(text, /^why +auto: afxdp started$/m);
      assert.match(text, /^ {2}received +1\.0 kpps {2}total 3000$/m, text);
      assert.match(text, /^ {2}reflected +1\.0 kpps {2}0\.5 Mbit\/s {2}total 2900$/m, text);
      assert.match(text, /^ {2}DATA:OT +2900 {2}\(1\.0 kpps\)$/m);
      assert.match(text, /^ {2}not ours +7 {2}\(3\.5 pps\)$/m, text);
      for (const absent of ["PROBEOT", "LATENCY", "oui", "too short", "tx error"]) {
        assert.doesNotMatch(text, new RegExp(`^ {2}${absent} `, "m"), `${absent} is zero: not shown`);
      }
    },
  );

  await t.step("every line fits 80 columns, a narrower terminal cuts them, a short one says what did not fit", () => {
    const prev = zeros(COUNTER_NAMES) as Counters;
    const now = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 123_456_789_012])) as Counters;
    const b = reflectBoard("a-long-interface-name0", info, now, prev, 1);
    b.progress = { done: 30, total: 120, label: "size 1 of 3" };
    for (const l of screen(b)) assert.ok(l.length <= 80, `longer than 80 columns: ${l}`);
    for (const l of screen(b, 40)) assert.ok(l.length <= 40, `longer than 40 columns: ${l}`);
    const short = screen(b, 80, 10);
    assert.equal(short.length, 10);
    assert.match(short[9], /^… \d+ more lines: enlarge the terminal$/);
    assert.match(screen(b).join("\n"), /^progress +\[#####\.+\] 0:30 of 2:00 25 %, size 1 of 3$/m);
  });

  await t.step("at 40 to 50 columns a row too wide puts its value under its label, whole", () => {
    const prev = { ...zeros(COUNTER_NAMES), tx_packets: 900 } as Counters;
    const now = { ...prev, rx_packets: 2000, tx_packets: 2900, tx_bytes: 2000 * 64 } as Counters;
    for (const cols of [40, 45, 50]) {
      const text = screen(reflectBoard("eth0", info, now, prev, 2), cols).join("\n");
      assert.match(text, /^ {2}reflected\n {4}1\.0 kpps {2}0\.5 Mbit\/s {2}total 2900$/m, text);
    }
    const wide = screen(reflectBoard("eth0", info, now, prev, 2)).join("\n");
    assert.match(wide, /^ {2}reflected +1\.0 kpps {2}0\.5 Mbit\/s {2}total 2900$/m, "one line where it fits");
  });

  await t.step("lab run's 'why' does not name --cpu or --workers, which lab run does not have", () => {
    const reason =
      "auto: xdp is the fastest dataplane; it has no worker threads, so `cpu` and `workers` left unused (`mode` afxdp or packet has them)";
    const head = labBoard({ reflectorNs: "fp-refl", probeNs: "fp-probe" }, 64, { ...info, mode: "xdp", reason });
    assert.deepEqual(head.mode, ["xdp (XDP generic)", "auto: xdp is the fastest dataplane"]);
    assert.match(
      reflectBoard(
        "eth0",
        { ...info, mode: "xdp", reason },
        zeros(COUNTER_NAMES) as Counters,
        zeros(COUNTER_NAMES) as Counters,
        1,
      ).mode![1],
      /--cpu and --workers left unused/,
      "reflect has them",
    );
  });

  await t.step("a terminal that reports 0x0 is laid out as 80x24, and TERM=dumb gets no dashboard", () => {
    assert.deepEqual(terminalSize(() => ({ columns: 0, rows: 0 })), { columns: 80, rows: 24 });
    assert.deepEqual(terminalSize(() => ({ columns: 100, rows: 0 })), { columns: 100, rows: 24 });
    assert.deepEqual(
      terminalSize(() => {
        throw new Error("not a terminal");
      }),
      { columns: 80, rows: 24 },
    );
    const env = (vars: Record<string, string>) => (k: string) => vars[k];
    assert.equal(dashboardWanted(env({ TERM: "xterm-256color" }), true), true);
    assert.equal(dashboardWanted(env({ TERM: "dumb" }), true), false);
    assert.equal(dashboardWanted(env({ TERM: "xterm-256color" }), false), false);
  });

  await t.step("NO_COLOR (any non-empty value) and TERM=dumb turn the colours off", () => {
    const b = reflectBoard("eth0", info, zeros(COUNTER_NAMES) as Counters, zeros(COUNTER_NAMES) as Counters, 1);
    assert.match(screen(b, 80, 40, true).join("\n"), SGR, "colours on a colour terminal");
    assert.doesNotMatch(screen(b, 80, 40, false).join("\n"), SGR);
    const env = (vars: Record<string, string>) => (k: string) => vars[k];
    assert.equal(colorWanted(env({ TERM: "xterm-256color" })), true);
    assert.equal(colorWanted(env({ TERM: "xterm-256color", NO_COLOR: "1" })), false);
    assert.equal(colorWanted(env({ TERM: "xterm-256color", NO_COLOR: "" })), true);
    assert.equal(colorWanted(env({ TERM: "dumb" })), false);
  });

  await t.step("a probe's board has this interval's rates and loss, the RTT percentiles and its progress", () => {
    const prev = sampleProbeReport({ sent: 1000, received: 990, lost: 0 });
    const now = sampleProbeReport({
      elapsedS: 2,
      sent: 2000,
      received: 1980,
      lost: 10,
      inFlight: 10,
      lossPct: 0.5,
      reordered: 3,
      rttUs: { min: 20, p50: 40, p99: 90, p999: 1500, max: 2000, mean: 45 },
    });
    const text = screen({ title: "probe", sections: probeSections(now, prev, 1) }).join("\n");
    assert.match(text, /^ {2}sent +1\.0 kpps {2}total 2000$/m, text);
    assert.match(text, /^ {2}back +990 pps {2}total 1980 {2}in flight 10$/m, text);
    assert.match(text, /^ {2}frame loss rate +1\.010 % now {2}0\.500 % overall \(10 lost\)$/m, text);
    assert.match(text, /^ {2}reordered +3$/m);
    assert.doesNotMatch(text, /duplicates|wrong rewrites/, "zero: not shown");
    assert.match(text, /^ {2}p50 \/ p99 \/ p99\.9 +40\.0 µs \/ 90\.0 µs \/ 1\.50 ms$/m);
    assert.deepEqual(probeProgress(now, { count: 5000 }), { done: 2000, total: 5000, frames: true });
    assert.deepEqual(probeProgress(now, { durationS: 5 }), { done: 2, total: 5 });
  });

  await t.step(
    "sched run's board (from counter objects: no sched_ext here) has its rates, the foreground and the game",
    () => {
      const prev = { ...zeros(SCHED_COUNTER_NAMES), nr_cpus: 4, nr_llcs: 1 } as SchedCounters;
      const now = {
        ...prev,
        runs: 5000,
        wakeups: 3000,
        direct_idle: 1000,
        enqueued: 400,
        preempt_kicks: 20,
        foreground_runs: 800,
        busy_ns: 2e9, // 2 of 4 CPUs over 1 s
        busy: 1,
      } as SchedCounters;
      const det = (counters: Partial<Record<string, number>>, game: DetectStatus["game"]) =>
        ({
          type: "detect_status",
          signals: [],
          absent: [],
          game,
          compositors: 1,
          audioServers: 0,
          audioClients: 0,
          counters: { type: "detect_counters", ...zeros(DETECT_COUNTER_NAMES), ...counters },
        }) as unknown as DetectStatus;
      const game = { type: "detect_game", pid: 4242, comm: "game.exe", reason: "steam_env", foundAfterExecUs: null };
      const b = schedBoard(now, prev, 1, {
        ops: "fastpath",
        partial: true,
        specs: ["game.exe"],
        foreground: [4242],
        detectors: det({ input_events: 150, gpu_submits: 60 }, game as DetectStatus["game"]),
        prevDetectors: det({ input_events: 50 }, null),
      });
      const text = screen(b).join("\n");
      assert.match(text, /^fastpath sched run \(4 CPUs in 1 LLC\(s\)\)/m);
      assert.match(text, /^mode +partial: fastpath$/m);
      assert.match(text, /^ {2}runs +5000\/s {2}wakeups 3000\/s$/m, text);
      assert.match(text, /^ {2}CPU +50 % \(busy, 0 flips\)$/m, text);
      assert.match(text, /^ {2}foreground +game\.exe → 4242 {2}800\/s$/m, text);
      assert.match(text, /^ {2}game +game\.exe \(pid 4242, steam env\)$/m, text);
      assert.match(text, /^ {2}input events +100\/s {2}total 150$/m, text);
      assert.match(text, /^ {2}GPU submits +60\/s {2}total 60$/m, text);
      assert.doesNotMatch(text, /PCM periods|restarts/, "zero: not shown");
      for (const l of screen(b)) assert.ok(l.length <= 80, `longer than 80 columns: ${l}`);
      const off = screen(
        schedBoard(now, prev, 1, {
          ...{ ops: "fastpath", partial: false, specs: [], foreground: [] },
          detectors: null,
          prevDetectors: null,
        }),
      ).join("\n");
      assert.match(off, /^ {2}off \(--no-signals\)/m);
      assert.match(off, /^ {2}foreground +none \(--foreground\)$/m);
    },
  );

  await t.step(
    "lab run on a terminal draws in place, redraws when resized, and Ctrl-C gives the terminal back",
    async () => {
      if (skipUnless(isRoot, "lab run needs root (network namespaces)")) return;
      const args = smallLabRun(PREFIX, 60);
      const r = await onTerminal(args, [80, 24], [
        { wait_for: "frame loss rate" }, // the dashboard is up (steps done: 1)
        { sleep_s: 1.5 }, // a redraw or two (2)
        { wait_for: "", then: "resize", size: [64, 20] }, // (3)
        { wait_for: "\u2026 running" }, // redrawn for 64 columns: the title gives way to the clock (4)
        { sleep_s: 0.3 }, // (5)
        { wait_for: "", then: "ctrl_c" }, // (6)
      ], { NO_COLOR: "1", TERM: "xterm-256color" });
      assert.equal(r.timedOut, false, "the run ended");
      assert.equal(r.code, 130, "Ctrl-C: exit 130");
      const dec = (a: Uint8Array[]) => a.map((c) => new TextDecoder().decode(c)).join("");
      const before = await emulate(r.bytes(2), 80, 24);
      assert.equal(before.type, "alternate", "the dashboard is on the alternate screen");
      assert.match(
        before.visible[0],
        /^fastpath lab run fpdash\w*-refl <-> fpdash\w*-probe: 64-byte frames +running \d:\d\d$/,
      );
      const shown = before.visible.join("\n");
      for (
        const want of [
          /^mode +\w+/m,
          /^progress +\[#*\.*\] \d:\d\d of 1:00 \d+ %, size 1 of 1$/m,
          /^ {2}sent +\d/m,
          /^ {2}frame loss rate /m,
          /^ {2}reflected +\d/m,
          /^ {2}DATA:OT +\d+/m,
        ]
      ) {
        assert.match(shown, want, shown);
      }
      assert.equal(
        before.visible.filter((l) => l.startsWith("fastpath lab run")).length,
        1,
        "redrawn in place, not scrolled",
      );
      // Resized to 64x20: redrawn from the top in the new width.
      const resizedAt = r.bytes(2).length;
      const after = await emulate(r.bytes(5), 80, 24, [64, 20], resizedAt);
      assert.match(after.visible[0], /^fastpath lab run .* +running \d:\d\d$/);
      assert.ok(after.visible.every((l) => l.length <= 64), after.visible.join("\n"));
      assert.equal(after.visible.filter((l) => l.startsWith("fastpath lab run")).length, 1, after.visible.join("\n"));
      // After Ctrl-C: the shell's screen again, the cursor shown, and no dashboard in its scrollback.
      const end = await emulate(r.bytes(6), 80, 24, [64, 20], resizedAt);
      assert.equal(end.type, "normal", "back on the normal screen");
      const raw = dec(r.bytes(6));
      assert.ok(raw.lastIndexOf("\x1b[?25h") > raw.lastIndexOf("\x1b[?25l"), "the cursor is shown again");
      const log = end.all.join("\n");
      assert.match(log, /^lab: fpdash\w*-refl <-> fpdash\w*-probe, 64-byte frames, 60 s each$/m, log);
      assert.match(log, /^interrupted by SIGINT after 1 of 1 sizes: these numbers are partial/m, log);
      assert.doesNotMatch(log, /frame loss rate/, "the dashboard did not scroll into the shell's screen");
      assert.doesNotMatch(raw, SGR, "NO_COLOR: no colours");
      assert.deepEqual((await netnsList()).filter((n) => n.startsWith(`${PREFIX}-`)), [], "the lab is gone");
    },
  );

  await t.step(
    "lab run keeps one dashboard over its sizes, and lays out a terminal reporting 0x0 as 80x24",
    async () => {
      if (skipUnless(isRoot, "lab run needs root (network namespaces)")) return;
      const args = ["lab", "run", "--prefix", PREFIX, "--size", "64,128", "--rate", "1kpps", "--duration-s", "1"];
      const r = await onTerminal(args, [0, 0], [{ wait_for: ": 128-byte frames" }], {
        NO_COLOR: "1",
        TERM: "xterm-256color",
      });
      assert.equal(r.code, 0);
      const board = await emulate(r.bytes(0), 80, 24);
      assert.match(
        board.visible[0],
        /^fastpath lab run \S+ <-> \S+: \d+-byte frames +running \d:\d\d$/,
        board.visible.join("\n"),
      );
      assert.match(board.visible.join("\n"), /^ {2}frame loss rate /m);
      const raw = new TextDecoder().decode(new Uint8Array(r.bytes(1).flatMap((c) => [...c])));
      assert.equal(raw.split(`${ESC}[?1049h`).length - 1, 1, "the alternate screen entered once, not per size");
      assert.equal(raw.split(`${ESC}[?1049l`).length - 1, 1, "and left once, at the end");
    },
  );

  await t.step("on TERM=dumb lab run draws no dashboard and writes no escape codes", async () => {
    if (skipUnless(isRoot, "lab run needs root (network namespaces)")) return;
    const r = await onTerminal(smallLabRun(PREFIX, 1), [80, 24], [], { TERM: "dumb" });
    assert.equal(r.code, 0);
    const raw = new TextDecoder().decode(new Uint8Array(r.bytes(0).flatMap((c) => [...c])));
    assert.ok(!raw.includes(ESC), JSON.stringify(raw));
    assert.match(raw, /64B: sent \d+ received \d+/, "the status line instead");
    assert.match(raw, /^(xdp|afxdp|packet) 64B /m, "and the table");
  });

  await t.step(
    "Ctrl-Z gives the terminal back before lab run stops, and SIGCONT draws the dashboard again",
    async () => {
      if (skipUnless(isRoot, "lab run needs root (network namespaces)")) return;
      const r = await onTerminal(smallLabRun(PREFIX, 60), [80, 24], [
        { wait_for: "frame loss rate" }, // (1)
        { wait_for: "", then: "ctrl_z" }, // (2)
        { wait_for: `${ESC}[?1049l` }, // the terminal given back (3)
        { sleep_s: 1 }, // stopped meanwhile (4)
        { wait_for: "", then: "sigcont" }, // (5)
        { wait_for: "frame loss rate" }, // drawn again (6)
        { wait_for: "", then: "ctrl_c" }, // (7)
      ], { NO_COLOR: "1", TERM: "xterm-256color" });
      assert.equal(r.timedOut, false);
      assert.equal(r.code, 130);
      const suspended = await emulate(r.bytes(3), 80, 24);
      assert.equal(suspended.type, "normal", "the shell's screen while stopped");
      const raw4 = new TextDecoder().decode(new Uint8Array(r.bytes(3).flatMap((c) => [...c])));
      assert.ok(raw4.lastIndexOf(`${ESC}[?25h`) > raw4.lastIndexOf(`${ESC}[?25l`), "the cursor shown while stopped");
      assert.equal(r.bytes(3).length, r.bytes(2).length, "nothing drawn while stopped");
      const resumed = await emulate(r.bytes(6), 80, 24);
      assert.equal(resumed.type, "alternate", "the dashboard again after SIGCONT");
      assert.match(resumed.visible[0], /^fastpath lab run /);
      const end = await emulate(r.bytes(7), 80, 24);
      assert.equal(end.type, "normal");
      assert.deepEqual((await netnsList()).filter((n) => n.startsWith(`${PREFIX}-`)), [], "the lab is gone");
    },
  );

  await t.step(
    "reflect on a terminal shows its mode, why and progress, and gives the terminal back at the deadline and on SIGTERM",
    async () => {
      if (skipUnless(isRoot, "reflect in the lab needs root (network namespaces)")) return;
      const lab = await labUp({ prefix: PREFIX });
      try {
        const reflect = (
          durationS: number,
        ) => [
          "reflect",
          lab.reflectorIf,
          "--netns",
          lab.reflectorNs,
          "--mode",
          "packet",
          "--duration-s",
          String(durationS),
        ];
        const env = { NO_COLOR: "1", TERM: "xterm-256color" };
        const ended = await onTerminal(reflect(2), [80, 24], [], env);
        assert.equal(ended.code, 0, "stopped at --duration-s: exit 0");
        const atEnd = await emulate(ended.bytes(0), 80, 24);
        assert.equal(atEnd.type, "normal");
        assert.match(atEnd.all.join("\n"), /^stopped: received \d+, reflected \d+/m);
        assert.doesNotMatch(
          atEnd.all.join("\n"),
          /^progress /m,
          "the dashboard did not scroll into the shell's screen",
        );
        const stopped = await onTerminal(reflect(60), [80, 24], [{ wait_for: "progress" }, { sleep_s: 1 }, {
          then: "sigterm",
          wait_for: "",
        }], env);
        assert.equal(stopped.code, 0, "a reflector stopped by SIGTERM exits 0");
        const board = await emulate(stopped.bytes(2), 80, 24);
        assert.equal(board.type, "alternate");
        const text = board.visible.join("\n");
        assert.match(
          text,
          new RegExp(`^fastpath reflect ${lab.reflectorIf} \\(${lab.reflectorMac}\\) +running 0:0\\d$`, "m"),
          text,
        );
        assert.match(text, /^mode +packet$/m, text);
        assert.match(text, /^why +\S/m, text);
        assert.match(text, /^progress +\[#*\.*\] 0:0\d of 1:00 \d %$/m, text);
        assert.match(text, /^reflected by signature\n {2}none yet$/m, text);
        const end = await emulate(stopped.bytes(3), 80, 24);
        assert.equal(end.type, "normal", "back on the normal screen after SIGTERM");
        const raw = new TextDecoder().decode(new Uint8Array(stopped.bytes(3).flatMap((c) => [...c])));
        assert.ok(raw.lastIndexOf(`${ESC}[?25h`) > raw.lastIndexOf(`${ESC}[?25l`), "the cursor is shown again");
      } finally {
        await labDown({ prefix: PREFIX });
      }
    },
  );

  await t.step(
    "with stdout not a terminal, lab run's stdout is JSON to its end: the table goes to stderr",
    async () => {
      if (skipUnless(isRoot, "lab run needs root (network namespaces)")) return;
      const r = await cli(smallLabRun(PREFIX, 2)); // stdout and stderr piped
      assert.equal(r.code, 0, r.stderr);
      const intervals = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)); // every line: `| jq` reads to the end
      assert.ok(intervals.length >= 2, r.stdout);
      for (const o of intervals) assert.equal(o.type, "lab_interval");
      assert.ok(intervals.at(-1).reflector.tx_packets > 0, r.stdout);
      assert.match(r.stderr, /^(xdp|afxdp|packet) 64B /m, "the table, for people, on stderr");
      assert.match(r.stderr, /^every reflection came back with exactly the expected fields swapped$/m);
      assert.ok(!(r.stdout + r.stderr).includes(ESC), "no escape codes when not on a terminal");
    },
  );
});
