/**
 * deno task bench — the reflector in the namespace lab against the kernel's ceiling, in one invocation.
 *
 * Reference: a bare XDP_TX swap (bench/bare_xdp_tx.c: signature check, swap, XDP_TX, nothing else)
 * attached to the reflector's veth (xdp.frags, so MTU 9000 works). Each fastpath mode runs the same sizes and rates, and every
 * figure is printed as a ratio of the reference measured minutes apart in the same lab.
 *
 * CPU per frame is the busy time of the reflector's core (wall time minus idle, iowait and steal: see
 * cpuBusyNs) divided by the frames reflected. The veth receive work is steered to that core (RPS in
 * packet mode; in xdp and afxdp mode the veth's NAPI, which runs their XDP program, as a kernel thread
 * pinned there); the probe and every other thread of the benchmark run on the other core. "both
 * cores" is the whole machine's busy time per frame: the probe's share is the same in every mode.
 *
 * Each case runs in --rounds rounds (reference, then each mode, the modes' order rotating), so a slow
 * phase of the host lands on every row alike; a row shows the median of its rounds (its worst loss),
 * and each ratio is the median of the per-round ratios, with their range.
 *
 *   sudo deno task bench                        all sizes at maximum rate, plus paced runs
 *   sudo deno task bench --sizes 64 --seconds 3 --modes xdp --rounds 1
 *   sudo deno task bench --soak 60              plus 60 s at half of each mode's maximum (zero loss?)
 *   sudo deno task bench --prefix fpx           the lab's namespaces named fpx-… (default fpb)
 */
import { parseArgs } from "node:util";
import { cpuBusyNs, type Lab, labDown, labUp, peerForMode, steerReceive } from "../src/lab.ts";
import { runLabCase } from "../src/labrun.ts";
import { Probe, type Rate } from "../src/probe.ts";
import { linkDrops, run } from "../src/net.ts";
import { mbps, pct, pps, table } from "../src/format.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    sizes: { type: "string", default: "64,512,1518,9000,9018" },
    seconds: { type: "string", default: "5" },
    paced: { type: "string", default: "100000,200000" },
    modes: { type: "string", default: "xdp,packet" },
    soak: { type: "string", default: "0" },
    rounds: { type: "string", default: "3" },
    json: { type: "string" },
    /** The lab's name prefix: another run (or a test) on the same machine uses another. */
    prefix: { type: "string", default: "fpb" },
  },
});
const sizes = args.sizes!.split(",").map(Number);
const seconds = Number(args.seconds);
const pacedPps = args.paced!.split(",").filter(Boolean).map(Number);
const modes = args.modes!.split(",").filter(Boolean) as Array<"xdp" | "packet">;
/** Seconds of the zero-loss soak at half of each mode's own maximum (0 = skip). */
const soakSeconds = Number(args.soak);
const rounds = Number(args.rounds);
if (!(Number.isInteger(rounds) && rounds >= 1)) {
  console.error(`error: bench: --rounds ${args.rounds} must be a whole number of 1 or more`);
  Deno.exit(2);
}

