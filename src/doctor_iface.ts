/**
 * `doctor IFACE`: what one interface offers the reflector — its driver, native XDP, AF_XDP zero-copy,
 * its queues and its receive VLAN offload — each with what it means for the dataplane and the fix.
 * The driver's XDP features come from the kernel through the library (netdev netlink, Linux 6.3+);
 * the rest from ethtool and sysfs, inside the interface's namespace when --netns names one.
 */
import { FastpathError } from "../ffi/error.ts";
import { load } from "../ffi/load.ts";
import type { Check } from "./doctor.ts";
import { noSuchNetns, run } from "./net.ts";

/** NETDEV_XDP_ACT_* (linux/netdev.h): what a driver's XDP can do. */
const XDP_ACT = { basic: 1n, redirect: 2n, ndoXmit: 4n, xskZerocopy: 8n } as const;

export interface InterfaceReport {
  iface: string;
  netns: string | null;
  driver: string | null;
  /** The driver runs XDP programs itself (null: this kernel does not say, before 6.3; there 0 means "no"). */
  nativeXdp: boolean | null;
  /** AF_XDP sockets can share the driver's buffers (null: this kernel does not say). */
  afxdpZeroCopy: boolean | null;
  rxQueues: number;
  txQueues: number;
  /** ethtool -l: combined channels now and at most (null where the driver has none to report). */
  combinedChannels: number | null;
  maxCombinedChannels: number | null;
  /** The NIC takes receive VLAN tags out of frames (null: ethtool could not say). */
  rxVlanOffload: boolean | null;
  /** The driver hands XDP that tag as metadata (Linux 6.8+), so xdp and afxdp keep it. */
  xdpVlanTag: boolean;
  checks: Check[];
}

function inNs(netns: string | undefined, cmd: string[]): string[] {
  return netns ? ["ip", "netns", "exec", netns, ...cmd] : cmd;
}

/** `ethtool -k`'s `rx-vlan-offload: on|off`, or null. */
export function parseRxVlanOffload(features: string): boolean | null {
  const m = /^rx-vlan-offload:\s+(on|off)/m.exec(features);
  return m ? m[1] === "on" : null;
}

/** `ethtool -l`'s combined channels: the maximum and the current setting. */
export function parseChannels(out: string): { max: number | null; now: number | null } {
  const at = out.search(/^Current hardware settings:/m);
  const combined = (s: string) => {
    const m = /^Combined:\s+(\d+)/m.exec(s);
    return m ? Number(m[1]) : null;
  };
  return at < 0 ? { max: null, now: null } : { max: combined(out.slice(0, at)), now: combined(out.slice(at)) };
}

/**
 * Whether a kernel of this `release` reports drivers' XDP features (netdev netlink, Linux 6.3+): there a
 * value of 0 means "no native XDP", before it "not reported".
 */
export function reportsXdpFeatures(release: string = Deno.osRelease()): boolean {
  const [major, minor] = release.split(/[.-]/).map(Number);
  return major > 6 || (major === 6 && minor >= 3);
}

/** The `ip netns` namespaces that hold an interface named `iface`. */
async function namespacesWith(iface: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir("/run/netns")) names.push(e.name);
  } catch { /* no namespaces */ }
  const found = await Promise.all(
    names.map(async (n) =>
      (await run(["ip", "-n", n, "link", "show", "dev", iface]).catch(() => undefined))?.code === 0
    ),
  );
  return names.filter((_, i) => found[i]).sort();
}

async function noSuchInterface(iface: string, netns?: string): Promise<FastpathError> {
  if (netns) {
    const missing = await noSuchNetns(netns);
    if (missing) return missing;
    return new FastpathError(
      "no_such_device",
      `no interface named '${iface}' in namespace ${netns} (see 'ip link -n ${netns}')`,
    );
  }
  const elsewhere = await namespacesWith(iface);
  const hint = elsewhere.length
    ? `; it is in namespace ${elsewhere.join(", ")}: add --netns ${elsewhere[0]}`
    : " (see 'ip link')";
  return new FastpathError("no_such_device", `no interface named '${iface}'${hint}`);
}

