/**
 * Whether stdout is systemd's journal, and how often interval lines go there. A service's stdout is
 * not a terminal, so the live-monitor loop would write one JSON object per interval (about 700 bytes a
 * second from a reflector, 60 MB a day) into the journal. Under systemd the numbers are the stats
 * socket's business; the journal gets one line a minute, each counting from the line before.
 */

/** The journal's interval lines are at least this far apart (or --interval-ms, if longer). */
export const JOURNAL_EVERY_MS = 60_000;

/**
 * True when stdout is the stream systemd's journal reads: JOURNAL_STREAM (`DEV:INODE`, set by systemd
 * for a service whose output goes to the journal) names the file stdout is (systemd.exec(5)).
 */
export function stdoutIsJournal(): boolean {
  const want = Deno.env.get("JOURNAL_STREAM");
  if (!want || Deno.build.os !== "linux") return false;
  try {
    const st = Deno.statSync("/proc/self/fd/1");
    return want === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}
