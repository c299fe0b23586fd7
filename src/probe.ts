/** The probe: the handheld's side of the test, as a TypeScript handle over the native one. */
import { cstring, type Lib, load } from "../ffi/load.ts";
import { FastpathError } from "../ffi/error.ts";
import { NativeHandle } from "../ffi/handle.ts";
import { CounterView } from "../ffi/layout.ts";
import type { ProbeStatName } from "../ffi/enums.ts";
import {
  backlogDrops,
  ifaceAddress,
  linkDrops,
  linkInfo,
  MAC_RE,
  neighbour,
  noSuchNetns,
  parseIp,
  parseMac,
  requirePrivilege,
} from "./net.ts";
import { given, ITO_PORT, SWAP_MODES, type SwapMode } from "./reflector.ts";
import {
  type FrameSize,
  parseChoice,
  parseRate,
  parseSignature,
  parseSize,
  type Rate,
  rateText,
  type SignatureName,
  SIGNATURES,
  type SizeSpec,
} from "./parse.ts";
import { mbps, pct, pps, us } from "./format.ts";

export type { FrameSize, Rate };
export { parseRate, rateText };

/** Every option of a probe that has a default: the one place it is written (CLI help reads it too). */
export const PROBE_DEFAULTS = {
  /** An RFC 2544 benchmarking address, for `to` given as a MAC. */
  dstIp: "198.18.0.1",
  /** The smallest frame the headers fit: 64 bytes, 68 with a VLAN tag, 84 over IPv6 (the library's minFrameSize). */
  size: "min",
  rate: "10kpps",
  /** Seconds, when no `count` is given either. */
  durationS: 5,
  signature: "DATA:OT",
  expectSwap: "mac-ip",
  expectTosToggle: true,
  port: ITO_PORT,
  /** Differs from `port`, so a reflector that swaps ports shows. */
  srcPort: 50000,
  vlan: 0,
  tos: 0,
  nice: -10,
  drainMs: 500,
  batch: 32,
} as const;

export interface ProbeOptions {
  iface: string;
  netns?: string;
  /** The reflector: an IP address (its MAC is resolved) or a MAC address. */
  to: string;
  /** Destination IP when `to` is a MAC (default: an RFC 2544 benchmarking address). */
  dstIp?: string;
  /** Source MAC to send from (received in promiscuous mode); the interface's otherwise. */
  srcMac?: string;
  /** Frame size on the wire with FCS (64 … 9018), "imix", or "min" (default: the smallest these headers fit). */
  size?: SizeSpec | string;
  /** Frames/s, Mbit/s on the wire, or "max": `{ pps: 100_000 }`, "100kpps", "500mbps" (default 10 kpps). */
  rate?: Rate | string;
  /** Stop after this many frames … */
  count?: number;
  /** … or after this many seconds (default 5 when neither is given). */
  durationS?: number;
  signature?: SignatureName | string;
  /** What the reflector should swap, to check every reflection byte for byte. */
  expectSwap?: SwapMode;
  expectTosToggle?: boolean;
  /** UDP source port (default 50000, so a reflector swapping ports is visible). */
  srcPort?: number;
  /** UDP destination port (default ITO_PORT, the handhelds' test port). */
  port?: number;
  /** Send with this 802.1Q VLAN ID (0 = untagged). */
  vlan?: number;
  /** IPv4 TOS / IPv6 traffic class to send. */
  tos?: number;
  /** Pin the sending thread (and the receiving one, unless `rxCpu`) to this CPU. */
  cpu?: number;
  rxCpu?: number;
  /**
   * Linux: the sending and receiving threads' nice value, -20 … 19 (default -10; 0 = the caller's),
   * so the probe keeps its schedule and timestamps on a busy machine. macOS uses QoS classes.
   */
  nice?: number;
  /** How long to wait for late reflections after the last frame. */
  drainMs?: number;
  /** Frames per send call. */
  batch?: number;
  /**
   * Aborting it ends `start` early (FastpathError "interrupted") while it waits for the reflector's
   * address to resolve; the CLI aborts it on Ctrl-C and SIGTERM.
   */
  signal?: AbortSignal;
}

