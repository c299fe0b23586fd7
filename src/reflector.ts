/** The reflector as a TypeScript handle over the native one. */
import { cstring, type Lib, load } from "../ffi/load.ts";
import { NativeHandle } from "../ffi/handle.ts";
import { CounterView, textAt } from "../ffi/layout.ts";
import type { CounterName } from "../ffi/enums.ts";
import { formatMac } from "./net.ts";
import { parseChoice, parseOui, parseSignatures, type SignatureName, SIGNATURES } from "./parse.ts";

export type { CounterName, SignatureName };
export type SwapMode = "mac" | "mac-ip" | "all";
export type Profile = "netally" | "plain" | "rfc2544" | "y1564";
export type ReflectMode = "auto" | "xdp" | "afxdp" | "packet" | "bpf";
export type Fanout = "hash" | "cpu" | "lb";
export type Counters = Record<CounterName, number>;

export const SWAP_MODES = ["mac", "mac-ip", "all"] as const satisfies readonly SwapMode[];
export const PROFILES = ["netally", "plain", "rfc2544", "y1564"] as const satisfies readonly Profile[];
export const REFLECT_MODES = ["auto", "xdp", "afxdp", "packet", "bpf"] as const satisfies readonly ReflectMode[];
export const FANOUTS = ["hash", "cpu", "lb"] as const satisfies readonly Fanout[];

/** The UDP port NetAlly, Fluke and NETSCOUT handhelds test on (their Performance test's reflector port). */
export const ITO_PORT = 3842;

/** Every option of a reflector that has a default: the one place it is written (CLI help reads it too). */
export const REFLECTOR_DEFAULTS = {
  mode: "auto",
  profile: "netally",
  swap: "mac-ip",
  port: ITO_PORT,
  workers: 1,
  nice: -10,
  fanout: "hash",
  busyPollUs: 0,
  /** The mode's own (the library's, options.zig coalesceUs): afxdp 500 µs, packet mode 1000 µs. */
  coalesceUs: undefined,
  batch: 64,
  /** 0: the library's own ring (afpacket.Options: 256 blocks of 64 KiB). */
  ringBlockKib: 0,
  ringBlocks: 0,
} as const;

export interface ReflectorOptions {
  /** Interface to reflect on, e.g. "eth0". */
  iface: string;
  /** Network namespace (under /run/netns) the interface lives in. */
  netns?: string;
  /** Dataplane; "auto" (default) takes the fastest that starts and says why it skipped any. */
  mode?: ReflectMode;
  /** Settings bundle for a kind of tester (default "netally"): its OUI, TOS toggle and signatures. */
  profile?: Profile;
  /** Which fields to swap (default "mac-ip"). */
  swap?: SwapMode;
  /** Source-MAC OUI to require ("00:c0:17"), "any" or false to accept any sender; the profile's otherwise. */
  oui?: string | false;
  /**
   * UDP destination port to accept (default ITO_PORT). 0 = any, in xdp and afxdp modes only: in packet
   * (and bpf) mode the host also sees the frames and no socket can hold every port against its ICMP.
   */
  port?: number;
  /** Toggle TOS bit 0 on the way back; the profile's otherwise (on for netally). */
  tosToggle?: boolean;
  /** Signatures to reflect ("DATA:OT", …, or a comma list); the profile's otherwise. */
  signatures?: SignatureName[] | string;
  /** Worker threads (packet mode: PACKET_FANOUT when more than 1; afxdp: at least one per queue). */
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
   * packet mode's receive ring (TPACKET_V2): `ringBlocks` blocks of `ringBlockKib` KiB, each holding
   * whole frame slots as long as the MTU (0: the library's 64 KiB blocks, 16 384 slots in at most
   * 128 MiB). The slot count is how many frames the ring holds while the worker is off the CPU.
   */
  ringBlockKib?: number;
  ringBlocks?: number;
  /** Frames per transmit call. */
  batch?: number;
  /** afxdp mode: busy-poll the sockets for this many microseconds (0 = interrupts only). */
  busyPollUs?: number;
  /**
   * afxdp and packet modes: wake-up coalescing in microseconds, like a NIC's rx-usecs: under load
   * (from 50 kpps per worker; below 30 kpps every frame goes at once) frames gather
   * this long instead of a wake-up for each, so a frame may wait up to this much longer. Where the
   * kernel can (6.13+), the device's receive interrupts are deferred (put back at stop). 0 = a wake-up
   * per frame; unset: the mode's own (afxdp 500 µs, packet mode 1000 µs; `info.coalesceUs` says which).
   * The library refuses more than its receive ring can absorb.
   */
  coalesceUs?: number;
}

