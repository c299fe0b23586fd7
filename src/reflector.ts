/** The reflector as a TypeScript handle over the native one. */
import { cstring, load, unwrap } from "../ffi/load.ts";
import { FastpathError } from "../ffi/error.ts";
import { NativeHandle } from "../ffi/handle.ts";
import { CounterView } from "../ffi/layout.ts";
import { formatMac } from "./net.ts";

export type SwapMode = "mac" | "mac-ip" | "all";
export type Profile = "netally" | "plain" | "rfc2544" | "y1564";
export type ReflectMode = "auto" | "xdp" | "afxdp" | "packet" | "bpf";
export type Fanout = "hash" | "cpu" | "lb";
export type SignatureName = "PROBEOT" | "DATA:OT" | "LATENCY" | "RFC2544" | "Y.1564";

export const SWAP_MODES: SwapMode[] = ["mac", "mac-ip", "all"];
export const PROFILES: Profile[] = ["netally", "plain", "rfc2544", "y1564"];
export const REFLECT_MODES: ReflectMode[] = ["auto", "xdp", "afxdp", "packet", "bpf"];
/** Dataplanes built into this version, fastest first. */
/** Dataplanes of this platform, fastest first ("bpf" is macOS's /dev/bpf). */
export const BUILT_MODES: ReflectMode[] = Deno.build.os === "linux"
  ? ["xdp", "afxdp", "packet"]
  : Deno.build.os === "darwin"
  ? ["bpf"]
  : [];
export const SIGNATURES: Record<SignatureName, string> = {
  "PROBEOT": "probeot",
  "DATA:OT": "dataot",
  "LATENCY": "latency",
  "RFC2544": "rfc2544",
  "Y.1564": "y1564",
};

export interface ReflectorOptions {
  /** Interface to reflect on, e.g. "eth0". */
  iface: string;
  /** Network namespace (under /run/netns) the interface lives in. */
  netns?: string;
  /** Dataplane; "auto" picks the fastest this machine offers. */
  mode?: ReflectMode;
  /** Settings bundle for a kind of tester (default "netally"). */
  profile?: Profile;
  /** Which fields to swap; the profile's default otherwise ("mac-ip"). */
  swap?: SwapMode;
  /** Source-MAC OUI to require ("00:c0:17"), or false to accept any sender. */
  oui?: string | false;
  /** UDP destination port to accept (default 3842; 0 = any). */
  port?: number;
  /** Toggle TOS bit 0 on the way back (on in the netally profile). */
  tosToggle?: boolean;
  /** Signatures to reflect; the profile's otherwise. */
  signatures?: SignatureName[];
  workers?: number;
  /** Pin worker i to CPU cpu+i. */
  cpu?: number;
  /**
   * Linux, packet and afxdp modes: the worker threads' nice value, -20 … 19 (default -10; 0 = the
   * caller's). Raised, a busy machine's other work does not turn into loss on the handheld: at
   * nice 0, four CPU hogs on the worker's core leave it a fifth of that core. macOS workers run at
   * QOS_CLASS_USER_INTERACTIVE; xdp mode has no worker (the kernel reflects in its receive path).
   */
  nice?: number;
  fanout?: Fanout;
  /**
   * packet mode's receive ring: `ringBlocks` blocks of `ringBlockKib` KiB (default 256 of 64 KiB, 16 MiB).
   * The kernel hands a block over when it is full or 1 ms old, so the block count is how many
   * milliseconds of traffic the ring holds while the worker is off the CPU (at up to ~450 kpps of
   * 64-byte frames; above that, 450 frames a block).
   */
  ringBlockKib?: number;
  ringBlocks?: number;
  batch?: number;
  /** afxdp mode: busy-poll the sockets for this many microseconds. */
  busyPollUs?: number;
  /**
   * afxdp mode: wake-up coalescing in microseconds, like a NIC's rx-usecs: under load frames gather
   * this long instead of a wake-up for each, so a frame may wait up to this much longer (packet
   * mode's ring blocks wait up to 1 000 µs at any rate). Where the kernel can (6.13+), the device's
   * receive interrupts are deferred (napi_defer_hard_irqs, gro_flush_timeout, put back at stop),
   * never so long that its ring fills beyond a quarter; elsewhere the worker sleeps between batches.
   * 0 = wake for every frame.
   */
  coalesceUs?: number;
}

/** The native threads' nice value unless told otherwise (see ReflectorOptions.nice, ProbeOptions.nice). */
export const DEFAULT_NICE = -10;

