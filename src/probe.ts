/** The probe: the handheld's side of the test, as a TypeScript handle over the native one. */
import { cstring, load, unwrap } from "../ffi/load.ts";
import { FastpathError } from "../ffi/error.ts";
import { NativeHandle } from "../ffi/handle.ts";
import { CounterView } from "../ffi/layout.ts";
import { ifaceAddress, linkDrops, linkInfo, MAC_RE, neighbour, parseIp, parseMac } from "./net.ts";
import { niceValue, type SignatureName, SIGNATURES, SWAP_MODES, type SwapMode } from "./reflector.ts";
import { mbps, pct, pps, us } from "./format.ts";

export const FRAME_SIZES = [64, 128, 256, 512, 1024, 1280, 1518, 9000, 9018] as const;
/** Simple IMIX by frame count: 7 × 64, 4 × 594, 1 × 1518 bytes. */
export const IMIX_AVERAGE = (7 * 64 + 4 * 594 + 1518) / 12;

export type Rate = { pps: number } | { mbps: number } | "max";

export interface ProbeOptions {
  iface: string;
  netns?: string;
  /** The reflector: an IP address (its MAC is resolved) or a MAC address. */
  to: string;
  /** Destination IP when `to` is a MAC (default: an RFC 2544 benchmarking address). */
  dstIp?: string;
  /** Source MAC to send from (received in promiscuous mode); the interface's otherwise. */
  srcMac?: string;
  /** Frame size on the wire with FCS (64 … 9018), or "imix". */
  size?: number | "imix";
  rate?: Rate;
  /** Stop after this many frames … */
  count?: number;
  /** … or after this many milliseconds (default 5000 when neither is given). */
  durationMs?: number;
  signature?: SignatureName;
  /** What the reflector should swap, to check every reflection byte for byte. */
  expectSwap?: SwapMode;
  expectTosToggle?: boolean;
  /** UDP source port (default 50000, so a reflector swapping ports is visible). */
  srcPort?: number;
  /** UDP destination port (default 3842, the handhelds' test port). */
  dstPort?: number;
  vlan?: number;
  tos?: number;
  cpu?: number;
  rxCpu?: number;
  /**
   * Linux: the sending and receiving threads' nice value, -20 … 19 (default -10; 0 = the caller's),
   * so the probe keeps its schedule and timestamps on a busy machine. macOS uses QoS classes.
   */
  nice?: number;
  drainMs?: number;
  batch?: number;
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
  lost: number;
  lossPct: number;
  duplicates: number;
  reordered: number;
  badRewrite: number;
  foreign: number;
  txErrors: number;
  rxRingDrops: number;
  /**
   * Final report only: frames this host's kernel dropped on the probe's interface during the run before
   * any socket saw them (a burst of reflections beyond its receive backlog). Loss counted here happened
   * on the probe's machine, not on the path or at the reflector. Absent where the count is unavailable.
   */
  hostRxDropped?: number;
  /** Paced runs: frames dropped from the schedule because the sender was off the CPU for over 1 ms. */
  txSlipped: number;
  txPps: number;
  rxPps: number;
  /** Reflected throughput: frame bytes (no FCS) and on the wire (with FCS, preamble, gap). */
  rxL2Mbps: number;
  rxWireMbps: number;
  txWireMbps: number;
  /** Round-trip time in microseconds. */
  rttUs: RttSummary | null;
}

type StatName =
  | "state"
  | "sent"
  | "sent_bytes"
  | "received"
  | "received_bytes"
  | "unique"
  | "duplicates"
  | "reordered"
  | "bad_rewrite"
  | "foreign"
  | "tx_errors"
  | "rx_ring_drops"
  | "tx_slipped"
  | "rtt_min_ns"
  | "rtt_max_ns"
  | "rtt_sum_ns"
  | "first_tx_ns"
  | "last_tx_ns";

const STATE_NAMES = ["starting", "sending", "draining", "done", "failed"];

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