/** What the library reports about a started reflector; every key is present (null where it does not apply). */
export interface ReflectorInfo {
  iface: string;
  netns: string | null;
  /** The dataplane running, as the library reports it. */
  mode: Exclude<ReflectMode, "auto">;
  /** Why this mode runs (what auto skipped, or that it was asked for). */
  reason: string;
  /** What this mode will not do right on this interface, and what would; null when nothing. */
  warning: string | null;
  /** xdp and afxdp modes: whether a receive VLAN tag held as metadata is put back into reflections. */
  vlanMeta: boolean | null;
  mac: string;
  mtu: number;
  workers: number;
  /** Linux packet and afxdp modes: the workers' nice value. */
  nice: number | null;
  profile: Profile;
  swap: SwapMode;
  port: number;
  /** The source-MAC OUI required, or null when any sender is accepted. */
  oui: string | null;
  tosToggle: boolean;
  signatures: SignatureName[];
  /**
   * Whether guard UDP sockets hold the test port, so the host answers no test frame it also sees with
   * ICMP port-unreachable. False with `port` 0 (any), which only xdp and afxdp modes accept: the frames
   * they reflect never reach the host's stack.
   */
  guarded: boolean;
  /** xdp and afxdp modes: how the XDP program is attached. */
  xdpAttach: "driver" | "generic" | "offload" | null;
  /** afxdp mode: whether the sockets run zero-copy (else copy mode, as on veth). */
  zerocopy: boolean | null;
  /** bpf mode (macOS): whether frames go out many per write() (BIOCSBATCHWRITE, macOS 14+). */
  batchWrite: boolean | null;
  /** afxdp and packet modes: the coalescing period under load in µs (0 = off). */
  coalesceUs: number | null;
  /** afxdp mode: whether the coalescing defers the device's receive interrupts (6.13+) or the workers' wake-ups. */
  irqDeferred: boolean | null;
  /** The longest frame (no FCS) reflected, when less than the MTU allows (afxdp before multi-buffer AF_XDP). */
  maxFrame: number | null;
}

/** Drops the keys whose value is undefined, so `{ ...DEFAULTS, ...given }` keeps the defaults. */
export function given<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const SIGNATURE_OF = Object.fromEntries(Object.entries(SIGNATURES).map(([k, v]) => [v, k])) as Record<
  string,
  SignatureName
>;

export class Reflector extends NativeHandle {
  readonly #native;
  readonly #workers: CounterView<CounterName>[];
  readonly #layout;
  readonly info: ReflectorInfo;

  private constructor(handle: Deno.PointerObject, lib: Lib, workers: CounterView<CounterName>[], info: ReflectorInfo) {
    super(handle, "reflector");
    this.#native = lib.native;
    this.#layout = lib.layout;
    this.#workers = workers;
    this.info = info;
  }

  /**
   * Starts reflecting on `o.iface`. Frames are handled on native threads or in the kernel from here on.
   * The library checks every option (errors name it as spelled here) and resolves the profile; `info`
   * says what it chose. Throws FastpathError (codes and exit codes: ffi/error.ts).
   */
  /**
   * Checks options the way `start` does first, opening nothing: a caller (lab run) can refuse a bad
   * mode or coalescing period before it builds anything. Throws FastpathError.
   */
  static async check(o: ReflectorOptions): Promise<void> {
    const lib = await load();
    lib.unwrap(lib.native.fp_reflector_check(reflectorOptions(lib, o).bytes), `cannot reflect on ${o.iface}`);
  }

  static async start(o: ReflectorOptions): Promise<Reflector> {
    const lib = await load();
    const { native, layout } = lib;
    const opts = reflectorOptions(lib, o);
    const out = new BigUint64Array(1);
    lib.unwrap(native.fp_reflector_start(opts.bytes, out), `cannot reflect on ${o.iface}`);
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
    return new Reflector(handle, lib, workerViews, readInfo(lib, handle, o));
  }

  /**
   * The MAC the reflector answers for now, "aa:bb:cc:dd:ee:ff": `info.mac` is the one it started
   * with; the reflector follows a change of the interface's MAC (the `mac_changes` counter).
   */
  get mac(): string {
    const b = this.#layout.builder("ReflectorInfo");
    this.#native.fp_reflector_info(this.live(), b.bytes);
    const at = this.#layout.field("ReflectorInfo", "mac").offset;
    return formatMac(b.bytes.slice(at, at + 6));
  }

