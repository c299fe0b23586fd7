/** The one error type for everything that fails below the TypeScript surface. */
export class FastpathError extends Error {
  /** `code` is the native status name (e.g. `no_such_device`) or a TypeScript-side reason. */
  constructor(readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FastpathError";
  }

  /** The process exit code documented in `fastpath --help`. */
  get exitCode(): number {
    return EXIT_CODES[this.code] ?? 1;
  }
}

/** Exit codes by error code: documented in main.ts help and README. */
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
};
