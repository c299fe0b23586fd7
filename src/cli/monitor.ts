/**
 * The CLI's one live-monitor loop, for every long-running command (reflect, probe, lab run, sched
 * run): every interval it samples, then shows it: a dashboard redrawn in place when stdout is a
 * terminal (src/cli/dashboard.ts; a command without a board: a status line that replaces itself),
 * one JSON object per interval when stdout is not a terminal or with `--format json` (a line every
 * 10 s or more on stderr when only stderr is not a terminal). Without `--format json`, a command's
 * text summary then goes to stderr (`summaryText`): stdout stays JSON lines to its end.
 * It ends on any of STOP_SIGNALS (SIGINT, SIGTERM, SIGHUP, SIGQUIT), at a deadline, or when the command's own wait says so.
 */
import { StatusLine } from "../format.ts";
import { type Board, Dashboard, dashboardWanted } from "./dashboard.ts";
import { num } from "./flags.ts";
import { JOURNAL_EVERY_MS, stdoutIsJournal } from "./journal.ts";
import { emit } from "./json.ts";
import { STOP_SIGNALS } from "../signals.ts";

/** How often long-running commands report, ms: `--interval-ms` (at least MIN_INTERVAL_MS). */
export const DEFAULT_INTERVAL_MS = 1000;
const MIN_INTERVAL_MS = 100;
/** An hour: past 2^31-1 ms a timer fires at once (setTimeout), and the library takes a u32 wait. */
const MAX_INTERVAL_MS = 3_600_000;

export function intervalOption() {
  return num("interval-ms", "how often to report (json: one object per interval)", {
    min: MIN_INTERVAL_MS,
    max: MAX_INTERVAL_MS,
  }).default(DEFAULT_INTERVAL_MS);
}

export { interruptedExit } from "../signals.ts";

/**
 * Resolves with the signal's name on any of STOP_SIGNALS (SIGINT, SIGTERM, SIGHUP, SIGQUIT), and aborts `abort` (for the library's
 * waits, e.g. a probe's ARP wait); `dispose()` removes the listeners.
 */
export function untilSignal(): { promise: Promise<string>; abort: AbortSignal; dispose: () => void } {
  let resolve!: (s: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  const ctl = new AbortController();
  promise.then((s) => ctl.abort(s));
  const listeners = STOP_SIGNALS.map(([sig]) => [sig, () => resolve(sig)] as const);
  for (const [sig, fn] of listeners) Deno.addSignalListener(sig, fn);
  return {
    promise,
    abort: ctl.signal,
    dispose: () => {
      for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
    },
  };
}

export interface Monitor<S> {
  json: boolean;
  intervalMs: number;
  /** Stop after this many seconds (undefined: until something else ends it). */
  durationS?: number;
  /** Resolves (with the signal's name) when the user stops the command. */
  stop: Promise<string>;
  sample(): S;
  /** The state the first interval counts from (default: a sample taken as the loop starts). */
  first?: S;
  /** The status line for people. */
  line(now: S, prev: S, dtS: number): string;
  /** The dashboard for people on a terminal (its progress defaults to elapsed of `durationS`). */
  board?(now: S, prev: S, dtS: number): Board;
  /**
   * A dashboard the caller opened and closes, for a command that runs the loop more than once (lab
   * run, once per size): the screen stays up in between. Default: the loop opens and closes its own.
   */
  dashboard?: Dashboard;
  /** The JSON object for an interval: its `type` and the rest. */
  interval(now: S, prev: S, dtS: number): [string, Record<string, unknown>];
  /** Waits up to `ms`; resolves early with a reason to end (the probe finished, the scheduler was ejected). */
  wait?(ms: number): Promise<string | undefined>;
  /** Handed each interval's object as `interval` made it (the stats listener serves the latest). */
  observe?(type: string, obj: Record<string, unknown>): void;
  /** After each interval's output: a reason to end (a failed worker), or messages to print first. */
  after?(now: S, prev: S): { end?: string; notes?: Array<[string, Record<string, unknown>, string]> } | undefined;
}

/**
 * Prints a long-running command's text summary (its table, "interrupted by …"): on stdout when stdout
 * is a terminal; on stderr when it is not, for stdout then carries the loop's JSON objects and nothing
 * else, so whatever reads it (jq) reads JSON to the end.
 */
export function summaryText(text: string): void {
  if (Deno.stdout.isTerminal()) console.log(text);
  else console.error(text);
}

/** Runs the loop; resolves with why it ended: a signal's name, "deadline", or the wait's or after's reason. */
export async function monitor<S>(m: Monitor<S>): Promise<string> {
  const status = new StatusLine();
  // Not a terminal: the intervals as JSON lines, for whatever reads them.
  const jsonOut = m.json || !Deno.stdout.isTerminal();
  const dash = !jsonOut && m.board && dashboardWanted() ? m.dashboard ?? new Dashboard() : undefined;
  const ownDash = dash !== undefined && dash !== m.dashboard;
  const started = Date.now();
  const intervalMs = m.intervalMs;
  const textEvery = status.tty ? intervalMs : Math.max(intervalMs, 10_000);
  // Into systemd's journal (not asked for with --format json): a line a minute, counted from the last one.
  const jsonEvery = !m.json && stdoutIsJournal() ? Math.max(intervalMs, JOURNAL_EVERY_MS) : 0;
  const deadline = m.durationS !== undefined ? Date.now() + m.durationS * 1000 : Infinity;
  let stopped: string | undefined;
  m.stop.then((s) => (stopped = s));
  let prev = m.first ?? m.sample();
  let prevT = performance.now();
  let lastText = prevT;
  let logged: { s: S; t: number } | undefined;
  const draw = (a: S, b0: S, dt: number) => {
    const b = m.board!(a, b0, dt);
    if (!b.progress && m.durationS) b.progress = { done: (Date.now() - started) / 1000, total: m.durationS };
    dash!.draw(b);
  };
  try {
    if (dash) {
      dash.open();
      draw(prev, prev, intervalMs / 1000);
    }
    while (true) {
      const ms = Math.min(intervalMs, Math.max(0, deadline - Date.now()));
      const ticked = m.wait ? m.wait(ms) : new Promise<undefined>((r) => setTimeout(() => r(undefined), ms));
      const why = await Promise.race([m.stop, ticked]);
      const now = m.sample();
      const t = performance.now();
      const dt = (t - prevT) / 1000;
      const iv = m.interval(now, prev, dt);
      m.observe?.(...iv);
      if (jsonOut) {
        if (!jsonEvery) emit(...iv);
        else if (!logged || t - logged.t >= jsonEvery - intervalMs / 2) {
          emit(...(logged ? m.interval(now, logged.s, (t - logged.t) / 1000) : iv));
          logged = { s: now, t };
        }
      } else if (dash) draw(now, prev, dt);
      else if (status.tty) status.show(m.line(now, prev, dt));
      else if (t - lastText >= textEvery) {
        console.error(m.line(now, prev, dt));
        lastText = t;
      }
      const next = m.after?.(now, prev);
      for (const [type, obj, text] of next?.notes ?? []) {
        status.clear();
        if (m.json) emit(type, obj);
        else if (dash) dash.event(text);
        else console.error(text);
      }
      prev = now;
      prevT = t;
      if (stopped) return stopped;
      if (why) return why;
      if (next?.end) return next.end;
      if (Date.now() >= deadline) return "deadline";
    }
  } finally {
    status.clear();
    // The terminal back as it was, then what happened meanwhile, for the scrollback.
    if (ownDash) { for (const text of dash.close()) console.error(text); }
  }
}
