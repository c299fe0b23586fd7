/**
 * The one error type for everything that fails below the TypeScript surface.
 *
 * Messages name options as the scripting API spells them, marked with backticks by whoever wrote the
 * message (the library or a TypeScript parser): "`sliceMinUs` must be 10 to `sliceUs` (5000), not 9000".
 * `message` has the marks removed; the CLI turns each marked name into its flag (`--slice-min-us`).
 */
export class FastpathError extends Error {
  /** The message with option names still marked, for the CLI to spell as flags. */
  readonly marked: string;

  /** `code` is the native status name (e.g. `no_such_device`) or a TypeScript-side reason. */
  constructor(readonly code: string, message: string, options?: ErrorOptions) {
    super(apiText(message), options);
    this.name = "FastpathError";
    this.marked = message;
  }

  /** The process exit code documented in `fastpath --help`. */
  get exitCode(): number {
    return EXIT_CODES[this.code] ?? 1;
  }
}

const MARK = /`([A-Za-z][A-Za-z0-9]*)`/g;

/** A library message as a script sees it: option names unmarked ("sliceMinUs"). */
export function apiText(s: string): string {
  return s.replace(MARK, "$1");
}

/** A library message as the CLI prints it: each marked option name spelled as its flag ("--slice-min-us"). */
export function cliText(s: string): string {
  return s.replace(MARK, (_, name: string) => `--${kebab(name)}`);
}

/** "sliceMinUs" → "slice-min-us": how every API option name becomes its CLI flag. */
export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** "sliceMinUs" → "slice_min_us", "rxL2Mbps" → "rx_l2_mbps": how API names become struct fields and JSON keys. */
export function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Exit codes by error code: documented in the CLI's help and the README. */
export const EXIT_CODES: Record<string, number> = {
  usage: 2,
  invalid_argument: 2,
  permission_denied: 3,
  no_such_device: 4,
  interface_down: 5,
  unsupported: 6,
  busy: 7,
  library: 8,
  timeout: 9,
  failed: 10,
  ejected: 11,
  /** Stopped by SIGINT (the CLI exits 143 for SIGTERM). */
  interrupted: 130,
};
