/**
 * `fastpath service print reflect IFACE …` / `service print sched …`: a systemd unit (or, for the
 * reflector, a launchd plist) that runs the job under a supervisor. The job's flags are checked against
 * the job's own command (reflect, sched run) before anything is printed, so a unit never holds a flag
 * the program would refuse at start. docs/service.md says how to install one.
 */
import { EXIT_CODES, FastpathError } from "../../ffi/error.ts";
import { choice, type Command, command, type Option, refuseFlagValues, refuseRepeats, setExit, text } from "./flags.ts";
import { reflect } from "./reflect.ts";
import { foregroundSpecs, sched } from "./sched.ts";
import { detectOptionsOf } from "./observe.ts";
import { checkSchedStart, type SchedulerOptions } from "../sched.ts";

/** Where scripts/install puts fastpath; a unit runs it from there unless --exec says otherwise. */
export const INSTALLED_PATH = "/usr/local/bin/fastpath";

const JOBS = ["reflect", "sched"] as const;
type Job = typeof JOBS[number];
const MANAGERS = ["systemd", "launchd"] as const;
type Manager = typeof MANAGERS[number];

/**
 * Exit codes a restart cannot cure: bad usage, missing privilege, unsupported here, wrong library, and
 * (for the scheduler) another scheduler owning sched_ext. A supervisor stops at these; it restarts
 * after the others (a failed run, an ejection), within the start limit.
 */
function noRestartCodes(job: Job): number[] {
  const codes = [EXIT_CODES.usage, EXIT_CODES.permission_denied, EXIT_CODES.unsupported, EXIT_CODES.library];
  return job === "sched" ? [...codes, EXIT_CODES.busy] : codes;
}

/** The capabilities each job needs instead of full root, each with why. */
function capabilities(job: Job, netns: boolean): Array<[string, string]> {
  const caps: Array<[string, string]> = job === "reflect"
    ? [
      ["CAP_NET_RAW", "AF_PACKET and AF_XDP sockets"],
      ["CAP_NET_ADMIN", "attaching XDP, promiscuous mode, the device's interrupt deferral"],
      ["CAP_BPF", "loading the XDP program and its maps"],
      ["CAP_PERFMON", "the XDP program's pointer arithmetic on packet data"],
      ["CAP_SYS_NICE", "--nice below 0 and --cpu pinning"],
      ["CAP_IPC_LOCK", "AF_XDP's UMEM: locked memory beyond RLIMIT_MEMLOCK"],
    ]
    : [
      ["CAP_SYS_ADMIN", "attaching a sched_ext scheduler (struct_ops)"],
      ["CAP_BPF", "loading the scheduler and the detectors"],
      ["CAP_PERFMON", "the detectors' fentry and tracepoint programs"],
      ["CAP_SYS_NICE", "the loader's own priority"],
      ["CAP_SYS_PTRACE", "the detectors read other users' /proc/PID/environ (SteamGameId) and maps"],
      ["CAP_DAC_READ_SEARCH", "the detectors read other users' /proc/PID/fd (GPU and audio devices)"],
    ];
  if (netns && job === "reflect") caps.push(["CAP_SYS_ADMIN", "--netns: entering the namespace (setns)"]);
  return caps;
}

