/**
 * The lab is owned: whoever built it (`lab up`, `lab run`, a script) is on record, a lab in use is
 * refused with exit 7 naming its holder and --prefix, and nothing removes a lab it had no right to.
 */
import assert from "node:assert/strict";
import { labNames } from "../src/lab.ts";
import { Reflector } from "../src/reflector.ts";
import { cli, DENO, isRoot, labPrefix, netnsList, ROOT, skipUnless, spawnCli } from "./helpers.ts";
import { run } from "../src/net.ts";

const PREFIX = labPrefix("fpo");
const lab = labNames({ prefix: PREFIX });

async function labNamespaces(): Promise<string[]> {
  return (await netnsList()).filter((n) => n.startsWith(`${PREFIX}-`)).sort();
}

/** Until the lab's namespaces exist (another process builds it). */
async function untilUp(what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while ((await labNamespaces()).length < 2) {
    assert.ok(Date.now() < end, `the lab never came up: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("the lab is owned", async (t) => {
  if (skipUnless(isRoot, "the lab needs root to create network namespaces")) return;
  try {
    await t.step(
      "lab up while a reflector runs in the lab is refused with exit 7, naming it and --prefix",
      async () => {
        const up = await cli(["lab", "up", "--prefix", PREFIX]);
        assert.equal(up.code, 0, up.stderr);
        await using refl = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs, mode: "packet" });
        const again = await cli(["lab", "up", "--prefix", PREFIX]);
        assert.equal(again.code, 7, again.stderr);
        assert.match(
          again.stderr,
          new RegExp(
            `^error: lab ${PREFIX} is in use by a reflector on ${lab.reflectorIf} \\(pid ${Deno.pid}\\): stop it first, or choose another --prefix$`,
            "m",
          ),
        );
        assert.equal(refl.state(), "running", "the reflector still runs");
        assert.deepEqual(await labNamespaces(), [lab.probeNs, lab.reflectorNs]);
      },
    );

    await t.step("lab run refuses a lab that lab up built, and leaves it in place", async () => {
      const r = await cli(["lab", "run", "--prefix", PREFIX, "--size", "64", "--duration-s", "1"]);
      assert.equal(r.code, 7, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^error: lab ${PREFIX} was built by 'fastpath lab up' \\(pid \\d+\\): remove it with 'fastpath lab down --prefix ${PREFIX}', or choose another --prefix$`,
          "m",
        ),
      );
      assert.deepEqual(await labNamespaces(), [lab.probeNs, lab.reflectorNs]);
    });

    await t.step("lab down removes the lab that lab up built", async () => {
      const r = await cli(["lab", "down", "--prefix", PREFIX]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`removed ${lab.reflectorNs}, ${lab.probeNs}`));
      assert.deepEqual(await labNamespaces(), []);
    });

    await t.step("lab down refuses a lab that a running lab run built, naming its pid (exit 7)", async () => {
      const p = spawnCli(["lab", "run", "--prefix", PREFIX, "--size", "64", "--duration-s", "30", "--rate", "1kpps"]);
      await untilUp(p.stderr);
      const down = await cli(["lab", "down", "--prefix", PREFIX]);
      assert.equal(down.code, 7, down.stderr);
      assert.match(
        down.stderr,
        new RegExp(
          `^error: lab ${PREFIX} is in use by 'fastpath lab run' \\(pid ${p.child.pid}\\): stop it first, or choose another --prefix$`,
          "m",
        ),
      );
      assert.deepEqual(await labNamespaces(), [lab.probeNs, lab.reflectorNs]);
      p.child.kill("SIGINT");
      const r = await p.finish();
      assert.equal(r.code, 130, r.stderr);
      assert.deepEqual(await labNamespaces(), [], "lab run removed the lab it built");
    });

    await t.step(
      "two lab runs with the same prefix started at once: one runs, the other is refused with exit 7 naming it",
      async () => {
        const args = ["lab", "run", "--prefix", PREFIX, "--size", "64", "--duration-s", "1", "--rate", "1kpps"];
        for (let round = 0; round < 3; round++) {
          const [a, b] = [spawnCli(args), spawnCli(args)];
          const [ra, rb] = await Promise.all([a.finish(), b.finish()]);
          const [won, lost, winner] = ra.code === 0 ? [ra, rb, a] : [rb, ra, b];
          assert.equal(won.code, 0, `round ${round}: ${ra.stderr}\n---\n${rb.stderr}`);
          assert.equal(lost.code, 7, `round ${round}: ${lost.stderr}`);
          assert.match(
            lost.stderr,
            new RegExp(
              `^error: lab ${PREFIX} is in use by 'fastpath lab run' \\(pid ${winner.child.pid}\\): stop it first, or choose another --prefix$`,
              "m",
            ),
          );
          assert.equal(lost.stdout, "", "the refused one measured nothing");
          assert.deepEqual(await labNamespaces(), []);
        }
      },
    );

    await t.step("a lab run killed with SIGKILL leaves a lab the next lab run takes over at once", async () => {
      const p = spawnCli(["lab", "run", "--prefix", PREFIX, "--size", "64", "--duration-s", "30", "--rate", "1kpps"]);
      await untilUp(p.stderr);
      await new Promise((r) => setTimeout(r, 1000));
      p.child.kill("SIGKILL");
      await p.finish();
      const r = await cli(["lab", "run", "--prefix", PREFIX, "--size", "64", "--duration-s", "1", "--rate", "1kpps"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await labNamespaces(), []);
    });

    await t.step("lab down leaves a namespace that no fastpath lab made", async () => {
      await run(["ip", "netns", "add", lab.reflectorNs]);
      try {
        const r = await cli(["lab", "down", "--prefix", PREFIX]);
        assert.equal(r.code, 7, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `^error: ${lab.reflectorNs} was not made by 'fastpath lab up': remove it with 'ip netns del ${lab.reflectorNs}', or choose another --prefix$`,
            "m",
          ),
        );
        assert.deepEqual(await labNamespaces(), [lab.reflectorNs]);
      } finally {
        await run(["ip", "netns", "del", lab.reflectorNs]);
      }
    });

    await t.step(
      "lab down refuses a lab whose namespace was replaced by hand after lab up (exit 7), and removes it once that one is gone",
      async () => {
        const up = await cli(["lab", "up", "--prefix", PREFIX]);
        assert.equal(up.code, 0, up.stderr);
        await run(["ip", "netns", "del", lab.probeNs]);
        await run(["ip", "netns", "add", lab.probeNs]);
        try {
          const r = await cli(["lab", "down", "--prefix", PREFIX]);
          assert.equal(r.code, 7, r.stderr);
          assert.match(
            r.stderr,
            new RegExp(
              `^error: ${lab.probeNs} was not made by 'fastpath lab up' \\(replaced since\\): remove it with 'ip netns del ${lab.probeNs}', or choose another --prefix$`,
              "m",
            ),
          );
          assert.deepEqual((await labNamespaces()).sort(), [lab.probeNs, lab.reflectorNs].sort());
        } finally {
          await run(["ip", "netns", "del", lab.probeNs]);
        }
        const r = await cli(["lab", "down", "--prefix", PREFIX]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(await labNamespaces(), []);
      },
    );

    await t.step(
      "lab up on the lab it built keeps it as it is, with what was added; one with a part gone is built again",
      async () => {
        // It once rebuilt the lab silently: addresses and routes the user had added were gone.
        const first = await cli(["lab", "up", "--prefix", PREFIX]);
        assert.equal(first.code, 0, first.stderr);
        const inode = (await Deno.stat(`/run/netns/${lab.probeNs}`)).ino;
        await run(["ip", "-n", lab.probeNs, "addr", "add", "198.18.0.99/24", "dev", lab.probeIf]);
        const again = await cli(["lab", "up", "--prefix", PREFIX, "--format", "json"]);
        assert.equal(again.code, 0, again.stderr);
        assert.equal(JSON.parse(again.stdout).kept, true, again.stdout);
        assert.equal((await Deno.stat(`/run/netns/${lab.probeNs}`)).ino, inode, "the same namespace");
        assert.match((await run(["ip", "-n", lab.probeNs, "addr", "show", lab.probeIf])).stdout, /198\.18\.0\.99/);
        const text = await cli(["lab", "up", "--prefix", PREFIX]);
        assert.match(text.stderr, /was up already: kept as it is/);
        await run(["ip", "netns", "del", lab.probeNs]);
        const rebuilt = await cli(["lab", "up", "--prefix", PREFIX, "--format", "json"]);
        assert.equal(rebuilt.code, 0, rebuilt.stderr);
        assert.equal(JSON.parse(rebuilt.stdout).kept, false, rebuilt.stdout);
        assert.deepEqual((await labNamespaces()).sort(), [lab.probeNs, lab.reflectorNs].sort());
        const down = await cli(["lab", "down", "--prefix", PREFIX]);
        assert.equal(down.code, 0, down.stderr);
        assert.deepEqual(await labNamespaces(), []);
      },
    );

    await t.step("a script using mod.ts's lab that is interrupted (SIGINT) leaves no namespace behind", async () => {
      const script = await Deno.makeTempFile({ suffix: ".ts" });
      try {
        await Deno.writeTextFile(
          script,
          `import { labUp } from "${ROOT}/mod.ts";
const lab = await labUp({ prefix: "${PREFIX}" });
console.log("up", lab.reflectorNs);
await new Promise((r) => setTimeout(r, 60_000));
`,
        );
        const child = new Deno.Command(DENO, {
          args: ["run", "-A", "--unstable-ffi", "--quiet", script],
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(90_000),
        }).spawn();
        const out = child.output();
        await untilUp("the script's labUp");
        // labUp resolves a moment after the namespaces appear.
        await new Promise((r) => setTimeout(r, 1500));
        child.kill("SIGINT");
        const o = await out;
        const dec = new TextDecoder();
        assert.match(dec.decode(o.stdout), /^up /, dec.decode(o.stderr));
        assert.equal(o.code, 130, dec.decode(o.stderr));
        assert.deepEqual(await labNamespaces(), []);
      } finally {
        await Deno.remove(script);
      }
    });
  } finally {
    for (const ns of await labNamespaces()) await run(["ip", "netns", "del", ns]);
  }
});
