/**
 * Finds and opens libfastpath, checks its ABI version, and turns native statuses into FastpathError.
 *
 * Search order (every path tried is listed in the error):
 *   1. $FASTPATH_LIB
 *   2. the development build: zig/zig-out/lib/libfastpath.{so,dylib}
 *   3. the copy embedded by `deno compile --include`, extracted to a private directory (dlopen needs
 *      a real file; see `extractEmbedded`)
 */
import { ABI_VERSION, symbols } from "./symbols.ts";
import { FastpathError } from "./error.ts";
import { Layout } from "./layout.ts";
import { checkLayout } from "./enums.ts";

export type Native = Deno.DynamicLibrary<typeof symbols>["symbols"];

/** The loaded library: its symbols, its layout, where it was found, and `unwrap` bound to it. */
export interface Lib {
  native: Native;
  layout: Layout;
  path: string;
  /** Throws a FastpathError carrying the native message unless `status` is 0 ("what: message"; the message alone for a `what` of ""). */
  unwrap(status: number, what: string): void;
}

const libName = Deno.build.os === "darwin" ? "libfastpath.dylib" : "libfastpath.so";
const devPath = new URL(`../zig/zig-out/lib/${libName}`, import.meta.url);

let loaded: Lib | undefined;

function cstring(ptr: Deno.PointerValue): string {
  return ptr === null ? "" : Deno.UnsafePointerView.getCString(ptr);
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Where an embedded library is extracted: for root /run/fastpath/lib (the service unit keeps
 * /run/fastpath writable), else $XDG_CACHE_HOME/fastpath or ~/.cache/fastpath. Never a shared
 * directory such as /tmp, where another user could plant a library for us to open.
 */
export function cacheDir(
  uid: number | null = Deno.uid(),
  env: (k: string) => string | undefined = (k) => Deno.env.get(k),
): string {
  if (uid === 0) return "/run/fastpath/lib";
  const base = env("XDG_CACHE_HOME") || (env("HOME") ? `${env("HOME")}/.cache` : undefined);
  if (!base) throw new Error("neither XDG_CACHE_HOME nor HOME is set: set one, or FASTPATH_LIB");
  return `${base}/fastpath`;
}

/** Throws unless `path` is a real directory (not a link) of ours (or root's), writable by no one else. */
async function checkPrivate(path: string, owners: Array<number | null>): Promise<void> {
  const st = await Deno.lstat(path);
  if (!st.isDirectory) throw new Error(`${path} is not a directory: remove it`);
  if (!owners.includes(st.uid)) throw new Error(`${path} belongs to uid ${st.uid}, not to us: remove it`);
  if ((st.mode ?? 0) & 0o022) {
    throw new Error(`${path} is writable by others (mode ${((st.mode ?? 0) & 0o777).toString(8)}): chmod go-w it`);
  }
}

/**
 * Copies an embedded library out of a `deno compile` image (dlopen needs a real file) to
 * `dir`/<its SHA-256>/: directories of ours, created 0700 and checked before use, and an existing copy
 * used only when its content hashes the same (anything else there is replaced).
 */
export async function extractEmbedded(embedded: string, where?: string): Promise<string> {
  const bytes = await Deno.readFile(embedded);
  const dir = where ?? cacheDir();
  const hash = await sha256Hex(bytes);
  const uid = Deno.uid();
  const parent = dir.replace(/\/[^/]+\/?$/, "") || "/";
  // The parent may be shared by design (/run/fastpath holds the stats sockets): created as usual.
  await Deno.mkdir(parent, { recursive: true, mode: 0o755 });
  await checkPrivate(parent, [uid, 0]);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await checkPrivate(dir, [uid]);
  const sub = `${dir}/${hash.slice(0, 16)}`;
  await Deno.mkdir(sub, { recursive: true, mode: 0o700 });
  await checkPrivate(sub, [uid]);
  const target = `${sub}/${libName}`;
  try {
    const st = await Deno.lstat(target);
    if (st.isFile && st.uid === uid && await sha256Hex(await Deno.readFile(target)) === hash) return target;
  } catch { /* not extracted yet */ }
  const tmp = `${target}.${Deno.pid}`;
  await Deno.remove(tmp).catch(() => {});
  await Deno.writeFile(tmp, bytes, { mode: 0o700, createNew: true });
  await Deno.rename(tmp, target);
  return target;
}

function open(path: string) {
  return Deno.dlopen(path, symbols);
}

/** Opens the library once per process. */
export async function load(): Promise<Lib> {
  if (loaded) return loaded;
  const tried: string[] = [];
  const candidates: Array<() => Promise<string>> = [];
  // An explicit override is the only candidate: silently loading another copy would hide the mistake.
  const override = Deno.env.get("FASTPATH_LIB");
  if (override) candidates.push(() => Promise.resolve(override));
  else {
    candidates.push(() => Promise.resolve(devPath.pathname));
    candidates.push(() => extractEmbedded(devPath.pathname));
  }
  for (const candidate of candidates) {
    let path = "";
    try {
      path = await candidate();
      const lib = open(path);
      const abi = lib.symbols.fp_abi_version();
      if (abi !== ABI_VERSION) {
        lib.close();
        throw new FastpathError(
          "library",
          `${path} has ABI version ${abi}, this fastpath needs ${ABI_VERSION}: rebuild it with 'cd zig && zig build'`,
        );
      }
      const json = JSON.parse(cstring(lib.symbols.fp_layout_json()));
      try {
        checkLayout(json);
      } catch (err) {
        lib.close();
        throw new FastpathError("library", `${path}: ${(err as Error).message}: rebuild it with 'scripts/build'`);
      }
      const native = lib.symbols;
      const layout = new Layout(json);
      loaded = { native, layout, path, unwrap: (status, what) => unwrap(native, layout, status, what) };
      return loaded;
    } catch (err) {
      if (err instanceof FastpathError) throw err;
      tried.push(`${path || "(embedded copy)"}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new FastpathError(
    "library",
    `cannot load ${libName}; tried:\n  ${tried.join("\n  ")}\n` +
      `build it with 'scripts/setup && (cd zig && ../.tools/bin/zig build)' or set FASTPATH_LIB`,
  );
}

function unwrap(native: Native, layout: Layout, status: number, what: string): void {
  if (status === 0) return;
  const code = layout.enumName("Status", status) ?? `status_${status}`;
  const message = cstring(native.fp_last_error()) || code.replaceAll("_", " ");
  throw new FastpathError(code, what ? `${what}: ${message}` : message);
}

export { cstring };