export interface RttSummary {
  min: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface ProbeReport {
  state: string;
  elapsedS: number;
  sent: number;
  received: number;
  /**
   * Frames sent more than the drain time ago (`drainMs`) that have not come back. Frames sent since
   * are `inFlight`, not lost: a reflection may still be on its way. After the run both are final.
   */
  lost: number;
  inFlight: number;
  /** Frame loss rate: `lost` of the frames sent before the drain window, %. */
  lossPct: number;
  duplicates: number;
  reordered: number;
  badRewrite: number;
  foreign: number;
  txErrors: number;
  rxRingDrops: number;
  /**
   * Final report only: frames this host's kernel dropped on the probe's interface during the run before
   * any socket saw them because its receive backlog was full (a burst of reflections). Loss counted here
   * happened on the probe's machine, not on the path or at the reflector. Null where unavailable.
   */
  hostRxDropped: number | null;
  /**
   * Final report only: the rest of the interface's receive drops during the run, which this host's
   * backlog did not make: on a veth, reflections its peer could not hand over (a reflector's XDP_TX
   * refused because this side runs no XDP program). Loss on the link to the reflector. Null where unavailable.
   */
  linkRxDropped: number | null;
  /** Paced runs: frames dropped from the schedule because the sender was off the CPU for over 1 ms. */
  txSlipped: number;
  /**
   * Paced runs: the furthest the sender fell behind its schedule, in milliseconds: about 1 when the
   * machine cannot keep the rate, the length of the stall when the sender was kept off the CPU.
   */
  txLateMaxMs: number;
  /** Frames sent per second from the first frame to the end of sending (the whole --duration-s). */
  txPps: number;
  rxPps: number;
  /** Reflected throughput: frame bytes (no FCS) and on the wire (with FCS, preamble, gap). */
  rxL2Mbps: number;
  rxWireMbps: number;
  txWireMbps: number;
  /** Round-trip time in microseconds. */
  rttUs: RttSummary | null;
}

/** What one interval of a running probe saw (as iperf3 reports): its own rates and loss, not the totals. */
export interface ProbeInterval {
  intervalS: number;
  intervalSent: number;
  intervalReceived: number;
  /** Frames that left the drain window in this interval without coming back. */
  intervalLost: number;
  intervalLossPct: number;
  intervalTxPps: number;
  intervalRxPps: number;
}

/** The interval between two reports `dtS` seconds apart. */
export function probeInterval(now: ProbeReport, prev: ProbeReport, dtS: number): ProbeInterval {
  const dt = Math.max(dtS, 1e-9);
  const sent = now.sent - prev.sent;
  const received = now.received - prev.received;
  const lost = Math.max(0, now.lost - prev.lost);
  // The frames whose fate this interval settled: those that left the drain window in it.
  const settled = now.sent - now.inFlight - (prev.sent - prev.inFlight);
  return {
    intervalS: round(dtS, 3),
    intervalSent: sent,
    intervalReceived: received,
    intervalLost: lost,
    intervalLossPct: settled > 0 ? Math.min(100, (100 * lost) / settled) : 0,
    intervalTxPps: sent / dt,
    intervalRxPps: received / dt,
  };
}

/**
 * Of `sent` frames, how many left the drain window `drainMs` ago: from the (time ms, sent) samples the
 * probe took, interpolated between the two around that moment (0 before the first sample).
 */
export function sentBefore(samples: Array<[number, number]>, atMs: number): number {
  let before: [number, number] | undefined;
  for (const x of samples) {
    if (x[0] <= atMs) before = x;
    else {
      if (!before) return 0;
      const f = (atMs - before[0]) / Math.max(x[0] - before[0], 1e-9);
      return Math.floor(before[1] + f * (x[1] - before[1]));
    }
  }
  return before?.[1] ?? 0;
}

/** `x` to `digits` decimals: seconds and rates without float noise (2.0000000001). */
/**
 * RTT in µs from the histogram (`hist` counts per bucket, `lower(i)` the bucket's lower bound in ns) and
 * the exact min, max and mean (ns). A percentile is its bucket's midpoint, held within [min, max]: a
 * midpoint may lie beyond what was seen (all samples low in a wide bucket).
 */
export function rttSummary(
  hist: number[],
  lower: (i: number) => number,
  minNs: number,
  maxNs: number,
  meanNs: number,
): RttSummary {
  const q = (p: number) => Math.min(Math.max(percentile(hist, lower, p), minNs), maxNs) / 1000;
  return { min: minNs / 1000, p50: q(0.5), p99: q(0.99), p999: q(0.999), max: maxNs / 1000, mean: meanNs / 1000 };
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Percentiles from a histogram of counts, in ns (bucket midpoints). */
export function percentile(hist: number[], lower: (i: number) => number, q: number): number {
  const total = hist.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= rank) return (lower(i) + lower(i + 1)) / 2;
  }
  return lower(hist.length - 1);
}

