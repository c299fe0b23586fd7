import assert from "node:assert/strict";
import { cacheDir, extractEmbedded, load } from "../ffi/load.ts";
import { ABI_VERSION } from "../ffi/symbols.ts";
import { checkLayout } from "../ffi/enums.ts";
import { FastpathError, snake } from "../ffi/error.ts";
import { Reflector } from "../src/reflector.ts";
import { checkForeground, noSchedExt, SCHED_KNOBS, Scheduler } from "../src/sched.ts";
import { DETECT_KNOBS } from "../src/detect.ts";
import { DENO, ROOT, skipUnless } from "./helpers.ts";

async function runScript(code: string, env: Record<string, string>, cwd: string) {
  const out = await new Deno.Command(DENO, {
    args: ["eval", "--unstable-ffi", code],
    env: { NO_COLOR: "1", ...env },
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout), stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("the FFI layer", async (t) => {
  await t.step("loads the library and agrees on the ABI version", async () => {
    const { native, layout, path } = await load();
    assert.equal(native.fp_abi_version(), ABI_VERSION);
    assert.equal(layout.json.abi_version, ABI_VERSION);
    assert.match(path, /libfastpath\.(so|dylib)$/);
  });

  await t.step("carries its own libbpf 1.4 or newer and needs only libc", async () => {
    const { native, path } = await load();
    const v = native.fp_libbpf_version();
    assert.equal(v >> 16, 1);
    assert.ok((v & 0xffff) >= 4, `libbpf 1.${v & 0xffff}`);
    if (Deno.build.os === "linux") {
      const out = await new Deno.Command("ldd", { args: [path], stdout: "piped" }).output();
      const libs = new TextDecoder().decode(out.stdout).split("\n").map((l) => l.trim().split(/\s/)[0]).filter(Boolean);
      const foreign = libs.filter((l) =>
        !/^(linux-vdso|libc|ld-linux|libm|libpthread|libdl|librt)\b/.test(l.replace(/^\/.*\//, ""))
      );
      assert.deepEqual(foreign, [], `ldd lists ${libs.join(", ")}`);
    }
  });

  await t.step("reads every struct offset from the library, with 64-byte counter blocks", async () => {
    const { layout } = await load();
    const c = layout.struct("Counters");
    assert.equal(c.size % 64, 0);
    for (
      const name of [
        "rx_packets",
        "tx_packets",
        "tx_bytes",
        "sig_dataot",
        "drop_not_ours",
        "drop_oui",
        "drop_port",
        "drop_signature",
        "drop_tx_error",
      ]
    ) {
      assert.equal(c.fields[name]?.type, "u64", name);
    }
    assert.equal(layout.enumValue("Status", "ok"), 0);
    assert.equal(layout.field("ReflectorOptions", "ifname").type, "u8[16]");
  });

  await t.step(
    "TypeScript knows every enum value and counter the library describes, and refuses one it does not",
    async () => {
      const { layout } = await load();
      checkLayout(layout.json); // what load() already did
      const withEnum = structuredClone(layout.json);
      withEnum.enums.ReflectorState.zombie = 9;
      assert.throws(() => checkLayout(withEnum), /enum ReflectorState has zombie, which TypeScript does not know/);
      const withCounter = structuredClone(layout.json);
      withCounter.structs.SchedCounters.fields.input_boosts = { offset: 128, type: "u64" };
      assert.throws(() => checkLayout(withCounter), /struct SchedCounters has counters input_boosts/);
      const without = structuredClone(layout.json);
      delete without.enums.Dataplane.bpf;
      assert.throws(() => checkLayout(without), /enum Dataplane lacks bpf/);
      // A state value TypeScript cannot name is an error, not "state 9".
      assert.throws(() => layout.key("ReflectorState", 9), /no value 9/);
    },
  );

  await t.step(
    "every knob the library takes has its one default in SCHED_KNOBS or DETECT_KNOBS, and no other",
    async () => {
      const { layout } = await load();
      const fields = Object.keys(layout.struct("SchedOptions").fields)
        .filter((f) => !["stall_tgid", "partial", "signals", "detect"].includes(f)).sort();
      assert.deepEqual(Object.keys(SCHED_KNOBS).map(snake).sort(), fields);
      const detect = Object.keys(layout.struct("DetectKnobs").fields).filter((f) => f !== "signals_off").sort();
      assert.deepEqual(Object.keys(DETECT_KNOBS).map(snake).sort(), detect);
    },
  );

  await t.step("the histogram bounds in TypeScript invert the native bucket function", async () => {
    const { layout } = await load();
    for (let i = 1; i < layout.json.hist_buckets; i++) assert.ok(layout.histLower(i) > layout.histLower(i - 1));
    assert.equal(layout.histLower(16), 16);
    assert.equal(layout.histLower(32), 32);
    assert.equal(layout.histLower(33), 34);
  });

  await t.step("a native failure becomes one FastpathError carrying the native message", async () => {
    const err = await Reflector.start({ iface: "fp-missing0" }).then(() => undefined, (e) => e);
    assert.ok(err instanceof FastpathError);
    assert.equal(err.code, "no_such_device");
    assert.equal(err.exitCode, 4);
    assert.equal(err.message, "cannot reflect on fp-missing0: no interface named 'fp-missing0' (see 'ip link')");
  });

  await t.step("close(NULL) is a no-op on the native side", async () => {
    const { native } = await load();
    native.fp_reflector_close(null);
    native.fp_probe_close(null);
    native.fp_sched_close(null);
  });

  await t.step("the scheduler's preflight and start name what is missing on this kernel", async () => {
    const hasScx = await Deno.stat("/sys/kernel/sched_ext").then(() => true, () => false);
    if (skipUnless(!hasScx, "this kernel has sched_ext; tests/vm/sched.vmtest.ts covers attaching")) return;
    for (const attempt of [() => Scheduler.preflight(), () => Scheduler.start({})]) {
      const err = await attempt().then(() => undefined, (e) => e);
      assert.ok(err instanceof FastpathError);
      assert.equal(err.code, "unsupported");
      assert.equal(err.exitCode, 6);
      // "boot Linux 6.12 or newer" only where the kernel is older than that (src/sched.ts noSchedExt).
      assert.ok(err.message.endsWith(noSchedExt(Deno.osRelease())), err.message);
    }
  });

  await t.step("bad scheduler tunables are refused before the kernel is asked", async () => {
    const err = await Scheduler.start({ sliceUs: 5000, sliceMinUs: 9000 }).then(() => undefined, (e) => e);
    assert.ok(err instanceof FastpathError);
    assert.equal(err.code, "invalid_argument");
    // Named as scripts spell the knobs; the CLI prints the same message with its flags (tests/vm).
    // A fault of the knobs, not a failure to attach: no "cannot attach the scheduler:" before it.
    assert.equal(err.message, "sliceMinUs must be 10 to sliceUs (5000), not 9000");
  });

  await t.step("a foreground entry start refuses, setForeground refuses too (one check)", () => {
    // setForeground once took "", -1, 0, 1.5, NaN, "a/b" and PIDs past PID_MAX: "" emptied the set.
    // 1e30, a whole number past any PID, was taken as the process name "1e+30".
    for (const bad of ["", " ", -1, 0, 1.5, NaN, 1e30, "a/b", "a\0b", 99999999, "x".repeat(256)]) {
      const err = (() => {
        try {
          checkForeground([bad]);
        } catch (e) {
          return e;
        }
      })();
      assert.ok(err instanceof FastpathError, `refused: ${JSON.stringify(bad)}`);
      assert.equal(err.code, "usage");
      assert.match(err.message, /^foreground/);
    }
    assert.throws(() => checkForeground(Array.from({ length: 65 }, (_, i) => `g${i}`)), /at most 64 entries, not 65/);
    // What the library refuses after attaching, refused before: init, and more name bytes than it holds.
    assert.throws(() => checkForeground(["01"]), /PID 1 is init/);
    assert.throws(() => checkForeground(Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(250, "x"))), /4096 bytes/);
    checkForeground([1234, "1234", "game.exe", "x".repeat(255)]);
  });

  await t.step("a wrong FASTPATH_LIB is the only path tried, and the error says so", async () => {
    const r = await runScript(
      `import("${ROOT}/ffi/load.ts").then(m => m.load()).catch(e => { console.log(e.message); })`,
      { FASTPATH_LIB: "/nonexistent/libfastpath.so" },
      ROOT,
    );
    assert.match(r.stdout, /^cannot load libfastpath\.(so|dylib); tried:\n {2}\/nonexistent\/libfastpath\.so: /);
    assert.match(r.stdout, /set FASTPATH_LIB/);
  });

  await t.step("without a build the error lists every place it looked", async () => {
    const dir = await Deno.makeTempDir({ prefix: "fastpath-noload-" });
    try {
      await Deno.mkdir(`${dir}/ffi`);
      for (const f of ["load.ts", "symbols.ts", "error.ts", "layout.ts", "enums.ts"]) {
        await Deno.copyFile(`${ROOT}/ffi/${f}`, `${dir}/ffi/${f}`);
      }
      const r = await runScript(
        `import("${dir}/ffi/load.ts").then(m => m.load()).catch(e => { console.log(e.message); })`,
        {},
        dir,
      );
      const tried = r.stdout.split("\n").filter((l) => l.startsWith("  "));
      assert.equal(tried.length, 2, r.stdout + r.stderr);
      assert.match(tried[0], new RegExp(`${dir}/zig/zig-out/lib/libfastpath`));
      assert.match(tried[1], /embedded copy/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("an embedded library is extracted only to a private directory, never to /tmp", () => {
    assert.equal(cacheDir(0, () => undefined), "/run/fastpath/lib");
    assert.equal(cacheDir(1000, (k) => ({ HOME: "/home/u" } as Record<string, string>)[k]), "/home/u/.cache/fastpath");
    assert.equal(
      cacheDir(1000, (k) => ({ XDG_CACHE_HOME: "/c", HOME: "/home/u" } as Record<string, string>)[k]),
      "/c/fastpath",
    );
    assert.throws(
      () => cacheDir(1000, () => undefined),
      /^Error: neither XDG_CACHE_HOME nor HOME is set: set one, or FASTPATH_LIB$/,
    );
  });

  await t.step(
    "an extracted copy is used only when its content matches, and a shared directory is refused",
    async () => {
      const tmp = await Deno.makeTempDir({ prefix: "fastpath-extract-" });
      try {
        const src = `${tmp}/embedded.so`;
        const bytes = crypto.getRandomValues(new Uint8Array(4096));
        await Deno.writeFile(src, bytes);
        const dir = `${tmp}/cache/fastpath`;
        const path = await extractEmbedded(src, dir);
        assert.deepEqual(await Deno.readFile(path), bytes);
        for (const d of [dir, path.replace(/\/[^/]+$/, "")]) assert.equal((await Deno.stat(d)).mode! & 0o777, 0o700, d);
        // Someone else's library of the same size in its place is replaced, not opened.
        await Deno.writeFile(path, new Uint8Array(bytes.length));
        assert.equal(await extractEmbedded(src, dir), path);
        assert.deepEqual(await Deno.readFile(path), bytes, "the planted copy was replaced");
        await Deno.chmod(dir, 0o777);
        await assert.rejects(extractEmbedded(src, dir), /fastpath is writable by others \(mode 777\): chmod go-w it$/);
        await Deno.chmod(dir, 0o700);
        await Deno.chown(dir, 65534, 65534);
        await assert.rejects(extractEmbedded(src, dir), /fastpath belongs to uid 65534, not to us: remove it$/);
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    },
  );
});
