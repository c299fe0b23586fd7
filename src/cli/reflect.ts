/** `fastpath reflect IFACE`: reflect ITO test frames on an interface until stopped. */
import { cliText, FastpathError } from "../../ffi/error.ts";
import { mbps, pps } from "../format.ts";
import {
  type Counters,
  FANOUTS,
  PROFILES,
  REFLECT_MODES,
  Reflector,
  REFLECTOR_DEFAULTS,
  type ReflectorInfo,
  SWAP_MODES,
} from "../reflector.ts";
import { bool, choice, command, formatOption, num, setExit, text } from "./flags.ts";
import { parseIfaceName } from "../parse.ts";
import type { Board, Section } from "./dashboard.ts";
import { emit } from "./json.ts";
import { intervalOption, monitor, untilSignal } from "./monitor.ts";
import { socketName, startStats, type Stats, statsOptions, statsPlan } from "./stats.ts";

/** `--mode`, `--swap`, `--profile`, `--coalesce-us`, `--nice`: shared with `lab run`. */
export const reflectorFlags = {
  mode: () =>
    choice("mode", REFLECT_MODES, "dataplane: auto takes the fastest that starts").default(REFLECTOR_DEFAULTS.mode),
  profile: () =>
    choice("profile", PROFILES, "tester profile: its OUI filter, TOS toggle and signatures (netally toggles TOS)")
      .default(REFLECTOR_DEFAULTS.profile),
  swap: () =>
    choice("swap", SWAP_MODES, "fields to swap: mac, mac-ip (IPv4/IPv6 addresses too) or all (UDP ports too)")
      .default(REFLECTOR_DEFAULTS.swap),
  coalesceUs: () =>
    num(
      "coalesce-us",
      "afxdp and packet modes: under load (from 50 kpps per worker; below 30 kpps every frame goes at once) let frames gather this long per wake-up (fewer wake-ups, at most this much more latency; 0 = off, at most 1000). afxdp defers the device's receive interrupts where the kernel can (6.13+)",
    ).default(REFLECTOR_DEFAULTS.coalesceUs, "500 in afxdp mode, 1000 in packet mode"),
  nice: (threads: string) =>
    num(
      "nice",
      `Linux: ${threads}' nice value, -20 … 19, so the machine's other work does not show up in the results (0 = as started)`,
    ).default(REFLECTOR_DEFAULTS.nice),
};

/**
 * What to tell about the interface, from each interval's counters (`link_down`, `link_up`,
 * `mac_changes`): "down" when it went down, "still-down" when it was down at start and still is after
 * the first interval, "up" when it came back after either was told, "mac" when `mac_changes` passed
 * what was last told (counted from 0: a change the reflector followed before the loop's first sample
 * is told too). A link still coming up when the reflector started (after a bounce the kernel reports
 * a veth down for a moment) is not news: it was never said to be down.
 */
export class LinkNews {
  #told = false;
  #first = true;
  #macChanges = 0;

  next(c: Counters, prev: Counters): Array<"down" | "still-down" | "up" | "mac"> {
    const events: Array<"down" | "still-down" | "up" | "mac"> = [];
    if (c.mac_changes > this.#macChanges) {
      events.push("mac");
      this.#macChanges = c.mac_changes;
    }
    if (c.link_down > prev.link_down) {
      events.push("down");
      this.#told = true;
    }
    const downNow = c.link_down > c.link_up;
    if (!downNow && this.#told) {
      events.push("up");
      this.#told = false;
    }
    if (this.#first && downNow && !this.#told) {
      events.push("still-down");
      this.#told = true;
    }
    this.#first = false;
    return events;
  }
}

/** The drop counters (drop_*) that are not zero, as "reason count" pairs. */
export function nonZeroDrops(c: Counters): string[] {
  return Object.entries(c).filter(([k, v]) => k.startsWith("drop_") && v > 0).map(([k, v]) => `${k.slice(5)} ${v}`);
}