  /** Totals over all workers, read from shared memory (no native call per counter). */
  stats(): Counters {
    const h = this.live();
    // The kernel keeps the XDP program's counters per CPU; one call folds them into the shared block.
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
  state(): "starting" | "running" | "stopped" | "failed" {
    return this.#layout.key("ReflectorState", this.#native.fp_reflector_state(this.live()));
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

/** `o` with the defaults applied, as the library's ReflectorOptions (the library checks every value). */
function reflectorOptions(lib: Lib, o: ReflectorOptions) {
  const { layout } = lib;
  const d = { ...REFLECTOR_DEFAULTS, ...given(o) };
  const oui = d.oui === undefined ? undefined : parseOui(d.oui);
  const sigs = d.signatures === undefined ? [] : parseSignatures(d.signatures);
  return layout.builder("ReflectorOptions")
    .setBytes("ifname", o.iface, "iface")
    .setBytes("netns", o.netns ?? "")
    .set("dataplane", layout.value("Dataplane", parseChoice("mode", d.mode, REFLECT_MODES)))
    .set("profile", layout.value("Profile", parseChoice("profile", d.profile, PROFILES)))
    .set("swap", layout.value("SwapMode", enumKey(parseChoice("swap", d.swap, SWAP_MODES))))
    .set("port", d.port)
    .set("oui_mode", oui === undefined ? 0 : oui === false ? 1 : 2)
    .setBytes("oui", oui || new Uint8Array(3))
    .set("tos_toggle", d.tosToggle === undefined ? -1 : Number(d.tosToggle))
    .set("signatures", sigs.reduce((m, s) => m | (1 << layout.value("Signature", SIGNATURES[s])), 0))
    .set("workers", d.workers)
    .set("first_cpu", d.cpu ?? -1, "cpu")
    .set("nice", d.nice)
    .set("fanout", layout.value("Fanout", parseChoice("fanout", d.fanout, FANOUTS)))
    .set("ring_block_kib", d.ringBlockKib)
    .set("ring_blocks", d.ringBlocks)
    .set("batch", d.batch)
    .set("busy_poll_us", d.busyPollUs)
    .set("coalesce_us", d.coalesceUs ?? 0)
    .set("coalesce_default", d.coalesceUs === undefined);
}

/** "mac-ip" → "mac_ip": a swap mode as the library's enum names it. */
function enumKey(swap: SwapMode): "mac" | "mac_ip" | "all" {
  return swap === "mac-ip" ? "mac_ip" : swap;
}

function readInfo(lib: Lib, handle: Deno.PointerObject, o: ReflectorOptions): ReflectorInfo {
  const { native, layout } = lib;
  const b = layout.builder("ReflectorInfo");
  native.fp_reflector_info(handle, b.bytes);
  const v = new DataView(b.bytes.buffer);
  const at = (name: string) => layout.field("ReflectorInfo", name).offset;
  const u8 = (name: string) => v.getUint8(at(name));
  const u32 = (name: string) => v.getUint32(at(name), true);
  const flag = (name: string) => u8(name) === 1;
  const mode = layout.key("Dataplane", u8("dataplane"));
  if (mode === "auto") throw new Error("the library reported dataplane auto for a running reflector");
  const ito = at("ito");
  const itoField = (name: string) => ito + layout.field("ItoConfig", name).offset;
  const sigBits = v.getUint8(itoField("signatures"));
  const swap = layout.key("SwapMode", v.getUint8(itoField("mode")));
  const ouiAt = itoField("oui");
  const reasonAt = at("reason");
  const xdp = mode === "xdp" || mode === "afxdp";
  const worker = mode === "packet" || mode === "afxdp";
  const attach = layout.key("XdpAttach", u8("xdp_attach"));
  return {
    iface: o.iface,
    netns: o.netns ?? null,
    mode,
    reason: textAt(b.bytes, reasonAt, layout.field("ReflectorInfo", "reason").type),
    warning: textAt(b.bytes, at("warning"), layout.field("ReflectorInfo", "warning").type) || null,
    vlanMeta: xdp ? flag("vlan_meta") : null,
    mac: formatMac(b.bytes.slice(at("mac"), at("mac") + 6)),
    mtu: u32("mtu"),
    workers: u32("workers"),
    nice: worker && Deno.build.os === "linux" ? v.getInt8(at("nice")) : null,
    profile: layout.key("Profile", u8("profile")),
    swap: swap === "mac_ip" ? "mac-ip" : swap,
    port: v.getUint16(itoField("port"), true),
    oui: v.getUint8(itoField("oui_filter")) ? formatMac(b.bytes.slice(ouiAt, ouiAt + 3)) : null,
    tosToggle: v.getUint8(itoField("tos_toggle")) === 1,
    signatures: layout.json.enums.Signature
      ? Object.entries(layout.json.enums.Signature).filter(([, bit]) => sigBits & (1 << bit)).map(([k]) =>
        SIGNATURE_OF[k]
      )
      : [],
    guarded: flag("guarded"),
    xdpAttach: xdp && attach !== "none" ? attach : null,
    zerocopy: mode === "afxdp" ? flag("zerocopy") : null,
    batchWrite: mode === "bpf" ? flag("batch_write") : null,
    coalesceUs: mode === "afxdp" || mode === "packet" ? u32("coalesce_us") : null,
    irqDeferred: mode === "afxdp" ? flag("irq_deferred") : null,
    maxFrame: u32("max_frame") || null,
  };
}
