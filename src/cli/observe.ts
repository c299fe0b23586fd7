/**
 * `fastpath sched observe`: the detectors without a scheduler (any Linux kernel with BTF, sched_ext
 * or not), showing live which threads are classified as what and why. Also the thread table that
 * `sched status --threads` prints for the running scheduler.
 */
import { table } from "../format.ts";
import {
  checkThreads,
  DETECT_KNOBS,
  type DetectOptions,
  Detector,
  type DetectStatus,
  type DetectThread,
  isPidSpec,
  MAX_THREADS,
  type SignalName,
} from "../detect.ts";
import { ENUMS } from "../../ffi/enums.ts";
import { FastpathError } from "../../ffi/error.ts";
import { parseChoice } from "../parse.ts";
import { command, formatOption, knobs, num, setExit, text } from "./flags.ts";
import { emit } from "./json.ts";
import { intervalOption, monitor, summaryText, untilSignal } from "./monitor.ts";

/** Why a thread holds its classes: the evidence, in words. */
export function evidence(t: DetectThread): string {
  const why: string[] = [];
  if (t.inputMsAgo !== null) {
    why.push(`input ${t.inputMsAgo} ms ago${t.inputHops ? `, ${t.inputHops} hop(s) from the reader` : " (reader)"}`);
  }
  if (t.gpuMsAgo !== null) why.push(`${t.gpuHz} GPU submits/s, last ${t.gpuMsAgo} ms ago`);
  if (t.pcmMsAgo !== null) why.push(`PCM write ${t.pcmMsAgo} ms ago`);
  if (t.netMsAgo !== null) why.push(`${t.netHz} INET sends/s, last ${t.netMsAgo} ms ago`);
  if (t.wokenByIrq) why.push("woken from an interrupt");
  else if (t.wokenByRt) why.push(`woken by real-time thread ${t.wakerTid}`);
  else if (t.wakerTid) why.push(`woken by ${t.wakerTid}`);
  return why.join("; ");
}

/** The thread table for people; `max` is the `--threads` it was read with (0: none listed). */
export function threadTable(threads: DetectThread[], max: number): string {
  if (max === 0) return "threads: none listed (--threads 0)";
  if (threads.length === 0) return "no threads with a role or in an input chain yet";
  return table(
    ["tid", "pid", "comm", "roles", "classes", "seen", "evidence"],
    threads.map((t) => [
      String(t.tid),
      String(t.pid),
      t.comm,
      t.roles.join(",") || "-",
      t.classes.join(",") || "-",
      `${t.seenMsAgo} ms ago`,
      evidence(t),
    ]),
  );
}

/** The detectors' status for people: signals, what is absent and why, the game (`named`: gameText). */
export function statusText(st: DetectStatus, named?: string): string[] {
  return [
    `signals:     ${st.signals.join(", ") || "none"}`,
    ...st.absent.map((a, i) => `${i === 0 ? "absent:     " : "            "} ${a}`),
    ...gameText(st, named),
  ];
}

/**
 * The live line's rates, each from its detector's counters; a detector that is not on (absent from
 * this kernel, or left off) reads "absent" or "off", not a rate of 0.
 */
export function ratesText(
  on: readonly string[],
  off: readonly string[],
  rate: (counter: keyof DetectStatus["counters"]) => number,
): string {
  const parts: Array<[string[], string, () => string]> = [
    [["input"], "input", () => `${rate("input_events")} input events/s, ${rate("input_boosts")} input boosts/s`],
    [["wake", "irq"], "urgent", () => `${rate("urgent_boosts")} urgent/s`],
    [["gpu", "nvidia"], "GPU", () => `${rate("gpu_submits")} GPU submits/s`],
    [["pcm"], "PCM", () => `${rate("pcm_periods")} PCM periods/s`],
    [["net"], "sends", () => `${rate("net_sends")} game sends/s`],
  ];
  return parts.map(([signals, label, text]) =>
    signals.some((x) => on.includes(x))
      ? text()
      : signals.every((x) => off.includes(x))
      ? `${label} off`
      : `${label} absent`
  ).join(", ");
}

/**
 * What changes while the detectors run: the game and the roles found. `named` is the `--game` they
 * were started with, if any: while no such process runs, the line says so.
 */
export function gameText(st: DetectStatus, named?: string): string[] {
  const found = st.game?.foundAfterExecUs
    ? `, found ${(st.game.foundAfterExecUs / 1000).toFixed(1)} ms after its exec`
    : "";
  const waiting = named === undefined
    ? ""
    : isPidSpec(named)
    ? ` (--game ${named}: no such process runs)`
    : ` (--game ${named}: no process of that name runs yet)`;
  const game = st.game
    ? `${st.game.comm} (pid ${st.game.pid}, ${st.game.reason.replace("_", " ")}${found})`
    : `none detected${waiting}`;
  return [
    `game:        ${game}`,
    `compositors: ${st.compositors}, audio servers: ${st.audioServers}, audio clients: ${st.audioClients}`,
  ];
}

/** A thread's classification, to notice when it changes. */
function key(t: DetectThread): string {
  return `${t.roles.join(",")}|${t.classes.join(",")}`;
}

/**
 * `--threads N`: how many threads a table or JSON object lists, checked as it is parsed - by the
 * scripting API's own check (detect.ts checkThreads: a whole number, 0 to MAX_THREADS) - so a bad one
 * is refused before the detectors attach.
 */
export function threadsOption(help: string) {
  return num("threads", help, { min: 0, max: MAX_THREADS, check: checkThreads });
}

export function signalsOption() {
  return text("signals-off", `comma list of detectors to leave off: ${ENUMS.Signal.join(", ")}`, "LIST");
}

