import assert from "node:assert/strict";
import { ROOT } from "./helpers.ts";
import { run } from "../src/net.ts";

const { version } = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));

Deno.test("installing", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "fastpath-install-" });
  try {
    await t.step("scripts/build --if-stale builds once after a source changes, then not again", async () => {
      // A touched source that changes nothing in the library (zig keeps the old file) made every
      // later run build again, and every scripts/fastpath call say "building libfastpath".
      const now = new Date();
      await Deno.utime(`${ROOT}/zig/bpf/sched.h`, now, now);
      const first = await run([`${ROOT}/scripts/build`, "--if-stale"]);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stderr, /building libfastpath/);
      const second = await run([`${ROOT}/scripts/build`, "--if-stale"]);
      assert.equal(second.code, 0, second.stderr);
      assert.equal(second.stderr, "", "nothing is built a second time");
    });

    await t.step("scripts/fastpath runs through a symlink on PATH (it finds its tree through the link)", async () => {
      await Deno.mkdir(`${dir}/link/bin`, { recursive: true });
      await Deno.symlink(`${ROOT}/scripts/fastpath`, `${dir}/link/bin/fastpath`);
      const r = await run([`${dir}/link/bin/fastpath`, "--version"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split("\n")[0], `fastpath ${version}`);
    });

    await t.step(
      "scripts/install --prefix links fastpath into DIR/bin, and --uninstall takes it out again",
      async () => {
        const prefix = `${dir}/prefix`;
        const r = await run([`${ROOT}/scripts/install`, "--prefix", prefix]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await Deno.realPath(`${prefix}/bin/fastpath`), `${ROOT}/scripts/fastpath`);
        assert.match(r.stdout, new RegExp(`install: ${prefix}/bin/fastpath -> ${ROOT}/scripts/fastpath`));
        const v = await run([`${prefix}/bin/fastpath`, "--version"]);
        assert.equal(v.code, 0, v.stderr);
        const again = await run([`${ROOT}/scripts/install`, "--prefix", prefix]);
        assert.equal(again.code, 0, `installing twice is fine: ${again.stderr}`);
        const un = await run([`${ROOT}/scripts/install`, "--prefix", prefix, "--uninstall"]);
        assert.equal(un.code, 0, un.stderr);
        assert.equal(await Deno.lstat(`${prefix}/bin/fastpath`).then(() => true, () => false), false);
      },
    );

    await t.step("scripts/install leaves a fastpath it did not put there alone, saying so", async () => {
      const prefix = `${dir}/foreign`;
      await Deno.mkdir(`${prefix}/bin`, { recursive: true });
      await Deno.writeTextFile(`${prefix}/bin/fastpath`, "#!/bin/sh\necho someone else's\n");
      for (const args of [[], ["--uninstall"]]) {
        const r = await run([`${ROOT}/scripts/install`, "--prefix", prefix, ...args]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^error: install: .*fastpath (exists and )?is not this tree's fastpath/);
        assert.equal(await Deno.readTextFile(`${prefix}/bin/fastpath`), "#!/bin/sh\necho someone else's\n");
      }
    });
    await t.step(
      "scripts/install's help is its comment only, and its errors carry no exit code in the text",
      async () => {
        const help = await run([`${ROOT}/scripts/install`, "--help"]);
        assert.equal(help.code, 0);
        assert.doesNotMatch(help.stdout, /set -euo|pipefail/);
        assert.match(help.stdout, /--uninstall +removes what an install put there\n$/);
        const bad = await run([`${ROOT}/scripts/install`, "--bogus"]);
        assert.equal(bad.code, 2);
        assert.equal(bad.stderr, "error: install: unknown flag '--bogus': see 'scripts/install --help'\n");
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
