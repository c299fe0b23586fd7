/**
 * The signals that stop a command, or a script's labs, and the exit code of a run they interrupt (128 +
 * the signal's number, signal(7)): SIGINT (Ctrl-C), SIGTERM, SIGHUP (its terminal closed) and SIGQUIT
 * (Ctrl-\), so each exit path cleans up - a lab's namespaces, a partial-mode scheduler's threads put back
 * to their own policy. The one list the CLI (cli/monitor.ts) and the library (lab.ts) stop on.
 */
export const STOP_SIGNALS = [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129], ["SIGQUIT", 131]] as const;

/** The exit code of a run `signal` interrupted (130 for one not in STOP_SIGNALS). */
export function interruptedExit(signal: string): number {
  return STOP_SIGNALS.find(([s]) => s === signal)?.[1] ?? 130;
}
