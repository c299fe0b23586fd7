/**
 * `deno task compile` (scripts/compile): the single binary. Deno's download host, where deno compile
 * gets its runtime (denort), is not reachable on the test machines, so the binary itself runs only
 * where it is (the last step says why it did not); what is checked everywhere: the refusals, and with
 * a stand-in runtime in DENORT_BIN (a do-nothing program of the target's format, built by zig), that the
 * target's own cross-compiled library is what gets embedded.
 */
import assert from "node:assert/strict";
import { isRoot, labPrefix, ROOT, skipUnless, smallLabRun } from "./helpers.ts";
import { run } from "../src/net.ts";

const COMPILE = `${ROOT}/scripts/compile`;
const PREFIX = labPrefix("fpbin");

async function compile(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(COMPILE, {
    args,
    env,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(900_000), // a cold cross-compile of the library takes minutes
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs `f` with a temporary directory, removed afterwards. */
async function inTemp<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "fastpath-compile-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  // Both are binaries of megabytes: compare as latin1 strings, one byte per character.
  const dec = new TextDecoder("latin1");
  return dec.decode(hay).includes(dec.decode(needle));
}

Deno.test("deno task compile", async (t) => {
  await t.step("an unknown target is a usage error (exit 2) naming the four it builds", async () => {
    const r = await compile(["--target", "sparc-linux"]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      "scripts/compile: unknown target 'sparc-linux': use x86_64-linux, aarch64-linux, aarch64-macos or x86_64-macos\n",
    );
  });

  await t.step(
    "DENORT_BIN naming the full deno CLI is refused in one line (exit 6), before anything is built",
    async () => {
      const r = await compile([], { DENORT_BIN: Deno.execPath() });
      assert.equal(r.code, 6);
      assert.match(
        r.stderr,
        /^scripts\/compile: DENORT_BIN=\S+ is the full deno CLI, not denort \(a program compiled on it starts the Deno CLI instead\): use the unzipped denort of Deno \d+\.\d+\.\d+\n$/,
      );
    },
  );

  await t.step(
    "DENORT_BIN that is not a program of the target's format is refused in one line (exit 6), before anything is built",
    async () => {
      await inTemp(async (dir) => {
        await Deno.writeTextFile(`${dir}/denort`, "#!/bin/sh\necho not a runtime\n");
        await Deno.chmod(`${dir}/denort`, 0o755);
        const r = await compile(["--target", "x86_64-linux"], {
          DENORT_BIN: `${dir}/denort`,
          FASTPATH_DIST: `${dir}/dist`,
        });
        assert.equal(r.code, 6, r.stderr);
        assert.match(
          r.stderr,
          /^scripts\/compile: DENORT_BIN=\S+ is not a Linux program \(ELF\): use the unzipped denort-x86_64-unknown-linux-gnu of Deno \d+\.\d+\.\d+\n$/,
        );
        const mac = await compile(["--target", "aarch64-macos"], {
          DENORT_BIN: `${dir}/denort`,
          FASTPATH_DIST: `${dir}/dist`,
        });
        assert.equal(mac.code, 6, mac.stderr);
        assert.match(mac.stderr, /is not a macOS program \(Mach-O\)/);
      });
    },
  );

  // What each target's library starts with: ELF for AArch64 (e_machine 183), Mach-O for arm64.
  const targets = [
    ["aarch64-linux", "libfastpath.so", (b: Uint8Array) => b[0] === 0x7f && b[1] === 0x45 && b[18] === 183],
    ["aarch64-macos", "libfastpath.dylib", (b: Uint8Array) => b[0] === 0xcf && b[1] === 0xfa && b[7] === 0x01],
  ] as const;
  for (const [target, libName, isTargets] of targets) {
    await t.step(`with a runtime in DENORT_BIN, ${target}'s own cross-compiled library is embedded`, async () => {
      await inTemp(async (dir) => {
        // A stand-in runtime of the target's format: deno compile appends the program to what DENORT_BIN names.
        const zigTarget = target === "aarch64-linux" ? "aarch64-linux-musl" : target;
        const rtDir = `${dir}/rt`, dist = `${dir}/dist`;
        await Deno.mkdir(rtDir);
        await Deno.writeTextFile(`${rtDir}/rt.zig`, "pub fn main() void {}\n");
        const rt = await run([
          `${ROOT}/.tools/bin/zig`,
          "build-exe",
          `${rtDir}/rt.zig`,
          "-target",
          zigTarget,
          "-O",
          "ReleaseSmall",
          `-femit-bin=${rtDir}/denort`,
          "--cache-dir",
          `${rtDir}/zig-cache`,
          "--global-cache-dir",
          `${rtDir}/zig-cache`,
        ]);
        assert.equal(rt.code, 0, rt.stderr);
        const dev = `${ROOT}/zig/zig-out/lib/libfastpath.so`;
        const devBefore = await Deno.stat(dev).then((s) => s.mtime?.getTime()).catch(() => null);
        const r = await compile(["--target", target], { DENORT_BIN: `${rtDir}/denort`, FASTPATH_DIST: dist });
        assert.equal(r.code, 0, r.stderr);
        const lib = await Deno.readFile(`${ROOT}/zig/zig-out/cross/${target}/lib/${libName}`);
        assert.ok(isTargets(lib), `the library is built for ${target}`);
        assert.ok(contains(await Deno.readFile(`${dist}/fastpath-${target}`), lib), "that library is embedded");
        const devAfter = await Deno.stat(dev).then((s) => s.mtime?.getTime()).catch(() => null);
        assert.equal(devAfter, devBefore, "the development build in zig/zig-out/lib is left as it was");
        assert.deepEqual([...Deno.readDirSync(dist)].map((e) => e.name), [`fastpath-${target}`]);
        // A build that fails after staging the sources (its output path is a directory) leaves nothing.
        await Deno.remove(`${dist}/fastpath-${target}`);
        await Deno.mkdir(`${dist}/fastpath-${target}`);
        const failed = await compile(["--target", target], { DENORT_BIN: `${rtDir}/denort`, FASTPATH_DIST: dist });
        assert.notEqual(failed.code, 0, "deno compile cannot write over a directory");
        assert.deepEqual([...Deno.readDirSync(dist)].map((e) => e.name), [`fastpath-${target}`], "no stage, no tmp");
      });
    });
  }

  await t.step(
    "the compiled binary runs from a directory without the source tree (--version, doctor, a lab run)",
    async () => {
      await inTemp(async (dir) => {
        const r = await compile([], { FASTPATH_DIST: dir });
        if (r.code === 6) {
          // The one-line answer, naming the way out.
          assert.match(
            r.stderr,
            /^scripts\/compile: cannot fetch Deno's runtime \(denort [\d.]+ for \S+\): .*DENORT_BIN=\/path\/to\/denort\n$/,
          );
          skipUnless(false, `no compiled binary to run here: ${r.stderr.trim()}`);
          return;
        }
        assert.equal(r.code, 0, r.stderr);
        const bin = `${dir}/bin/fastpath`;
        await Deno.mkdir(`${dir}/bin`);
        await Deno.rename(`${dir}/fastpath`, bin);
        // Run where no source is: cwd and HOME (the library's extraction cache) in the temporary directory.
        const env = { HOME: dir, XDG_CACHE_HOME: `${dir}/cache`, NO_COLOR: "1" };
        const fp = async (...args: string[]) => {
          const out = await new Deno.Command(bin, { args, cwd: dir, env, stdout: "piped", stderr: "piped" }).output();
          const dec = new TextDecoder();
          return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
        };
        const version = await fp("--version");
        assert.equal(version.code, 0, version.stderr);
        assert.match(version.stdout, /^fastpath \d+\.\d+\.\d+/);
        const doctor = await fp("doctor", "--format", "json");
        assert.equal(JSON.parse(doctor.stdout).type, "doctor_report", doctor.stderr);
        if (skipUnless(isRoot, "the compiled binary's lab run needs root (network namespaces)")) return;
        const lab = await fp(...smallLabRun(PREFIX, 1), "--format", "json");
        assert.equal(lab.code, 0, lab.stderr);
        const result = lab.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((o) =>
          o.type === "lab_result"
        );
        assert.ok(result?.probe.received > 0, lab.stdout);
        const left = (await run(["ip", "netns", "list"])).stdout;
        assert.doesNotMatch(left, new RegExp(`^${PREFIX}-`, "m"), "the lab is gone");
      });
    },
  );
});