export async function interfaceReport(iface: string, netns?: string): Promise<InterfaceReport> {
  const sysfs = await run(inNs(netns, ["ls", `/sys/class/net/${iface}/queues`]));
  if (sysfs.code !== 0) throw await noSuchInterface(iface, netns);
  const queues = sysfs.stdout.split(/\s+/).filter(Boolean);
  const rxQueues = queues.filter((q) => q.startsWith("rx-")).length;
  const txQueues = queues.filter((q) => q.startsWith("tx-")).length;

  const ethtool = async (...args: string[]) => (await run(inNs(netns, ["ethtool", ...args])).catch(() => undefined));
  const info = await ethtool("-i", iface);
  let driver = info?.code === 0 ? /^driver:\s*(\S+)/m.exec(info.stdout)?.[1] ?? null : null;
  if (!driver) {
    const link = await run(inNs(netns, ["readlink", `/sys/class/net/${iface}/device/driver`]));
    driver = link.code === 0 ? link.stdout.trim().split("/").at(-1) || null : null;
  }
  const k = await ethtool("-k", iface);
  const rxVlanOffload = k?.code === 0 ? parseRxVlanOffload(k.stdout) : null;
  const l = await ethtool("-l", iface);
  const channels = l?.code === 0 ? parseChannels(l.stdout) : { max: null, now: null };

  const lib = await load();
  const features = new BigUint64Array(1);
  const zcSegs = new Uint32Array(1);
  const vlanTag = new Uint8Array(1);
  const enc = (s: string) => new TextEncoder().encode(s + "\0");
  lib.unwrap(
    lib.native.fp_xdp_features(enc(netns ?? ""), enc(iface), features, zcSegs, vlanTag),
    `doctor: asking ${iface} for its XDP features`,
  );
  const said = features[0] !== 0n || reportsXdpFeatures();
  const nativeXdp = said ? (features[0] & XDP_ACT.basic) !== 0n : null;
  const afxdpZeroCopy = said ? (features[0] & XDP_ACT.xskZerocopy) !== 0n : null;
  const xdpVlanTag = vlanTag[0] === 1;

  const checks: Check[] = [];
  checks.push({ name: "driver", status: "info", detail: driver ?? "unknown (ethtool -i did not say)" });
  checks.push(
    nativeXdp === null
      ? {
        name: "native-xdp",
        status: "info",
        detail: "this kernel does not report drivers' XDP features (Linux 6.3+ does): xdp mode says at start",
      }
      : nativeXdp
      ? {
        name: "native-xdp",
        status: "ok",
        detail: `${driver ?? iface} runs XDP in the driver (native mode): xdp and afxdp attach there`,
      }
      : {
        name: "native-xdp",
        status: "warn",
        detail: `${
          driver ?? iface
        } has no native XDP: xdp and afxdp run as generic XDP (after the kernel builds an skb), slower`,
        fix: "a NIC whose driver has XDP (e.g. ice, i40e, ixgbe, mlx5_core), or --mode packet",
      },
  );
  checks.push(
    afxdpZeroCopy === null
      ? { name: "afxdp-zc", status: "info", detail: "this kernel does not say whether AF_XDP zero-copy is there" }
      : afxdpZeroCopy
      ? { name: "afxdp-zc", status: "ok", detail: `AF_XDP zero-copy (up to ${zcSegs[0] || 1} fragment(s) per frame)` }
      : {
        name: "afxdp-zc",
        status: "info",
        detail: `no AF_XDP zero-copy on ${driver ?? iface}: afxdp mode copies each frame (xdp mode does not need it)`,
      },
  );
  const chan = channels.now !== null ? `, ${channels.now} combined channel(s) of at most ${channels.max ?? "?"}` : "";
  checks.push({
    name: "queues",
    status: "info",
    detail: `${rxQueues} receive, ${txQueues} transmit${chan}: afxdp runs a worker per receive queue`,
  });
  checks.push(
    rxVlanOffload === null
      ? { name: "rx-vlan", status: "info", detail: "receive VLAN offload: ethtool -k did not say" }
      : !rxVlanOffload
      ? {
        name: "rx-vlan",
        status: "ok",
        detail: "receive VLAN offload off: tagged test frames go back tagged in every mode",
      }
      : xdpVlanTag
      ? {
        name: "rx-vlan",
        status: "ok",
        detail: "receive VLAN offload on, and the driver hands XDP the tag: tagged test frames go back tagged",
      }
      : {
        name: "rx-vlan",
        status: "warn",
        detail:
          "receive VLAN offload on and XDP cannot read the tag here: xdp and afxdp send tagged test frames back untagged",
        fix: `ethtool -K ${iface} rxvlan off, or --mode packet`,
      },
  );
  return {
    iface,
    netns: netns ?? null,
    driver,
    nativeXdp,
    afxdpZeroCopy,
    rxQueues,
    txQueues,
    combinedChannels: channels.now,
    maxCombinedChannels: channels.max,
    rxVlanOffload,
    xdpVlanTag,
    checks,
  };
}