/** One ExecStart word, quoted for systemd when it needs it (`$` and `%` are systemd's own). */
function unitWord(w: string): string {
  const s = w.replaceAll("%", "%%").replaceAll("$", "$$$$");
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? s : `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** `systemd-escape`: a name as it appears inside a unit name (`-` becomes \x2d). */
export function systemdEscape(name: string): string {
  return [...new TextEncoder().encode(name)].map((b, i) => {
    const c = String.fromCharCode(b);
    return /[A-Za-z0-9:_]/.test(c) || (c === "." && i > 0) ? c : `\\x${b.toString(16).padStart(2, "0")}`;
  }).join("");
}

/** The file name a job's unit or plist is meant to be installed as. */
export function serviceName(job: Job, iface: string | undefined, manager: Manager): string {
  if (manager === "launchd") return `local.fastpath.${job}${iface ? `.${iface}` : ""}.plist`;
  return `fastpath-${job}${iface ? `-${systemdEscape(iface)}` : ""}.service`;
}

export interface ServiceSpec {
  job: Job;
  /** The program and its arguments, as the supervisor runs them. */
  argv: string[];
  /** The reflector's interface (none for the scheduler). */
  iface?: string;
  /** The interface lives in another network namespace (--netns). */
  netns: boolean;
  /** --stats-socket's path, when given. */
  statsSocket?: string;
}

/** Where the job writes outside its RuntimeDirectory (/run/fastpath): a --stats-socket elsewhere. */
function writablePaths(spec: ServiceSpec): string[] {
  const dir = spec.statsSocket?.replace(/\/[^/]*$/, "") || "/";
  return spec.statsSocket && dir !== "/run/fastpath" && !dir.startsWith("/run/fastpath/") ? [dir] : [];
}

/** The systemd unit for `spec`. */
export function systemdUnit(spec: ServiceSpec): string {
  const { job, iface } = spec;
  const caps = capabilities(job, spec.netns);
  const device = iface && !spec.netns ? `sys-subsystem-net-devices-${systemdEscape(iface)}.device` : undefined;
  const families = job === "reflect"
    ? "AF_UNIX AF_NETLINK AF_PACKET AF_XDP AF_INET AF_INET6"
    : "AF_UNIX AF_NETLINK AF_INET AF_INET6";
  const lines = [
    `# ${serviceName(job, iface, "systemd")}: written by 'fastpath service print'. Install: docs/service.md`,
    "[Unit]",
    job === "reflect" ? `Description=fastpath ITO reflector on ${iface}` : "Description=fastpath sched_ext scheduler",
    ...(device ? [`BindsTo=${device}`] : []),
    ...(job === "reflect"
      ? [
        "# at boot, start once the network is configured (its links up), not merely once it is being set up",
        `After=${device ? `${device} ` : ""}network-online.target`,
        "Wants=network-online.target",
      ]
      : ["After=network.target"]),
    ...(job === "sched" ? ["ConditionPathIsDirectory=/sys/kernel/sched_ext"] : []),
    "# at most 10 starts in 5 minutes (one each RestartSec: a link still down at start, exit 5, is",
    "# retried for over 2 minutes), then the unit stays failed until 'systemctl reset-failed'",
    "StartLimitIntervalSec=300",
    "StartLimitBurst=10",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${spec.argv.map(unitWord).join(" ")}`,
    "# fastpath stops cleanly on SIGINT (exit 0), like Ctrl-C: the XDP program or scheduler leaves with it",
    "KillSignal=SIGINT",
    "TimeoutStopSec=15",
    "Restart=on-failure",
    "RestartSec=15",
    "# usage, privilege, unsupported, library" + (job === "sched" ? ", another scheduler owns sched_ext" : "") +
    ": a restart cannot cure these",
    `RestartPreventExitStatus=${noRestartCodes(job).join(" ")}`,
    "# root's uid for /run/fastpath, but only these capabilities:",
    ...caps.map(([c, why]) => `#   ${c}: ${why}`),
    `CapabilityBoundingSet=${caps.map(([c]) => c).join(" ")}`,
    `AmbientCapabilities=${caps.map(([c]) => c).join(" ")}`,
    "# BPF maps are locked memory on kernels before 5.11",
    "LimitMEMLOCK=infinity",
    "NoNewPrivileges=yes",
    "# /run/fastpath holds the per-interface locks; it outlives the unit so other fastpath runs keep theirs",
    "RuntimeDirectory=fastpath",
    "RuntimeDirectoryPreserve=yes",
    ...writablePaths(spec).flatMap((d) => [
      "# --stats-socket's directory (everything else is read-only); it must exist before the unit starts",
      `ReadWritePaths=${d}`,
    ]),
    "ProtectSystem=strict",
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    ...(job === "reflect" ? ["RestrictRealtime=yes"] : []),
    ...(spec.netns ? [] : ["RestrictNamespaces=yes"]),
    `RestrictAddressFamilies=${families}`,
    "SystemCallArchitectures=native",
    "# no MemoryDenyWriteExecute: the JavaScript engine compiles code at run time",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
  ];
  return lines.join("\n") + "\n";
}