interface Row {
  name: string;
  size: number;
  rate: string;
  offeredPps: number;
  reflectedPps: number;
  wireMbps: number;
  lossPct: number;
  badRewrite: number;
  duplicates: number;
  /** Frames the probe dropped from its schedule after being kept off its core for over 1 ms. */
  slipped: number;
  cpuNsPerFrame: number | null;
  /** Busy time of both cores per frame (probe included: the same in every mode). */
  machineNsPerFrame: number | null;
  /** Where frames were lost, when they were: the probe's own receive ring, and the reflector's drops. */
  lostAt?: {
    probeRing: number;
    probeTx: number;
    /** Dropped by the veth pair itself (a full XDP ring on the receiving side), both directions. */
    veth: number;
    reflectorRing: number;
    reflectorTx: number;
    reflectorTooLong: number;
  };
  ratioPps?: number;
  ratioCpu?: number;
  /** Lowest and highest per-round ratio, when the row is the median of several rounds. */
  rangePps?: [number, number];
  rangeCpu?: [number, number];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function medianOrNull(xs: Array<number | null | undefined>): number | null {
  const known = xs.filter((x): x is number => typeof x === "number");
  return known.length ? median(known) : null;
}

/** One row from the rounds of a case: medians of rates and costs, the worst loss, every bad rewrite. */
function combine(rs: Row[]): Row {
  if (rs.length === 1) return rs[0];
  const ratios = (f: (r: Row) => number | undefined) => rs.map(f).filter((x): x is number => x !== undefined);
  const pps = ratios((r) => r.ratioPps), cpu = ratios((r) => r.ratioCpu);
  return {
    ...rs[0],
    offeredPps: median(rs.map((r) => r.offeredPps)),
    reflectedPps: median(rs.map((r) => r.reflectedPps)),
    wireMbps: median(rs.map((r) => r.wireMbps)),
    lossPct: Math.max(...rs.map((r) => r.lossPct)),
    badRewrite: rs.reduce((a, r) => a + r.badRewrite, 0),
    duplicates: rs.reduce((a, r) => a + r.duplicates, 0),
    slipped: rs.reduce((a, r) => a + r.slipped, 0),
    cpuNsPerFrame: medianOrNull(rs.map((r) => r.cpuNsPerFrame)),
    machineNsPerFrame: medianOrNull(rs.map((r) => r.machineNsPerFrame)),
    ratioPps: pps.length ? median(pps) : undefined,
    ratioCpu: cpu.length ? median(cpu) : undefined,
    rangePps: pps.length ? [Math.min(...pps), Math.max(...pps)] : undefined,
    rangeCpu: cpu.length ? [Math.min(...cpu), Math.max(...cpu)] : undefined,
  };
}

async function sh(cmd: string[]): Promise<string> {
  const r = await run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function buildFixtures(): Promise<string> {
  const out = `${ROOT}.tools/bench`;
  await Deno.mkdir(out, { recursive: true });
  const arch = Deno.build.arch === "x86_64" ? "x86_64" : "aarch64";
  for (const name of ["bare_xdp_tx"]) {
    await sh([
      "clang-19",
      "-O2",
      "-g",
      "-target",
      "bpf",
      `-I/usr/include/${arch}-linux-gnu`,
      "-c",
      `${ROOT}bench/${name}.c`,
      "-o",
      `${out}/${name}.o`,
    ]);
  }
  return out;
}

/** Makes a veth's NAPI a kernel thread pinned to `cpu`, so its XDP work is charged to that core. */
async function pinNapi(ns: string, dev: string, cpu: number): Promise<void> {
  await sh(["ip", "netns", "exec", ns, "sh", "-c", `echo 1 > /sys/class/net/${dev}/threaded`]);
  const ps = await sh(["ps", "-e", "-o", "pid=,comm="]);
  for (const line of ps.split("\n")) {
    const [pid, comm] = line.trim().split(/\s+/, 2);
    if (comm?.startsWith(`napi/${dev}`)) await sh(["taskset", "-pc", String(cpu), pid]);
  }
}

/** Frames the veth pair dropped so far (rx and tx, both ends): a peer's full XDP ring drops silently. */
async function vethDrops(lab: Lab): Promise<number> {
  let sum = 0;
  for (const [ns, dev] of [[lab.probeNs, lab.probeIf], [lab.reflectorNs, lab.reflectorIf]]) {
    const d = await linkDrops(ns, dev);
    sum += (d?.rx ?? 0) + (d?.tx ?? 0);
  }
  return sum;
}

async function withCeiling<T>(lab: Lab, fixtures: string, fn: () => Promise<T>): Promise<T> {
  await peerForMode(lab, "xdp"); // the reference transmits with XDP_TX too
  await sh([
    "ip",
    "-n",
    lab.reflectorNs,
    "link",
    "set",
    "dev",
    lab.reflectorIf,
    "xdp",
    "obj",
    `${fixtures}/bare_xdp_tx.o`,
    "sec",
    "xdp.frags",
  ]);
  await pinNapi(lab.reflectorNs, lab.reflectorIf, lab.reflectorCpu);
  try {
    return await fn();
  } finally {
    await sh(["ip", "-n", lab.reflectorNs, "link", "set", "dev", lab.reflectorIf, "xdp", "off"]);
  }
}

async function ceilingRun(lab: Lab, size: number, rate: Rate, label: string): Promise<Row> {
  const busy0 = await cpuBusyNs(lab.reflectorCpu);
  await using probe = await Probe.start({
    iface: lab.probeIf,
    netns: lab.probeNs,
    to: lab.reflectorIp,
    size,
    rate,
    durationS: seconds,
    expectSwap: "all",
    expectTosToggle: false,
    cpu: lab.probeCpu,
    rxCpu: lab.probeCpu,
  });
  const r = await probe.done();
  const busy1 = await cpuBusyNs(lab.reflectorCpu);
  return {
    name: "xdp_tx ceiling",
    size,
    rate: label,
    offeredPps: r.txPps,
    reflectedPps: r.rxPps,
    wireMbps: r.rxWireMbps,
    lossPct: r.lossPct,
    badRewrite: r.badRewrite,
    duplicates: r.duplicates,
    slipped: r.txSlipped,
    cpuNsPerFrame: r.received ? (busy1.core - busy0.core) / r.received : null,
    machineNsPerFrame: r.received ? (busy1.machine - busy0.machine) / r.received : null,
  };
}

async function modeRun(
  lab: Lab,
  mode: "xdp" | "packet",
  size: number,
  rate: Rate,
  label: string,
  secs = seconds,
): Promise<Row> {
  const veth0 = await vethDrops(lab);
  const r = await runLabCase(lab, { size, rate, durationS: secs, mode, swap: "all", profile: "plain" }, {
    // xdp mode runs in the veth's NAPI, and so does afxdp's XDP program and its copy into the UMEM:
    // make it a thread on the reflector's core, like the reference. (packet mode has no NAPI on a
    // veth without XDP: RPS steers its receive work there.)
    afterStart: (refl) =>
      refl.info.mode === "packet" ? Promise.resolve() : pinNapi(lab.reflectorNs, lab.reflectorIf, lab.reflectorCpu),
  });
  return {
    name: mode,
    size,
    rate: label,
    offeredPps: r.probe.txPps,
    reflectedPps: r.probe.rxPps,
    wireMbps: r.probe.rxWireMbps,
    lossPct: r.probe.lossPct,
    badRewrite: r.probe.badRewrite,
    duplicates: r.probe.duplicates,
    slipped: r.probe.txSlipped,
    cpuNsPerFrame: r.reflectorCoreNsPerFrame,
    machineNsPerFrame: r.machineNsPerFrame,
    lostAt: {
      probeRing: r.probe.rxRingDrops,
      probeTx: r.probe.txErrors,
      veth: (await vethDrops(lab)) - veth0,
      reflectorRing: r.reflector.drop_ring_full,
      reflectorTx: r.reflector.drop_tx_error,
      reflectorTooLong: r.reflector.drop_too_long,
    },
  };
}

if (Deno.uid() !== 0) {
  console.error("error: bench: the lab needs root: run 'sudo deno task bench'");
  Deno.exit(3);
}
const fixtures = await buildFixtures();
const lab = await labUp({ prefix: args.prefix! });
// Each side's receive processing on its own core, so each core's busy time is its side's (lab.ts).
await steerReceive(lab);
// The reflector's core carries the dataplane only: every thread of this process (JavaScript, V8, the
// reflector's monitor, the probe) goes to the probe's core; the workers pin themselves to theirs.
await sh(["taskset", "-apc", String(lab.probeCpu), String(Deno.pid)]);
// For the XDP_TX runs (reference and xdp mode) the probe's veth runs XDP_PASS (peerForMode). Its NAPI
// stays in softirq: as a kernel thread in this VM it wakes too slowly and its 256-entry ring overflows
// (xdp_tx_errors on the reflector's side); it then runs on the core that transmitted, the reflector's.
const rows: Row[] = [];
/** Every run, round by round, for the JSON. */
const runs: Array<Row & { round: number }> = [];
const cases: Array<{ size: number; rate: Rate; label: string }> = [
  ...sizes.map((size) => ({ size, rate: "max" as Rate, label: "max" })),
  ...pacedPps.map((p) => ({ size: 64, rate: { pps: p } as Rate, label: pps(p) })),
];
const started = Date.now();
try {
  for (const c of cases) {
    const byName = new Map<string, Row[]>();
    const keep = (row: Row, round: number) => {
      byName.set(row.name, [...(byName.get(row.name) ?? []), row]);
      runs.push({ ...row, round });
    };
    for (let round = 0; round < rounds; round++) {
      console.error(
        `bench: ${c.size}-byte frames at ${c.label}, ${seconds} s each${
          rounds > 1 ? `, round ${round + 1} of ${rounds}` : ""
        } …`,
      );
      const ceiling = await withCeiling(lab, fixtures, () => ceilingRun(lab, c.size, c.rate, c.label));
      keep(ceiling, round);
      const order = modes.map((_, i) => modes[(i + round) % modes.length]);
      for (const mode of order) {
        const row = await modeRun(lab, mode, c.size, c.rate, c.label);
        row.ratioPps = row.reflectedPps / ceiling.reflectedPps;
        row.ratioCpu = row.cpuNsPerFrame && ceiling.cpuNsPerFrame
          ? row.cpuNsPerFrame / ceiling.cpuNsPerFrame
          : undefined;
        keep(row, round);
      }
    }
    for (const name of ["xdp_tx ceiling", ...modes]) rows.push(combine(byName.get(name)!));
  }
  // Zero loss at half of each mode's own maximum (64-byte frames), over a long run.
  if (soakSeconds > 0) {
    for (const mode of modes) {
      const max = rows.find((r) => r.name === mode && r.size === 64 && r.rate === "max");
      if (!max) continue;
      const half = Math.round(max.reflectedPps / 2);
      console.error(`bench: ${mode} soak at ${pps(half)} (half its maximum) for ${soakSeconds} s …`);
      rows.push(await modeRun(lab, mode, 64, { pps: half }, `soak ${pps(half)}`, soakSeconds));
    }
  }
} finally {
  await labDown(lab);
}

function ratio(median: number, range?: [number, number]): string {
  return range ? `${median.toFixed(2)} (${range[0].toFixed(2)}–${range[1].toFixed(2)})` : median.toFixed(2);
}

const cpuInfo = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
console.log(
  `fastpath reflector bench — ${navigator.hardwareConcurrency} CPUs (${cpuInfo}), kernel ${Deno.osRelease()}, veth lab, ${seconds} s per run, ${rounds} round${
    rounds > 1 ? "s (medians; ratios with their range)" : ""
  }`,
);
console.log(table(
  [
    "mode",
    "size",
    "rate",
    "offered",
    "reflected",
    "on wire",
    "loss",
    "bad",
    "dup",
    "CPU/frame",
    "both cores",
    "pps ÷ ceiling",
    "CPU ÷ ceiling",
  ],
  rows.map((r) => [
    r.name,
    `${r.size}`,
    r.rate,
    pps(r.offeredPps),
    pps(r.reflectedPps),
    mbps(r.wireMbps),
    pct(r.lossPct),
    String(r.badRewrite),
    String(r.duplicates),
    r.cpuNsPerFrame === null ? "-" : `${Math.round(r.cpuNsPerFrame)} ns`,
    r.machineNsPerFrame === null ? "-" : `${Math.round(r.machineNsPerFrame)} ns`,
    r.ratioPps === undefined ? (r.name.startsWith("xdp_tx") ? "1.00" : "-") : ratio(r.ratioPps, r.rangePps),
    r.ratioCpu === undefined ? (r.name.startsWith("xdp_tx") ? "1.00" : "-") : ratio(r.ratioCpu, r.rangeCpu),
  ]),
));
for (const r of rows.filter((r) => r.slipped > 0)) {
  console.log(
    `${r.name} ${r.size} ${r.rate}: the probe was kept off its core for over 1 ms and left ${r.slipped} frames unsent (offered < rate)`,
  );
}
for (const r of rows.filter((r) => r.lossPct > 0 && r.rate.startsWith("soak"))) {
  console.log(
    `${r.name} soak lost ${
      r.lossPct.toExponential(1)
    } %: probe ring ${r.lostAt?.probeRing}, probe send errors ${r.lostAt?.probeTx}, veth ${r.lostAt?.veth}, reflector ring ${r.lostAt?.reflectorRing}, reflector send errors ${r.lostAt?.reflectorTx}`,
  );
}
const json = {
  machine: { cpus: navigator.hardwareConcurrency, cpu: cpuInfo, kernel: Deno.osRelease() },
  seconds,
  rounds,
  elapsedS: (Date.now() - started) / 1000,
  rows,
  runs,
};
console.log(JSON.stringify(json));
if (args.json) await Deno.writeTextFile(args.json, JSON.stringify(json, null, 2));
