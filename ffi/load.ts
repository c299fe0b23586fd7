/**
 * Finds and opens libfastpath, checks its ABI version, and turns native statuses into FastpathError.
 *
 * Search order (every path tried is listed in the error):
 *   1. $FASTPATH_LIB
 *   2. the development build: zig/zig-out/lib/libfastpath.{so,dylib}
 *   3. the copy embedded by `deno compile --include`, extracted to a cache directory (dlopen needs a
 *      real file)
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
  /** Throws a FastpathError carrying the native message unless `status` is 0 ("what: message"). */
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
  return Array.from(new Uint8Array(digest).slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

function cacheDir(): string {
  const base = Deno.env.get("XDG_CACHE_HOME") ??
    (Deno.env.get("HOME") ? `${Deno.env.get("HOME")}/.cache` : "/tmp");
  return `${base}/fastpath`;
}

/** Copies an embedded library out of a `deno compile` image to a content-addressed cache path. */
async function extractEmbedded(embedded: string): Promise<string> {
  const bytes = await Deno.readFile(embedded);
  const dir = `${cacheDir()}/${await sha256Hex(bytes)}`;
  const target = `${dir}/${libName}`;
  try {
    if ((await Deno.stat(target)).size === bytes.length) return target;
  } catch { /* not extracted yet */ }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${target}.${Deno.pid}`;
  await Deno.writeFile(tmp, bytes, { mode: 0o755 });
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
  throw new FastpathError(code, `${what}: ${message}`);
}

export { cstring };