/** A thread priority as given (the default when not), checked: -20 … 19. */
export function niceValue(nice: number | undefined): number {
  const n = nice ?? DEFAULT_NICE;
  if (!Number.isInteger(n) || n < -20 || n > 19) {
    throw new FastpathError("usage", `--nice ${n} must be a whole number from -20 to 19`);
  }
  return n;
}
/** afxdp mode's wake-up coalescing unless told otherwise (see ReflectorOptions.coalesceUs). */
export const DEFAULT_COALESCE_US = 500;
/** 4 096 receive descriptors last 1 ms at 4 Mpps: no longer wait than that (the interrupt deferral is held to a quarter of the device's ring besides). */
const MAX_COALESCE_US = 1000;

export type CounterName =
  | "rx_packets"
  | "rx_bytes"
  | "tx_packets"
  | "tx_bytes"
  | "sig_probeot"
  | "sig_dataot"
  | "sig_latency"
  | "sig_rfc2544"
  | "sig_y1564"
  | "drop_too_short"
  | "drop_not_ours"
  | "drop_oui"
  | "drop_not_udp"
  | "drop_malformed"
  | "drop_port"
  | "drop_signature"
  | "drop_tx_error"
  | "drop_ring_full"
  | "batches"
  | "cpu_ns"
  | "link_down"
  | "link_up"
  | "umem_missing"
  | "umem_duplicated"
  | "drop_too_long";

export type Counters = Record<CounterName, number>;

export interface ReflectorInfo {
  iface: string;
  netns?: string;
  mode: "xdp" | "afxdp" | "packet" | "bpf";
  /** bpf mode (macOS): whether frames go out many per write() (BIOCSBATCHWRITE, macOS 14+). */
  batchWrite?: boolean;
  /** How XDP is attached ("driver", "generic"), in the xdp and afxdp modes. */
  xdpAttach?: string;
  /** afxdp mode: whether the sockets run zero-copy (else copy mode, as on veth). */
  zerocopy?: boolean;
  /** afxdp mode: the wake-up coalescing period in µs (0 = off). */
  coalesceUs?: number;
  /** Linux packet and afxdp modes: the workers' nice value. */
  nice?: number;
  /**
   * afxdp mode: true when the coalescing is done by deferring the device's receive interrupts
   * (per NAPI, kernel 6.13+), false when the workers coalesce their own wake-ups instead.
   */
  irqDeferred?: boolean;
  /** afxdp mode on kernels without multi-buffer AF_XDP (before 6.6): the longest frame reflected (a UMEM chunk); longer ones go to the stack, counted. */
  maxFrame?: number;
  /** Why this mode runs (when "auto" chose it). */
  reason: string;
  mac: string;
  mtu: number;
  workers: number;
  swap: SwapMode;
  profile: Profile;
  port: number;
  oui: string | null;
  tosToggle: boolean;
  /** Whether a guard UDP socket holds the port (no ICMP port-unreachable). */
  guarded: boolean;
}

function ouiBytes(oui: string): Uint8Array {
  const parts = oui.split(/[:-]/);
  if (parts.length !== 3 || parts.some((p) => !/^[0-9a-f]{2}$/i.test(p))) {
    throw new FastpathError("usage", `--oui '${oui}' is not an OUI (three bytes like 00:c0:17)`);
  }
  return new Uint8Array(parts.map((p) => parseInt(p, 16)));
}

const PROFILE_DEFAULTS: Record<Profile, { signatures: SignatureName[]; oui: string | false; tos: boolean }> = {
  netally: { signatures: ["PROBEOT", "DATA:OT", "LATENCY"], oui: "00:c0:17", tos: true },
  plain: { signatures: ["PROBEOT", "DATA:OT", "LATENCY"], oui: "00:c0:17", tos: false },
  rfc2544: { signatures: ["RFC2544"], oui: false, tos: false },
  y1564: { signatures: ["Y.1564"], oui: false, tos: false },
};

/** Builds the native ItoConfig for these options (shared by every dataplane). */
export function resolveConfig(o: ReflectorOptions) {
  const profile = o.profile ?? "netally";
  if (!PROFILES.includes(profile)) {
    throw new FastpathError("usage", `unknown profile '${profile}': use one of ${PROFILES.join(", ")}`);
  }
  const d = PROFILE_DEFAULTS[profile];
  const swap = o.swap ?? "mac-ip";
  if (!SWAP_MODES.includes(swap)) {
    throw new FastpathError("usage", `unknown swap mode '${swap}': use one of ${SWAP_MODES.join(", ")}`);
  }
  const port = o.port ?? 3842;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new FastpathError("usage", `--port ${port} is not a UDP port (0 = any)`);
  }
  const oui = o.oui === undefined ? d.oui : o.oui;
  const signatures = o.signatures ?? d.signatures;
  for (const s of signatures) {
    if (!(s in SIGNATURES)) {
      throw new FastpathError("usage", `unknown signature '${s}': use ${Object.keys(SIGNATURES).join(", ")}`);
    }
  }
  return { profile, swap, port, oui: oui === false ? null : oui, signatures, tosToggle: o.tosToggle ?? d.tos };
}