const SIGNATURES: Array<[keyof Counters, string]> = [
  ["sig_probeot", "PROBEOT"],
  ["sig_dataot", "DATA:OT"],
  ["sig_latency", "LATENCY"],
  ["sig_rfc2544", "RFC2544"],
  ["sig_y1564", "Y.1564"],
];

/** The dashboard's reflector sections: rates from the counters' deltas, then the non-zero signatures and drops. */
export function reflectorSections(c: Counters, prev: Counters, dt: number): Section[] {
  const rate = (k: keyof Counters) => (c[k] - prev[k]) / Math.max(dt, 1e-9);
  const withRate = (k: keyof Counters) => `${c[k]}${c[k] > prev[k] ? `  (${pps(rate(k))})` : ""}`;
  return [
    {
      title: "reflector",
      rows: [
        ["received", `${pps(rate("rx_packets"))}  total ${c.rx_packets}`],
        ["reflected", `${pps(rate("tx_packets"))}  ${mbps((rate("tx_bytes") * 8) / 1e6)}  total ${c.tx_packets}`],
      ],
    },
    {
      title: "reflected by signature",
      rows: SIGNATURES.filter(([k]) => c[k] > 0).map(([k, name]) => [name, withRate(k)]),
      empty: "none yet",
    },
    {
      title: "not reflected",
      rows: (Object.keys(c) as Array<keyof Counters>).filter((k) => k.startsWith("drop_") && c[k] > 0)
        .map((k) => [k.slice(5).replaceAll("_", " "), withRate(k)]),
      empty: "none",
    },
  ];
}

/** The mode and why it runs, as the dashboard shows them. */
export function reflectorMode(i: ReflectorInfo): [string, string] {
  return [`${i.mode}${how(i)}`, cliText(i.reason)];
}

/** `reflect`'s dashboard. */
export function reflectBoard(iface: string, i: ReflectorInfo, c: Counters, prev: Counters, dt: number): Board {
  return { title: `reflect ${iface} (${i.mac})`, mode: reflectorMode(i), sections: reflectorSections(c, prev, dt) };
}

function line(iface: string, c: Counters, prev: Counters, dt: number): string {
  const rate = (k: keyof Counters) => (c[k] - prev[k]) / dt;
  const drops = nonZeroDrops(c).join(", ");
  return `${iface}: rx ${pps(rate("rx_packets"))}, reflected ${pps(rate("tx_packets"))} ${
    mbps((rate("tx_bytes") * 8) / 1e6)
  }, total ${c.tx_packets}` + (drops ? ` | not reflected: ${drops}` : "");
}

/** How the dataplane runs, in a few words ("XDP generic, copy mode, …"). */
function how(i: ReflectorInfo): string {
  if (i.mode === "bpf") {
    return ` (${i.batchWrite ? "BIOCSBATCHWRITE batches" : "one write() per frame: BIOCSBATCHWRITE needs macOS 14"})`;
  }
  if (i.mode === "packet") return "";
  if (i.mode === "xdp") return ` (XDP ${i.xdpAttach})`;
  const wake = !i.coalesceUs
    ? "a wake-up per frame"
    : i.irqDeferred
    ? `receive interrupts deferred up to ${i.coalesceUs} µs`
    : `wake-ups coalesced over ${i.coalesceUs} µs`;
  return ` (XDP ${i.xdpAttach}, ${i.zerocopy ? "zero-copy" : "copy mode"}, ${wake})`;
}

function banner(iface: string, i: ReflectorInfo): void {
  console.error(`reflecting on ${iface} (${i.mac}) in ${i.mode} mode${how(i)} — ${cliText(i.reason)}`);
  console.error(
    `  profile ${i.profile}, swap ${i.swap}, port ${i.port || "any"}, OUI ${i.oui ?? "any"}, TOS toggle ${
      i.tosToggle ? "on" : "off"
    }, ${i.workers} worker(s)${i.nice !== null ? ` at nice ${i.nice}` : ""}`,
  );
  if (i.maxFrame && i.mtu + 14 > i.maxFrame) {
    console.error(
      `  note: afxdp reflects frames up to ${i.maxFrame} bytes; ${iface} has MTU ${i.mtu}, so longer frames go unreflected (use --mode xdp)`,
    );
  }
  if (i.warning) console.error(`  warning: ${cliText(i.warning)}`);
  console.error("  stop with Ctrl-C");
}

