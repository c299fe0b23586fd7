/**
 * The stats listener: a UNIX socket (and, when asked, a TCP port) that answers read-only HTTP GETs and,
 * on the same socket, scx_stats' JSON-line requests (a connection whose first byte is `{`).
 *
 * A client can never hold up the command: every read and write has a deadline, a request head is at
 * most LIMITS.requestBytes, at most LIMITS.connections are served at once (the oldest silent one
 * makes room for a new one), and nothing here waits on the dataplane (answers come from the latest interval in memory).
 */
import { FastpathError } from "../../ffi/error.ts";

export const LIMITS = {
  /**
   * Connections served at once. One more closes the oldest that is still waiting for its request (a
   * flood of silent clients cannot lock a scraper out), or, when every one is being answered, itself.
   */
  connections: 32,
  /** An HTTP request's head must arrive whole within this, ms (also a JSON line once begun). */
  requestMs: 2000,
  /** ... and fit in this many bytes. */
  requestBytes: 8192,
  /** An scx_stats connection may wait this long between requests, ms (its tools ask every second or so). */
  idleMs: 30_000,
  /** An answer must be taken by the client within this, ms. */
  writeMs: 2000,
};

export interface Answer {
  status: number;
  contentType: string;
  body: string;
}

export interface StatsHandler {
  /** The answer to `GET path` (path without the query). */
  get(path: string): Promise<Answer>;
  /** The answer line to one scx_stats request line. */
  scx(line: string): string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** Serves `handler` on listeners until closed. */
export class StatsServer {
  readonly #listeners: Deno.Listener[] = [];
  /** Open connections, and since when each has been waiting for a request (null: being answered). */
  readonly #conns = new Map<Deno.Conn, { waitingSince: number | null }>();
  readonly #handler: StatsHandler;
  #socketPath: string | null = null;
  #closed = false;

  constructor(handler: StatsHandler) {
    this.#handler = handler;
  }

  /** The UNIX socket's path, if one is served. */
  get socketPath(): string | null {
    return this.#socketPath;
  }

  /**
   * Listens on a UNIX socket at `path` (mode 0660). Its directory must exist, except `ownDir` (fastpath's
   * own, /run/fastpath), which is made (mode 0755) when missing: no other directory is ever created. A
   * stale socket (nobody answers) is replaced; a live one is another program's: refused as busy, naming
   * the path.
   */
  async listenUnix(path: string, ownDir: string | null = null): Promise<void> {
    const dir = path.replace(/\/[^/]*$/, "") || "/";
    if (dir === ownDir) {
      try {
        await Deno.mkdir(dir, { mode: 0o755 });
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) {
          const denied = err instanceof Deno.errors.PermissionDenied;
          throw new FastpathError(
            denied ? "permission_denied" : "usage",
            `cannot make ${dir} for the stats socket: ${(err as Error).message}: ${
              denied && Deno.uid() !== 0 ? "run as root, or " : ""
            }choose another --stats-socket`,
          );
        }
      }
    } else if (!isDirectory(dir)) {
      throw new FastpathError(
        "usage",
        `no directory ${dir} for the stats socket --stats-socket ${path}: create it first, or choose another --stats-socket`,
      );
    }
    await removeStale(path);
    let l: Deno.Listener;
    try {
      l = Deno.listen({ transport: "unix", path });
    } catch (err) {
      throw new FastpathError(
        err instanceof Deno.errors.AddrInUse ? "busy" : "usage",
        `cannot serve stats on ${path}: ${(err as Error).message}: choose another --stats-socket`,
      );
    }
    this.#socketPath = path;
    await Deno.chmod(path, 0o660);
    this.#serve(l);
  }

  /** Listens on TCP `hostname:port`. */
  listenTcp(hostname: string, port: number): void {
    let l: Deno.Listener;
    try {
      l = Deno.listen({ hostname, port, transport: "tcp" });
    } catch (err) {
      throw new FastpathError(
        err instanceof Deno.errors.AddrInUse ? "busy" : "usage",
        `cannot serve HTTP on ${hostname}:${port}: ${(err as Error).message}: choose another --http`,
      );
    }
    this.#serve(l);
  }