export class Reflector extends NativeHandle {
  readonly #native;
  readonly #workers: CounterView<CounterName>[];
  readonly info: ReflectorInfo;

  private constructor(
    handle: Deno.PointerObject,
    lib: Awaited<ReturnType<typeof load>>,
    workers: CounterView<CounterName>[],
    info: ReflectorInfo,
  ) {
    super(handle, "reflector");
    this.#native = lib.native;
    this.#workers = workers;
    this.info = info;
  }

  /**
   * Starts reflecting on `o.iface`. Frames are handled on native threads or in the kernel from here on.
   * Mode "auto" tries the fastest dataplane first and says in `info.reason` why faster ones did not run.
   */
  static async start(o: ReflectorOptions): Promise<Reflector> {
    const lib = await load();
    const mode = o.mode ?? "auto";
    if (!REFLECT_MODES.includes(mode)) {
      throw new FastpathError("usage", `unknown mode '${mode}': use one of ${REFLECT_MODES.join(", ")}`);
    }
    if (mode !== "auto" && !BUILT_MODES.includes(mode)) {
      throw new FastpathError(
        "unsupported",
        `mode ${mode} is not available in this build: use --mode ${BUILT_MODES.join(" or --mode ")} (or auto)`,
      );
    }
    if (mode !== "auto") {
      return Reflector.#startMode(
        lib,
        o,
        mode as "xdp" | "afxdp" | "packet" | "bpf",
        `${mode}: chosen with --mode ${mode}`,
      );
    }
    const skipped: string[] = [];
    for (const candidate of BUILT_MODES as Array<"xdp" | "afxdp" | "packet" | "bpf">) {
      try {
        const why = skipped.length ? `auto: ${skipped.join("; ")}` : `auto: ${candidate} is the fastest dataplane`;
        return Reflector.#startMode(lib, o, candidate, why);
      } catch (err) {
        // Problems of the interface or the caller are the same in every mode: report them as they are.
        if (
          !(err instanceof FastpathError) ||
          ["usage", "invalid_argument", "no_such_device", "interface_down", "busy"].includes(err.code)
        ) {
          throw err;
        }
        if (candidate === BUILT_MODES[BUILT_MODES.length - 1]) throw err;
        skipped.push(`${candidate} not possible (${err.message.replace(/^cannot reflect on [^:]+: /, "")})`);
      }
    }
    throw new FastpathError("unsupported", "no dataplane could start");
  }

  static #startMode(
    lib: Awaited<ReturnType<typeof load>>,
    o: ReflectorOptions,
    mode: "xdp" | "afxdp" | "packet" | "bpf",
    reason: string,
  ): Reflector {
    const { native, layout } = lib;
    const cfg = resolveConfig(o);
    const ito = layout.builder("ItoConfig")
      .setBytes("oui", cfg.oui ? ouiBytes(cfg.oui) : new Uint8Array(3))
      .set("oui_filter", cfg.oui !== null)
      .set("port", cfg.port)
      .set("mode", layout.enumValue("SwapMode", cfg.swap.replace("-", "_")))
      .set("tos_toggle", cfg.tosToggle)
      .set("signatures", cfg.signatures.reduce((m, s) => m | (1 << layout.enumValue("Signature", SIGNATURES[s])), 0));
    const workers = o.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 1) {
      throw new FastpathError("usage", `--workers ${workers} must be a whole number of at least 1`);
    }
    const coalesceUs = o.coalesceUs ?? DEFAULT_COALESCE_US;
    if (!Number.isInteger(coalesceUs) || coalesceUs < 0 || coalesceUs > MAX_COALESCE_US) {
      throw new FastpathError(
        "usage",
        `--coalesce-us ${coalesceUs} must be a whole number from 0 to ${MAX_COALESCE_US} (longer waits can overflow the receive ring)`,
      );
    }
    const nice = niceValue(o.nice);
    const opts = layout.builder("ReflectorOptions")
      .setBytes("ifname", o.iface)
      .setBytes("netns", o.netns ?? "")
      .setStruct("ito", ito)
      .set("workers", workers)
      .set("first_cpu", o.cpu ?? -1)
      .set("nice", nice)
      // macOS's /dev/bpf dataplane is the library's "packet" dataplane on that system.
      .set("dataplane", layout.enumValue("Dataplane", mode === "bpf" ? "packet" : mode))
      .set("fanout", layout.enumValue("Fanout", o.fanout ?? "hash"))
      .set("ring_block_kib", o.ringBlockKib ?? 0) // 0: the library's default
      .set("ring_blocks", o.ringBlocks ?? 0)
      .set("batch", o.batch ?? 64)
      .set("busy_poll_us", o.busyPollUs ?? 0)
      .set("coalesce_us", coalesceUs);
    const out = new BigUint64Array(1);
    unwrap(native, layout, native.fp_reflector_start(opts.bytes, out), `cannot reflect on ${o.iface}`);
    const handle = Deno.UnsafePointer.create(out[0])!;

    const ptrOut = new BigUint64Array(1);
    const n = native.fp_reflector_counters(handle, ptrOut);
    const spec = layout.struct("Counters");
    const fields = layout.u64Fields("Counters");
    const workerViews = Array.from(
      { length: n },
      (_, i) =>
        new CounterView<CounterName>(Deno.UnsafePointer.create(ptrOut[0] + BigInt(i * spec.size))!, spec.size, fields),
    );

    const infoB = layout.builder("ReflectorInfo");
    native.fp_reflector_info(handle, infoB.bytes);
    const iv = new DataView(infoB.bytes.buffer);
    const f = (name: string) => layout.field("ReflectorInfo", name).offset;
    const attach = ["none", "driver", "generic", "offload"][iv.getUint8(f("xdp_attach"))];
    const info: ReflectorInfo = {
      iface: o.iface,
      netns: o.netns,
      mode,
      xdpAttach: mode === "xdp" || mode === "afxdp" ? attach : undefined,
      batchWrite: mode === "bpf" ? iv.getUint8(f("zerocopy")) === 1 : undefined,
      zerocopy: mode === "afxdp" ? iv.getUint8(f("zerocopy")) === 1 : undefined,
      coalesceUs: mode === "afxdp" ? coalesceUs : undefined,
      nice: mode === "packet" || mode === "afxdp" ? nice : undefined,
      irqDeferred: mode === "afxdp" ? iv.getUint8(f("irq_deferred")) === 1 : undefined,
      maxFrame: iv.getUint32(f("max_frame"), true) || undefined,
      reason,
      mac: formatMac(infoB.bytes.slice(f("mac"), f("mac") + 6)),
      mtu: iv.getUint32(f("mtu"), true),
      workers: iv.getUint32(f("workers"), true),
      swap: cfg.swap,
      profile: cfg.profile,
      port: cfg.port,
      oui: cfg.oui,
      tosToggle: cfg.tosToggle && cfg.swap !== "mac",
      guarded: iv.getUint8(f("guarded")) === 1,
    };
    return new Reflector(handle, lib, workerViews, info);
  }

  /** Totals over all workers, read from shared memory (no native call per counter). */
  stats(): Counters {
    const h = this.live();
    // The kernel keeps xdp mode's counters per CPU; one call folds them into the shared block.
    if (this.info.mode !== "packet") this.#native.fp_reflector_refresh(h);
    const total = this.#workers[0].snapshot();
    for (const w of this.#workers.slice(1)) {
      const s = w.snapshot();
      for (const k in s) total[k as CounterName] += s[k as CounterName];
    }
    return total;
  }

  workerStats(): Counters[] {
    const h = this.live();
    if (this.info.mode !== "packet") this.#native.fp_reflector_refresh(h);
    return this.#workers.map((w) => w.snapshot());
  }

  /** "running", or "failed" with `failure()` saying why. */
  state(): string {
    const s = this.#native.fp_reflector_state(this.live());
    return ["starting", "running", "stopped", "failed"][s] ?? `state ${s}`;
  }

  failure(): string {
    return cstring(this.#native.fp_reflector_failure(this.live()));
  }

  /**
   * Stops reflecting (any XDP program leaves the interface) but keeps the counters readable — in
   * afxdp mode including the final UMEM audit (`umem_missing`, `umem_duplicated`).
   */
  stop(): void {
    this.#native.fp_reflector_stop(this.live());
  }

  protected free(handle: Deno.PointerObject): void {
    this.#native.fp_reflector_close(handle);
  }
}