function xml(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

/** The launchd plist for the reflector on macOS (a LaunchDaemon: it needs root for /dev/bpf). */
export function launchdPlist(spec: ServiceSpec): string {
  const label = serviceName(spec.job, spec.iface, "launchd").replace(/\.plist$/, "");
  const log = `/var/log/${label}.log`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- ${xml(label)}.plist: written by 'fastpath service print'. Install: docs/service.md -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>${xml(label)}</string>
  <key>ProgramArguments</key>
  <array>
${spec.argv.map((a) => `    <string>${xml(a)}</string>`).join("\n")}
  </array>
  <key>RunAtLoad</key>
  <true/>
  <!-- restart after a non-zero exit (a failure), not after a clean stop (exit 0) -->
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ThrottleInterval</key>
  <integer>10</integer>
  <key>ExitTimeOut</key>
  <integer>15</integer>
  <key>StandardOutPath</key>
  <string>${xml(log)}</string>
  <key>StandardErrorPath</key>
  <string>${xml(log)}</string>
</dict>
</plist>
`;
}

/** The job's command in the command table (reflect, or sched's run). */
function jobCommand(job: Job): Command {
  if (job === "reflect") return reflect as unknown as Command;
  return sched.commands.find((c) => c.name() === "run") as unknown as Command;
}

/**
 * Checks `args` against the job's own flags and values (the same parsers the job uses), and returns its
 * interface (reflect) and whether --netns is given.
 */
export function checkJobArgs(
  job: Job,
  args: string[],
): { iface?: string; netns: boolean; statsSocket?: string; schedOptions?: SchedulerOptions } {
  const cmd = jobCommand(job);
  const label = job === "reflect" ? "reflect" : "sched run";
  refuseRepeats(cmd.options as unknown as Option[], args, `fastpath ${label}`);
  refuseFlagValues(cmd.options as unknown as Option[], args, `fastpath ${label}`);
  const operands: string[] = [];
  const values: Record<string, unknown> = {};
  let netns = false;
  let statsSocket: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("-")) {
      operands.push(a);
      continue;
    }
    const [flag, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a];
    const opt = cmd.options.find((o) => o.long === flag || o.short === flag);
    if (!opt || flag === "--help" || flag === "-h") {
      throw new FastpathError("usage", `'${flag}' is not a flag of ${label}: see 'fastpath ${label} --help'`);
    }
    if (flag === "--netns") netns = true;
    if (opt.required || opt.optional) {
      const value = inline ?? args[++i];
      if (value === undefined) {
        throw new FastpathError("usage", `${flag} needs a value: see 'fastpath ${label} --help'`);
      }
      values[opt.attributeName()] = opt.parseArg ? opt.parseArg(value, undefined as never) : value;
      if (flag === "--stats-socket") statsSocket = value;
    } else {
      values[opt.attributeName()] = !opt.negate;
    }
    if (flag === "--no-stats-socket") statsSocket = undefined;
  }
  // What sched run's start refuses before it loads anything, on the unit's flags (checked by the caller:
  // the library's part needs the library).
  const schedOptions: SchedulerOptions | undefined = job === "sched"
    ? {
      ...values,
      foreground: values.foreground === undefined ? undefined : foregroundSpecs(values.foreground as string),
      partial: values.partial === true,
      signals: values.signals !== false,
      detect: detectOptionsOf(values),
    }
    : undefined;
  const want = cmd.registeredArguments.length;
  // The job's own argument parsers (reflect's interface name), as at its start.
  operands.forEach((o, i) => cmd.registeredArguments[i]?.parseArg?.(o, undefined as never));
  if (operands.length !== want) {
    const usage = `fastpath service print ${job}${want ? " IFACE" : ""} [${label} flags]`;
    throw new FastpathError(
      "usage",
      want
        ? `service print ${job} needs one interface, got ${
          operands.length ? `'${operands.join(" ")}'` : "none"
        }: ${usage}`
        : `service print ${job} takes no arguments, got '${operands.join(" ")}': ${usage}`,
    );
  }
  return { iface: operands[0], netns, statsSocket, schedOptions };
}

/** The reflector's modes on macOS (zig/src/sys/os_darwin.zig reflector_modes, and auto). */
const MACOS_MODES = ["auto", "bpf"];

/** The last --mode among the job's flags, if any. */
function launchdMode(args: string[]): string | undefined {
  let mode: string | undefined;
  args.forEach((a, i) => {
    if (a === "--mode") mode = args[i + 1];
    else if (a.startsWith("--mode=")) mode = a.slice(7);
  });
  return mode;
}

/** The unit or plist text for a job and its flags; `exec` is the fastpath the supervisor runs. */
export async function serviceText(job: Job, args: string[], manager: Manager, exec: string): Promise<string> {
  const { iface, netns, statsSocket, schedOptions } = checkJobArgs(job, args);
  // A unit never holds a command line its start would refuse: sched run's own checks, the library's too.
  if (schedOptions) await checkSchedStart(schedOptions);
  if (manager === "launchd" && job === "sched") {
    throw new FastpathError(
      "unsupported",
      "sched_ext is a Linux feature: launchd has no scheduler to run; use --manager systemd on Linux",
    );
  }
  const mode = launchdMode(args);
  if (manager === "launchd" && mode && !MACOS_MODES.includes(mode)) {
    throw new FastpathError(
      "unsupported",
      `--mode ${mode} is not available on macOS, where launchd runs: use --mode bpf (or auto), or --manager systemd on Linux`,
    );
  }
  const argv = [exec, ...(job === "sched" ? ["sched", "run"] : ["reflect"]), ...args];
  const spec = { job, argv, iface, netns, statsSocket };
  return manager === "launchd" ? launchdPlist(spec) : systemdUnit(spec);
}

/** Takes service print's own flags out of the job's arguments, wherever they were written. */
function ownFlags(args: string[]): { rest: string[]; manager?: string; exec?: string } {
  const rest: string[] = [];
  const out: { rest: string[]; manager?: string; exec?: string } = { rest };
  for (let i = 0; i < args.length; i++) {
    const m = /^--(manager|exec)(?:=(.*))?$/.exec(args[i]);
    if (!m) rest.push(args[i]);
    else out[m[1] as "manager" | "exec"] = m[2] ?? args[++i];
  }
  return out;
}

const print = command("print", {
  summary: "print a systemd unit (or a launchd plist) that runs reflect or sched run",
  usage: "reflect IFACE|sched [job flags] [flags]",
  description: "",
  examples: [],
})
  .argument("<JOB>")
  .argument("[args...]")
  .passThroughOptions()
  .allowUnknownOption()
  .addOption(
    choice("manager", MANAGERS, "the service manager: systemd (Linux) or launchd (macOS, the reflector only)")
      .default((Deno.build.os === "darwin" ? "launchd" : "systemd") as Manager, "launchd on macOS, else systemd"),
  )
  .addOption(
    text("exec", "the fastpath the service runs (scripts/install puts it there)", "PATH").default(INSTALLED_PATH),
  )
  .action(async (job, args, f) => {
    if (!(JOBS as readonly string[]).includes(job)) {
      throw new FastpathError(
        "usage",
        `service print takes reflect or sched, not '${job}': see 'fastpath service --help'`,
      );
    }
    const own = ownFlags(args);
    const manager = own.manager === undefined
      ? f.manager
      : choice("manager", MANAGERS, "").parseArg!(own.manager, undefined as never);
    const exec = own.exec ?? f.exec;
    if (!exec.startsWith("/")) {
      throw new FastpathError("usage", `--exec needs an absolute path (a service manager has no PATH), not '${exec}'`);
    }
    console.log((await serviceText(job as Job, own.rest, manager as Manager, exec)).trimEnd());
    setExit(0);
  });

export const service = command("service", {
  summary: "run reflect or sched under systemd (or launchd): print the unit to install",
  usage: "print reflect IFACE|sched [job flags] [flags]",
  description: `print reflect IFACE [reflect flags]: a systemd unit running 'fastpath reflect IFACE …'.
print sched [sched run flags]: a systemd unit running 'fastpath sched run …' (only where
    /sys/kernel/sched_ext exists).
The job's flags are checked as the job checks them. The unit restarts fastpath after a failure
(non-zero exit, within a start limit) but not after a clean stop (exit 0) or an error a restart
cannot cure (exit 2, 3, 6, 8; and 7 for the scheduler), stops it with SIGINT, and gives it only the
capabilities it needs. On macOS (or with --manager launchd) the reflector's launchd plist.
Install steps: docs/service.md.`,
  examples: [
    "fastpath service print reflect eth0 --mode xdp | sudo tee /etc/systemd/system/fastpath-reflect-eth0.service",
    "fastpath service print sched --foreground game.exe | sudo tee /etc/systemd/system/fastpath-sched.service",
    "fastpath service print reflect en0 --manager launchd | sudo tee /Library/LaunchDaemons/local.fastpath.reflect.en0.plist",
  ],
})
  .enablePositionalOptions()
  .addCommand(print);