/** The human summary of a finished run, as `fastpath probe` prints it: a line per fact, the notes only when they apply. */
export function probeSummary(p: ProbeReport): string {
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
  if (p.txErrors || p.rxRingDrops || p.foreign) {
    lines.push(
      `probe side: send errors ${p.txErrors}, receive ring drops ${p.rxRingDrops}, foreign frames ${p.foreign}`,
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
    lines.push(
      `pacing: ${p.txSlipped} frames were not sent: this machine kept the sender off the CPU for over 1 ms ` +
        `(it makes up 1 ms at most, never a burst above --rate); give it a quieter core with --cpu or a higher priority with --nice`,
    );
  }
  return lines.join("\n");
}

export function ratePps(rate: Rate, size: number | "imix"): number {
  if (rate === "max") return 0;
  if ("pps" in rate) return Math.round(rate.pps);
  const avg = size === "imix" ? IMIX_AVERAGE : size;
  return Math.round((rate.mbps * 1e6) / ((avg + 20) * 8));
}

export class Probe extends NativeHandle {
  readonly #lib;
  readonly #stats: CounterView<StatName>;
  readonly #hist: { first: number; count: number };
  readonly #startedAt = performance.now();
  #endedAt: number | undefined;
  readonly options: Required<Pick<ProbeOptions, "iface" | "size">> & {
    dstMac: string;
    dstIp: string;
    srcIp: string;
    pps: number;
    netns: string | undefined;
  };
  /** The interface's receive drop count when the run started (undefined where unavailable). */
  #rxDropped0: number | undefined;

  private constructor(
    handle: Deno.PointerObject,
    lib: Awaited<ReturnType<typeof load>>,
    stats: CounterView<StatName>,
    hist: { first: number; count: number },
    options: Probe["options"],
  ) {
    super(handle, "probe");
    this.#lib = lib;
    this.#stats = stats;
    this.#hist = hist;
    this.options = options;
  }

  static async start(o: ProbeOptions): Promise<Probe> {
    const lib = await load();
    const { native, layout } = lib;
    const link = await linkInfo(o.netns, o.iface);
    if (!link) {
      throw new FastpathError(
        "no_such_device",
        `no interface named '${o.iface}'${o.netns ? ` in namespace ${o.netns}` : ""} (see ${
          Deno.build.os === "darwin" ? "'ifconfig -l'" : "'ip link'"
        })`,
      );
    }
    const size = o.size ?? 64;
    if (size !== "imix" && (!Number.isInteger(size) || size < 64 || size > 9018)) {
      throw new FastpathError("usage", `--size ${size} must be 64 to 9018 bytes or imix`);
    }
    // Addresses: the reflector by IP (MAC resolved like a handheld does, with ARP/ND) or by MAC.
    let dstMac: string;
    let dstIp: string;
    let v6: boolean;
    if (MAC_RE.test(o.to)) {
      dstMac = o.to.toLowerCase();
      dstIp = o.dstIp ?? "198.18.0.1";
      const p = parseIp(dstIp);
      if (!p) throw new FastpathError("usage", `--dst-ip '${dstIp}' is not an IP address`);
      v6 = p.v6;
    } else {
      const p = parseIp(o.to);
      if (!p) throw new FastpathError("usage", `--to '${o.to}' is neither an IP nor a MAC address`);
      dstIp = o.to;
      v6 = p.v6;
      dstMac = await resolveMac(lib, o.netns, o.iface, dstIp, p.bytes, v6);
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
    const rate = o.rate ?? { pps: 10_000 };
    const pps = ratePps(rate, size);
    const count = o.count ?? 0;
    const durationMs = o.durationMs ?? (count ? 0 : 5000);
    const expectSwap = o.expectSwap ?? "mac-ip";
    if (!SWAP_MODES.includes(expectSwap)) throw new FastpathError("usage", `unknown swap mode '${expectSwap}'`);
    const signature = o.signature ?? "DATA:OT";
    if (!(signature in SIGNATURES)) throw new FastpathError("usage", `unknown signature '${signature}'`);

    const nice = niceValue(o.nice);
    const opts = layout.builder("ProbeOptions")
      .setBytes("ifname", o.iface)
      .setBytes("netns", o.netns ?? "")
      .setBytes("dst_mac", parseMac(dstMac))
      .setBytes("src_mac", o.srcMac ? parseMac(o.srcMac) : new Uint8Array(6))
      .setBytes("dst_ip", parseIp(dstIp)!.bytes)
      .setBytes("src_ip", parseIp(srcIp)!.bytes)
      .set("ipv6", v6)
      .set("signature", layout.enumValue("Signature", SIGNATURES[signature]))
      .set("expect_mode", layout.enumValue("SwapMode", expectSwap.replace("-", "_")))
      .set("expect_tos_toggle", (o.expectTosToggle ?? true) && expectSwap !== "mac")
      .set("src_port", o.srcPort ?? 50000)
      .set("dst_port", o.dstPort ?? 3842)
      .set("vlan", o.vlan ?? 0)
      .set("tos", o.tos ?? 0)
      .set("nice", nice)
      .set("frame_size", size === "imix" ? 0 : size)
      .set("tx_cpu", o.cpu ?? -1)
      .set("rx_cpu", o.rxCpu ?? -1)
      .set("rate_pps", pps)
      .set("count", count)
      .set("duration_ns", BigInt(Math.round(durationMs * 1e6)))
      .set("drain_ns", BigInt(Math.round((o.drainMs ?? 500) * 1e6)))
      .set("session", (Math.random() * 0xffff) >>> 0)
      .set("batch", o.batch ?? 32);
    const rxDropped0 = (await linkDrops(o.netns, o.iface))?.rx;
    const out = new BigUint64Array(1);
    unwrap(native, layout, native.fp_probe_start(opts.bytes, out), `cannot probe from ${o.iface}`);
    const handle = Deno.UnsafePointer.create(out[0])!;
    const spec = layout.struct("ProbeStats");
    const statsPtr = native.fp_probe_stats(handle)!;
    const fields = layout.u64Fields("ProbeStats").filter(([n]) => n !== "rtt_hist");
    const view = new CounterView<StatName>(statsPtr, spec.size, fields);
    const histOffset = layout.field("ProbeStats", "rtt_hist").offset / 8;
    const probe = new Probe(handle, lib, view, { first: histOffset, count: layout.json.hist_buckets }, {
      iface: o.iface,
      size,
      dstMac,
      dstIp,
      srcIp,
      pps,
      netns: o.netns,
    });
    probe.#rxDropped0 = rxDropped0;
    return probe;
  }

  state(): string {
    this.live();
    const st = this.#stats.word(0) & 0xffffffff;
    return STATE_NAMES[st] ?? `state ${st}`;
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
    const elapsedS = ((this.#endedAt ?? performance.now()) - this.#startedAt) / 1000;
    const sendS = s.last_tx_ns > s.first_tx_ns ? (s.last_tx_ns - s.first_tx_ns) / 1e9 : elapsedS;
    const lost = Math.max(0, s.sent - s.unique); // while running, frames in flight count here too
    const hist = this.histogram();
    const lower = (i: number) => this.#lib.layout.histLower(i);
    const rtt = s.unique > 0
      ? {
        min: s.rtt_min_ns / 1000,
        p50: percentile(hist, lower, 0.5) / 1000,
        p99: percentile(hist, lower, 0.99) / 1000,
        p999: percentile(hist, lower, 0.999) / 1000,
        max: s.rtt_max_ns / 1000,
        mean: s.rtt_sum_ns / s.unique / 1000,
      }
      : null;
    const span = Math.max(sendS, 1e-9);
    return {
      state,
      elapsedS,
      sent: s.sent,
      received: s.unique,
      lost,
      lossPct: s.sent ? (100 * lost) / s.sent : 0,
      duplicates: s.duplicates,
      reordered: s.reordered,
      badRewrite: s.bad_rewrite,
      foreign: s.foreign,
      txErrors: s.tx_errors,
      rxRingDrops: s.rx_ring_drops,
      txSlipped: s.tx_slipped,
      txPps: s.sent / span,
      rxPps: s.unique / span,
      rxL2Mbps: (s.received_bytes * 8) / span / 1e6,
      rxWireMbps: ((s.received_bytes + s.received * 24) * 8) / span / 1e6,
      txWireMbps: ((s.sent_bytes + s.sent * 24) * 8) / span / 1e6,
      rttUs: rtt,
    };
  }

  /** Resolves when the run has finished (sent everything and drained), with the final report. */
  async done(): Promise<ProbeReport> {
    while ((await this.#lib.native.fp_probe_wait(this.live(), 200)) !== 1) { /* keep waiting */ }
    this.#endedAt ??= performance.now();
    const r = this.report();
    if (r.state === "failed") throw new FastpathError("failed", `probe on ${this.options.iface}: ${this.failure()}`);
    const before = this.#rxDropped0;
    const after = before === undefined ? undefined : (await linkDrops(this.options.netns, this.options.iface))?.rx;
    if (before !== undefined && after !== undefined) r.hostRxDropped = Math.max(0, after - before);
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

async function resolveMac(
  lib: Awaited<ReturnType<typeof load>>,
  netns: string | undefined,
  iface: string,
  addr: string,
  bytes: Uint8Array,
  v6: boolean,
): Promise<string> {
  const existing = await neighbour(netns, iface, addr);
  if (existing) return existing;
  const enc = (s: string) => new TextEncoder().encode(s + "\0");
  unwrap(
    lib.native,
    lib.layout,
    lib.native.fp_neigh_solicit(enc(netns ?? ""), enc(iface), bytes, v6 ? 1 : 0),
    `cannot reach ${addr}`,
  );
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 100));
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