  /** The TCP port served (the one the kernel chose for port 0), if any. */
  get tcpPort(): number | null {
    for (const l of this.#listeners) if (l.addr.transport === "tcp") return (l.addr as Deno.NetAddr).port;
    return null;
  }

  /** Stops listening, drops every connection and removes the socket file. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const l of this.#listeners) closeQuietly(l);
    for (const c of this.#conns.keys()) closeQuietly(c);
    this.#conns.clear();
    if (this.#socketPath) {
      try {
        Deno.removeSync(this.#socketPath);
      } catch { /* already gone */ }
    }
  }

  #serve(l: Deno.Listener): void {
    this.#listeners.push(l);
    (async () => {
      try {
        for await (const conn of l) {
          if (this.#conns.size >= LIMITS.connections && !this.#evictOldestWaiting()) {
            closeQuietly(conn);
            continue;
          }
          const state = { waitingSince: performance.now() as number | null };
          this.#conns.set(conn, state);
          this.#handle(conn, state).catch(() => {}).finally(() => {
            this.#conns.delete(conn);
            closeQuietly(conn);
          });
        }
      } catch {
        // The listener was closed.
      }
    })();
  }

  /** Closes the connection that has waited longest for a request; false when none is waiting. */
  #evictOldestWaiting(): boolean {
    let oldest: Deno.Conn | null = null;
    let since = Infinity;
    for (const [c, s] of this.#conns) {
      if (s.waitingSince !== null && s.waitingSince < since) [oldest, since] = [c, s.waitingSince];
    }
    if (!oldest) return false;
    this.#conns.delete(oldest);
    closeQuietly(oldest);
    return true;
  }

  async #handle(conn: Deno.Conn, state: { waitingSince: number | null }): Promise<void> {
    const r = new Reader(conn);
    const first = await r.fill(Date.now() + LIMITS.requestMs);
    if (!first) return;
    if (r.buf[0] === 0x7b /* { */) return await this.#scx(conn, r, state);
    await this.#http(conn, r, state);
  }

  /** One request per connection, answered, then closed. */
  async #http(conn: Deno.Conn, r: Reader, state: { waitingSince: number | null }): Promise<void> {
    const until = Date.now() + LIMITS.requestMs;
    let end: number;
    while ((end = headEnd(r.buf)) < 0) {
      if (r.buf.length > LIMITS.requestBytes) {
        return await answer(conn, { status: 431, contentType: "text/plain", body: "request too large\n" }, false);
      }
      if (!(await r.fill(until))) return;
    }
    if (end > LIMITS.requestBytes) {
      return await answer(conn, { status: 431, contentType: "text/plain", body: "request too large\n" }, false);
    }
    state.waitingSince = null;
    const line = dec.decode(r.buf.subarray(0, end)).split(/\r?\n/)[0];
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(line);
    if (!m) return await answer(conn, { status: 400, contentType: "text/plain", body: "bad request line\n" }, false);
    const [, method, target] = m;
    if (method !== "GET" && method !== "HEAD") {
      return await answer(
        conn,
        { status: 405, contentType: "text/plain", body: "read-only: only GET and HEAD\n" },
        false,
        "Allow: GET, HEAD\r\n",
      );
    }
    let a: Answer;
    try {
      a = await this.#handler.get(target.split("?")[0]);
    } catch (err) {
      a = { status: 500, contentType: "text/plain", body: `${(err as Error).message}\n` };
    }
    await answer(conn, a, method === "HEAD");
  }

  /** scx_stats: request lines answered in turn until the client closes or idles past LIMITS.idleMs. */
  async #scx(conn: Deno.Conn, r: Reader, state: { waitingSince: number | null }): Promise<void> {
    while (true) {
      state.waitingSince = performance.now();
      let nl: number;
      let until = Date.now() + LIMITS.requestMs;
      while ((nl = r.buf.indexOf(0x0a)) < 0) {
        if (r.buf.length > LIMITS.requestBytes) {
          await writeAll(conn, enc.encode(this.#handler.scx("(request line too long)") + "\n"));
          return;
        }
        if (r.buf.length === 0) until = Date.now() + LIMITS.idleMs;
        if (!(await r.fill(until))) return;
      }
      state.waitingSince = null;
      const line = dec.decode(r.buf.subarray(0, nl));
      r.buf = r.buf.subarray(nl + 1);
      if (!(await writeAll(conn, enc.encode(this.#handler.scx(line) + "\n")))) return;
    }
  }
}

/** Bytes read so far from a connection, and more of them before a deadline. */
class Reader {
  buf = new Uint8Array(0);
  readonly #chunk = new Uint8Array(4096);
  constructor(readonly conn: Deno.Conn) {}

  /** Appends what arrives before `until` (ms since the epoch); false when the peer closed or was too slow. */
  async fill(until: number): Promise<boolean> {
    const n = await withDeadline(this.conn, this.conn.read(this.#chunk), until);
    if (n === null || n === undefined) return false;
    const next = new Uint8Array(this.buf.length + n);
    next.set(this.buf);
    next.set(this.#chunk.subarray(0, n), this.buf.length);
    this.buf = next;
    return true;
  }
}

/**
 * `op`'s result, or undefined if it failed or `until` passed first — then the connection is closed,
 * which also ends `op`.
 */
async function withDeadline<T>(conn: Deno.Conn, op: Promise<T>, until: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), Math.max(0, until - Date.now()))));
  try {
    const v = await Promise.race([op.catch(() => undefined), late]);
    if (v === undefined) closeQuietly(conn);
    return v;
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<boolean> {
  const until = Date.now() + LIMITS.writeMs;
  for (let off = 0; off < bytes.length;) {
    const n = await withDeadline(conn, conn.write(bytes.subarray(off)), until);
    if (!n) return false;
    off += n;
  }
  return true;
}

async function answer(conn: Deno.Conn, a: Answer, head: boolean, extra = ""): Promise<void> {
  const body = enc.encode(a.body);
  const headers = `HTTP/1.1 ${a.status} ${REASONS[a.status] ?? ""}\r\nContent-Type: ${a.contentType}\r\n` +
    `Content-Length: ${body.length}\r\nCache-Control: no-store\r\nConnection: close\r\n${extra}\r\n`;
  await writeAll(conn, head ? enc.encode(headers) : concat(enc.encode(headers), body));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Where the request head ends (after its blank line), or -1. */
function headEnd(buf: Uint8Array): number {
  for (let i = 0; i + 1 < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

/** Removes a socket file nobody answers on; refuses a live socket or a file that is not a socket. */
async function removeStale(path: string): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket) {
    throw new FastpathError("usage", `${path} exists and is not a socket: choose another --stats-socket`);
  }
  try {
    const c = await Deno.connect({ transport: "unix", path });
    c.close();
  } catch {
    Deno.removeSync(path);
    return;
  }
  throw new FastpathError(
    "busy",
    `another program serves stats on ${path} (a fastpath still running?): stop it, or choose another --stats-socket`,
  );
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch { /* already closed */ }
}
