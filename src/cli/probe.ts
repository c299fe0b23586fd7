/** `fastpath probe IFACE --to IP|MAC`: the handheld's side — send ITO frames, measure what comes back. */
import { FastpathError } from "../../ffi/error.ts";
import { mbps, pct, pps, us } from "../format.ts";
import { Probe, PROBE_DEFAULTS, probeInterval, type ProbeReport, probeSummary } from "../probe.ts";
import { SWAP_MODES } from "../reflector.ts";
import { MAC_RE } from "../net.ts";
import { SIGNATURES } from "../parse.ts";
import { bool, choice, command, formatOption, num, setExit, suggest, text } from "./flags.ts";
import type { Board, Progress, Section } from "./dashboard.ts";
import { emit } from "./json.ts";
import { interruptedExit, intervalOption, monitor, summaryText, untilSignal } from "./monitor.ts";
import { reflectorFlags } from "./reflect.ts";
import { socketName, startStats, type Stats, statsOptions, statsPlan } from "./stats.ts";

const [statsSocket, noStatsSocket, http, httpAllowRemote] = statsOptions("probe-IFACE[@NETNS]");

/** One row of a results table, and its header (shared with `lab run`). */
export const PROBE_HEADER = [
  "run",
  "sent",
  "back",
  "loss",
  "reord",
  "dup",
  "bad",
  "rate",
  "on wire",
  "rtt p50",
  "rtt p99",
];
export function probeRow(label: string, p: ProbeReport): string[] {
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

/**
 * The live line of a running probe: this interval's rates and loss (as iperf3 prints them), then the
 * totals so far; frames still inside the drain time are in flight, not lost.
 */
/** The live line: this interval's rates and loss, then the totals, loss first (a narrow terminal cuts the end). */
export function probeLine(now: ProbeReport, prev: ProbeReport, dtS: number): string {
  const i = probeInterval(now, prev, dtS);
  return `${now.elapsedS.toFixed(1)} s: sent ${pps(i.intervalTxPps)}, back ${pps(i.intervalRxPps)}, loss ${
    pct(i.intervalLossPct)
  } | total lost ${now.lost} (${pct(now.lossPct)}), sent ${now.sent}, back ${now.received}, in flight ${now.inFlight}` +
    `, rtt p50 ${now.rttUs ? us(now.rttUs.p50) : "-"}`;
}

/** The dashboard's probe sections: this interval's rates and loss, the totals, the round-trip times. */
export function probeSections(now: ProbeReport, prev: ProbeReport, dtS: number): Section[] {
  const i = probeInterval(now, prev, dtS);
  const odd: Array<[string, number]> = [
    ["reordered", now.reordered],
    ["duplicates", now.duplicates],
    ["wrong rewrites", now.badRewrite],
    ["foreign frames", now.foreign],
    ["send errors", now.txErrors],
    ["ring drops", now.rxRingDrops],
    ["send slips", now.txSlipped],
  ];
  const r = now.rttUs;
  return [
    {
      title: "probe",
      rows: [
        ["sent", `${pps(i.intervalTxPps)}  total ${now.sent}`],
        ["back", `${pps(i.intervalRxPps)}  total ${now.received}  in flight ${now.inFlight}`],
        ["frame loss rate", `${pct(i.intervalLossPct)} now  ${pct(now.lossPct)} overall (${now.lost} lost)`],
        ...odd.filter(([, n]) => n > 0).map(([k, n]): [string, string] => [k, String(n)]),
      ],
    },
    {
      title: "round-trip time",
      rows: r
        ? [["p50 / p99 / p99.9", `${us(r.p50)} / ${us(r.p99)} / ${us(r.p999)}`], [
          "min / max",
          `${us(r.min)} / ${us(r.max)}`,
        ]]
        : [],
      empty: "nothing back yet",
    },
  ];
}

/** How far a probe of `count` frames or `durationS` seconds is. */
export function probeProgress(now: ProbeReport, bound: { count?: number; durationS?: number }): Progress | undefined {
  if (bound.count) return { done: now.sent, total: bound.count, frames: true };
  if (bound.durationS) return { done: now.elapsedS, total: bound.durationS };
  return undefined;
}

const cmd = command("probe", {
  summary: "send ITO test frames to a reflector and measure what comes back",
  usage: "IFACE --to IP|MAC [flags]",
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
});
const [expectTos, noExpectTos] = bool(
  "expect-tos-toggle",
  "expect the NetAlly TOS toggle (default on; --no-expect-tos-toggle for plain)",
);

export const probe = cmd
  .argument("<IFACE>")
  .addOption(text("to", "the reflector: IP address (MAC resolved) or MAC address", "IP|MAC").makeOptionMandatory())
  .addOption(text("dst-ip", "destination IP when --to is a MAC", "IP").default(PROBE_DEFAULTS.dstIp))
  .addOption(text("src-mac", "send from this MAC (received in promiscuous mode)", "MAC"))
  .addOption(
    text(
      "size",
      "frame size with FCS: 64 … 9018, min (the smallest the headers fit: 64, 68 with --vlan, 84 over IPv6) or imix (7×64 — or min —, 4×594, 1×1518)",
      "BYTES|min|imix",
    )
      .default(String(PROBE_DEFAULTS.size)),
  )
  .addOption(
    text("rate", "frames/s (100kpps, 250000), bits/s on the wire (500mbps, 1gbps), or max", "RATE")
      .default(PROBE_DEFAULTS.rate),
  )
  .addOption(num("count", "stop after this many frames"))
  .addOption(num("duration-s", `stop after this many seconds (default ${PROBE_DEFAULTS.durationS} when no --count)`))
  .addOption(
    suggest(text("signature", "PROBEOT, DATA:OT, LATENCY, RFC2544 or Y.1564", "NAME"), Object.keys(SIGNATURES))
      .default(PROBE_DEFAULTS.signature),
  )
  .addOption(
    choice("expect-swap", SWAP_MODES, "what the reflector swaps, checked on every frame")
      .default(PROBE_DEFAULTS.expectSwap),
  )
  .addOption(expectTos)
  .addOption(noExpectTos)
  .addOption(num("port", "UDP destination port").default(PROBE_DEFAULTS.port))
  .addOption(
    num("src-port", "UDP source port (differs from --port so a port swap shows)").default(PROBE_DEFAULTS.srcPort),
  )
  .addOption(num("vlan", "send with this 802.1Q VLAN ID (0 = untagged)").default(PROBE_DEFAULTS.vlan))
  .addOption(num("tos", "IPv4 TOS / IPv6 traffic class to send").default(PROBE_DEFAULTS.tos))
  .addOption(num("cpu", "pin the sender and receiver threads to this CPU (Linux; macOS uses QoS classes)", { min: 0 }))
  .addOption(reflectorFlags.nice("the sender and receiver threads").default(PROBE_DEFAULTS.nice))
  .addOption(
    num("drain-ms", "how long to wait for late reflections after the last frame").default(PROBE_DEFAULTS.drainMs),
  )
  .addOption(text("netns", "network namespace the interface lives in (Linux)", "NAME"))
  .addOption(num("max-loss-pct", "fail (exit 10) when the frame loss rate is above this, %"))
  .addOption(intervalOption())
  .addOption(formatOption())
  .addOption(statsSocket)
  .addOption(noStatsSocket)
  .addOption(http)
  .addOption(httpAllowRemote)
  .action(async (iface, f) => {
    const json = f.format === "json";
    const plan = statsPlan(f, socketName("probe", iface, f.netns));
    if (f.maxLossPct !== undefined && !(f.maxLossPct >= 0 && f.maxLossPct <= 100)) {
      throw new FastpathError("usage", `\`maxLossPct\` ${f.maxLossPct} must be a percentage from 0 to 100`);
    }
    const stop = untilSignal();
    let p: Probe;
    try {
      p = await Probe.start({
        iface,
        netns: f.netns,
        to: f.to,
        dstIp: f.dstIp,
        srcMac: f.srcMac,
        size: f.size,
        rate: f.rate,
        count: f.count,
        durationS: f.durationS,
        signature: f.signature,
        expectSwap: f.expectSwap,
        expectTosToggle: f.expectTosToggle,
        port: f.port,
        srcPort: f.srcPort,
        vlan: f.vlan,
        tos: f.tos,
        cpu: f.cpu,
        nice: f.nice,
        drainMs: f.drainMs,
        signal: stop.abort,
      });
    } catch (err) {
      stop.dispose();
      if (!stop.abort.aborted) throw err;
      // Whatever failed after the signal failed because of it (an `ip` that got the Ctrl-C too).
      const signal = String(stop.abort.reason);
      console.error(`interrupted by ${signal} before the probe started: nothing was sent`);
      return setExit(interruptedExit(signal));
    }
    let stats: Stats | null = null;
    try {
      const o = p.options;
      if (json) emit("probe_started", { ...o });
      else {
        console.error(
          `probing ${o.dstIp} (${o.dstMac}) from ${iface} ${o.srcIp}: ${o.size}-byte frames at ${
            o.ratePps ? pps(o.ratePps) : "maximum rate"
          }`,
        );
      }
      stats = await startStats(plan, { command: "probe", intervalMs: f.intervalMs, families: ["probe"] });
      stats?.core.label({ probeIface: iface });
      const end = await monitor({
        json,
        intervalMs: f.intervalMs,
        stop: stop.promise,
        sample: () => p.report(),
        observe: stats ? (type, obj) => stats!.core.observe(type, obj) : undefined,
        // The run counts from zero: reflections back before the first sample are the first interval's.
        first: { ...p.report(), sent: 0, received: 0, lost: 0, inFlight: 0 },
        line: probeLine,
        board: (r, prev, dt): Board => ({
          title: `probe ${iface} → ${o.dstIp} (${o.dstMac})`,
          sections: [
            { title: "sending", rows: [[`${o.size}-byte frames`, o.ratePps ? pps(o.ratePps) : "maximum rate"]] },
            ...probeSections(r, prev, dt),
          ],
          progress: probeProgress(r, {
            count: f.count,
            durationS: f.durationS ?? (f.count ? undefined : PROBE_DEFAULTS.durationS),
          }),
        }),
        interval: (r, prev, dt) => ["probe_interval", { ...r, ...probeInterval(r, prev, dt) }],
        wait: async (ms) => (await p.wait(ms)) ? "done" : undefined,
      });
      const interrupted = end !== "done";
      if (interrupted) p.stop();
      const report = await p.done();
      if (json) emit("probe_summary", { interrupted, ...report });
      else {
        summaryText(probeSummary(report, o.ratePps));
        if (interrupted) {
          summaryText(
            `interrupted by ${end} after ${
              report.elapsedS.toFixed(1)
            } s: these numbers are partial, not a finished run`,
          );
        }
      }
      if (interrupted) return setExit(interruptedExit(end));
      if (report.sent > 0 && report.received === 0) {
        // Exit 0 here would tell a script that a dead reflector is fine.
        const arp = MAC_RE.test(f.to) ? "" : " (it answered ARP, so the host is up)";
        throw new FastpathError(
          "failed",
          `nothing came back: is a reflector running on ${o.dstIp} (${o.dstMac})${arp} for UDP port ${f.port}? start one with 'sudo fastpath reflect IFACE' there${
            f.port === PROBE_DEFAULTS.port ? "" : `, or check that it accepts port ${f.port} (its --port)`
          }`,
        );
      }
      if (f.maxLossPct !== undefined && report.lossPct > f.maxLossPct) {
        throw new FastpathError(
          "failed",
          `frame loss rate ${
            pct(report.lossPct)
          } (${report.lost} of ${report.sent}) is above --max-loss-pct ${f.maxLossPct}`,
        );
      }
      if (report.badRewrite > 0) {
        throw new FastpathError(
          "failed",
          `${report.badRewrite} reflections did not have exactly the ${f.expectSwap} fields swapped`,
        );
      }
      setExit(0);
    } finally {
      try {
        stats?.close();
        p.close();
      } finally {
        stop.dispose(); // last: a second signal meanwhile must not kill the cleanup
      }
    }
  });
