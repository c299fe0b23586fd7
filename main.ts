/**
 * fastpath — the command line. A table of commands; each has a summary, help with runnable examples,
 * declared flags and a handler. Errors print `error: <what>: <detail>` and exit with a documented code.
 */
import { FastpathError } from "./ffi/error.ts";
import { doctor } from "./src/doctor.ts";
import { mbps, pct, pps, StatusLine, table, us } from "./src/format.ts";
import { labDown, labNames, labUp } from "./src/lab.ts";
import { type LabCase, type LabResult, runLabCase } from "./src/labrun.ts";
import { Probe, type ProbeReport, probeSummary, type Rate } from "./src/probe.ts";
import {
  exitLine,
  NO_SCHED_EXT,
  resolveForeground,
  SCHED_DEFAULTS,
  type SchedCounters,
  schedStatus,
  Scheduler,
} from "./src/sched.ts";
import {
  type Counters,
  DEFAULT_COALESCE_US,
  DEFAULT_NICE,
  PROFILES,
  REFLECT_MODES,
  Reflector,
  type SignatureName,
  SIGNATURES,
  SWAP_MODES,
} from "./src/reflector.ts";

export const VERSION = "0.1.0";

type FlagType = "string" | "number" | "boolean";
interface FlagSpec {
  type: FlagType;
  help: string;
  default?: string | number | boolean;
  choices?: readonly string[];
}
type Flags = Record<string, string | number | boolean | undefined>;

interface Command {
  name: string;
  summary: string;
  usage: string;
  description: string;
  examples: string[];
  flags: Record<string, FlagSpec>;
  /** Positional arguments: names, for help and count checks. */
  args: string[];
  run(args: string[], flags: Flags): Promise<number>;
}

/** --nice for the native threads `threads` names. */
function niceFlag(threads: string): FlagSpec {
  return {
    type: "number",
    help:
      `Linux: ${threads}' nice value, -20 … 19, so the machine's other work does not show up in the results (0 = as started)`,
    default: DEFAULT_NICE,
  };
}
const COALESCE: FlagSpec = {
  type: "number",
  help:
    "afxdp mode: under load, let frames gather this long per wake-up (fewer wake-ups, at most this much more latency; 0 = off). Defers the device's receive interrupts where the kernel can (6.13+)",
  default: DEFAULT_COALESCE_US,
};
const FORMAT: FlagSpec = {
  type: "string",
  help: "output: text for people, json for scripts",
  default: "text",
  choices: ["text", "json"],
};

const EXIT_HELP = `Exit codes:
  0  success (a reflector stopped with Ctrl-C or SIGTERM also exits 0)
  1  unexpected internal error
  2  bad usage or invalid argument
  3  missing privilege (run as root)
  4  no such interface or namespace
  5  interface is down
  6  not supported on this machine or build
  7  busy: another reflector or program holds the interface or port
  8  native library missing or of the wrong version
  9  timed out (e.g. the reflector's address did not answer ARP)
  10 a run failed (a worker stopped, a probe saw wrong rewrites, …)
  11 the kernel ejected the scheduler (an error or a stalled task; the EXIT: line says which)
  130 interrupted (probe and lab run, after printing what was measured)`;

function parseRate(s: string): Rate {
  const v = s.trim().toLowerCase();
  if (v === "max") return "max";
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(pps|bps|bit\/s)?$/.exec(v);
  if (!m) {
    throw new FastpathError("usage", `--rate '${s}' is not a rate: use e.g. 100kpps, 250000, 500mbps, 1gbps or max`);
  }
  const mult = { "": 1, k: 1e3, m: 1e6, g: 1e9 }[m[2] as "" | "k" | "m" | "g"];
  const n = Number(m[1]) * mult;
  if (n <= 0) throw new FastpathError("usage", `--rate must be positive`);
  if (m[3] === "bps" || m[3] === "bit/s") return { mbps: n / 1e6 };
  return { pps: n };
}

function parseSize(s: string | number): number | "imix" {
  if (s === "imix") return "imix";
  const n = Number(s);
  if (!Number.isInteger(n) || n < 64 || n > 9018) {
    throw new FastpathError("usage", `--size '${s}' must be a frame size from 64 to 9018 bytes, or imix`);
  }
  return n;
}

function parseSignature(s: string): SignatureName {
  const key = Object.keys(SIGNATURES).find((k) =>
    k.toLowerCase() === s.toLowerCase() || k.replace(/[:.]/g, "").toLowerCase() === s.toLowerCase()
  );
  if (!key) throw new FastpathError("usage", `--signature '${s}' is not one of ${Object.keys(SIGNATURES).join(", ")}`);
  return key as SignatureName;
}

function emitJson(obj: unknown): void {
  console.log(JSON.stringify(obj));
}

