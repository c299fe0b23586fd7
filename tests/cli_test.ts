import assert from "node:assert/strict";
import {
  cli,
  cliAsNobody,
  DENO,
  isRoot,
  labPrefix,
  netnsList,
  ROOT,
  sampleProbeReport,
  skipUnless,
} from "./helpers.ts";
import { run } from "../src/net.ts";
import { probeSummary, rttSummary } from "../src/probe.ts";
import { probeLine } from "../src/cli/probe.ts";
import { noSchedExt } from "../src/sched.ts";
import { strandedText } from "../src/cli/sched.ts";
import { Detector } from "../src/detect.ts";
import { ABI_VERSION } from "../ffi/symbols.ts";

const FPC = labPrefix("fpc");

Deno.test("the CLI", async (t) => {
  await t.step("every command has help with runnable examples and the exit codes", async () => {
    for (const cmd of ["reflect", "probe", "lab", "sched", "doctor", "service", "completions"]) {
      const r = await cli([cmd, "--help"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Usage: fastpath /);
      assert.match(r.stdout, /Examples:\n {2}(sudo )?fastpath /);
      assert.match(r.stdout, /Exit codes:/);
    }
    // Each action of `sched` shows its own examples first, not only the group's.
    for (const action of ["run", "observe", "status", "stats"]) {
      const r = await cli(["sched", action, "--help"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Examples:\\n {2}sudo fastpath sched ${action}\\b`));
    }
    const top = await cli(["--help"]);
    assert.equal(top.code, 0);
    for (const cmd of ["reflect", "probe", "lab", "sched", "doctor", "service", "completions"]) {
      assert.match(top.stdout, new RegExp(`\\n  ${cmd} `));
    }
  });

  await t.step(
    "help with a command and its action prints the action's own help, as --help after them does",
    async () => {
      const viaHelp = await cli(["help", "sched", "run"]);
      const viaFlag = await cli(["sched", "run", "--help"]);
      assert.equal(viaHelp.code, 0, viaHelp.stderr);
      // Once the help of `sched` (its first word only).
      assert.match(viaHelp.stdout, /^Usage: fastpath sched run \[flags\]$/m);
      assert.equal(viaHelp.stdout, viaFlag.stdout);
    },
  );

  await t.step("no arguments prints help and exits 2", async () => {
    const r = await cli([]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /Commands:/);
  });

  await t.step("an unknown command suggests the closest one and exits 2", async () => {
    const r = await cli(["reflekt", "eth0"]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), "error: unknown command 'reflekt' (did you mean reflect?): see 'fastpath --help'");
  });

  await t.step("an unknown flag and a bad choice are one-line usage errors", async () => {
    let r = await cli(["reflect", "lo", "--swapp", "all"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: unknown flag '--swapp' for reflect \(did you mean --swap\?\)/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    r = await cli(["reflect", "lo", "--swap", "everything"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--swap must be one of mac, mac-ip, all/);
    r = await cli(["probe", "lo", "--to", "198.18.0.1", "--rate", "fast"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--rate 'fast' is not a rate: use e\.g\. 100kpps/);
  });

  await t.step("a flag given twice is a usage error, not the last one silently kept", async () => {
    let r = await cli(["probe", "lo", "--to", "127.0.0.1", "--count", "1", "--count", "2"]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, "error: --count is given twice: give it once (see 'fastpath probe --help')\n");
    r = await cli(["reflect", "lo", "--tos-toggle", "--no-tos-toggle"]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      "error: --tos-toggle and --no-tos-toggle are both given: give one of them (see 'fastpath reflect --help')\n",
    );
  });

  await t.step("a flag where a value belongs is refused by name, not taken as the value", async () => {
    const give = (flag: string, cmd: string) =>
      `give ${flag} its value, or ${flag}=VALUE for one that starts with '-' (see 'fastpath ${cmd} --help')`;
    const cases: [string[], string][] = [
      [
        ["sched", "run", "--foreground", "--duration-s", "1"],
        `--foreground needs a value, got the flag --duration-s: ${give("--foreground", "sched run")}`,
      ],
      [["probe", "lo", "--to", "--count=3"], `--to needs a value, got the flag --count: ${give("--to", "probe")}`],
      [
        ["lab", "up", "--prefix", "--FORMAT", "json"],
        `--prefix needs a value, got the flag --FORMAT: ${give("--prefix", "lab up")}`,
      ],
      // A `--` taken as the value no longer hides the flags after it.
      [
        ["probe", "lo", "--netns", "--", "--to", "--count", "3"],
        `--netns needs a value, got '--': ${give("--netns", "probe")}`,
      ],
      // service print checks a unit's flags as the job does: such a unit failed at every start.
      [
        ["service", "print", "reflect", "lo", "--netns", "--tos-toggle"],
        `--netns needs a value, got the flag --tos-toggle: ${give("--netns", "reflect")}`,
      ],
    ];
    for (const [args, want] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `error: ${want}\n`);
    }
    // A negative number is a value; with `=`, a value that looks like a flag is the user's to give
    // (the option's own check judges it); `--help` after a flag still shows the help.
    let r = await cli(["reflect", "lo", "--nice", "-5", "--bogus"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: unknown flag '--bogus' for reflect/);
    r = await cli(["sched", "run", "--foreground=--odd-name"]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      "error: --foreground entries must each be a process name or a PID from 1 to 4194303, not '--odd-name'\n",
    );
    r = await cli(["reflect", "lo", "--netns", "--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^reflect ITO test frames/);
  });

  await t.step("a missing interface names the interface and how to list them (exit 4)", async () => {
    if (skipUnless(isRoot, "needs root to open AF_PACKET sockets")) return;
    const r = await cli(["reflect", "fp-missing0"]);
    assert.equal(r.code, 4, r.stderr);
    assert.equal(
      r.stderr.trim(),
      "error: cannot reflect on fp-missing0: no interface named 'fp-missing0' (see 'ip link')",
    );
    // A namespace that does not exist is named as such, not as a missing interface.
    const ns = `${labPrefix("fpt")}-nonesuch`;
    for (const cmd of [["probe", "fpd0", "--to", "10.9.9.9", "--count", "1"], ["doctor", "fpd0"]]) {
      const p = await cli([...cmd, "--netns", ns]);
      assert.equal(p.code, 4, p.stderr);
      assert.equal(p.stderr.trim(), `error: no network namespace named '${ns}' (see 'ip netns list')`, cmd[0]);
    }
  });

  await t.step("an interface that is down says how to bring it up (exit 5)", async () => {
    if (skipUnless(isRoot, "needs root to create a namespace")) return;
    const ns = `${labPrefix("fpt")}-cli-down`;
    await run(["ip", "netns", "del", ns]);
    await run(["ip", "netns", "add", ns]);
    try {
      const add = await run(["ip", "-n", ns, "link", "add", "fpdown0", "type", "veth", "peer", "name", "fpdown1"]);
      assert.equal(add.code, 0, add.stderr);
      const r = await cli(["reflect", "fpdown0", "--netns", ns]);
      assert.equal(r.code, 5, r.stderr);
      assert.match(
        r.stderr,
        /^error: cannot reflect on fpdown0: interface fpdown0 is down: bring it up with 'ip link set fpdown0 up'/,
      );
    } finally {
      await run(["ip", "netns", "del", ns]);
    }
    assert.ok(!(await netnsList()).includes(ns));
  });

  await t.step("lab run hands --coalesce-us to the afxdp reflector (0: no interrupt deferral)", async () => {
    if (skipUnless(isRoot, "needs root to create the lab's namespaces")) return;
    const results = async (extra: string[]) => {
      const r = await cli([
        ...["lab", "run", "--prefix", FPC, "--mode", "afxdp", "--size", "64", "--rate", "5kpps", "--duration-s", "1"],
        ...["--format", "json", ...extra],
      ]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split("\n").map((l) => JSON.parse(l)).filter((e) => e.type === "lab_result");
    };
    const [off] = await results(["--coalesce-us", "0"]);
    assert.equal(off.mode, "afxdp");
    assert.equal(off.probe.received, off.probe.sent);
    assert.equal(off.irq_deferred, false, "--coalesce-us 0 leaves the interrupts alone");
    const [dflt] = await results([]);
    const [major, minor] = Deno.osRelease().split(".").map(Number);
    assert.equal(dflt.irq_deferred, major > 6 || (major === 6 && minor >= 13), `kernel ${Deno.osRelease()}`);
    assert.ok(!(await netnsList()).some((n) => n.startsWith(`${FPC}-`)));
  });

  await t.step("a mode this platform lacks (macOS's bpf on Linux) is refused as unsupported (exit 6)", async () => {
    const r = await cli(["reflect", "lo", "--mode", "bpf"]);
    assert.equal(r.code, 6, r.stderr);
    assert.match(
      r.stderr,
      /^error: cannot reflect on lo: mode bpf is not available in this build: use --mode xdp or --mode afxdp or --mode packet/,
    );
  });

  await t.step("without root the error names the missing privilege (exit 3)", async () => {
    if (skipUnless(isRoot, "needs root to switch to an unprivileged user")) return;
    const r = await cliAsNobody(["reflect", "lo"]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^error: cannot reflect on lo: .*(run as root|permission)/);
  });

  await t.step(
    "scripts/fastpath run by a user with no writable home names the privilege (exit 3), not a Deno cache error",
    async () => {
      if (skipUnless(isRoot, "needs root to switch to an unprivileged user")) return;
      // It once died in Deno's npm cache under $HOME (exit 1, a stack trace) before it could say so.
      const r = await run([
        ...["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--reset-env"],
        ...[
          "env",
          "HOME=/nonexistent",
          "PATH=/usr/bin:/bin",
          "NO_COLOR=1",
          `${ROOT}/scripts/fastpath`,
          "reflect",
          "lo",
        ],
      ]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /^error: cannot reflect on lo: .*run as root/);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    },
  );

  await t.step(
    "without root, a probe in a namespace names the privilege (exit 3), not a missing interface",
    async () => {
      if (skipUnless(isRoot, "needs root to make a namespace and switch to an unprivileged user")) return;
      const ns = `${FPC}-nobody`;
      await run(["ip", "netns", "add", ns]);
      try {
        // It once said "no interface named 'lo' in namespace …" (exit 4): the interface is there.
        const r = await cliAsNobody(["probe", "lo", "--netns", ns, "--to", "127.0.0.1", "--count", "1"]);
        assert.equal(r.code, 3, r.stderr);
        assert.equal(
          r.stderr,
          `error: the probe sends raw frames in namespace ${ns}: run as root (or with CAP_NET_RAW/CAP_SYS_ADMIN), e.g. with sudo\n`,
        );
      } finally {
        await run(["ip", "netns", "del", ns]);
      }
    },
  );

  await t.step(
    "without root, a probe on lo and lab down name the privilege (exit 3), not a timeout, an address or ip's error",
    async () => {
      if (skipUnless(isRoot, "needs root to switch to an unprivileged user")) return;
      // They once said: ARP timeout (exit 9), "lo has no IPv4 address" (exit 2), a raw ip error (exit 10).
      for (
        const [args, what] of [
          [["probe", "lo", "--to", "127.0.0.1", "--count", "1"], "the probe sends raw frames"],
          [["probe", "lo", "--to", "02:00:00:00:00:01", "--count", "1"], "the probe sends raw frames"],
          [["lab", "down", "--prefix", `${FPC}-nb`], "the lab removes network namespaces"],
        ] as const
      ) {
        const r = await cliAsNobody([...args]);
        assert.equal(r.code, 3, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(`^error: ${what}: run as root \\(or with CAP_[A-Z_/]+\\), e\\.g\\. with sudo\n$`),
        );
      }
    },
  );

  await t.step(
    "a count, duration or interval that would run another length is refused (exit 2), naming the flag and its range",
    async () => {
      // They were taken: --count 0 sent for 5 s, reflect --duration-s -1 started and exited 0.
      const probe = ["probe", "lo", "--to", "02:00:00:00:00:01", "--rate", "1kpps"];
      for (
        const [args, say] of [
          [
            [...probe, "--count", "0"],
            "--count must be at least 1 frame, not 0 (leave it out to run for --duration-s)",
          ],
          [[...probe, "--duration-s", "0"], "--duration-s must be more than 0 seconds, not 0"],
          [[...probe, "--duration-s", "-1"], "--duration-s must be more than 0 seconds, not -1"],
          [
            ["lab", "run", "--prefix", `${FPC}-nb`, "--duration-s", "0"],
            "--duration-s must be more than 0 seconds, not 0",
          ],
          [["reflect", "lo", "--duration-s", "-1"], "--duration-s must be more than 0, not -1"],
          // --cpu -1 ran unpinned; --size 0 crossed as the library's imix and was reported as 0 bytes.
          [["reflect", "lo", "--mode", "packet", "--cpu", "-1"], "--cpu must be at least 0, not -1"],
          [[...probe, "--cpu", "-1"], "--cpu must be at least 0, not -1"],
          [[...probe, "--size", "0"], "--size '0' is not a frame size: give whole bytes (64 … 9018), min or imix"],
          [["reflect", "lo", "--duration-s", "0"], "--duration-s must be more than 0, not 0"],
          [["sched", "observe", "--duration-s", "0"], "--duration-s must be more than 0, not 0"],
          [["reflect", "lo", "--duration-s", "1", "--interval-ms", "0"], "--interval-ms must be 100 to 3600000, not 0"],
          [["sched", "observe", "--interval-ms", "2147483648"], "--interval-ms must be 100 to 3600000, not 2147483648"],
          [[...probe, "--count", "1", "--interval-ms", "0"], "--interval-ms must be 100 to 3600000, not 0"],
          // --threads is checked as it is parsed, by the scripting API's check (detect.ts checkThreads).
          [["sched", "status", "--threads", "-1"], "--threads must be a whole number from 0 to 65536, not -1"],
          [["sched", "observe", "--threads", "1.5"], "--threads must be a whole number from 0 to 65536, not 1.5"],
          // Refused as it is parsed, before the unknown flag after it (that one was the error).
          [
            ["sched", "status", "--threads", "70000", "--zz"],
            "--threads must be a whole number from 0 to 65536, not 70000",
          ],
        ] as const
      ) {
        const r = await cli([...args]);
        assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
        assert.equal(r.stderr, `error: ${say}\n`, args.join(" "));
      }
    },
  );

  await t.step(
    "a --cpu this machine lacks is refused before anything starts (exit 2), by probe and reflect",
    async () => {
      // The probe once printed random bytes here, later "error: probe on lo: transmit thread: cannot pin"
      // after its start line (exit 10); the reflector failed after its banner (exit 10).
      const cpus = navigator.hardwareConcurrency;
      for (
        const [args, what] of [
          [["probe", "lo", "--to", "02:00:00:00:00:01", "--count", "1", "--cpu", "999"], "cannot probe from lo"],
          [["reflect", "lo", "--mode", "packet", "--cpu", "999", "--duration-s", "1"], "cannot reflect on lo"],
        ] as const
      ) {
        const r = await cli([...args]);
        assert.equal(r.code, 2, r.stderr);
        assert.equal(
          r.stderr,
          `error: ${what}: --cpu 999 is not a CPU this process may use (${cpus} CPUs are; see nproc --all)\n`,
        );
      }
      const r = await cli(["reflect", "lo", "--mode", "packet", "--workers", "2", "--cpu", String(cpus - 1)]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^error: cannot reflect on lo: --cpu ${cpus - 1} with 2 workers needs CPUs`));
    },
  );

  await t.step(
    "a process narrowed to one CPU (taskset, as the bench narrows itself) still pins its worker to another",
    async () => {
      // The kernel lets a thread move to any CPU of its cpuset; refusing by the current affinity broke
      // `deno task bench` ("cpu 1 is not a CPU this process may use (1 CPUs are)").
      if (navigator.hardwareConcurrency < 2) {
        console.log("  skipped: needs 2 CPUs, this machine has 1");
        return;
      }
      const r = await run([
        "taskset",
        "-c",
        "0",
        DENO,
        ...["run", "-A", "--unstable-ffi", "--quiet", `${ROOT}/main.ts`],
        ...["reflect", "lo", "--mode", "packet", "--cpu", "1", "--duration-s", "1", "--no-stats-socket"],
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /packet mode/);
    },
  );

  await t.step(
    "xdp mode refuses --cpu, --workers and --coalesce-us, which it has no threads for, instead of ignoring them",
    async () => {
      const said = [
        [["--cpu", "0"], "--cpu and --workers are"],
        [["--workers", "2"], "--cpu and --workers are"],
        [["--coalesce-us", "200"], "--coalesce-us is"],
      ] as const;
      for (const [extra, what] of said) {
        const r = await cli(["reflect", "lo", "--mode", "xdp", "--duration-s", "1", ...extra]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `^error: cannot reflect on lo: ${what} for worker threads and xdp mode has none .*use --mode afxdp or packet\n$`,
          ),
        );
      }
      // 0 (off) is what xdp mode does anyway.
      const off = await cli(["reflect", "lo", "--mode", "xdp", "--duration-s", "1", "--coalesce-us", "0"]);
      assert.equal(off.code, 0, off.stderr);
    },
  );

  await t.step("numbers are decimal: 1e3, 0x10 and ' 5' are refused (exit 2), and --help gives the limit", async () => {
    for (const text of ["1e3", "0x10", " 5", "1_000"]) {
      const r = await cli(["reflect", "lo", "--mode", "packet", "--coalesce-us", text]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `error: --coalesce-us needs a decimal number, not '${text}'\n`);
    }
    const over = await cli(["reflect", "lo", "--mode", "packet", "--coalesce-us", "1001"]);
    assert.equal(over.code, 2, over.stderr);
    assert.match(over.stderr, /--coalesce-us 1001 must be a whole number from 0 to 1000/);
    const help = await cli(["reflect", "--help"]);
    assert.match(help.stdout.replace(/\s+/g, " "), /0 = off, at most 1000\)/);
  });

  await t.step(
    "lab run refuses a mode or coalescing period the reflector would refuse before it prints or builds anything",
    async () => {
      for (const extra of [["--mode", "bpf"], ["--coalesce-us", "2000"]]) {
        const r = await cli(["lab", "run", "--prefix", `${FPC}x`, "--size", "64", ...extra]);
        assert.equal(r.code, extra[1] === "bpf" ? 6 : 2, r.stderr);
        assert.match(r.stderr, /^error: cannot reflect on /, r.stderr);
        assert.equal(r.stderr.split("\n").filter(Boolean).length, 1, `no banner first: ${r.stderr}`);
        assert.ok(!(await netnsList()).some((n) => n.startsWith(`${FPC}x-`)), "no lab was built");
      }
    },
  );

  await t.step("a rate with a bare multiplier (1M) is refused, asking for Mpps or Mbps", async () => {
    for (
      const [rate, say] of [["1M", "1Mpps (frames/s) or 1Mbps (bits/s)"], ["2g", "2Gpps (frames/s) or 2Gbps (bits/s)"]]
    ) {
      const r = await cli(["probe", "lo", "--to", "02:00:00:00:00:01", "--count", "1", "--rate", rate]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `error: --rate '${rate}' is ambiguous: say ${say}\n`);
    }
  });

  await t.step("the sched_ext message asks for 6.12 only on older kernels, else names the kernel option", () => {
    assert.doesNotMatch(noSchedExt("6.18.0-1-amd64"), /6\.12/);
    assert.match(noSchedExt("6.18.0-1-amd64"), /built without CONFIG_SCHED_CLASS_EXT=y/);
    assert.match(noSchedExt("6.1.0-25-amd64"), /boot Linux 6\.12 or newer built with CONFIG_SCHED_CLASS_EXT=y/);
  });

  await t.step("a frame size outside 64..9018 is a usage error", async () => {
    const r = await cli(["probe", "lo", "--to", "02:00:00:00:00:01", "--size", "63", "--count", "1"]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr.trim(),
      "error: cannot probe from lo: --size 63 must be a frame size from 64 to 9018 bytes, or imix",
    );
  });

  await t.step("probe --port 0 is refused: no UDP destination (exit 2)", async () => {
    const r = await cli(["probe", "lo", "--to", "02:00:00:00:00:01", "--port", "0", "--count", "1"]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      "error: cannot probe from lo: --port 0 is not a UDP destination port: use the reflector's (3842 for ITO tests)\n",
    );
  });

  await t.step("a lab prefix that starts with a dash says the first character must be a letter or digit", async () => {
    const r = await cli(["lab", "up", "--prefix", "-rv"]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      "error: lab prefix '-rv' must be 1-9 letters, digits or dashes, starting with a letter or digit\n",
    );
  });

  await t.step("doctor reports every check and the modes, in text and JSON", async () => {
    const text = await cli(["doctor"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /ok +libbpf +libbpf 1\.([4-9]|\d\d), linked into the library/);
    for (const name of ["root", "bpf", "xdp", "af_xdp", "btf", "sched_ext", "library"]) {
      assert.match(text.stdout, new RegExp(`\\b${name}\\b`));
    }
    const json = await cli(["doctor", "--format", "json"]);
    const report = JSON.parse(json.stdout);
    assert.ok(report.modes.some((m: { mode: string; available: boolean }) => m.mode === "packet"));
    const scx = report.checks.find((c: { name: string }) => c.name === "sched_ext");
    const hasScx = await Deno.stat("/sys/kernel/sched_ext").then(() => true, () => false);
    assert.equal(scx.status, hasScx ? "ok" : "missing");
    if (!hasScx) assert.equal(scx.fix, "kernel ≥ 6.12 with CONFIG_SCHED_CLASS_EXT=y");
  });

  await t.step("--version prints the version, the library's ABI version and the kernel features found", async () => {
    const r = await cli(["--version"]);
    assert.equal(r.code, 0, r.stderr);
    const { version } = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
    const [first, lib, kernel] = r.stdout.trim().split("\n");
    assert.equal(first, `fastpath ${version}`);
    assert.match(lib, new RegExp(`^library: ABI ${ABI_VERSION}, libbpf 1\\.\\d+ \\(/.*libfastpath\\.(so|dylib)\\)$`));
    const scx = await Deno.stat("/sys/kernel/sched_ext").then(() => "yes", () => "no");
    assert.match(kernel, new RegExp(`^kernel: linux ${Deno.osRelease().replaceAll(".", "\\.")}: .*\\bxdp yes\\b`));
    assert.match(kernel, new RegExp(`\\bsched_ext ${scx}$`));
  });

  await t.step(
    "doctor IFACE names a veth's driver, its native XDP, no AF_XDP zero-copy, its queues and VLAN offload",
    async () => {
      if (skipUnless(isRoot, "needs root to create a namespace")) return;
      const ns = `${labPrefix("fpt")}-doctor`;
      await run(["ip", "netns", "del", ns]);
      await run(["ip", "netns", "add", ns]);
      try {
        const add = await run(["ip", "-n", ns, "link", "add", "fpd0", "type", "veth", "peer", "name", "fpd1"]);
        assert.equal(add.code, 0, add.stderr);
        await run(["ip", "netns", "exec", ns, "ethtool", "-K", "fpd0", "rxvlan", "off"]);
        const text = await cli(["doctor", "fpd0", "--netns", ns]);
        assert.equal(text.code, 0, text.stderr);
        assert.match(text.stdout, new RegExp(`\\nfpd0 \\(namespace ${ns}\\):\\n {5}driver +veth\\n`));
        assert.match(text.stdout, /\nok +rx-vlan +receive VLAN offload off/);
        const json = await cli(["doctor", "fpd0", "--netns", ns, "--format", "json"]);
        assert.equal(json.code, 0, json.stderr);
        const nic = JSON.parse(json.stdout).interface;
        const says = Number(Deno.osRelease().split(".")[0]) * 100 + Number(Deno.osRelease().split(".")[1]) >= 603;
        assert.deepEqual(
          [nic.driver, nic.native_xdp, nic.afxdp_zero_copy, nic.rx_queues, nic.tx_queues, nic.rx_vlan_offload],
          ["veth", says ? true : null, says ? false : null, 1, 1, false],
        );
        const none = await cli(["doctor", "fpd9", "--netns", ns]);
        assert.equal(none.code, 4);
        assert.equal(
          none.stderr.trim(),
          `error: no interface named 'fpd9' in namespace ${ns} (see 'ip link -n ${ns}')`,
        );
        // An interface that is in a namespace, asked for without --netns: the hint names the namespace.
        const here = await cli(["doctor", "fpd0"]);
        assert.equal(here.code, 4);
        assert.match(
          here.stderr,
          new RegExp(`^error: no interface named 'fpd0'; it is in namespace .*\\b${ns}\\b.*: add --netns \\S+\n$`),
        );
        const nons = await cli(["doctor", "fpd0", "--netns", `${ns}-none`]);
        assert.equal(nons.code, 4);
        assert.equal(nons.stderr.trim(), `error: no network namespace named '${ns}-none' (see 'ip netns list')`);
        // lo has no native XDP; on 6.3+ a features value of 0 says so, it is not "not reported".
        const lo = await cli(["doctor", "lo", "--netns", ns, "--format", "json"]);
        assert.equal(lo.code, 0, lo.stderr);
        assert.equal(JSON.parse(lo.stdout).interface.native_xdp, says ? false : null);
        const loText = await cli(["doctor", "lo", "--netns", ns]);
        if (says) assert.doesNotMatch(loText.stdout, /does not report/);
        if (says) assert.match(loText.stdout, /lo has no native XDP/);
      } finally {
        await run(["ip", "netns", "del", ns]);
      }
      assert.ok(!(await netnsList()).includes(ns));
    },
  );

  await t.step(
    "doctor says whether this kernel lets fentry programs attach, and which detectors a refusal turns off",
    async () => {
      if (skipUnless(isRoot, "attaching the detectors needs root")) return;
      // The kernel of this project's development host (6.18) refuses them; doctor once did not say so.
      let absent: string[];
      try {
        const d = await Detector.start();
        absent = d.status().absent;
        d.close();
      } catch (err) {
        if (skipUnless(false, `the detectors do not start here: ${(err as Error).message}`)) return;
        throw err;
      }
      const refused = absent.filter((a) => /fentry/.test(a)).map((a) => a.split(":")[0]);
      const r = await cli(["doctor", "--format", "json"]);
      assert.equal(r.code, 0, r.stderr);
      const check = JSON.parse(r.stdout).checks.find((c: { name: string }) => c.name === "fentry");
      assert.ok(check, r.stdout);
      if (refused.length === 0) assert.equal(check.status, "ok", JSON.stringify(check));
      else {
        assert.equal(check.status, "warn", JSON.stringify(check));
        assert.match(
          check.detail,
          /^this kernel refuses fentry programs \(.+\): sched run and sched observe go without/,
        );
        for (const what of refused) assert.ok(check.detail.includes(what), `${what} in ${check.detail}`);
      }
    },
  );

  await t.step(
    "sched and observe help give each knob's range as the library checks it, beside its default",
    async () => {
      const run = (await cli(["sched", "--help"])).stdout;
      assert.match(run, /--slice-us N\n +slice of a task that rarely wakes, µs \[50 to 100000, default: 5000\]/);
      assert.match(run, /--watchdog-ms N\n.*\[0 or \d+ to \d+, default: /);
      assert.match(run, /--chain-hops N\n.*\[0 to 4, default: /);
      const observe = (await cli(["sched", "observe", "--help"])).stdout;
      assert.match(observe, /--chain-hops N\n.*\[0 to 4, default: /);
      // --threads gave no range (it has one: detect.ts MAX_THREADS), nor does a flag without a default.
      assert.match(observe, /--threads N\n.*\[0 to 65536, default: 64\]/);
      assert.match((await cli(["sched", "status", "--help"])).stdout, /--threads N\n.*\(at most N\) \[0 to 65536\]/);
      // A bound on one side only is shown too, worded as its refusal is (it was left out).
      const reflect = (await cli(["reflect", "--help"])).stdout;
      assert.match(reflect, /--cpu N\n +pin worker i to CPU N\+i \[at least 0\]/);
      assert.match(reflect, /--duration-s N\n.*\(default: run until stopped\) \[more than 0\]/);
      // Without the library help still prints: the knobs' defaults, the CLI's own ranges, and why
      // the knobs' ranges are missing.
      const bare = await cli(["sched", "run", "--help"], { FASTPATH_LIB: "/nonexistent/libfastpath.so" });
      assert.equal(bare.code, 0, bare.stderr);
      assert.match(bare.stdout, /--slice-us N\n +slice of a task that rarely wakes, µs \[default: 5000\]/);
      assert.match(bare.stdout, /--interval-ms N\n.*\[100 to 3600000, default: 1000\]/);
      assert.match(bare.stdout, /range is in brackets \(the library's: not shown when it cannot load\)/);
      // Help wins over a bad value given with it (it printed the value's error, exit 2).
      for (
        const args of [["sched", "status", "--threads", "-1", "-h"], ["sched", "run", "--interval-ms", "5", "--help"]]
      ) {
        const h = await cli(args);
        assert.equal(h.code, 0, `${args.join(" ")}: ${h.stderr}`);
        assert.match(h.stdout, /^Usage: fastpath sched (status|run) \[flags\]$/m, args.join(" "));
      }
      // A knob inside its own range can still break a relation with another, left at its default:
      // help says so, and the refusal names both as flags, not as a failure to attach.
      const relations = /--slice-min-us <= --slice-us, --lag-us <= --lag-max-us, --busy-low-pct <= --busy-high-pct/;
      assert.match(run, relations);
      assert.match((await cli(["sched", "run", "--help"])).stdout, relations); // only sched's help said so
      const rel = await cli(["sched", "run", "--slice-us", "50"]);
      assert.equal(rel.code, 2);
      assert.equal(rel.stderr, "error: --slice-min-us must be 10 to --slice-us (50), not 500\n");
      // What help promises is what a run refuses.
      const r = await cli(["sched", "run", "--slice-us", "100001"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--slice-us must be 50 to 100000, not 100001/);
    },
  );

  await t.step("sched help gives every tunable with its unit in the name", async () => {
    const r = await cli(["sched", "--help"]);
    for (
      const flag of [
        "slice-us",
        "slice-min-us",
        "lag-us",
        "lag-max-us",
        "wake-ref-hz",
        "latency-hz",
        "busy-high-pct",
        "busy-low-pct",
        "foreground-weight-pct",
        "watchdog-ms",
      ]
    ) {
      assert.match(r.stdout, new RegExp(`--${flag} N\\n`));
    }
    assert.match(r.stdout, /11 +the kernel ejected the scheduler/);
  });

  await t.step(
    "on a kernel without sched_ext every sched action says so in one line with the fix (exit 6)",
    async () => {
      const hasScx = await Deno.stat("/sys/kernel/sched_ext").then(() => true, () => false);
      if (skipUnless(!hasScx, "this kernel has sched_ext; tests/vm/sched.vmtest.ts covers it")) return;
      // "boot 6.12 or newer" only for a kernel older than that (this host's 6.18 lacks only the option).
      const why = noSchedExt(Deno.osRelease());
      assert.match(why, /CONFIG_SCHED_CLASS_EXT=y/);
      for (const [action, prefix] of [["run", "cannot attach the scheduler: "], ["stats", ""]]) {
        const r = await cli(["sched", action]);
        assert.equal(r.code, 6, r.stderr);
        assert.equal(r.stderr, `error: ${prefix}${why}\n`);
      }
      // status still answers: the kernel's state, and the detectors (observe needs no sched_ext).
      const r = await cli(["sched", "status", "--format", "json"]);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.state, "unsupported");
      assert.equal(j.enable_seq, null);
      const text = await cli(["sched", "status"]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, new RegExp(`^state: +unsupported \\(${why}\\)\n`));
    },
  );

  await t.step("bad sched flags are usage errors (exit 2) on any kernel, before anything is attached", async () => {
    for (
      const [args, msg] of [
        [["run", "--signals-off", "nonsense"], "--signals-off must be one of input, wake, irq"],
        // Once accepted as "none off".
        [["observe", "--signals-off", ""], "--signals-off needs one or more of input, wake, irq"],
        [["run", "--signals-off", " , "], "--signals-off needs one or more of input, wake, irq"],
        // These two were once taken without a word.
        [["run", "--signals-off", "gpu,gpu"], "--signals-off names gpu twice: name each detector once"],
        [["observe", "--signals-off", "gpu,"], '--signals-off has an empty item in "gpu,": name each detector once'],
        [["run", "--chain-hops", "9"], "--chain-hops must be 0 to 4, not 9"],
        [["run", "--busy-low-pct", "90"], "--busy-low-pct (90) must not exceed --busy-high-pct (75)"],
        [["status", "--threads", "-1"], "--threads must be a whole number from 0 to 65536, not -1"],
        [["observe", "--threads", "-1"], "--threads must be a whole number from 0 to 65536, not -1"],
        [["observe", "--game", ""], "--game must be one process name or a PID from 1 to 4194303, not ''"],
        [["observe", "--game", "-5"], "--game must be one process name or a PID from 1 to 4194303, not '-5'"],
        [["run", "--game", "a,b"], "--game must be one process name or a PID from 1 to 4194303, not 'a,b'"],
        // Once "a whole number from 0 to 4294967295" (the field's C type) for -1, "0 to 4" for 5.
        [["observe", "--chain-hops", "-1"], "--chain-hops must be 0 to 4, not -1"],
        [["run", "--chain-hops", "1.5"], "--chain-hops must be a whole number from 0 to 4, not 1.5"],
        [["run", "--slice-us", "-1"], "--slice-us must be 50 to 100000, not -1"],
        // These once reached the sched_ext check (exit 6 here) or were silently dropped.
        [["run", "--compositor", ""], "--compositor must be one process name or a PID from 1 to 4194303, not ''"],
        [["observe", "--compositor", "0"], "--compositor must be one process name or a PID from 1 to 4194303, not '0'"],
        // An empty entry was "must be one process name ..., not ''": no word of the list's commas.
        [["run", "--foreground", ""], "--foreground is empty: give a process name or a PID"],
        // A blank value alone got the hint about the list's commas, which it has none of.
        [["run", "--foreground", " "], "--foreground is empty: give a process name or a PID"],
        [
          ["run", "--foreground", "a,,b"],
          "--foreground has an empty entry: give a process name or a PID in each (no comma",
        ],
        [["run", "--foreground", "game,"], "--foreground has an empty entry"],
        // A PID given twice was named twice: "no process 4194303, 4194303".
        [["run", "--foreground", "4194303,4194303"], "--foreground: no process 4194303: give a running PID"],
        [["run", "--foreground", "4194303,04194303"], "--foreground: no process 4194303: give a running PID"],
        // A kernel thread was refused only by setForeground, after the attach (exit 6 here).
        [["run", "--foreground", "game,2"], "--foreground: PID 2 is a kernel thread, not a game or an application"],
        // An entry of the list was "--foreground must be one process name", as if it took one.
        [
          ["run", "--foreground", "game,0"],
          "--foreground entries must each be a process name or a PID from 1 to 4194303",
        ],
        // These once attached the scheduler first, then failed in the library (exit 2, the scheduler
        // left attached by a script's Scheduler.start).
        [["run", "--foreground", "/usr/bin/game"], "--foreground: '/usr/bin/game' is not a process name"],
        // A path passed as --game or --compositor was cut to 15 bytes and never matched a command name.
        [["run", "--game", "/usr/bin/eldenring.exe"], "--game: '/usr/bin/eldenring.exe' is not a process name"],
        [["observe", "--compositor", "bin/kwin"], "--compositor: 'bin/kwin' is not a process name"],
        [["run", "--foreground", " , "], "--foreground is empty: give a process name or a PID"],
        [["run", "--foreground", "x".repeat(300)], "is not a process name: give the command or executable's base name"],
        [
          ["run", "--foreground", Array.from({ length: 65 }, (_, i) => `g${i}`).join(",")],
          "--foreground takes at most 64 entries, not 65: name fewer",
        ],
        [
          ["run", "--no-signals", "--chain-hops", "3"],
          "--chain-hops is a detector setting, and the detectors are off (--no-signals): drop one of them",
        ],
        [
          ["run", "--signals-off", "gpu", "--no-signals"],
          "--signals-off is a detector setting, and the detectors are off (--no-signals): drop one of them",
        ],
        [["run", "--watchdog-ms", "-1"], "--watchdog-ms must be 0 or 500 to 30000, not -1"],
        // A flag taken as a value: it once ran in full mode with a process named "--partial".
        [
          ["run", "--foreground", "--partial"],
          "--foreground needs a value, got the flag --partial: give --foreground its value",
        ],
        [["run", "--compositor", "99999999999"], "--compositor must be one process name or a PID from 1 to 4194303"],
        // PID_MAX_LIMIT is pid_max's ceiling; PIDs stay below it (it was taken, and named, as the largest).
        [["run", "--compositor", "4194304"], "--compositor must be one process name or a PID from 1 to 4194303"],
        // commander kept the last of a repeated flag without a word.
        [
          ["observe", "--game", "a", "--game", "b"],
          "--game is given twice: give it once (see 'fastpath sched observe --help')",
        ],
        [["run", "--chain-hops=1", "--chain-hops", "2"], "--chain-hops is given twice: give it once"],
      ] as const
    ) {
      const r = await cli(["sched", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.ok(r.stderr.startsWith("error: ") && r.stderr.includes(msg), r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    }
  });

  await t.step("a thread given as the game, the compositor or the foreground is named as given", async () => {
    // `--foreground 61` (a thread of init) once said "PID 1 is init", never naming 61, and a unit
    // printed with it was refused only when it started; `--game` of a thread said "no such process
    // runs" of a running thread, and `--game 1` made init the game (in partial mode its threads
    // would have moved to SCHED_EXT).
    const own = [...Deno.readDirSync(`/proc/${Deno.pid}/task`)].map((e) => Number(e.name)).find((t) => t !== Deno.pid);
    assert.ok(own, "this test's process has threads");
    let r = await cli(["sched", "observe", "--game", String(own)]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `error: --game: PID ${own} is a thread of process ${Deno.pid}: give ${Deno.pid}\n`);
    r = await cli(["sched", "observe", "--game", "1"]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, "error: --game: PID 1 is init, not a game or an application: give another PID\n");
    r = await cli(["sched", "run", "--compositor", "2"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error: --compositor: PID 2 is a kernel thread, not a game or an application/);
    const tids = [...Deno.readDirSync("/proc/1/task")].map((e) => Number(e.name)).filter((t) => t !== 1);
    if (skipUnless(tids.length > 0, "init (PID 1) has no thread besides itself here")) return;
    const want = `--foreground: PID ${
      tids[0]
    } is a thread of init (PID 1), not a game or an application: give another PID`;
    for (
      const args of [["sched", "run", "--foreground", `game,${tids[0]}`], [
        "service",
        "print",
        "sched",
        "--foreground",
        `${tids[0]}`,
      ]]
    ) {
      r = await cli(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr, `error: ${want}\n`, args.join(" "));
    }
  });

  await t.step("a bad --src-mac is refused naming the flag", async () => {
    // It once said only "'bad' is not a MAC address", with no flag.
    const r = await cli(["probe", "lo", "--to", "127.0.0.1", "--count", "1", "--src-mac", "bad"]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, "error: --src-mac 'bad' is not a MAC address (like 00:c0:17:12:34:56)\n");
  });

  await t.step("a rate of 0 is refused, not taken as the fastest", async () => {
    // It once sent at full speed (335 kpps in the lab): 0 is how the library spells "max".
    for (const rate of ["0", "0kpps", "0mbps"]) {
      const r = await cli(["probe", "lo", "--to", "127.0.0.1", "--count", "1", "--rate", rate]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^error: --rate \S+ is below one frame a second: give a rate, or max for the fastest\n$/);
    }
  });

  await t.step("a duration held in ns by the library is refused in the unit the user gave", async () => {
    // The refusal once showed the converted value: "--drain-ms must be … not -1000000".
    const r = await cli(["probe", "lo", "--to", "127.0.0.1", "--count", "1", "--drain-ms", "-1"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error: --drain-ms must be from 0 to \d+, not -1\n$/);
  });

  await t.step("an unknown sched action is a usage error", async () => {
    const r = await cli(["sched", "start"]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "error: unknown sched action 'start': use run, observe, status or stats\n");
    const one = await cli(["service", "lint"]);
    assert.equal(one.code, 2);
    assert.equal(one.stderr, "error: unknown service action 'lint': use print\n", "a command with one action names it");
  });
});

Deno.test("sched status's stranded line", async (t) => {
  await t.step(
    "it names each thread left SCHED_EXT, its process and a per-thread fix, in the singular and the plural",
    () => {
      // It once read "it run", "them run" and "(process 1, 2, 3)", and advised chrt --all-tasks, which
      // also demotes a process's real-time threads (fastpath never moves those).
      assert.equal(
        strandedText({ tids: [120], pids: [120] }),
        "stranded:    1 thread has the SCHED_EXT policy with no scheduler attached (TID 120; process 120): a partial-mode sched run killed before it put it back may have left it; it runs as SCHED_NORMAL now, but the next sched_ext scheduler to attach takes it - put it back with: sudo chrt --other --pid 0 120",
      );
      const many = strandedText({ tids: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], pids: [1, 5] });
      assert.match(
        many,
        /^stranded: {4}10 threads have the SCHED_EXT policy .*\(TIDs 1, 2, 3, 4, 5, 6, 7, 8, … \(10 in all\); processes 1, 5\)/,
      );
      assert.match(
        many,
        /; they run as SCHED_NORMAL now, .* takes them - put each back with: sudo chrt --other --pid 0 TID$/,
      );
    },
  );
});

Deno.test("the probe's summary", async (t) => {
  const clean = sampleProbeReport({
    state: "done",
    sent: 100_000,
    received: 100_000,
    hostRxDropped: 0,
    linkRxDropped: 0,
    txPps: 100_000,
    rxPps: 100_000,
    rxL2Mbps: 51.2,
    rxWireMbps: 67.2,
    txWireMbps: 67.2,
    rttUs: { min: 20, p50: 40, p99: 90, p999: 120, max: 300, mean: 45 },
  });

  await t.step("a clean run has no notes: no probe-side, pacing or host line", () => {
    const text = probeSummary(clean);
    assert.match(text, /^sent 100000, received 100000, lost 0 /);
    assert.match(text, /every reflection had exactly the expected fields swapped/);
    assert.doesNotMatch(text, /^(probe side|pacing|this host):/m);
  });

  await t.step("loss the probe's own kernel dropped is named as this host's, with the sysctl that raises it", () => {
    const text = probeSummary({ ...clean, received: 99_315, lost: 685, lossPct: 0.685, hostRxDropped: 685 });
    assert.match(text, /^this host: its kernel dropped 685 frames arriving on the probe's interface/m);
    assert.match(text, /not the path or the reflector/);
    assert.match(text, /sysctl -w net\.core\.netdev_max_backlog=N/);
  });

  await t.step(
    "drops the interface counted but this host's backlog did not make are the link's, not this host's",
    () => {
      const text = probeSummary({ ...clean, received: 0, lost: 50, lossPct: 100, linkRxDropped: 50 });
      assert.doesNotMatch(text, /^this host:/m);
      assert.match(text, /^link: 50 frames were dropped on their way to the probe's interface, not by this host's/m);
    },
  );

  await t.step("a rate the sender could not reach is named as requested and reached, not blamed on pausing", () => {
    const text = probeSummary({ ...clean, txPps: 162_000, txSlipped: 838_000 }, 1_000_000);
    assert.match(text, /^rate: requested 1\.0 Mpps, reached 162\.0 kpps: this machine could not send faster/m);
    assert.doesNotMatch(text, /^pacing:/m);
    assert.doesNotMatch(probeSummary(clean, 100_000), /^rate:/m);
  });

  await t.step(
    "the live line shows this interval's rates and loss beside the totals, in flight apart from lost",
    () => {
      const prev = { ...clean, elapsedS: 1, sent: 10_000, received: 9_000, lost: 0, inFlight: 1_000 };
      const now = { ...clean, elapsedS: 2, sent: 20_000, received: 18_000, lost: 900, inFlight: 1_100, lossPct: 4.737 };
      const line = probeLine(now, prev, 1);
      // this second: 10 000 sent, 9 000 back, 900 of the 9 900 that left the drain window lost
      assert.match(
        line,
        /^2\.0 s: sent 10\.0 kpps, back 9\.0 kpps, loss 9\.091 % \| total lost 900 \(4\.737 %\), sent 20000, back 18000, in flight 1100/,
      );
    },
  );

  await t.step(
    "a sender stopped for 1.5 s of a 4 s run is a stall with its length and the rate it reached, not a slow machine",
    () => {
      const text = probeSummary({ ...clean, txPps: 13_330, txSlipped: 26_679, txLateMaxMs: 1_500 }, 20_000);
      assert.match(
        text,
        /^pacing: 26679 frames were not sent: the sender was kept off the CPU for up to 1\.50 s, so it reached 13\.3 kpps of the 20\.0 kpps requested/m,
      );
      assert.doesNotMatch(text, /^rate:/m);
    },
  );

  await t.step("RTT percentiles stay within the min and max seen, whatever their bucket's midpoint", () => {
    // Every sample at 71.0-71.3 µs, in a bucket spanning 64-80 µs: the midpoint, 72, was once the p99.9.
    const lower = (i: number) => [0, 64_000, 80_000][i] ?? 96_000;
    const rtt = rttSummary([0, 1000, 0], lower, 71_000, 71_266, 71_100);
    assert.ok(rtt.p50 <= rtt.max && rtt.p99 <= rtt.max && rtt.p999 <= rtt.max, JSON.stringify(rtt));
    assert.ok(rtt.p50 >= rtt.min, JSON.stringify(rtt));
    assert.equal(rtt.p999, 71.266);
  });

  await t.step("frames the sender could not send in time are a pacing line that names --cpu and --nice", () => {
    const text = probeSummary({ ...clean, txSlipped: 1509 });
    assert.match(
      text,
      /^pacing: 1509 frames were not sent: .* give it a quieter core with --cpu or a higher priority with --nice$/m,
    );
  });
});
