/**
 * The live dashboard of the monitor loop (src/cli/monitor.ts) on a terminal: a screen of sections
 * ("rates", "not reflected", …) redrawn in place on the terminal's alternate screen, so nothing
 * scrolls and the shell's screen comes back as it was. The escape codes come from ansi-escapes, the
 * fitting to the width from cli-truncate, the colours from picocolors (off with NO_COLOR or TERM=dumb).
 * `render` is pure (a board and a size in, lines out) so each command's board is tested without a
 * terminal; `Dashboard` writes it and puts the terminal back on every exit path.
 */
import ansiEscapes from "ansi-escapes";
import cliTruncate from "cli-truncate";
import picocolors from "picocolors";

/** A titled list of "label value" rows; a section with no rows says `empty` (or is left out without one). */
export interface Section {
  title: string;
  rows: Array<[string, string]>;
  empty?: string;
}

/** What a command shows each interval. */
export interface Board {
  /** "reflect eth0": the command and its subject. */
  title: string;
  /** The mode, and why it was chosen. */
  mode?: [string, string];
  sections: Section[];
  /** Bounded runs: how far along (monitor fills it from --duration-s when the board does not). */
  progress?: Progress;
}

/** Seconds (or with `frames`, frames) done of the total. */
export interface Progress {
  done: number;
  total: number;
  frames?: boolean;
  /** e.g. "size 2 of 3". */
  label?: string;
}

export interface RenderOptions {
  columns: number;
  rows: number;
  color: boolean;
  elapsedS: number;
  /** The latest notes (link down, game changed), newest last. */
  events?: string[];
  /** The last line: how to stop. */
  footer?: string;
}

/** The width the dashboard is laid out for; a narrower terminal cuts lines, a wider one leaves room. */
export const DASHBOARD_COLUMNS = 80;
const LABEL = 18;

/**
 * Whether to draw the dashboard: stdout is a terminal that can move its cursor (not TERM=dumb, where
 * the monitor shows its status line instead).
 */
export function dashboardWanted(
  env: (k: string) => string | undefined = (k) => Deno.env.get(k),
  tty = Deno.stdout.isTerminal(),
): boolean {
  return tty && env("TERM") !== "dumb";
}

/** Whether to colour: NO_COLOR (https://no-color.org) of any non-empty value, or TERM=dumb, turns it off. */
export function colorWanted(env: (k: string) => string | undefined = (k) => Deno.env.get(k)): boolean {
  return !env("NO_COLOR") && env("TERM") !== "dumb";
}

function clock(s: number): string {
  const t = Math.max(0, Math.floor(s));
  const hh = Math.floor(t / 3600), mm = Math.floor((t % 3600) / 60), ss = t % 60;
  return `${hh ? `${hh}:` : ""}${String(mm).padStart(hh ? 2 : 1, "0")}:${String(ss).padStart(2, "0")}`;
}

