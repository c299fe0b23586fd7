/**
 * A client of the stats socket for the tests (tests/stats_test.ts, tests/vm/sched.vmtest.ts): raw HTTP
 * over a UNIX socket, scx_stats request lines, and the Prometheus text-format parser (an npm package).
 */
import parse from "parse-prometheus-text-format";
import { waitFor } from "./helpers.ts";

export interface Family {
  name: string;
  type: string;
  metrics: Array<{ value: string; labels?: Record<string, string> }>;
}

/** Prometheus text exposition parsed by parse-prometheus-text-format (not a regex of ours). */
export function parsePrometheus(text: string): Family[] {
  return parse(text) as Family[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Reads a connection into `text` as it arrives; `closed` once the peer closed it. */
export function reader(conn: Deno.Conn) {
  const r = { text: "", closed: false, done: Promise.resolve() };
  r.done = (async () => {
    const buf = new Uint8Array(65536);
    try {
      for (let n; (n = await conn.read(buf)) !== null;) r.text += dec.decode(buf.subarray(0, n));
    } catch { /* closed */ }
    r.closed = true;
  })();
  return r;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Everything a connection sends back until it closes, or what came within `ms`. */
async function readAll(conn: Deno.Conn, ms = 5000): Promise<string> {
  const r = reader(conn);
  await Promise.race([r.done, sleep(ms)]);
  return r.text;
}

/** A raw HTTP/1.1 GET over a UNIX socket: status, headers (lower-case names) and body. */
export async function get(path: string, target: string) {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(enc.encode(`GET ${target} HTTP/1.1\r\nHost: fastpath\r\n\r\n`));
    const raw = await readAll(conn);
    const [head, ...rest] = raw.split("\r\n\r\n");
    const [statusLine, ...lines] = head.split("\r\n");
    const headers = new Map(lines.map((l) => [l.split(":")[0].toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
    return { status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") };
  } finally {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

/** Sends request lines on one connection and returns the answer lines. */
export async function scxRequests(path: string, lines: string[]): Promise<Array<Record<string, any>>> {
  const conn = await Deno.connect({ transport: "unix", path });
  const r = reader(conn);
  try {
    const answers: Array<Record<string, any>> = [];
    for (const l of lines) {
      await conn.write(enc.encode(l + "\n"));
      await waitFor(() => r.text.includes("\n") || r.closed, `an answer to ${l}`);
      const nl = r.text.indexOf("\n");
      answers.push(JSON.parse(r.text.slice(0, nl)));
      r.text = r.text.slice(nl + 1);
    }
    return answers;
  } finally {
    conn.close();
  }
}