/** Runs until SIGINT/SIGTERM; returns the signal's name. Listeners are removed afterwards. */
function untilSignal(): { promise: Promise<string>; dispose: () => void } {
  let resolve!: (s: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  const onInt = () => resolve("SIGINT");
  const onTerm = () => resolve("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  return {
    promise,
    dispose: () => {
      Deno.removeSignalListener("SIGINT", onInt);
      Deno.removeSignalListener("SIGTERM", onTerm);
    },
  };
}

function reflectorLine(iface: string, c: Counters, prev: Counters, dt: number): string {
  const rate = (k: keyof Counters) => (c[k] - prev[k]) / dt;
  const drops = ([
    "drop_not_ours",
    "drop_oui",
    "drop_port",
    "drop_signature",
    "drop_not_udp",
    "drop_malformed",
    "drop_too_short",
    "drop_tx_error",
    "drop_ring_full",
  ] as const)
    .filter((k) => c[k] > 0).map((k) => `${k.slice(5)} ${c[k]}`).join(", ");
  return `${iface}: rx ${pps(rate("rx_packets"))}, reflected ${pps(rate("tx_packets"))} ${
    mbps((rate("tx_bytes") * 8) / 1e6)
  }, total ${c.tx_packets}` +
    (drops ? ` | not reflected: ${drops}` : "");
}

const reflectCmd: Command = {
  name: "reflect",
  summary: "reflect ITO test frames from a handheld tester on an interface",
  usage: "fastpath reflect IFACE [flags]",
  description: `Returns NetAlly / Fluke / NETSCOUT test frames (signatures PROBEOT, DATA:OT, LATENCY) addressed to
this interface with their addresses swapped, so the handheld measures throughput, loss and latency.
Frames that are not ITO-signed, not addressed to us, broadcast or multicast are never reflected.
Runs until Ctrl-C or SIGTERM (or --duration-s), then prints the totals.`,
  examples: [
    "sudo fastpath reflect eth0",
    "sudo fastpath reflect eth0 --mode packet --swap all --workers 2 --cpu 1",
    "sudo fastpath reflect eth0 --profile rfc2544 --port 0",
    "sudo fastpath reflect eth0 --format json --interval-ms 5000 | jq .tx_packets",
  ],
  args: ["IFACE"],
  flags: {
    mode: {
      type: "string",
      help: "dataplane: auto picks the fastest available",
      default: "auto",
      choices: REFLECT_MODES,
    },
    profile: {
      type: "string",
      help: "tester profile: netally toggles TOS like real LinkRunner reflectors",
      default: "netally",
      choices: PROFILES,
    },
    swap: {
      type: "string",
      help: "fields to swap: mac, mac-ip (IPv4/IPv6 addresses too) or all (UDP ports too)",
      default: "mac-ip",
      choices: SWAP_MODES,
    },
    oui: { type: "string", help: "require this source-MAC OUI, or 'any'", default: "00:c0:17 (netally, plain)" },
    port: { type: "number", help: "UDP destination port to accept, 0 = any", default: 3842 },
    "tos-toggle": { type: "boolean", help: "XOR 0x01 into the IPv4 TOS byte on the way back (profile default)" },
    signature: { type: "string", help: "reflect only this signature (repeatable as a comma list)" },
    workers: { type: "number", help: "worker threads (PACKET_FANOUT when more than 1)", default: 1 },
    cpu: { type: "number", help: "pin worker i to CPU N+i" },
    nice: niceFlag("packet and afxdp modes: the workers"),
    fanout: {
      type: "string",
      help: "how frames are spread over workers (packet mode)",
      default: "hash",
      choices: ["hash", "cpu", "lb"],
    },
    "busy-poll-us": {
      type: "number",
      help: "afxdp mode: busy-poll the sockets this long instead of sleeping (lower latency, more CPU)",
    },
    "coalesce-us": COALESCE,
    netns: { type: "string", help: "network namespace the interface lives in (ip netns)" },
    "interval-ms": { type: "number", help: "how often to report", default: 1000 },
    "duration-s": { type: "number", help: "stop after this many seconds (default: run until stopped)" },
    format: FORMAT,
  },
  async run([iface], f) {
    const json = f.format === "json";
    const oui = f.oui === undefined
      ? undefined
      : String(f.oui).toLowerCase() === "any"
      ? false as const
      : String(f.oui);
    const signatures = f.signature === undefined ? undefined : String(f.signature).split(",").map(parseSignature);
    const stop = untilSignal();
    let r: Reflector;
    try {
      r = await Reflector.start({
        iface,
        netns: f.netns as string | undefined,
        mode: f.mode as "auto",
        profile: f.profile as "netally",
        swap: f.swap as "mac-ip",
        oui,
        port: f.port as number | undefined,
        tosToggle: f["tos-toggle"] as boolean | undefined,
        signatures,
        workers: f.workers as number | undefined,
        cpu: f.cpu as number | undefined,
        nice: f.nice as number | undefined,
        fanout: f.fanout as "hash",
        busyPollUs: f["busy-poll-us"] as number | undefined,
        coalesceUs: f["coalesce-us"] as number,
      });
    } catch (err) {
      stop.dispose();
      throw err;
    }
    const status = new StatusLine();
    try {
      const i = r.info;
      const started = {
        type: "started",
        iface,
        netns: i.netns ?? null,
        mode: i.mode,
        xdp_attach: i.xdpAttach ?? null,
        zerocopy: i.zerocopy ?? null,
        coalesce_us: i.coalesceUs ?? null,
        irq_deferred: i.irqDeferred ?? null,
        reason: i.reason,
        mac: i.mac,
        mtu: i.mtu,
        workers: i.workers,
        nice: i.nice ?? null,
        profile: i.profile,
        swap: i.swap,
        port: i.port,
        oui: i.oui,
        tos_toggle: i.tosToggle,
        guarded: i.guarded,
      };
      if (json) emitJson(started);
      else {
        const how = i.mode === "bpf"
          ? ` (${i.batchWrite ? "BIOCSBATCHWRITE batches" : "one write() per frame: BIOCSBATCHWRITE needs macOS 14"})`
          : i.mode === "packet"
          ? ""
          : ` (XDP ${i.xdpAttach}${
            i.mode === "afxdp"
              ? `, ${i.zerocopy ? "zero-copy" : "copy mode"}, ${
                !i.coalesceUs
                  ? "a wake-up per frame"
                  : i.irqDeferred
                  ? `receive interrupts deferred up to ${i.coalesceUs} µs`
                  : `wake-ups coalesced over ${i.coalesceUs} µs`
              }`
              : ""
          })`;
        console.error(`reflecting on ${iface} (${i.mac}) in ${i.mode} mode${how} — ${i.reason}`);
        console.error(
          `  profile ${i.profile}, swap ${i.swap}, port ${i.port || "any"}, OUI ${i.oui ?? "any"}, TOS toggle ${
            i.tosToggle ? "on" : "off"
          }, ${i.workers} worker(s)${i.nice !== undefined ? ` at nice ${i.nice}` : ""}`,
        );
        if (i.maxFrame && i.mtu + 14 > i.maxFrame) {
          console.error(
            `  note: afxdp reflects frames up to ${i.maxFrame} bytes; ${iface} has MTU ${i.mtu}, so longer frames go unreflected (use --mode xdp)`,
          );
        }
        if (!i.guarded) {
          console.error(
            "  warning: port 'any' cannot be guarded: the host may answer test frames with ICMP port-unreachable",
          );
        }
        console.error("  stop with Ctrl-C");
      }
      const intervalMs = Math.max(100, Number(f["interval-ms"] ?? 1000));
      const textEvery = status.tty ? intervalMs : Math.max(intervalMs, 10_000);
      const deadline = f["duration-s"] !== undefined ? Date.now() + Number(f["duration-s"]) * 1000 : Infinity;
      let prev = r.stats();
      let prevT = performance.now();
      let lastText = 0;
      let failed = false;
      while (true) {
        const tick = new Promise<string>((res) =>
          setTimeout(() => res("tick"), Math.min(intervalMs, Math.max(0, deadline - Date.now())))
        );
        const why = await Promise.race([stop.promise, tick]);
        const now = performance.now();
        const c = r.stats();
        const dt = (now - prevT) / 1000;
        if (json) emitJson({ type: "interval", t: Date.now() / 1000, interval_s: dt, ...c });
        else if (status.tty) status.show(reflectorLine(iface, c, prev, dt));
        else if (now - lastText >= textEvery) {
          console.error(reflectorLine(iface, c, prev, dt));
          lastText = now;
        }
        if (c.link_down > prev.link_down) {
          status.clear();
          if (json) emitJson({ type: "link", state: "down", t: Date.now() / 1000 });
          else console.error(`warning: ${iface} went down: nothing is reflected until it is up again`);
        }
        if (c.link_up > prev.link_up) {
          status.clear();
          if (json) emitJson({ type: "link", state: "up", t: Date.now() / 1000 });
          else console.error(`${iface} is up again: reflecting`);
        }
        prev = c;
        prevT = now;
        if (r.state() === "failed") {
          failed = true;
          break;
        }
        if (why !== "tick" || Date.now() >= deadline) break;
      }
      status.clear();
      const total = r.stats();
      const failure = failed ? r.failure() : undefined;
      if (json) emitJson({ type: "summary", ...total, state: failed ? "failed" : "stopped", failure: failure ?? null });
      else {
        console.error(`stopped: received ${total.rx_packets}, reflected ${total.tx_packets} (${total.tx_bytes} bytes)`);
        const sig =
          `PROBEOT ${total.sig_probeot}, DATA:OT ${total.sig_dataot}, LATENCY ${total.sig_latency}, RFC2544 ${total.sig_rfc2544}, Y.1564 ${total.sig_y1564}`;
        console.error(`  by signature: ${sig}`);
        const drops = Object.entries(total).filter(([k, v]) => k.startsWith("drop_") && v > 0).map(([k, v]) =>
          `${k.slice(5)} ${v}`
        );
        console.error(`  not reflected: ${drops.length ? drops.join(", ") : "none"}`);
      }
      if (failure) throw new FastpathError("failed", `reflector on ${iface}: ${failure}`);
      return 0;
    } finally {
      stop.dispose();
      r.close();
    }
  },
};

function probeRow(label: string, p: ProbeReport): string[] {
  return [
    label,
    String(p.sent),
    String(p.received),
    pct(p.lossPct),
    String(p.reordered),
    String(p.duplicates),
    String(p.badRewrite),
    pps(p.rxPps),
    mbps(p.rxWireMbps),
    p.rttUs ? us(p.rttUs.p50) : "-",
    p.rttUs ? us(p.rttUs.p99) : "-",
  ];
}
const PROBE_HEADER = ["run", "sent", "back", "loss", "reord", "dup", "bad", "rate", "on wire", "rtt p50", "rtt p99"];

const probeCmd: Command = {
  name: "probe",
  summary: "send ITO test frames to a reflector and measure what comes back",
  usage: "fastpath probe IFACE --to IP|MAC [flags]",
  description: `Plays the handheld: sends DATA:OT frames (or another signature) at a rate and size for a duration or a
count, receives the reflections and reports loss, reordering, duplicates, throughput, round-trip time,
and whether every reflection had exactly the fields swapped that --expect-swap says.
With an IP address the reflector's MAC is resolved with ARP / neighbour discovery, like a handheld.`,
  examples: [
    "sudo fastpath probe eth0 --to 192.0.2.10 --rate 100kpps --duration-s 5",
    "sudo fastpath probe eth0 --to 192.0.2.10 --size 1518 --rate 900mbps --count 100000",
    "sudo fastpath probe eth0 --to 02:00:00:00:00:01 --dst-ip 192.0.2.10 --size imix --rate max --duration-s 10",
    "sudo fastpath probe eth0 --to 2001:db8::10 --size 128 --expect-swap all --format json",
    "sudo fastpath probe en0 --to 192.0.2.10 --size 1518 --rate 81kpps --duration-s 30   # macOS, over /dev/bpf",
  ],
  args: ["IFACE"],
  flags: {
    to: { type: "string", help: "the reflector: IP address (MAC resolved) or MAC address" },
    "dst-ip": { type: "string", help: "destination IP when --to is a MAC", default: "198.18.0.1" },
    "src-mac": { type: "string", help: "send from this MAC (received in promiscuous mode)" },
    size: { type: "string", help: "frame size with FCS: 64 … 9018, or imix (7×64, 4×594, 1×1518)", default: 64 },
    rate: {
      type: "string",
      help: "frames/s (100kpps, 250000), bits/s on the wire (500mbps, 1gbps), or max",
      default: "10kpps",
    },
    count: { type: "number", help: "stop after this many frames" },
    "duration-s": { type: "number", help: "stop after this many seconds (default 5 when no --count)" },
    signature: { type: "string", help: "PROBEOT, DATA:OT, LATENCY, RFC2544 or Y.1564", default: "DATA:OT" },
    "expect-swap": {
      type: "string",
      help: "what the reflector swaps, checked on every frame",
      default: "mac-ip",
      choices: SWAP_MODES,
    },
    "expect-tos-toggle": {
      type: "boolean",
      help: "expect the NetAlly TOS toggle (default on; --no-expect-tos-toggle for plain)",
    },
    port: { type: "number", help: "UDP destination port", default: 3842 },
    "src-port": { type: "number", help: "UDP source port (differs from --port so a port swap shows)", default: 50000 },
    vlan: { type: "number", help: "send with this 802.1Q VLAN ID" },
    tos: { type: "number", help: "IPv4 TOS / IPv6 traffic class to send", default: 0 },
    cpu: { type: "number", help: "pin the sender and receiver threads to this CPU (Linux; macOS uses QoS classes)" },
    nice: niceFlag("the sender and receiver threads"),
    "drain-ms": { type: "number", help: "how long to wait for late reflections after the last frame", default: 500 },
    netns: { type: "string", help: "network namespace the interface lives in (Linux)" },
    "interval-ms": { type: "number", help: "how often to report (json: one object per interval)", default: 1000 },
    format: FORMAT,
  },
  async run([iface], f) {
    if (!f.to) throw new FastpathError("usage", "probe needs --to IP|MAC (the reflector)");
    const json = f.format === "json";
    const port = Number(f.port ?? 3842);
    const stop = untilSignal();
    let interrupted = false;
    const probe = await Probe.start({
      iface,
      netns: f.netns as string | undefined,
      to: String(f.to),
      dstIp: f["dst-ip"] as string | undefined,
      srcMac: f["src-mac"] as string | undefined,
      size: parseSize(f.size as string ?? 64),
      rate: parseRate(String(f.rate ?? "10kpps")),
      count: f.count as number | undefined,
      durationMs: f["duration-s"] !== undefined ? Number(f["duration-s"]) * 1000 : undefined,
      signature: parseSignature(String(f.signature ?? "DATA:OT")),
      expectSwap: f["expect-swap"] as "mac-ip",
      expectTosToggle: f["expect-tos-toggle"] as boolean | undefined,
      srcPort: f["src-port"] as number | undefined,
      dstPort: port,
      vlan: f.vlan as number | undefined,
      tos: f.tos as number | undefined,
      cpu: f.cpu as number | undefined,
      rxCpu: f.cpu as number | undefined,
      nice: f.nice as number | undefined,
      drainMs: f["drain-ms"] as number | undefined,
    }).catch((err) => {
      stop.dispose();
      throw err;
    });
    const status = new StatusLine();
    stop.promise.then(() => {
      interrupted = true;
      probe.stop();
    });
    const o = probe.options;
    if (json) {
      emitJson({
        type: "started",
        iface,
        to: o.dstIp,
        mac: o.dstMac,
        from: o.srcIp,
        size: o.size,
        rate_pps: o.pps || "max",
      });
    } else {console.error(
        `probing ${o.dstIp} (${o.dstMac}) from ${iface} ${o.srcIp}: ${o.size}-byte frames at ${
          o.pps ? pps(o.pps) : "maximum rate"
        }`,
      );}
    const intervalMs = Math.max(100, Number(f["interval-ms"] ?? 1000));
    const timer = setInterval(() => {
      const p = probe.report();
      if (json) emitJson({ type: "interval", ...p });
      else {status.show(
          `sent ${p.sent}  received ${p.received}  loss ${pct(p.lossPct)}  ${pps(p.rxPps)}  rtt p50 ${
            p.rttUs ? us(p.rttUs.p50) : "-"
          }`,
        );}
    }, intervalMs);
    try {
      const report = await probe.done();
      status.clear();
      if (json) emitJson({ type: "summary", interrupted, ...report });
      else console.log(probeSummary(report));
      if (interrupted) return 130;
      if (report.badRewrite > 0) {
        throw new FastpathError(
          "failed",
          `${report.badRewrite} reflections did not have exactly the ${f["expect-swap"] ?? "mac-ip"} fields swapped`,
        );
      }
      return 0;
    } finally {
      clearInterval(timer);
      stop.dispose();
      probe.close();
    }
  },
};

function labRows(results: LabResult[]): string {
  return table(
    // The worker thread's own CPU time is exact at any rate; the whole-core figure (deno task bench)
    // is only meaningful at high rates, where other processes on that core do not dominate it.
    [...PROBE_HEADER, "worker CPU/frame"],
    results.map((r) => [
      ...probeRow(
        `${r.mode} ${r.case.size}B${r.case.vlan ? ` vlan${r.case.vlan}` : ""}${r.case.ipv6 ? " ipv6" : ""}`,
        r.probe,
      ),
      r.workerNsPerFrame === null ? "-" : `${Math.round(r.workerNsPerFrame)} ns`,
    ]),
  );
}

const labCmd: Command = {
  name: "lab",
  summary: "a two-namespace veth lab with the reflector on one side and the probe on the other",
  usage: "fastpath lab up|down|run [flags]",
  description: `up: creates namespaces PREFIX-refl and PREFIX-probe joined by veth PREFIX-r0 <-> PREFIX-p0
    (198.18.0.1 / 198.18.0.2, 2001:2::1 / 2001:2::2, MTU 9000; the probe's MAC has NetAlly's OUI).
down: removes them. run: brings the lab up, reflects real ITO traffic for each --size, prints a table
    of what came back, and removes the lab again on every exit path (Ctrl-C and SIGTERM included).
Traffic never leaves the veth pair.`,
  examples: [
    "sudo fastpath lab run",
    "sudo fastpath lab run --size 64,1518,9000 --rate 100kpps --duration-s 5",
    "sudo fastpath lab run --swap all --format json",
    "sudo fastpath lab run --mode afxdp --coalesce-us 0 --size 64 --rate 20kpps   # afxdp's lowest latency",
    "sudo fastpath lab up && sudo ip netns exec fp-refl ip -br addr && sudo fastpath lab down",
  ],
  args: ["up|down|run"],
  flags: {
    prefix: { type: "string", help: "prefix of the namespace and interface names", default: "fp" },
    size: { type: "string", help: "comma list of frame sizes (64 … 9018) or imix", default: "64,1518,9000" },
    rate: { type: "string", help: "rate per run (see probe --rate)", default: "20kpps" },
    "duration-s": { type: "number", help: "seconds per size", default: 2 },
    swap: { type: "string", help: "reflector swap mode", default: "mac-ip", choices: SWAP_MODES },
    profile: { type: "string", help: "reflector profile", default: "netally", choices: PROFILES },
    mode: { type: "string", help: "reflector dataplane", default: "auto", choices: REFLECT_MODES },
    vlan: { type: "number", help: "send VLAN-tagged frames with this ID" },
    ipv6: { type: "boolean", help: "test over IPv6 instead of IPv4" },
    "coalesce-us": COALESCE,
    nice: niceFlag("the reflector's workers"),
    format: FORMAT,
  },
  async run([action], f) {
    const prefix = String(f.prefix ?? "fp");
    const json = f.format === "json";
    if (action === "down") {
      const removed = await labDown({ prefix });
      if (json) emitJson({ type: "lab", action: "down", removed });
      else console.error(removed.length ? `removed ${removed.join(", ")}` : "no lab to remove");
      return 0;
    }
    if (action === "up") {
      const lab = await labUp({ prefix });
      if (json) emitJson({ type: "lab", action: "up", ...lab });
      else {
        console.error(
          `lab up: ${lab.reflectorNs}/${lab.reflectorIf} ${lab.reflectorIp} (${lab.reflectorMac}) <-> ${lab.probeNs}/${lab.probeIf} ${lab.probeIp} (${lab.probeMac})`,
        );
        console.error(`  reflect: sudo fastpath reflect ${lab.reflectorIf} --netns ${lab.reflectorNs}`);
        console.error(`  probe:   sudo fastpath probe ${lab.probeIf} --netns ${lab.probeNs} --to ${lab.reflectorIp}`);
        console.error(`  remove:  sudo fastpath lab down${prefix !== "fp" ? ` --prefix ${prefix}` : ""}`);
      }
      return 0;
    }
    if (action !== "run") throw new FastpathError("usage", `lab needs up, down or run, not '${action}'`);

    const sizes = String(f.size ?? "64,1518,9000").split(",").map((s) => parseSize(s.trim()));
    const rate = parseRate(String(f.rate ?? "20kpps"));
    const durationMs = Number(f["duration-s"] ?? 2) * 1000;
    if (!(durationMs > 0) || durationMs > 3600_000) {
      throw new FastpathError("usage", "--duration-s must be between 0 and 3600");
    }
    const abort = new AbortController();
    const stop = untilSignal();
    stop.promise.then(() => abort.abort());
    const status = new StatusLine();
    const results: LabResult[] = [];
    const names = labNames({ prefix });
    if (!json) {
      console.error(
        `lab: ${names.reflectorNs} <-> ${names.probeNs}, ${sizes.join("/")}-byte frames, ${durationMs / 1000} s each`,
      );
    }
    try {
      const lab = await labUp({ prefix });
      for (const size of sizes) {
        if (abort.signal.aborted) break;
        const c: LabCase = {
          size,
          rate,
          durationMs,
          swap: f.swap as "mac-ip",
          profile: f.profile as "netally",
          mode: f.mode as "auto",
          vlan: f.vlan as number | undefined,
          ipv6: Boolean(f.ipv6),
          coalesceUs: f["coalesce-us"] as number | undefined,
          nice: f.nice as number | undefined,
        };
        const r = await runLabCase(lab, c, {
          signal: abort.signal,
          onInterval: (p, refl) => {
            if (json) emitJson({ type: "interval", size, probe: p, reflector: refl });
            else {status.show(
                `${size}B: sent ${p.sent} received ${p.received} loss ${pct(p.lossPct)} rtt p50 ${
                  p.rttUs ? us(p.rttUs.p50) : "-"
                }`,
              );}
          },
        });
        status.clear();
        results.push(r);
        if (json) emitJson({ type: "result", ...r });
      }
    } finally {
      status.clear();
      stop.dispose();
      await labDown({ prefix });
    }
    const bad = results.reduce((n, r) => n + r.probe.badRewrite, 0);
    if (json) emitJson({ type: "summary", runs: results.length, bad_rewrite: bad, interrupted: abort.signal.aborted });
    else {
      console.log(labRows(results));
      console.log(
        bad === 0
          ? "every reflection came back with exactly the expected fields swapped"
          : `${bad} reflections had wrong bytes`,
      );
    }
    if (abort.signal.aborted) return 130;
    if (bad > 0) throw new FastpathError("failed", `${bad} reflections were rewritten wrongly`);
    return 0;
  },
};

const doctorCmd: Command = {
  name: "doctor",
  summary: "what this machine offers fastpath, and how to fix what is missing",
  usage: "fastpath doctor [--format json]",
  description: "Checks privilege, kernel features (BPF, XDP, AF_XDP, BTF, sched_ext), the native library and tools.",
  examples: ["fastpath doctor", "fastpath doctor --format json | jq '.modes'"],
  args: [],
  flags: { format: FORMAT },
  async run(_args, f) {
    const report = await doctor();
    if (f.format === "json") {
      emitJson(report);
      return 0;
    }
    const mark = { ok: "ok  ", missing: "MISS", warn: "warn", info: "    " };
    for (const c of report.checks) {
      console.log(
        `${mark[c.status]} ${c.name.padEnd(10)} ${c.detail}${c.fix ? `\n     ${"".padEnd(10)} fix: ${c.fix}` : ""}`,
      );
    }
    console.log(
      `reflector modes: ${report.modes.map((m) => `${m.mode} ${m.available ? "yes" : `no (${m.why})`}`).join(", ")}`,
    );
    return 0;
  },
};

function schedLine(c: SchedCounters, prev: SchedCounters, dt: number, fg: number[]): string {
  const rate = (k: keyof SchedCounters) => Math.round((c[k] - prev[k]) / dt);
  const cpuPct = ((c.busy_ns - prev.busy_ns) / 1e9 / dt / Math.max(1, c.nr_cpus)) * 100;
  return `fastpath: ${rate("runs")} runs/s, ${rate("wakeups")} wakeups/s, idle-CPU placements ${
    rate("direct_idle")
  }/s, ` +
    `queued ${rate("enqueued")}/s, preemptions ${rate("preempt_kicks")}/s, CPU ${cpuPct.toFixed(0)} % (${
      c.busy ? "busy" : "idle"
    })` +
    (fg.length ? `, foreground ${fg.join(",")}: ${rate("foreground_runs")} runs/s` : "");
}

function requireSchedExt(): void {
  if (!schedStatus().present) throw new FastpathError("unsupported", NO_SCHED_EXT);
}

const schedCmd: Command = {
  name: "sched",
  summary: "a sched_ext CPU scheduler that keeps a game responsive while the machine is busy",
  usage: "fastpath sched run|status|stats [flags]",
  description: `run: attaches the fastpath scheduler (a deadline policy in the kernel: tasks that sleep often and
    run briefly go first, idle cores first, the --foreground processes get more weight) and shows
    live counters until Ctrl-C or SIGTERM, then detaches and prints EXIT: reason (msg). If the loader
    dies (even by SIGKILL) the kernel detaches it; if the kernel ejects it, run exits with code 11.
status: what /sys/kernel/sched_ext says: state, the attached scheduler, enable_seq.
stats: the counters of the fastpath scheduler attached now (by any process).
Needs Linux 6.12 or newer built with CONFIG_SCHED_CLASS_EXT=y.`,
  examples: [
    "sudo fastpath sched run",
    "sudo fastpath sched run --foreground game.exe --foreground-weight-pct 400",
    "sudo fastpath sched run --slice-us 3000 --duration-s 60 --format json",
    "fastpath sched status",
    "sudo fastpath sched stats --format json | jq .preempt_kicks",
  ],
  args: ["run|status|stats"],
  flags: {
    "slice-us": { type: "number", help: "slice of a task that rarely wakes, µs", default: SCHED_DEFAULTS.sliceUs },
    "slice-min-us": {
      type: "number",
      help: "floor for slices of tasks that wake often, µs",
      default: SCHED_DEFAULTS.sliceMinUs,
    },
    "lag-us": { type: "number", help: "sleep credit of a rarely-waking task, µs", default: SCHED_DEFAULTS.lagUs },
    "lag-max-us": {
      type: "number",
      help: "ceiling of the sleep credit of tasks that wake often, µs",
      default: SCHED_DEFAULTS.lagMaxUs,
    },
    "wake-ref-hz": {
      type: "number",
      help: "wake frequency above which slices shrink, Hz",
      default: SCHED_DEFAULTS.wakeRefHz,
    },
    "latency-hz": {
      type: "number",
      help: "wake frequency from which a wakeup may preempt, Hz",
      default: SCHED_DEFAULTS.latencyHz,
    },
    "busy-high-pct": {
      type: "number",
      help: "CPU use above which the system counts as busy (wakeups stay in their LLC), %",
      default: SCHED_DEFAULTS.busyHighPct,
    },
    "busy-low-pct": {
      type: "number",
      help: "CPU use below which it counts as idle again, %",
      default: SCHED_DEFAULTS.busyLowPct,
    },
    foreground: {
      type: "string",
      help: "comma list of PIDs or process names to favour (names are looked up again every interval)",
    },
    "foreground-weight-pct": {
      type: "number",
      help: "weight of foreground tasks, % of their own",
      default: SCHED_DEFAULTS.foregroundWeightPct,
    },
    "watchdog-ms": {
      type: "number",
      help: "eject the scheduler when a runnable task waits this long (0 = kernel default, 30000), ms",
      default: 0,
    },
    "interval-ms": { type: "number", help: "how often run reports", default: 1000 },
    "duration-s": { type: "number", help: "run: detach after this many seconds (default: until stopped)" },
    "test-stall-pid": {
      type: "number",
      help: "testing only: load a deliberately broken build that starves this process, to see the kernel eject it",
    },
    format: FORMAT,
  },
  async run([action], f) {
    const json = f.format === "json";
    if (!["run", "status", "stats"].includes(action)) {
      throw new FastpathError("usage", `unknown sched action '${action}': use run, status or stats`);
    }
    if (action === "status") {
      const st = schedStatus();
      if (!st.present) throw new FastpathError("unsupported", NO_SCHED_EXT);
      if (json) {
        emitJson({
          type: "status",
          state: st.state,
          ops: st.ops || null,
          enable_seq: st.enableSeq,
          hotplug_seq: st.hotplugSeq,
        });
      } else {
        console.log(`state:       ${st.state}`);
        console.log(`scheduler:   ${st.ops || "(none: the kernel's default scheduler)"}`);
        console.log(`enable_seq:  ${st.enableSeq}`);
        console.log(`hotplug_seq: ${st.hotplugSeq}`);
      }
      return 0;
    }
    requireSchedExt();
    if (action === "stats") {
      const c = await Scheduler.readAttached();
      if (json) emitJson({ type: "stats", ...c });
      else console.log(table(["counter", "value"], Object.entries(c).map(([k, v]) => [k, String(v)])));
      return 0;
    }

    const specs = f.foreground === undefined
      ? []
      : String(f.foreground).split(",").map((s) => s.trim()).filter(Boolean);
    const stop = untilSignal();
    let s: Scheduler;
    try {
      s = await Scheduler.start({
        sliceUs: f["slice-us"] as number | undefined,
        sliceMinUs: f["slice-min-us"] as number | undefined,
        lagUs: f["lag-us"] as number | undefined,
        lagMaxUs: f["lag-max-us"] as number | undefined,
        wakeRefHz: f["wake-ref-hz"] as number | undefined,
        latencyHz: f["latency-hz"] as number | undefined,
        busyHighPct: f["busy-high-pct"] as number | undefined,
        busyLowPct: f["busy-low-pct"] as number | undefined,
        foreground: specs,
        foregroundWeightPct: f["foreground-weight-pct"] as number | undefined,
        watchdogMs: f["watchdog-ms"] as number | undefined,
        testStallPid: f["test-stall-pid"] as number | undefined,
      });
    } catch (err) {
      stop.dispose();
      throw err;
    }
    const status = new StatusLine();
    try {
      const st = schedStatus();
      const c0 = s.stats();
      const o = s.options;
      if (json) {
        emitJson({
          type: "started",
          state: st.state,
          ops: st.ops,
          enable_seq: st.enableSeq,
          nr_cpus: c0.nr_cpus,
          nr_llcs: c0.nr_llcs,
          foreground: s.foreground,
          ...o,
        });
      } else {
        console.error(
          `fastpath scheduler attached: state ${st.state}, ops ${st.ops}, ${c0.nr_cpus} CPUs in ${c0.nr_llcs} LLC(s)`,
        );
        console.error(
          `  slice ${o.sliceUs} µs (down to ${o.sliceMinUs} µs for frequent wakers), preempt from ${o.latencyHz} Hz, foreground weight ${o.foregroundWeightPct} %` +
            (specs.length
              ? `, foreground ${specs.join(",")} → ${s.foreground.length ? s.foreground.join(",") : "not running yet"}`
              : ""),
        );
        console.error("  stop with Ctrl-C");
      }
      const intervalMs = Math.max(100, Number(f["interval-ms"] ?? 1000));
      const textEvery = status.tty ? intervalMs : Math.max(intervalMs, 10_000);
      const deadline = f["duration-s"] !== undefined ? Date.now() + Number(f["duration-s"]) * 1000 : Infinity;
      let prev = s.stats();
      let prevT = performance.now();
      let lastText = performance.now();
      while (true) {
        const wait = Math.min(intervalMs, Math.max(0, deadline - Date.now()));
        const why = await Promise.race([
          stop.promise,
          s.waitEjected(wait).then((ejected) => (ejected ? "ejected" : "tick")),
        ]);
        const now = performance.now();
        const c = s.stats();
        const dt = (now - prevT) / 1000;
        if (specs.some((x) => !/^\d+$/.test(x))) {
          const { tgids } = resolveForeground(specs);
          if (tgids.join() !== s.foreground.join()) {
            s.setForeground(tgids);
            if (!json) {
              status.clear();
              console.error(`foreground now ${tgids.length ? tgids.join(",") : "empty (not running)"}`);
            }
          }
        }
        if (json) emitJson({ type: "interval", t: Date.now() / 1000, interval_s: dt, ...c });
        else if (status.tty) status.show(schedLine(c, prev, dt, s.foreground));
        else if (now - lastText >= textEvery) {
          console.error(schedLine(c, prev, dt, s.foreground));
          lastText = now;
        }
        prev = c;
        prevT = now;
        if (why !== "tick" || Date.now() >= deadline) break;
      }
      status.clear();
      const ejected = s.state() === "ejected";
      const e = s.stop();
      const total = s.stats();
      if (json) {
        emitJson({
          type: "exit",
          kind: e.kind,
          kind_name: e.kindName,
          exit_code: Number(e.exitCode),
          reason: e.reason,
          msg: e.msg,
          ejected,
          ...total,
        });
      }
      console.error(exitLine(e));
      if (!json) {
        console.error(
          `  ${total.runs} runs, ${total.wakeups} wakeups, ${total.preempt_kicks} preemptions, ${total.restarts} restarts; state now ${schedStatus().state}`,
        );
      }
      return e.error || ejected ? 11 : 0;
    } finally {
      stop.dispose();
      s.close();
    }
  },
};

const COMMANDS: Command[] = [reflectCmd, probeCmd, labCmd, schedCmd, doctorCmd];

function commandHelp(c: Command): string {
  const flagLines = Object.entries(c.flags).map(([name, s]) => {
    const arg = s.type === "boolean"
      ? ""
      : s.choices
      ? ` ${s.choices.join("|")}`
      : s.type === "number"
      ? " N"
      : " VALUE";
    const def = s.default !== undefined ? ` [default: ${s.default}]` : "";
    return `  --${name}${arg}\n      ${s.help}${def}`;
  });
  return `${c.summary}\n\nUsage: ${c.usage}\n\n${c.description}\n\nFlags:\n${
    flagLines.join("\n")
  }\n  -h, --help\n      show this help\n\nExamples:\n${c.examples.map((e) => `  ${e}`).join("\n")}\n\n${EXIT_HELP}`;
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `fastpath ${VERSION} — kernel fast paths for people who will never write BPF

Usage: fastpath <command> [flags]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}
  help${" ".repeat(Math.max(0, width - 4))}  help for a command

Examples:
  sudo fastpath lab run
  sudo fastpath reflect eth0
  sudo fastpath probe eth0 --to 192.0.2.10 --rate 100kpps
  fastpath doctor

Run 'fastpath <command> --help' for a command's flags and examples.

${EXIT_HELP}`;
}

function closest(word: string, options: string[]): string | undefined {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
    }
    return d[a.length][b.length];
  };
  const best = options.map((o) => [o, dist(word, o)] as const).sort((a, b) => a[1] - b[1])[0];
  return best && best[1] <= 2 ? best[0] : undefined;
}

