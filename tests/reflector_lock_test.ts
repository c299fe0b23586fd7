/**
 * One reflector per interface, however each was started (`--netns`, 'ip netns exec', inside the
 * namespace): the second is refused with exit 7 naming the first. A reflector that exits leaves no
 * file in /run/fastpath, and its messages name options and namespaces as the command line does
 * (the `--port 0` refusal's wording: identity_test.ts).
 */
import assert from "node:assert/strict";
import { labDown, labUp } from "../src/lab.ts";
import { Reflector } from "../src/reflector.ts";
import { cli, isRoot, labPrefix, ROOT, skipUnless, spawnCli } from "./helpers.ts";
import { ip } from "../src/net.ts";

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

const PREFIX = labPrefix("fpk");

/**
 * The files /run/fastpath holds for interface `iface` in this version's naming (`net<INODE>.IFACE.*`).
 * Files named by an older fastpath (`NS.IFACE.lock`) are left by earlier installs; they block nothing.
 */
async function filesFor(iface: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir("/run/fastpath")) {
      if (/^net\d+\./.test(e.name) && e.name.includes(`.${iface}.`)) out.push(e.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

Deno.test("one reflector per interface", async (t) => {
  if (skipUnless(isRoot, "needs root for namespaces and AF_PACKET")) return;
  const lab = await labUp({ prefix: PREFIX });
  const ns = lab.reflectorNs;
  const iface = lab.reflectorIf;
  try {
    // How each reflector is started: its arguments, and the namespace it is started in.
    const byFlag = (mode: string, port = "3842") => ({
      args: ["reflect", iface, "--netns", ns, "--mode", mode, "--port", port],
      netns: undefined,
    });
    const inside = (mode: string, port = "3842") => ({
      args: ["reflect", iface, "--mode", mode, "--port", port],
      netns: ns,
    });
    const cases = [
      ["--netns", byFlag("packet"), "'ip netns exec', afxdp --port 0", inside("afxdp", "0")],
      ["--netns", byFlag("packet"), "'ip netns exec', packet", inside("packet")],
      ["'ip netns exec'", inside("packet"), "--netns, packet", byFlag("packet")],
      ["'ip netns exec'", inside("afxdp", "0"), "--netns, xdp --port 0", byFlag("xdp", "0")],
    ] as const;
    for (const [firstHow, first, secondHow, second] of cases) {
      await t.step(
        `a reflector started with ${firstHow} refuses a second started with ${secondHow}: exit 7 naming its pid`,
        async () => {
          const a = spawnCli(first.args, { netns: first.netns });
          await a.waitFor("stop with Ctrl-C");
          // Bounded: a second reflector that is not refused stops by itself.
          const b = await spawnCli([...second.args, "--duration-s", "3"], { netns: second.netns }).finish();
          a.child.kill("SIGTERM");
          const ra = await a.finish();
          assert.equal(b.code, 7, b.stderr);
          assert.match(
            b.stderr,
            new RegExp(
              `^error: cannot reflect on ${iface}: another fastpath reflector \\(pid ${a.child.pid}\\) is running on ${iface} in network namespace ${ns}; stop it first$`,
              "m",
            ),
          );
          assert.equal(ra.code, 0, ra.stderr);
          assert.match(ra.stderr, /^stopped: /m);
        },
      );
    }

    await t.step("a reflector that exits cleanly leaves no file in /run/fastpath", async () => {
      const p = spawnCli(["reflect", iface, "--netns", ns, "--mode", "afxdp"]);
      await p.waitFor("stop with Ctrl-C");
      assert.notDeepEqual(await filesFor(iface), [], "a running reflector holds its interface");
      p.child.kill("SIGINT");
      assert.equal((await p.finish()).code, 0);
      assert.deepEqual(await filesFor(iface), []);
      const r = await Reflector.start({ iface, netns: ns, mode: "packet" });
      r.close();
      assert.deepEqual(await filesFor(iface), []);
    });

    await t.step("a file left by a killed reflector blocks nothing and goes with the next one", async () => {
      const p = spawnCli(["reflect", iface, "--netns", ns, "--mode", "packet"]);
      await p.waitFor("stop with Ctrl-C");
      p.child.kill("SIGKILL");
      await p.finish();
      assert.notDeepEqual(await filesFor(iface), [], "a killed reflector cannot remove its lock file");
      const r = await Reflector.start({ iface, netns: ns, mode: "packet" });
      r.close();
      assert.deepEqual(await filesFor(iface), []);
    });

    await t.step("a starting reflector removes the file a killed one left in a namespace since deleted", async () => {
      const gone = `${PREFIX}-gone`;
      await ip(undefined, "netns", "add", gone);
      let file = "";
      try {
        await ip(gone, "link", "set", "lo", "up");
        file = `/run/fastpath/net${(await Deno.stat(`/run/netns/${gone}`)).ino}.lo.lock`;
        // No stats socket: SIGKILL would leave it too.
        const p = spawnCli(["reflect", "lo", "--netns", gone, "--mode", "packet", "--no-stats-socket"]);
        await p.waitFor("stop with Ctrl-C");
        p.child.kill("SIGKILL");
        await p.finish();
      } finally {
        await ip(undefined, "netns", "del", gone);
      }
      assert.ok(await exists(file), `a killed reflector leaves ${file}`);
      const r = await Reflector.start({ iface, netns: ns, mode: "packet" });
      r.close();
      assert.equal(await exists(file), false, `${file}: its namespace is gone, and no one holds it`);
    });

    await t.step(
      "a file left by a mod.ts script interrupted before it closed its Reflector goes with the next reflector on any interface",
      async () => {
        // Its namespace lives on (and a later one may reuse its inode): the file once stayed for good.
        const other = `${PREFIX}-other`;
        await ip(undefined, "netns", "add", other);
        const script = await Deno.makeTempFile({ suffix: ".ts" });
        try {
          await ip(other, "link", "set", "lo", "up");
          const file = `/run/fastpath/net${(await Deno.stat(`/run/netns/${other}`)).ino}.lo.lock`;
          await Deno.writeTextFile(
            script,
            `import { Reflector } from "${ROOT}/mod.ts";
const r = await Reflector.start({ iface: "lo", netns: "${other}", mode: "packet" });
console.log("started", r.info.mode);
await new Promise((ok) => setTimeout(ok, 60_000));
`,
          );
          const p = spawnCli([], { script });
          await p.waitFor("started packet");
          p.child.kill("SIGINT");
          await p.finish();
          assert.ok(await exists(file), `an interrupted script leaves ${file}`);
          const r = await Reflector.start({ iface, netns: ns, mode: "packet" });
          r.close();
          assert.equal(await exists(file), false, `${file}: no one holds it`);
        } finally {
          await Deno.remove(script);
          await ip(undefined, "netns", "del", other);
        }
      },
    );

    await t.step(
      "what a killed afxdp reflector left deferred is put back by the next reflector there, in any mode",
      async () => {
        // Once only an afxdp start put it back: packet mode ran with the interrupts still deferred.
        const p = spawnCli(["reflect", iface, "--netns", ns, "--mode", "afxdp", "--no-stats-socket"]);
        await p.waitFor("stop with Ctrl-C");
        const napi = (await filesFor(iface)).filter((f) => f.endsWith(".napi"));
        p.child.kill("SIGKILL");
        await p.finish();
        if (skipUnless(napi.length === 1, "this kernel cannot defer interrupts per NAPI (6.13+)")) return;
        assert.ok(await exists(`/run/fastpath/${napi[0]}`), "a killed reflector leaves its deferral record");
        const r = await Reflector.start({ iface, netns: ns, mode: "packet" });
        r.close();
        assert.deepEqual(await filesFor(iface), [], "the record was put back and removed");
      },
    );

    await t.step("the JSON reason spells options as the command line does (--mode packet)", async () => {
      const r = await cli([
        "reflect",
        iface,
        "--netns",
        ns,
        "--mode",
        "packet",
        "--format",
        "json",
        "--duration-s",
        "1",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const started = JSON.parse(r.stdout.split("\n")[0]);
      assert.equal(started.type, "reflect_started");
      assert.equal(started.reason, "packet: chosen with --mode packet");
    });

    await t.step("a missing interface in a namespace is looked for with 'ip -n NS link'", async () => {
      const want = `no interface named 'fpk-none' in network namespace ${ns} (see 'ip -n ${ns} link')`;
      const byName = await cli(["reflect", "fpk-none", "--netns", ns]);
      assert.equal(byName.code, 4, byName.stderr);
      assert.ok(byName.stderr.includes(want), byName.stderr);
      const within = await spawnCli(["reflect", "fpk-none"], { netns: ns }).finish();
      assert.equal(within.code, 4, within.stderr);
      assert.ok(within.stderr.includes(want), within.stderr);
    });
  } finally {
    await labDown(lab);
  }
});
