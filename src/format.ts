/** Human-readable numbers and tables for the CLI. */

export function si(n: number, unit: string, digits = 1): string {
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(digits)} G${unit}`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(digits)} M${unit}`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(digits)} k${unit}`;
  return `${n.toFixed(abs >= 100 || Number.isInteger(n) ? 0 : digits)} ${unit}`;
}

export function pps(n: number): string {
  return si(n, "pps");
}

export function mbps(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(2)} Gbit/s` : `${n.toFixed(1)} Mbit/s`;
}

/** A duration given in microseconds, in µs, ms or s, whichever reads best. */
export function us(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} s`;
  return n >= 1000 ? `${(n / 1000).toFixed(2)} ms` : `${n.toFixed(1)} µs`;
}

export function pct(n: number): string {
  return n === 0 ? "0 %" : n < 0.001 ? `${n.toExponential(1)} %` : `${n.toFixed(3)} %`;
}

/** A plain aligned table: first column left-aligned, the rest right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/**
 * Writes a status line that replaces itself on a terminal: with a carriage return and spaces on
 * TERM=dumb, which knows no escape codes.
 */
export class StatusLine {
  readonly #tty = Deno.stderr.isTerminal();
  readonly #dumb = Deno.env.get("TERM") === "dumb";
  #shown = 0;

  get tty(): boolean {
    return this.#tty;
  }

  show(text: string): void {
    if (!this.#tty) return;
    const width = Deno.consoleSize?.().columns || 80;
    const t = text.slice(0, width - 1);
    const out = this.#dumb ? `\r${t.padEnd(this.#shown)}` : `\r\x1b[K${t}`;
    Deno.stderr.writeSync(new TextEncoder().encode(out));
    this.#shown = t.length;
  }

  clear(): void {
    if (this.#tty && this.#shown) {
      Deno.stderr.writeSync(new TextEncoder().encode(this.#dumb ? `\r${" ".repeat(this.#shown)}\r` : "\r\x1b[K"));
    }
    this.#shown = 0;
  }
}
