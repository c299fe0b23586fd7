import assert from "node:assert/strict";
import { cli, DENO, isRoot, labPrefix, netnsList, ROOT, skipUnless } from "./helpers.ts";
import { run } from "../src/net.ts";

const EXEC = `${ROOT}/scripts/fastpath`;

/** `service print` with the unit's ExecStart pointing at this tree's scripts/fastpath. */
async function printed(args: string[]): Promise<string> {
  const r = await cli(["service", "print", ...args, "--exec", EXEC]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** A unit's `Key=value` lines (the last of a key wins, as in systemd). */
function keys(unit: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of unit.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0 && !line.startsWith("#")) m.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return m;
}

const hasVerify = (await run(["systemd-analyze", "--version"]).catch(() => undefined))?.code === 0;
let systemdRunning = false;
try {
  systemdRunning = (await Deno.stat("/run/systemd/system")).isDirectory;
} catch { /* not booted with systemd */ }

/** The unit's capabilities as a setpriv --bounding-set. */
async function unitCaps(drop: string[] = []): Promise<string> {
  const caps = keys(await printed(["reflect", "sv0"])).get("CapabilityBoundingSet")!.split(" ");
  return ["-all", ...caps.filter((c) => !drop.includes(c)).map((c) => `+${c.slice(4).toLowerCase()}`)].join(",");
}

/**
 * `main.ts ARGS` in network namespace `ns` as the unit runs it: capabilities only from `bounding`, no new
 * privileges, ProtectSystem=strict and ProtectHome=read-only (everything read-only but /run/fastpath,
 * its RuntimeDirectory), PrivateTmp (a /tmp of its own); in a mount namespace of this run's own.
 */
function underUnit(ns: string, bounding: string, args: string[]): Deno.ChildProcess {
  Deno.mkdirSync("/run/fastpath", { recursive: true });
  const readOnly = "mount --make-rprivate / && mount --bind /run/fastpath /run/fastpath && " +
    'mount -o bind,remount,ro / && mount -t tmpfs tmpfs /tmp && exec "$@"';
  return new Deno.Command("unshare", {
    args: ["-m", "sh", "-c", readOnly, "sh", "ip", "netns", "exec", ns, "setpriv", "--no-new-privs"]
      .concat([`--bounding-set=${bounding}`, "--inh-caps=-all"])
      .concat([DENO, "run", "-A", "--unstable-ffi", "--quiet", `${ROOT}/main.ts`, ...args]),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
}

Deno.test("services", async (t) => {
  await t.step("the printed reflector and scheduler units pass systemd-analyze verify without a warning", async () => {
    if (skipUnless(hasVerify, "systemd-analyze is not installed")) return;
    const dir = await Deno.makeTempDir({ prefix: "fastpath-units-" });
    try {
      const units: Array<[string, string]> = [
        ["fastpath-reflect-eth0.service", await printed(["reflect", "eth0", "--mode", "xdp", "--workers", "2"])],
        ["fastpath-reflect-fp\\x2dr0.service", await printed(["reflect", "fp-r0", "--netns", "fp-refl"])],
        [
          "fastpath-reflect-eth1.service",
          await printed(["reflect", "eth1", "--stats-socket", "/var/lib/fp/eth1.sock"]),
        ],
        ["fastpath-sched.service", await printed(["sched", "--slice-us", "3000", "--foreground", "game.exe"])],
      ];
      for (const [name, text] of units) {
        assert.match(text, new RegExp(`^# ${name.replaceAll("\\", "\\\\")}:`), "the unit names the file it belongs in");
        await Deno.writeTextFile(`${dir}/${name}`, text);
        const r = await run(["systemd-analyze", "verify", "--man=no", `${dir}/${name}`]);
        assert.equal(r.code, 0, `${name}: ${r.stderr}`);
        assert.equal(r.stderr.trim(), "", `${name}: systemd-analyze warned:\n${r.stderr}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step(
    "a unit restarts fastpath after a failure but not after a clean stop or an error a restart cannot cure",
    async () => {
      const reflect = keys(await printed(["reflect", "eth0"]));
      assert.equal(reflect.get("ExecStart"), `${EXEC} reflect eth0`);
      assert.equal(reflect.get("Restart"), "on-failure");
      assert.equal(reflect.get("KillSignal"), "SIGINT");
      assert.ok(Number(reflect.get("StartLimitBurst")) > 0 && Number(reflect.get("StartLimitIntervalSec")) > 0);
      assert.deepEqual(reflect.get("RestartPreventExitStatus")?.split(" "), ["2", "3", "6", "8"]);
      assert.equal(reflect.get("BindsTo"), "sys-subsystem-net-devices-eth0.device");
      const sched = keys(await printed(["sched"]));
      assert.equal(sched.get("ExecStart"), `${EXEC} sched run`);
      assert.equal(sched.get("ConditionPathIsDirectory"), "/sys/kernel/sched_ext");
      assert.deepEqual(sched.get("RestartPreventExitStatus")?.split(" "), ["2", "3", "6", "8", "7"]);
    },
  );

  await t.step(
    "the reflector's unit waits for the network at boot and retries a link still down at start for over two minutes",
    async () => {
      const u = keys(await printed(["reflect", "eth0"]));
      assert.match(u.get("After")!, /\bnetwork-online\.target\b/);
      assert.equal(u.get("Wants"), "network-online.target");
      const delay = Number(u.get("RestartSec"));
      const burst = Number(u.get("StartLimitBurst"));
      assert.ok(delay * (burst - 1) >= 120, `restarts every ${delay} s, ${burst} starts: gives up too soon`);
      assert.ok(Number(u.get("StartLimitIntervalSec")) >= delay * burst, "the start limit trips before the burst");
    },
  );

  await t.step(
    "a --stats-socket outside /run/fastpath gets its directory writable in the unit, the default does not",
    async () => {
      assert.equal(
        keys(await printed(["reflect", "eth0", "--stats-socket", "/var/lib/fp/x.sock"])).get("ReadWritePaths"),
        "/var/lib/fp",
      );
      assert.equal(
        keys(await printed(["reflect", "eth0", "--stats-socket=/srv/x.sock"])).get("ReadWritePaths"),
        "/srv",
      );
      assert.equal(keys(await printed(["reflect", "eth0"])).get("ReadWritePaths"), undefined);
      assert.equal(
        keys(await printed(["reflect", "eth0", "--stats-socket", "/run/fastpath/x.sock"])).get("ReadWritePaths"),
        undefined,
      );
    },
  );

  await t.step(
    "capabilities instead of full root: the reflector's set has no CAP_SYS_ADMIN, the scheduler's has",
    async () => {
      const reflect = keys(await printed(["reflect", "eth0"]));
      const caps = reflect.get("CapabilityBoundingSet")!.split(" ");
      assert.ok(!caps.includes("CAP_SYS_ADMIN"), caps.join(" "));
      for (const c of ["CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON"]) assert.ok(caps.includes(c), c);
      assert.equal(reflect.get("AmbientCapabilities"), reflect.get("CapabilityBoundingSet"));
      assert.equal(reflect.get("NoNewPrivileges"), "yes");
      const netns = keys(await printed(["reflect", "fp-r0", "--netns", "fp-refl"]));
      assert.ok(netns.get("CapabilityBoundingSet")!.split(" ").includes("CAP_SYS_ADMIN"), "--netns needs setns");
      assert.equal(netns.get("RestrictNamespaces"), undefined, "--netns enters a namespace");
      const sched = keys(await printed(["sched"]));
      assert.ok(sched.get("CapabilityBoundingSet")!.split(" ").includes("CAP_SYS_ADMIN"));
    },
  );

  await t.step("a flag or value the job would refuse is refused before anything is printed (exit 2)", async () => {
    let r = await cli(["service", "print", "reflect", "eth0", "--mood", "xdp"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr.trim(), "error: '--mood' is not a flag of reflect: see 'fastpath reflect --help'");
    r = await cli(["service", "print", "reflect", "eth0", "--mode", "fastest"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: --mode must be one of auto, xdp, afxdp, packet, bpf, not 'fastest'/);
    r = await cli(["service", "print", "sched", "--slice-us", "soon"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--slice-us/);
    r = await cli(["service", "print", "reflect"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: service print reflect needs one interface, got none/);
    r = await cli(["service", "print", "reflect", "eth0", "--exec", "fastpath"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--exec needs an absolute path/);
    r = await cli(["service", "print", "web"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /takes reflect or sched, not 'web'/);
    // What the job would refuse at start: an interface name the kernel cannot have.
    for (const [name, why] of [["eth 0", "white space"], ["a".repeat(25), "25 bytes, at most 15 fit"]]) {
      r = await cli(["service", "print", "reflect", name]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, new RegExp(`^error: '${name}' cannot be an interface name: .*${why}`));
    }
    // What sched run refuses at start, and a flag given twice: the unit once printed, then failed at boot.
    for (
      const [args, msg] of [
        [["sched", "--game", "a", "--game", "b"], "--game is given twice: give it once"],
        [["reflect", "eth0", "--mode", "xdp", "--mode=packet"], "--mode is given twice: give it once"],
        [["sched", "--stats-socket", "/a", "--no-stats-socket"], "--stats-socket and --no-stats-socket are both given"],
        [
          ["sched", "--no-signals", "--chain-hops", "3"],
          "--chain-hops is a detector setting, and the detectors are off",
        ],
        [["sched", "--foreground", "a,,b"], "--foreground has an empty entry: give a process name or a PID in each"],
        [["sched", "--compositor", ""], "--compositor must be one process name or a PID from 1 to 4194303, not ''"],
        // In partial mode init as the game would have had its threads moved to SCHED_EXT.
        [["sched", "--partial", "--game", "1"], "--game: PID 1 is init, not a game or an application"],
        [["sched", "--partial", "--no-signals"], "--partial schedules only the foreground and the detected game"],
        // The library's own ranges and relations between knobs (its fp_sched_check, which start runs first).
        [["sched", "--watchdog-ms", "-1"], "must be 0 or 500 to 30000, not -1"],
        [["sched", "--chain-hops", "9"], "must be 0 to 4, not 9"],
        [
          ["sched", "--slice-us", "1000", "--slice-min-us", "2000"],
          "--slice-min-us must be 10 to --slice-us (1000), not 2000",
        ],
      ] as const
    ) {
      r = await cli(["service", "print", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout, "");
      assert.ok(r.stderr.startsWith("error: ") && r.stderr.includes(msg), r.stderr);
    }
    // launchd runs on macOS, whose only dataplane is bpf.
    r = await cli(["service", "print", "reflect", "en0", "--mode", "xdp", "--manager", "launchd"]);
    assert.equal(r.code, 6, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^error: --mode xdp is not available on macOS, where launchd runs: use --mode bpf/);
  });

  await t.step("the launchd plist runs the reflector with its flags and restarts it only after a failure", async () => {
    const r = await cli(["service", "print", "reflect", "en0", "--mode", "bpf", "--manager", "launchd"]);
    assert.equal(r.code, 0, r.stderr);
    const parsed = await run(
      ["python3", "-c", "import json, plistlib, sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))"],
      r.stdout,
    );
    assert.equal(parsed.code, 0, parsed.stderr);
    const plist = JSON.parse(parsed.stdout);
    assert.equal(plist.Label, "local.fastpath.reflect.en0");
    assert.deepEqual(plist.ProgramArguments, ["/usr/local/bin/fastpath", "reflect", "en0", "--mode", "bpf"]);
    assert.deepEqual(plist.KeepAlive, { SuccessfulExit: false });
    assert.equal(plist.RunAtLoad, true);
    const s = await cli(["service", "print", "sched", "--manager", "launchd"]);
    assert.equal(s.code, 6);
    assert.match(s.stderr, /^error: sched_ext is a Linux feature/);
  });

  await t.step(
    "with only the unit's capabilities, no new privileges and a read-only file system, the reflector attaches and stops cleanly on SIGINT",
    async () => {
      if (skipUnless(isRoot, "needs root to create a namespace and to drop capabilities")) return;
      const ns = `${labPrefix("fpt")}-svc`;
      await run(["ip", "netns", "del", ns]);
      await run(["ip", "netns", "add", ns]);
      const reflect = (bounding: string, extra: string[] = []) =>
        underUnit(ns, bounding, ["reflect", "sv0", "--mode", "afxdp", ...extra]);
      try {
        for (
          const args of [["link", "add", "sv0", "type", "veth", "peer", "name", "sv1"], ["link", "set", "sv0", "up"]]
        ) {
          const r = await run(["ip", "-n", ns, ...args]);
          assert.equal(r.code, 0, r.stderr);
        }
        await run(["ip", "-n", ns, "link", "set", "sv1", "up"]);
        const child = reflect(await unitCaps());
        const dec = new TextDecoder();
        let err = "";
        const reader = (async () => {
          for await (const c of child.stderr) err += dec.decode(c);
        })();
        const end = Date.now() + 30_000;
        while (!err.includes("stop with Ctrl-C") && Date.now() < end && !err.includes("error:")) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.match(err, /in afxdp mode/, err);
        child.kill("SIGINT");
        const st = await child.status;
        await reader;
        await child.stdout.cancel();
        assert.equal(st.code, 0, err);
        assert.match(err, /^stopped: received/m);
        // The same run without CAP_BPF must fail: the set above is what made it work.
        const without = await reflect(await unitCaps(["CAP_BPF"]), ["--duration-s", "2"]).output();
        assert.notEqual(without.code, 0, "the reflector started without CAP_BPF");
        assert.match(new TextDecoder().decode(without.stderr), /^error: /);
      } finally {
        await run(["ip", "netns", "del", ns]);
      }
      assert.ok(!(await netnsList()).includes(ns));
    },
  );

  await t.step(
    "under the unit's capabilities a veth peer in a namespace fastpath cannot enter is not taken as fine: auto picks afxdp, --mode xdp warns how to check it",
    async () => {
      if (skipUnless(isRoot, "needs root to create namespaces and to drop capabilities")) return;
      const ns = `${labPrefix("fpt")}-vr`;
      const peerNs = `${labPrefix("fpt")}-vp`;
      for (const n of [ns, peerNs]) {
        await run(["ip", "netns", "del", n]);
        await run(["ip", "netns", "add", n]);
      }
      try {
        for (
          const args of [
            ["-n", ns, "link", "add", "sv0", "type", "veth", "peer", "name", "sv1", "netns", peerNs],
            ["-n", ns, "link", "set", "sv0", "up"],
            ["-n", peerNs, "link", "set", "sv1", "up"],
          ]
        ) {
          const r = await run(["ip", ...args]);
          assert.equal(r.code, 0, r.stderr);
        }
        // sv1 runs no XDP program, and the unit has no CAP_SYS_ADMIN to enter its namespace and see that.
        const caps = await unitCaps();
        assert.ok(!caps.includes("sys_admin"), caps);
        const dec = new TextDecoder();
        const auto = await underUnit(ns, caps, ["reflect", "sv0", "--duration-s", "1", "--no-stats-socket"]).output();
        const autoErr = dec.decode(auto.stderr);
        assert.equal(auto.code, 0, autoErr);
        assert.match(
          autoErr,
          /in afxdp mode .*— auto: xdp not possible \(cannot check that the veth peer of sv0 runs an XDP program/,
          autoErr,
        );
        const xdp = await underUnit(ns, caps, [
          "reflect",
          "sv0",
          "--mode",
          "xdp",
          "--duration-s",
          "1",
          "--no-stats-socket",
        ]).output();
        const xdpErr = dec.decode(xdp.stderr);
        assert.equal(xdp.code, 0, xdpErr);
        assert.match(xdpErr, /in xdp mode/, xdpErr);
        assert.match(
          xdpErr,
          new RegExp(
            `warning: cannot check that the veth peer of sv0 runs an XDP program \\(entering its network namespace needs CAP_SYS_ADMIN\\).*check with 'ip netns exec ${peerNs} ip link show'.*or use --mode afxdp`,
          ),
          xdpErr,
        );
      } finally {
        for (const n of [ns, peerNs]) await run(["ip", "netns", "del", n]);
      }
      const left = await netnsList();
      assert.ok(!left.includes(ns) && !left.includes(peerNs), left.join(" "));
    },
  );

  await t.step("under systemd-run the reflector runs with the unit's restrictions", async () => {
    if (
      skipUnless(systemdRunning, "systemd is not PID 1 here (no /run/systemd/system): systemd-run cannot start units")
    ) {
      return;
    }
    // The [Service] hardening of the unit, as systemd-run properties, around a bounded run on loopback.
    const unit = await printed(["reflect", "lo", "--mode", "packet", "--duration-s", "2"]);
    const service = unit.split("[Service]")[1].split("[Install]")[0];
    const props = service.split("\n").filter((l) => /^[A-Z]\w+=/.test(l) && !/^(ExecStart|Type|Restart\w*)=/.test(l));
    const r = await run([
      "systemd-run",
      "--wait",
      "--collect",
      "--quiet",
      "--pipe",
      ...props.flatMap((p) => ["-p", p]),
      EXEC,
      "reflect",
      "lo",
      "--mode",
      "packet",
      "--duration-s",
      "2",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^stopped: received/m);
  });
});