/**
 * The human summary of a finished run, as `fastpath probe` prints it: a line per fact, the notes only
 * when they apply. `ratePps`: the rate asked for in frames/s (0 or absent: as fast as possible).
 */
export function probeSummary(p: ProbeReport, ratePps = 0): string {
  const lines = [
    `sent ${p.sent}, received ${p.received}, lost ${p.lost} (${
      pct(p.lossPct)
    }), reordered ${p.reordered}, duplicates ${p.duplicates}`,
    `rewrite: ${
      p.received === 0
        ? "nothing came back to check"
        : p.badRewrite === 0
        ? "every reflection had exactly the expected fields swapped"
        : `${p.badRewrite} reflections had wrong bytes`
    }`,
    `throughput: sent ${pps(p.txPps)} ${mbps(p.txWireMbps)} on the wire; received ${pps(p.rxPps)}, ${
      mbps(p.rxL2Mbps)
    } L2, ${mbps(p.rxWireMbps)} on the wire`,
  ];
  if (p.rttUs) {
    lines.push(
      `rtt: min ${us(p.rttUs.min)}, p50 ${us(p.rttUs.p50)}, p99 ${us(p.rttUs.p99)}, p99.9 ${us(p.rttUs.p999)}, max ${
        us(p.rttUs.max)
      }`,
    );
  }
  return [...lines, ...probeNotes(p, ratePps)].join("\n");
}

/**
 * The notes of a finished run that apply (send and receive problems, loss on this host or the link, a
 * sender that fell behind its rate), a line each; none for a clean run. `ratePps` as in probeSummary.
 */
export function probeNotes(p: ProbeReport, ratePps = 0): string[] {
  const lines: string[] = [];
  if (p.txErrors || p.rxRingDrops || p.foreign) {
    lines.push(
      `probe side: send errors ${p.txErrors}, receive ring drops ${p.rxRingDrops}, foreign frames ${p.foreign}`,
    );
  }
  if (p.linkRxDropped) {
    lines.push(
      `link: ${p.linkRxDropped} frames were dropped on their way to the probe's interface, not by this host's ` +
        `backlog: on a veth, reflections its peer could not hand over (a reflector in xdp mode needs an XDP ` +
        `program on this side; or use --mode afxdp there)`,
    );
  }
  if (p.hostRxDropped) {
    lines.push(
      `this host: its kernel dropped ${p.hostRxDropped} frames arriving on the probe's interface before the probe ` +
        `saw them (a burst beyond its receive backlog): that loss is on this machine, not the path or the reflector; ` +
        `raise it with 'sysctl -w net.core.netdev_max_backlog=N'`,
    );
  }
  if (p.txSlipped) {
    // One stall that explains most of the frames left out: the sender was kept off the CPU (a pause,
    // a busier process), not too slow for the rate.
    const stalled = ratePps === 0 || (p.txLateMaxMs / 1000) * ratePps >= p.txSlipped / 2;
    if (!stalled && p.txPps < 0.9 * ratePps) {
      lines.push(
        `rate: requested ${pps(ratePps)}, reached ${pps(p.txPps)}: this machine could not send faster ` +
          `(${p.txSlipped} frames of the schedule were left out); lower --rate, or use --rate max to see its limit`,
      );
    } else {
      const short = ratePps > 0 && p.txPps < 0.9 * ratePps
        ? `, so it reached ${pps(p.txPps)} of the ${pps(ratePps)} requested`
        : "";
      lines.push(
        `pacing: ${p.txSlipped} frames were not sent: the sender was kept off the CPU for up to ${
          us(p.txLateMaxMs * 1000)
        }${short} (it makes up 1 ms at most, never a burst above --rate); give it a quieter core with --cpu or a higher priority with --nice`,
      );
    }
  }
  return lines;
}