function bar(p: Progress, width: number): string {
  const frac = p.total > 0 ? Math.min(1, Math.max(0, p.done / p.total)) : 0;
  const full = Math.round(frac * width);
  const of = p.frames ? `${p.done} of ${p.total} frames` : `${clock(p.done)} of ${clock(p.total)}`;
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${of} ${Math.floor(frac * 100)} %${
    p.label ? `, ${p.label}` : ""
  }`;
}

/** `text` in lines of at most `width` (broken between words), at most `max` of them (the last one cut). */
function wrap(text: string, width: number, max: number): string[] {
  const lines: string[] = [];
  let cur = "";
  for (const word of text.split(" ")) {
    if (cur && cur.length + 1 + word.length > width) {
      lines.push(cur);
      cur = word;
    } else cur = cur ? `${cur} ${word}` : word;
  }
  lines.push(cur);
  if (lines.length <= max) return lines;
  return [...lines.slice(0, max - 1), cliTruncate(lines.slice(max - 1).join(" "), width)];
}

/** The board as screen lines, each at most `columns` wide, at most `rows` of them. */
export function render(b: Board, o: RenderOptions): string[] {
  const c = picocolors.createColors(o.color);
  const width = Math.max(20, Math.min(o.columns, DASHBOARD_COLUMNS));
  const out: string[] = [];
  // A row too wide for the terminal puts its value under its label, so totals are not cut.
  const row = (label: string, value: string) => {
    const one = `  ${label.padEnd(LABEL)} ${value}`.trimEnd();
    return one.length <= o.columns || !value ? [one] : [`  ${label}`, `    ${value}`];
  };
  const running = `running ${clock(o.elapsedS)}`;
  // The title gives way to the clock on a narrow terminal.
  const title = cliTruncate(`fastpath ${b.title}`, Math.max(1, Math.min(o.columns, width) - running.length - 1));
  out.push(c.bold(title) + " ".repeat(Math.max(1, width - title.length - running.length)) + running);
  const head = (label: string, value: string, style = (x: string) => x) =>
    wrap(value, width - LABEL - 3, 2).forEach((v, i) =>
      out.push(`${i ? "".padEnd(LABEL + 2) : c.bold(label.padEnd(LABEL + 2))} ${style(v)}`)
    );
  if (b.mode) {
    head("mode", b.mode[0]);
    head("why", b.mode[1], c.dim);
  }
  if (b.progress) head("progress", bar(b.progress, Math.max(5, Math.min(20, width - 50))));
  // Sections follow each other without blank lines: a lab run's board fits a 80x24 terminal.
  for (const s of b.sections) {
    if (s.rows.length === 0 && s.empty === undefined) continue;
    out.push(c.bold(s.title));
    if (s.rows.length === 0) out.push(...row(c.dim(s.empty!), ""));
    for (const [label, value] of s.rows) out.push(...row(label, value));
  }
  if (o.events?.length) {
    out.push(c.bold("events"));
    for (const e of o.events.slice(-2)) out.push(`  ${c.yellow(e)}`);
  }
  if (o.footer) out.push(c.dim(o.footer));
  const fitted = out.map((l) => cliTruncate(l, o.columns));
  if (fitted.length <= o.rows) return fitted;
  // A short terminal: the top of the board, and a last line saying what did not fit.
  const kept = fitted.slice(0, Math.max(0, o.rows - 1));
  const more = fitted.length - kept.length;
  return [...kept, cliTruncate(c.dim(`… ${more} more line${more === 1 ? "" : "s"}: enlarge the terminal`), o.columns)];
}

/**
 * Draws boards on a terminal (stdout): the alternate screen and a hidden cursor while it is open,
 * redrawn at once when the terminal is resized (SIGWINCH), and both put back by `close()` — which the
 * monitor loop calls on every way out, and an unload handler calls if the process exits first.
 * Ctrl-Z (SIGTSTP) puts the terminal back before the process stops; SIGCONT (`fg`) draws again.
 */
export class Dashboard {
  readonly #out: { writeSync(p: Uint8Array): number };
  readonly #color: boolean;
  readonly #started = performance.now();
  #last: Board | undefined;
  #events: string[] = [];
  #open = false;
  readonly #footer: string;
  #suspended = false;
  readonly #onResize = () => this.#draw();
  readonly #onUnload = () => this.close();
  readonly #onStop = () => {
    if (!this.#open) return;
    this.#suspended = true;
    this.#write(ansiEscapes.cursorShow + ansiEscapes.exitAlternativeScreen);
    // The stop Ctrl-Z asked for: SIGTSTP is caught here, so stop the way it would have.
    Deno.kill(Deno.pid, "SIGSTOP");
  };
  readonly #onCont = () => {
    if (!this.#open || !this.#suspended) return;
    this.#suspended = false;
    this.#write(ansiEscapes.enterAlternativeScreen + ansiEscapes.cursorHide + ansiEscapes.eraseScreen);
    this.#draw();
  };

  constructor(opts: { footer?: string; color?: boolean } = {}) {
    this.#out = Deno.stdout;
    this.#color = opts.color ?? colorWanted();
    this.#footer = opts.footer ?? "stop with Ctrl-C";
  }

  open(): void {
    if (this.#open) return;
    this.#open = true;
    this.#write(ansiEscapes.enterAlternativeScreen + ansiEscapes.cursorHide + ansiEscapes.eraseScreen);
    if (Deno.build.os !== "windows") {
      Deno.addSignalListener("SIGWINCH", this.#onResize);
      Deno.addSignalListener("SIGTSTP", this.#onStop);
      Deno.addSignalListener("SIGCONT", this.#onCont);
    }
    globalThis.addEventListener("unload", this.#onUnload);
  }

  draw(b: Board): void {
    this.#last = b;
    this.#draw();
  }

  /** A note shown under the board while it is open; `close()` hands them back for the log. */
  event(text: string): void {
    this.#events.push(text);
    this.#draw();
  }

  /** Leaves the alternate screen and shows the cursor again; returns the notes shown meanwhile. */
  close(): string[] {
    if (!this.#open) return [];
    this.#open = false;
    if (Deno.build.os !== "windows") {
      Deno.removeSignalListener("SIGWINCH", this.#onResize);
      Deno.removeSignalListener("SIGTSTP", this.#onStop);
      Deno.removeSignalListener("SIGCONT", this.#onCont);
    }
    globalThis.removeEventListener("unload", this.#onUnload);
    if (!this.#suspended) this.#write(ansiEscapes.cursorShow + ansiEscapes.exitAlternativeScreen);
    this.#suspended = false;
    const events = this.#events;
    this.#events = [];
    return events;
  }

  #draw(): void {
    if (!this.#open || this.#suspended || !this.#last) return;
    const { columns, rows } = terminalSize();
    const lines = render(this.#last, {
      columns,
      rows,
      color: this.#color,
      elapsedS: (performance.now() - this.#started) / 1000,
      events: this.#events,
      footer: this.#footer,
    });
    // From the top left, each line then the rest of its row erased; below the last line, everything.
    this.#write(
      ansiEscapes.cursorTo(0, 0) + lines.map((l) => l + ansiEscapes.eraseEndLine).join("\r\n") + ansiEscapes.eraseDown,
    );
  }

  #write(s: string): void {
    const bytes = new TextEncoder().encode(s);
    for (let off = 0; off < bytes.length;) off += this.#out.writeSync(bytes.subarray(off));
  }
}

/** The terminal's size; one that reports none (0x0, as some serial consoles do) is taken as 80x24. */
export function terminalSize(read: () => { columns: number; rows: number } = () => Deno.consoleSize()): {
  columns: number;
  rows: number;
} {
  let s = { columns: 0, rows: 0 };
  try {
    s = read();
  } catch { /* not a terminal: the defaults */ }
  return { columns: s.columns > 0 ? s.columns : DASHBOARD_COLUMNS, rows: s.rows > 0 ? s.rows : 24 };
}