export function gameOptions() {
  return [
    text("game", "the game, by PID or process name (default: detected: Steam, Proton/Wine .exe)", "NAME|PID"),
    text(
      "compositor",
      "a compositor besides the known ones (X, Wayland, gamescope) and whoever holds evdev open",
      "NAME|PID",
    ),
  ] as const;
}

/** `--signals-off a,b` as signal names (each checked; at least one: an empty list is a slip, not "none"). */
export function parseSignalsOff(v: string | undefined): SignalName[] {
  const items = (v ?? "").split(",").map((s) => s.trim());
  if (items.every((s) => s === "")) {
    throw new FastpathError("usage", `\`signalsOff\` needs one or more of ${ENUMS.Signal.join(", ")}`);
  }
  if (items.includes("")) {
    throw new FastpathError(
      "usage",
      `\`signalsOff\` has an empty item in "${v}": name each detector once, e.g. gpu,net`,
    );
  }
  const names = items.map((s) => parseChoice("signalsOff", s, ENUMS.Signal));
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new FastpathError("usage", `\`signalsOff\` names ${twice} twice: name each detector once`);
  return names;
}

/**
 * The detector options among a command's parsed flags: those `given` says were on the command line
 * (default: any with a value); the library's start applies DETECT_KNOBS' defaults to the rest.
 */
export function detectOptionsOf(
  f: Record<string, unknown>,
  given: (key: string) => boolean = (k) => f[k] !== undefined,
): DetectOptions {
  const o: DetectOptions = {};
  if (given("signalsOff")) o.signalsOff = parseSignalsOff(f.signalsOff as string | undefined);
  for (const k of Object.keys(DETECT_KNOBS) as Array<keyof typeof DETECT_KNOBS>) {
    if (given(k)) o[k] = f[k] as number;
  }
  if (given("game")) o.game = f.game as string;
  if (given("compositor")) o.compositor = f.compositor as string;
  return o;
}

const [game, compositor] = gameOptions();

/** observe's examples, shown in its help and in `fastpath sched --help`. */
export const OBSERVE_EXAMPLES = [
  "sudo fastpath sched observe",
  "sudo fastpath sched observe --game wine64-preloader --duration-s 30",
  "sudo fastpath sched observe --format json | jq 'select(.type==\"detect_interval\") | .threads'",
];

export const observe = knobs(
  command("observe", {
    summary: "run the detectors without a scheduler and show which threads are classified as what, and why",
    usage: "[flags]",
    description: `Attaches the detectors (input_event, wakeups from interrupts and real-time tasks, drm_ioctl, ALSA PCM,
    INET sends, exec/exit) without attaching a scheduler: works on kernels without sched_ext. Prints
    each thread when its classification changes, with the evidence, and the table at the end.`,
    examples: OBSERVE_EXAMPLES,
  }),
  DETECT_KNOBS,
  "DetectKnobs",
)
  .addOption(game)
  .addOption(compositor)
  .addOption(signalsOption())
  .addOption(threadsOption("at most this many threads in a table or JSON object").default(64))
  .addOption(intervalOption())
  .addOption(num("duration-s", "stop after this many seconds (default: until Ctrl-C)", { above: 0 }))
  .addOption(formatOption())
  .action(async (f) => {
    const json = f.format === "json";
    const opts = detectOptionsOf(f);
    const off = opts.signalsOff ?? [];
    const stop = untilSignal();
    let d: Detector;
    try {
      d = await Detector.start(opts);
    } catch (err) {
      stop.dispose();
      throw err;
    }
    try {
      const st0 = d.status();
      if (json) emit("detect_started", { ...st0, knobs: { type: "detect_knobs", ...d.knobs } });
      else {
        for (const l of statusText(st0, f.game)) console.error(l);
        console.error("  stop with Ctrl-C");
      }
      const seen = new Map<number, string>();
      await monitor({
        json,
        intervalMs: f.intervalMs,
        durationS: f.durationS,
        stop: stop.promise,
        sample: () => ({ status: d.status(), threads: d.threads(f.threads) }),
        line: (now, prev, dt) => {
          const c = now.status.counters, p = prev.status.counters;
          const rate = (k: keyof typeof c) => Math.round(((c[k] as number) - (p[k] as number)) / dt);
          return `detectors: ${ratesText(now.status.signals, off, rate)}; game ${
            now.status.game?.comm ?? "none"
          }; ${now.threads.length} threads`;
        },
        interval: (now, _prev, dt) => ["detect_interval", { intervalS: dt, ...now.status, threads: now.threads }],
        after: (now) => {
          const notes: Array<[string, Record<string, unknown>, string]> = [];
          for (const t of now.threads) {
            if (seen.get(t.tid) === key(t)) continue;
            seen.set(t.tid, key(t));
            if (t.classes.length === 0 && t.roles.length === 0) continue;
            const why = evidence(t);
            notes.push([
              "detect_thread",
              { ...t },
              `${t.tid} ${t.comm} (pid ${t.pid}${t.roles.length ? `, ${t.roles.join(",")}` : ""}): ${
                t.classes.join(",") || "no class now"
              }${why ? ` — ${why}` : ""}`,
            ]);
          }
          return notes.length && !json ? { notes } : undefined;
        },
      });
      const end = { status: d.status(), threads: d.threads(f.threads) };
      if (json) emit("detect_summary", { ...end.status, threads: end.threads });
      else {
        // What can change while it runs (the signals and absences were shown at the start).
        summaryText(gameText(end.status, f.game).join("\n"));
        summaryText(threadTable(end.threads, f.threads));
      }
      setExit(0);
    } finally {
      try {
        d.close();
      } finally {
        stop.dispose(); // last: a second signal meanwhile must not kill the cleanup
      }
    }
  });