/**
 * Frames per second for `rate` (0: as fast as possible) with frames of `size` bytes (FCS included);
 * a rate in Mbit/s counts each frame's 20 bytes of preamble and inter-frame gap, as RFC 2544 does.
 * IMIX's small frames are `minSize` when the headers do not fit 64 bytes (68 with a VLAN tag, 84
 * over IPv6: the library's minFrameSize), so its average grows with them.
 */
export function ratePps(rate: Rate, size: number | "imix", minSize = 64): number {
  if (rate === "max") return 0;
  if ("pps" in rate) return Math.round(rate.pps);
  const avg = size === "imix" ? imixAverage(minSize) : size;
  return Math.round((rate.mbps * 1e6) / ((avg + 20) * 8));
}

/**
 * The mean frame of simple IMIX by frame count (7 × 64, 4 × 594, 1 × 1518 bytes), in bytes, when its
 * 64-byte frames are sent as `minSize` (see ratePps).
 */
export function imixAverage(minSize = 64): number {
  return (7 * Math.max(64, minSize) + 4 * 594 + 1518) / 12;
}

export class Probe extends NativeHandle {
  readonly #lib;
  readonly #stats: CounterView<ProbeStatName>;
  readonly #hist: { first: number; count: number };
  readonly #startedAt = performance.now();
  #endedAt: number | undefined;
  /** What the probe resolved: addresses, size, the rate as given and in frames/s (0 = max). */
  readonly options: {
    iface: string;
    netns: string | null;
    size: FrameSize;
    rate: string;
    dstMac: string;
    dstIp: string;
    srcIp: string;
    ratePps: number;
  };
  /** The interface's receive drops and this host's backlog drops when the run started (undefined where unavailable). */
  #rxDropped0: { iface: number; backlog: number } | undefined;
  /** How long a reflection may take to count (`drainMs`), and (time ms, frames sent) samples of the last ones. */
  #drainMs = 0;
  #sentSamples: Array<[number, number]> = [];

  private constructor(
    handle: Deno.PointerObject,
    lib: Lib,
    stats: CounterView<ProbeStatName>,
    hist: { first: number; count: number },
    options: Probe["options"],
  ) {
    super(handle, "probe");
    this.#lib = lib;
    this.#stats = stats;
    this.#hist = hist;
    this.options = options;
  }

  /**
   * Checks options the way `start` does first, opening nothing and resolving no address: a caller
   * (lab run) can refuse a bad size or port before it builds anything. Throws FastpathError.
   */
  static async check(o: ProbeOptions): Promise<void> {
    const lib = await load();
    const to = parseIp(o.to);
    const placeholder = {
      dstMac: MAC_RE.test(o.to) ? o.to : "02:00:00:00:00:01",
      dstIp: to ? o.to : o.dstIp ?? PROBE_DEFAULTS.dstIp,
      srcIp: to?.v6 ? "::1" : "127.0.0.1",
    };
    const { opts } = options(lib, o, placeholder);
    lib.unwrap(lib.native.fp_probe_check(opts.bytes), `cannot probe from ${o.iface}`);
  }