/** Parses `--flag value`, `--flag=value`, `--flag`/`--no-flag` (booleans). */
export function parseFlags(c: Command, argv: string[]): { args: string[]; flags: Flags; help: boolean } {
  const args: string[] = [];
  const flags: Flags = {};
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") {
      help = true;
      continue;
    }
    if (a === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("--")) {
      if (a.startsWith("-") && a.length > 1) {
        throw new FastpathError("usage", `unknown flag '${a}' for ${c.name}: see 'fastpath ${c.name} --help'`);
      }
      args.push(a);
      continue;
    }
    let [name, value] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    let spec = c.flags[name];
    if (!spec && name.startsWith("no-") && c.flags[name.slice(3)]?.type === "boolean") {
      name = name.slice(3);
      spec = c.flags[name];
      value = "false";
    }
    if (!spec) {
      const hint = closest(name, Object.keys(c.flags));
      throw new FastpathError(
        "usage",
        `unknown flag '--${name}' for ${c.name}${
          hint ? ` (did you mean --${hint}?)` : ""
        }: see 'fastpath ${c.name} --help'`,
      );
    }
    if (spec.type === "boolean") {
      flags[name] = value === undefined ? true : !["false", "0", "no"].includes(value);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) {
        throw new FastpathError("usage", `--${name} needs a value: see 'fastpath ${c.name} --help'`);
      }
    }
    if (spec.choices && !spec.choices.includes(value)) {
      throw new FastpathError("usage", `--${name} must be one of ${spec.choices.join(", ")}, not '${value}'`);
    }
    if (spec.type === "number") {
      const n = Number(value);
      if (value.trim() === "" || !Number.isFinite(n)) {
        throw new FastpathError("usage", `--${name} needs a number, not '${value}'`);
      }
      flags[name] = n;
    } else flags[name] = value;
  }
  return { args, flags, help };
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "-h" || name === "--help") {
    console.log(mainHelp());
    return name ? 0 : 2;
  }
  if (name === "--version" || name === "version") {
    console.log(`fastpath ${VERSION}`);
    return 0;
  }
  if (name === "help") {
    const c = COMMANDS.find((c) => c.name === rest[0]);
    console.log(c ? commandHelp(c) : mainHelp());
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    const hint = closest(name, COMMANDS.map((c) => c.name));
    throw new FastpathError(
      "usage",
      `unknown command '${name}'${hint ? ` (did you mean ${hint}?)` : ""}: see 'fastpath --help'`,
    );
  }
  const { args, flags, help } = parseFlags(cmd, rest);
  if (help) {
    console.log(commandHelp(cmd));
    return 0;
  }
  if (args.length !== cmd.args.length) {
    throw new FastpathError(
      "usage",
      args.length < cmd.args.length
        ? `${cmd.name} needs ${cmd.args.join(" ")}: usage: ${cmd.usage}`
        : `${cmd.name} takes ${cmd.args.length ? cmd.args.join(" ") : "no arguments"}, got '${
          args.join(" ")
        }': usage: ${cmd.usage}`,
    );
  }
  return await cmd.run(args, flags);
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    if (err instanceof FastpathError) {
      console.error(`error: ${err.message}`);
      code = err.exitCode;
    } else {
      console.error(`error: internal: ${(err as Error)?.stack ?? err}`);
      code = 1;
    }
  }
  Deno.exit(code);
}