function summary(c: Counters): void {
  console.error(`stopped: received ${c.rx_packets}, reflected ${c.tx_packets} (${c.tx_bytes} bytes)`);
  console.error(
    `  by signature: PROBEOT ${c.sig_probeot}, DATA:OT ${c.sig_dataot}, LATENCY ${c.sig_latency}, RFC2544 ${c.sig_rfc2544}, Y.1564 ${c.sig_y1564}`,
  );
  const drops = nonZeroDrops(c);
  console.error(`  not reflected: ${drops.length ? drops.join(", ") : "none"}`);
}

const cmd = command("reflect", {
  summary: "reflect ITO test frames from a handheld tester on an interface",
  usage: "IFACE [flags]",
  description: `Returns NetAlly / Fluke / NETSCOUT test frames (signatures PROBEOT, DATA:OT, LATENCY) addressed to
this interface with their addresses swapped, so the handheld measures throughput, loss and latency.
Frames that are not ITO-signed, not addressed to us, broadcast or multicast are never reflected.
Runs until Ctrl-C or SIGTERM (or --duration-s), then prints the totals.`,
  examples: [
    "sudo fastpath reflect eth0",
    "sudo fastpath reflect eth0 --mode packet --swap all --workers 2 --cpu 1",
    "sudo fastpath reflect eth0 --profile rfc2544 --port 0",
    "sudo fastpath reflect eth0 --format json --interval-ms 5000 | jq .tx_packets",
    "sudo fastpath reflect eth0 --http 127.0.0.1:9100   # Prometheus scrapes http://127.0.0.1:9100/metrics",
  ],
});
const [statsSocket, noStatsSocket, http, httpAllowRemote] = statsOptions("reflect-IFACE[@NETNS]");
const [tos, noTos] = bool("tos-toggle", "XOR 0x01 into the IPv4 TOS byte on the way back (default: the profile's)");