  /**
   * Resolves the reflector's address (ARP / neighbour discovery when `to` is an IP, like a handheld)
   * and starts sending on native threads. The library checks every option first; errors name it as
   * spelled here. Throws FastpathError.
   */
  static async start(o: ProbeOptions): Promise<Probe> {
    await Probe.check(o);
    await requirePrivilege(
      `the probe sends raw frames${o.netns ? ` in namespace ${o.netns}` : ""}`,
      o.netns ? ["CAP_NET_RAW", "CAP_SYS_ADMIN"] : ["CAP_NET_RAW"],
    );
    const lib = await load();
    const { native, layout } = lib;
    const link = await linkInfo(o.netns, o.iface);
    if (!link) {
      const missing = o.netns ? await noSuchNetns(o.netns) : undefined;
      if (missing) throw missing;
      throw new FastpathError(
        "no_such_device",
        `no interface named '${o.iface}'${o.netns ? ` in namespace ${o.netns}` : ""} (see ${
          Deno.build.os === "darwin" ? "'ifconfig -l'" : "'ip link'"
        })`,
      );
    }
    // Addresses: the reflector by IP (MAC resolved like a handheld does, with ARP/ND) or by MAC.
    let dstMac: string;
    let dstIp: string;
    let v6: boolean;
    if (MAC_RE.test(o.to)) {
      dstMac = o.to.toLowerCase();
      dstIp = o.dstIp ?? PROBE_DEFAULTS.dstIp;
      v6 = parseIp(dstIp)!.v6;
    } else {
      const p = parseIp(o.to)!;
      dstIp = o.to;
      v6 = p.v6;
      dstMac = await resolveMac(lib, o.netns, o.iface, dstIp, p.bytes, v6, o.signal);
    }
    const srcIp = await ifaceAddress(o.netns, o.iface, v6);
    if (!srcIp) {
      throw new FastpathError(
        "invalid_argument",
        `${o.iface} has no ${v6 ? "IPv6" : "IPv4"} address to send from: add one with ${
          Deno.build.os === "darwin"
            ? `'sudo ifconfig ${o.iface} ${v6 ? "inet6" : "inet"} ADDR/LEN alias'`
            : `'ip addr add ADDR/LEN dev ${o.iface}'`
        }`,
      );
    }
    const { opts, size, rate, pps } = options(lib, o, { dstMac, dstIp, srcIp });
    const rxDropped0 = await rxDrops(o.netns, o.iface);
    const out = new BigUint64Array(1);
    lib.unwrap(native.fp_probe_start(opts.bytes, out), `cannot probe from ${o.iface}`);
    const handle = Deno.UnsafePointer.create(out[0])!;
    const spec = layout.struct("ProbeStats");
    const statsPtr = native.fp_probe_stats(handle)!;
    const fields = layout.u64Fields("ProbeStats").filter(([n]) => n !== "rtt_hist");
    const view = new CounterView<ProbeStatName>(statsPtr, spec.size, fields);
    const histOffset = layout.field("ProbeStats", "rtt_hist").offset / 8;
    const probe = new Probe(handle, lib, view, { first: histOffset, count: layout.json.hist_buckets }, {
      iface: o.iface,
      netns: o.netns ?? null,
      size,
      rate: rateText(rate),
      dstMac,
      dstIp,
      srcIp,
      ratePps: pps,
    });
    probe.#rxDropped0 = rxDropped0;
    probe.#drainMs = o.drainMs ?? PROBE_DEFAULTS.drainMs;
    probe.#sentSamples.push([probe.#startedAt, 0]);
    return probe;
  }

  state(): "starting" | "sending" | "draining" | "done" | "failed" {
    this.live();
    return this.#lib.layout.key("ProbeState", this.#stats.word(0) & 0xffffffff);
  }

