/**
 * The macOS side that can be proven on Linux: reading what `ifconfig`, `arp -n` and `ndp -n` print
 * (the text formats of macOS 13–15), and the doctor's /dev/bpf checks against a system given here.
 * The dataplane itself (zig/src/sys/darwin.zig, reflect/reflector_darwin.zig, probe/probe_darwin.zig) is cross-compiled by
 * `zig build cross`; its record walker and batch encoder are tested in zig/src/reflect/bpfbuf.zig.
 */
import assert from "node:assert/strict";
import { parseArp, parseIfconfig, parseNdp, type RunResult } from "../src/net.ts";
import { darwinChecks, type DarwinSystem } from "../src/doctor.ts";

const IFCONFIG_EN0 = `en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\toptions=6460<TSO4,TSO6,CHANNEL_IO,PARTIAL_CSUM,ZEROINVERT_CSUM>
\tether 3c:a6:f6:0a:1b:02
\tinet6 fe80::10c3:9a5e:7b1d:4f20%en0 prefixlen 64 secured scopeid 0xb
\tinet 192.0.2.20 netmask 0xffffff00 broadcast 192.0.2.255
\tinet6 2001:db8::20 prefixlen 64 autoconf secured
\tnd6 options=201<PERFORMNUD,DAD>
\tmedia: autoselect (1000baseT <full-duplex>)
\tstatus: active
`;

const IFCONFIG_DOWN = `en7: flags=8822<BROADCAST,SMART,SIMPLEX,MULTICAST> mtu 9000
\tether 0:e0:4c:68:1:2
\tmedia: autoselect (none)
\tstatus: inactive
`;

const ARP = `? (192.0.2.10) at 0:c0:17:a:b:c on en0 ifscope [ethernet]
`;
const ARP_INCOMPLETE = `? (192.0.2.11) at (incomplete) on en0 ifscope [ethernet]
`;
const ARP_NONE = `192.0.2.12 (192.0.2.12) -- no entry
`;
const NDP = `Neighbor                        Linklayer Address  Netif Expire    1s 5s
2001:db8::10                    0:c0:17:a:b:c        en0 23h59m57s S  R
fe80::2c0:17ff:fe0a:b0c%en0     0:c0:17:a:b:c        en0 8s        R  R
2001:db8::11                    (incomplete)         en0 expired   I
`;

function fakeSystem(o: { root: boolean; devices: string[]; outputs: Record<string, string> }): DarwinSystem {
  return {
    root: o.root,
    devices: () => Promise.resolve(o.devices),
    run: (cmd: string[]): Promise<RunResult> => {
      const out = o.outputs[cmd.join(" ")];
      return Promise.resolve(
        out === undefined ? { code: 1, stdout: "", stderr: "unknown oid" } : { code: 0, stdout: out, stderr: "" },
      );
    },
  };
}

Deno.test("macOS support that runs here", async (t) => {
  await t.step("ifconfig output gives flags, MTU, the MAC with leading zeros, and scoped addresses", () => {
    const en0 = parseIfconfig(IFCONFIG_EN0)!;
    assert.equal(en0.ifname, "en0");
    assert.equal(en0.operstate, "UP");
    assert.equal(en0.mtu, 1500);
    assert.equal(en0.address, "3c:a6:f6:0a:1b:02");
    assert.deepEqual(en0.addr_info, [
      { family: "inet6", local: "fe80::10c3:9a5e:7b1d:4f20", scope: "link", prefixlen: 64 },
      { family: "inet", local: "192.0.2.20", scope: "global", prefixlen: 24 },
      { family: "inet6", local: "2001:db8::20", scope: "global", prefixlen: 64 },
    ]);
    const down = parseIfconfig(IFCONFIG_DOWN)!;
    assert.equal(down.operstate, "DOWN");
    assert.equal(down.mtu, 9000);
    assert.equal(down.address, "00:e0:4c:68:01:02");
    assert.deepEqual(down.addr_info, []);
    assert.equal(parseIfconfig("ifconfig: interface en9 does not exist"), undefined);
  });

  await t.step("arp -n output gives a resolved MAC on the right interface and nothing otherwise", () => {
    assert.equal(parseArp(ARP, "192.0.2.10", "en0"), "00:c0:17:0a:0b:0c");
    assert.equal(parseArp(ARP, "192.0.2.10", "en1"), undefined);
    assert.equal(parseArp(ARP, "192.0.2.1", "en0"), undefined);
    assert.equal(parseArp(ARP_INCOMPLETE, "192.0.2.11", "en0"), undefined);
    assert.equal(parseArp(ARP_NONE, "192.0.2.12", "en0"), undefined);
  });

  await t.step("ndp -n output matches the address in any spelling and skips incomplete entries", () => {
    assert.equal(parseNdp(NDP, "2001:db8::10", "en0"), "00:c0:17:0a:0b:0c");
    assert.equal(parseNdp(NDP, "2001:0db8:0:0:0:0:0:10", "en0"), "00:c0:17:0a:0b:0c");
    assert.equal(parseNdp(NDP, "fe80::2c0:17ff:fe0a:b0c", "en0"), "00:c0:17:0a:0b:0c");
    assert.equal(parseNdp(NDP, "2001:db8::11", "en0"), undefined);
    assert.equal(parseNdp(NDP, "2001:db8::10", "en1"), undefined);
  });

  await t.step("doctor on macOS offers bpf mode as root with devices, and expects batched writes on 14+", async () => {
    const r = await darwinChecks(fakeSystem({
      root: true,
      devices: ["bpf0", "bpf1", "bpf2"],
      outputs: {
        "sw_vers -productVersion": "14.6.1\n",
        "sysctl -n debug.bpf_maxdevices": "256\n",
        "sysctl -n debug.bpf_bufsize_cap": "4194304\n",
      },
    }));
    assert.deepEqual(r.modes, [{ mode: "bpf", available: true, why: "/dev/bpf + kqueue, batched writes" }]);
    const by = Object.fromEntries(r.checks.map((c) => [c.name, c]));
    assert.equal(by.macos.detail, "macOS 14.6.1");
    assert.equal(by["bpf-devices"].status, "ok");
    assert.match(by["bpf-devices"].detail, /^3 \/dev\/bpf devices now, up to 256/);
    assert.equal(by["bpf-buffer"].status, "ok");
    assert.match(by["batch-write"].detail, /BIOCSBATCHWRITE expected/);
    assert.match(by.sched_ext.detail, /Linux feature/);
  });

  await t.step("doctor on macOS names sudo without root, and the sysctl for a small buffer cap", async () => {
    const r = await darwinChecks(fakeSystem({
      root: false,
      devices: ["bpf0"],
      outputs: { "sw_vers -productVersion": "13.6\n", "sysctl -n debug.bpf_maxbufsize": "524288\n" },
    }));
    assert.equal(r.modes[0].available, false);
    assert.match(r.modes[0].why, /needs root.*sudo/);
    const by = Object.fromEntries(r.checks.map((c) => [c.name, c]));
    assert.equal(by["bpf-buffer"].status, "warn");
    assert.equal(by["bpf-buffer"].fix, "sudo sysctl -w debug.bpf_bufsize_cap=4194304");
    assert.match(by["batch-write"].detail, /one write\(\) per frame/);
    const none = await darwinChecks(fakeSystem({ root: true, devices: [], outputs: {} }));
    assert.equal(none.modes[0].available, false);
    assert.equal(none.checks.find((c) => c.name === "bpf-devices")!.status, "missing");
  });
});