export const reflect = cmd
  .argument("<IFACE>", "", parseIfaceName)
  .addOption(reflectorFlags.mode())
  .addOption(reflectorFlags.profile())
  .addOption(reflectorFlags.swap())
  .addOption(text("oui", "require this source-MAC OUI, or 'any' (default: the profile's)", "OUI|any"))
  .addOption(num("port", "UDP destination port to accept, 0 = any").default(REFLECTOR_DEFAULTS.port))
  .addOption(tos)
  .addOption(noTos)
  .addOption(text("signatures", "reflect only these signatures, a comma list (default: the profile's)", "LIST"))
  .addOption(num("workers", "worker threads (PACKET_FANOUT when more than 1)").default(REFLECTOR_DEFAULTS.workers))
  .addOption(num("cpu", "pin worker i to CPU N+i", { min: 0 }))
  .addOption(reflectorFlags.nice("packet and afxdp modes: the workers"))
  .addOption(
    choice("fanout", FANOUTS, "how frames are spread over workers (packet mode)").default(REFLECTOR_DEFAULTS.fanout),
  )
  .addOption(
    num("busy-poll-us", "afxdp mode: busy-poll the sockets this long instead of sleeping (lower latency, more CPU)")
      .default(REFLECTOR_DEFAULTS.busyPollUs),
  )
  .addOption(reflectorFlags.coalesceUs())
  .addOption(text("netns", "network namespace the interface lives in (ip netns)", "NAME"))
  .addOption(intervalOption())
  .addOption(num("duration-s", "stop after this many seconds (default: run until stopped)", { above: 0 }))
  .addOption(formatOption())
  .addOption(statsSocket)
  .addOption(noStatsSocket)
  .addOption(http)
  .addOption(httpAllowRemote)
  .action(async (iface, f) => {
    const json = f.format === "json";
    const plan = statsPlan(f, socketName("reflect", iface, f.netns));
    const stop = untilSignal();
    let r: Reflector;
    try {
      r = await Reflector.start({
        iface,
        netns: f.netns,
        mode: f.mode,
        profile: f.profile,
        swap: f.swap,
        oui: f.oui,
        port: f.port,
        tosToggle: f.tosToggle,
        signatures: f.signatures,
        workers: f.workers,
        cpu: f.cpu,
        nice: f.nice,
        fanout: f.fanout,
        busyPollUs: f.busyPollUs,
        coalesceUs: f.coalesceUs,
      });
    } catch (err) {
      stop.dispose();
      throw err;
    }
    let stats: Stats | null = null;
    try {
      // Options named as this command line spells them, in the JSON as in the text (docs/json.md).
      if (json) {
        emit("reflect_started", {
          ...r.info,
          reason: cliText(r.info.reason),
          warning: r.info.warning && cliText(r.info.warning),
        });
      } else banner(iface, r.info);
      // After the reflector: a second reflector on this interface is refused for that, naming its holder.
      stats = await startStats(plan, {
        command: "reflect",
        intervalMs: f.intervalMs,
        families: ["reflector"],
      });
      stats?.core.label({ reflectorIface: iface, mode: r.info.mode });
      const linkNews = new LinkNews();
      const end = await monitor({
        json,
        intervalMs: f.intervalMs,
        durationS: f.durationS,
        stop: stop.promise,
        sample: () => r.stats(),
        line: (c, prev, dt) => line(iface, c, prev, dt),
        board: (c, prev, dt) => reflectBoard(iface, { ...r.info, mac: r.mac }, c, prev, dt),
        interval: (c, _prev, dt) => ["reflect_interval", { timeS: Date.now() / 1000, intervalS: dt, ...c }],
        observe: stats ? (type, obj) => stats!.core.observe(type, obj) : undefined,
        after: (c, prev) => {
          const notes: Array<[string, Record<string, unknown>, string]> = [];
          const link = (state: string, text: string) =>
            notes.push(["reflect_link", { state, timeS: Date.now() / 1000 }, text]);
          for (const event of linkNews.next(c, prev)) {
            if (event === "mac") {
              const mac = r.mac;
              notes.push([
                "reflect_mac",
                { timeS: Date.now() / 1000, mac, macChanges: c.mac_changes },
                `${iface} changed its MAC address to ${mac}: reflecting for the new one, no longer for the old`,
              ]);
            } else if (event === "up") link("up", `${iface} is up again: reflecting`);
            else if (event === "down") {
              link("down", `warning: ${iface} went down: nothing is reflected until it is up again`);
            } else link("down", `warning: ${iface} is down: nothing is reflected until it is up`);
          }
          if (r.info.mode === "xdp" && c.drop_tx_error > prev.drop_tx_error && prev.drop_tx_error === 0) {
            notes.push([
              "reflect_tx_error",
              { timeS: Date.now() / 1000, dropTxError: c.drop_tx_error },
              `warning: the veth peer of ${iface} drops the reflections (counted as tx_error): it needs an XDP program (any), or use --mode afxdp`,
            ]);
          }
          return { notes, end: r.state() === "failed" ? "failed" : undefined };
        },
      });
      const total = r.stats();
      const failure = end === "failed" ? r.failure() : null;
      if (json) emit("reflect_summary", { state: failure ? "failed" : "stopped", failure, ...total });
      else summary(total);
      if (failure) throw new FastpathError("failed", `reflector on ${iface}: ${failure}`);
      setExit(0);
    } finally {
      try {
        stats?.close();
        r.close();
      } finally {
        stop.dispose(); // last: a second signal meanwhile must not kill the cleanup
      }
    }
  });