  failure(): string {
    return cstring(this.#lib.native.fp_probe_failure(this.live()));
  }

  /** The RTT histogram (counts per bucket). */
  histogram(): number[] {
    this.live();
    return Array.from({ length: this.#hist.count }, (_, i) => this.#stats.word(this.#hist.first + i));
  }

  /** A report from the live counters; cheap enough to call every interval. */
  report(): ProbeReport {
    this.live();
    const s = this.#stats.snapshot();
    const state = this.state();
    const nowMs = this.#endedAt ?? performance.now();
    const elapsedS = (nowMs - this.#startedAt) / 1000;
    const sendS = s.last_tx_ns > s.first_tx_ns ? (s.last_tx_ns - s.first_tx_ns) / 1e9 : elapsedS;
    // While running, frames sent within the drain time may still come back: in flight, not lost.
    const final = state === "done" || state === "failed";
    const samples = this.#sentSamples;
    samples.push([nowMs, s.sent]);
    while (samples.length > 2 && samples[1][0] <= nowMs - this.#drainMs) samples.shift();
    const settled = final ? s.sent : Math.min(s.sent, sentBefore(samples, nowMs - this.#drainMs));
    const lost = Math.max(0, settled - s.unique);
    const inFlight = Math.max(0, s.sent - s.unique - lost);
    const hist = this.histogram();
    const lower = (i: number) => this.#lib.layout.histLower(i);
    const rtt = s.unique > 0 ? rttSummary(hist, lower, s.rtt_min_ns, s.rtt_max_ns, s.rtt_sum_ns / s.unique) : null;
    const span = Math.max(sendS, 1e-9);
    return {
      state,
      elapsedS: round(elapsedS, 3),
      sent: s.sent,
      received: s.unique,
      lost,
      inFlight,
      lossPct: settled ? (100 * lost) / settled : 0,
      duplicates: s.duplicates,
      reordered: s.reordered,
      badRewrite: s.bad_rewrite,
      foreign: s.foreign,
      txErrors: s.tx_errors,
      rxRingDrops: s.rx_ring_drops,
      txSlipped: s.tx_slipped,
      txLateMaxMs: round(s.tx_late_max_ns / 1e6, 3),
      hostRxDropped: null,
      linkRxDropped: null,
      txPps: s.sent / span,
      rxPps: s.unique / span,
      rxL2Mbps: (s.received_bytes * 8) / span / 1e6,
      rxWireMbps: ((s.received_bytes + s.received * 24) * 8) / span / 1e6,
      txWireMbps: ((s.sent_bytes + s.sent * 24) * 8) / span / 1e6,
      rttUs: rtt,
    };
  }

  /** Waits up to `ms` for the run to finish (sent everything and drained); true when it has. */
  async wait(ms: number): Promise<boolean> {
    return (await this.#lib.native.fp_probe_wait(this.live(), Math.max(0, Math.round(ms)))) === 1;
  }

  /** Resolves when the run has finished (sent everything and drained), with the final report. */
  async done(): Promise<ProbeReport> {
    while (!(await this.wait(200))) { /* keep waiting */ }
    this.#endedAt ??= performance.now();
    const r = this.report();
    if (r.state === "failed") throw new FastpathError("failed", `probe on ${this.options.iface}: ${this.failure()}`);
    const before = this.#rxDropped0;
    const after = before && await rxDrops(this.options.netns ?? undefined, this.options.iface);
    if (before && after) {
      // The interface counts every frame dropped on its way in; only those the backlog dropped are this
      // host's (a veth also counts its peer's refused XDP_TX frames as its own receive drops).
      const iface = Math.max(0, after.iface - before.iface);
      r.hostRxDropped = Math.min(iface, Math.max(0, after.backlog - before.backlog));
      r.linkRxDropped = iface - r.hostRxDropped;
    }
    return r;
  }

  /** Stops sending early; `done()` still resolves after the drain. */
  stop(): void {
    if (this.open) this.#lib.native.fp_probe_stop(this.live());
  }

  protected free(handle: Deno.PointerObject): void {
    this.#lib.native.fp_probe_close(handle);
  }
}

/** The native options for `o` with these addresses; text parsed, defaults applied, nothing range-checked. */
function options(lib: Lib, o: ProbeOptions, addr: { dstMac: string; dstIp: string; srcIp: string }) {
  const d = { ...PROBE_DEFAULTS, ...given(o) };
  const sizeSpec = parseSize(d.size);
  const rate = parseRate(d.rate);
  const signature = parseSignature(d.signature);
  const expectSwap = parseChoice("expectSwap", d.expectSwap, SWAP_MODES);
  if (!MAC_RE.test(o.to) && !parseIp(o.to)) {
    throw new FastpathError("usage", `\`to\` '${o.to}' is neither an IP nor a MAC address`);
  }
  const dst = parseIp(addr.dstIp);
  if (!dst) throw new FastpathError("usage", `\`dstIp\` '${addr.dstIp}' is not an IP address`);
  // 0 is the library's "no count" and "no duration": given, it would mean a run of another length.
  if (o.count !== undefined && !(o.count >= 1)) {
    throw new FastpathError(
      "usage",
      `\`count\` must be at least 1 frame, not ${o.count} (leave it out to run for \`durationS\`)`,
    );
  }
  if (o.durationS !== undefined && !(o.durationS > 0)) {
    throw new FastpathError("usage", `\`durationS\` must be more than 0 seconds, not ${o.durationS}`);
  }
  const count = d.count ?? 0;
  const durationS = o.durationS ?? (count ? 0 : d.durationS);
  const { layout } = lib;
  const opts = layout.builder("ProbeOptions")
    .setBytes("ifname", o.iface, "iface")
    .setBytes("netns", o.netns ?? "")
    .setBytes("dst_mac", parseMac(addr.dstMac, "to"), "to")
    .setBytes("src_mac", d.srcMac ? parseMac(d.srcMac, "srcMac") : new Uint8Array(6), "srcMac")
    .setBytes("dst_ip", dst.bytes, "dstIp")
    .setBytes("src_ip", parseIp(addr.srcIp)!.bytes)
    .set("ipv6", dst.v6)
    .set("signature", layout.value("Signature", SIGNATURES[signature]))
    .set("expect_mode", layout.value("SwapMode", expectSwap === "mac-ip" ? "mac_ip" : expectSwap), "expectSwap")
    .set("expect_tos_toggle", d.expectTosToggle)
    .set("src_port", d.srcPort)
    .set("dst_port", d.port, "port")
    .set("vlan", d.vlan)
    .set("tos", d.tos)
    .set("nice", d.nice)
    .set("frame_size", sizeSpec === "imix" ? 0 : sizeSpec === "min" ? 64 : sizeSpec, "size")
    .set("tx_cpu", d.cpu ?? -1, "cpu")
    .set("rx_cpu", d.rxCpu ?? d.cpu ?? -1, "rxCpu")
    .set("count", count)
    .set("duration_ns", BigInt(Math.round(durationS * 1e9)), "durationS", { value: durationS, per: 1e9 })
    .set("drain_ns", BigInt(Math.round(d.drainMs * 1e6)), "drainMs", { value: d.drainMs, per: 1e6 })
    .set("session", (Math.random() * 0xffff) >>> 0)
    .set("batch", d.batch);
  const min = lib.native.fp_probe_min_frame_size(opts.bytes);
  const size: FrameSize = sizeSpec === "min" ? min : sizeSpec;
  const pps = ratePps(rate, size, min);
  if (rate !== "max" && !(pps >= 1)) {
    throw new FastpathError(
      "usage",
      `\`rate\` ${rateText(rate)} is below one frame a second: give a rate, or max for the fastest`,
    );
  }
  opts.set("frame_size", size === "imix" ? 0 : size, "size").set("rate_pps", pps, "rate");
  return { opts, size, rate, pps };
}

/** The interface's receive drops and this host's receive backlog drops, or undefined where unavailable. */
async function rxDrops(
  netns: string | undefined,
  iface: string,
): Promise<{ iface: number; backlog: number } | undefined> {
  const link = await linkDrops(netns, iface);
  const backlog = await backlogDrops();
  return link && backlog !== undefined ? { iface: link.rx, backlog } : undefined;
}

async function resolveMac(
  lib: Lib,
  netns: string | undefined,
  iface: string,
  addr: string,
  bytes: Uint8Array,
  v6: boolean,
  signal?: AbortSignal,
): Promise<string> {
  const existing = await neighbour(netns, iface, addr);
  if (existing) return existing;
  const enc = (s: string) => new TextEncoder().encode(s + "\0");
  lib.unwrap(lib.native.fp_neigh_solicit(enc(netns ?? ""), enc(iface), bytes, v6 ? 1 : 0), `cannot reach ${addr}`);
  const interrupted = () =>
    new FastpathError(
      "interrupted",
      `interrupted while waiting for ${addr} to answer ${v6 ? "neighbour solicitation" : "ARP"}`,
    );
  for (let i = 0; i < 30; i++) {
    if (signal?.aborted) throw interrupted();
    await new Promise<void>((r) => {
      const t = setTimeout(done, 100);
      signal?.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(t);
        signal?.removeEventListener("abort", done);
        r();
      }
    });
    if (signal?.aborted) throw interrupted();
    const mac = await neighbour(netns, iface, addr);
    if (mac) return mac;
  }
  throw new FastpathError(
    "timeout",
    `${addr} did not answer ${
      v6 ? "neighbour solicitation" : "ARP"
    } on ${iface} within 3 s: check the address, or give the reflector's MAC with --to`,
  );
}
