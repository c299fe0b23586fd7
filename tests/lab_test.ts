/**
 * Real traffic in a namespace lab: reflector in one namespace, probe (and an independent raw-frame
 * tool) in the other. Every run is bounded by a frame count.
 */
import assert from "node:assert/strict";
import { type Lab, labDown, labUp } from "../src/lab.ts";
import { runLabCase } from "../src/labrun.ts";
import { Reflector } from "../src/reflector.ts";
import { Probe } from "../src/probe.ts";
import { FastpathError } from "../ffi/error.ts";
import { isRoot, netnsList, sendFrames, skipUnless, watchFrames } from "./helpers.ts";

const PREFIX = "fpt";

Deno.test("reflection in the namespace lab", async (t) => {
  if (skipUnless(isRoot, "the lab needs root to create network namespaces")) return;
  const lab: Lab = await labUp({ prefix: PREFIX });
  try {
    for (const swap of ["mac", "mac-ip", "all"] as const) {
      for (const size of [64, 1518, 9000]) {
        await t.step(`${swap} mode returns every ${size}-byte frame with exactly its fields swapped`, async () => {
          const r = await runLabCase(lab, { size, rate: { pps: 20_000 }, count: 2000, swap });
          assert.equal(r.probe.sent, 2000);
          assert.equal(r.probe.received, 2000, JSON.stringify(r.probe));
          assert.equal(r.probe.badRewrite, 0);
          assert.equal(r.probe.duplicates, 0);
          assert.equal(r.reflector.tx_packets, 2000);
          assert.equal(r.reflector.sig_dataot, 2000);
        });
      }
    }

    await t.step("VLAN-tagged frames come back tagged with the same VLAN", async () => {
      for (const size of [68, 1518]) {
        const r = await runLabCase(lab, { size, rate: { pps: 20_000 }, count: 1000, vlan: 100, swap: "all" });
        assert.equal(r.probe.received, 1000, JSON.stringify(r.probe));
        assert.equal(r.probe.badRewrite, 0);
      }
    });

    await t.step("IPv6 frames are reflected with addresses swapped", async () => {
      const r = await runLabCase(lab, { size: 128, rate: { pps: 20_000 }, count: 1000, ipv6: true, swap: "all" });
      assert.equal(r.probe.received, 1000, JSON.stringify(r.probe));
      assert.equal(r.probe.badRewrite, 0);
    });

    await t.step("IMIX and the PROBEOT and LATENCY signatures are reflected and counted", async () => {
      let r = await runLabCase(lab, { size: "imix", rate: { pps: 20_000 }, count: 1200 });
      assert.equal(r.probe.received, 1200);
      r = await runLabCase(lab, { size: 64, rate: { pps: 20_000 }, count: 500, signature: "LATENCY" });
      assert.equal(r.reflector.sig_latency, 500);
      r = await runLabCase(lab, { size: 64, rate: { pps: 20_000 }, count: 500, signature: "PROBEOT" });
      assert.equal(r.reflector.sig_probeot, 500);
    });

    await t.step("two workers in a PACKET_FANOUT group share the frames and lose none", async () => {
      await using refl = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs, workers: 2, fanout: "lb" });
      assert.equal(refl.info.workers, 2);
      await using probe = await Probe.start({ iface: lab.probeIf, netns: lab.probeNs, to: lab.reflectorIp, count: 4000, rate: { pps: 20_000 } });
      const r = await probe.done();
      assert.equal(r.received, 4000);
      assert.equal(r.badRewrite, 0);
      const per = refl.workerStats().map((w) => w.tx_packets);
      assert.equal(per[0] + per[1], 4000);
      assert.ok(per[0] > 0 && per[1] > 0, `per-worker reflections: ${per}`);
    });

    await t.step("a probe expecting other swaps than the reflector makes flags every reflection", async () => {
      await using refl = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs, swap: "mac-ip" });
      await using probe = await Probe.start({
        iface: lab.probeIf, netns: lab.probeNs, to: lab.reflectorIp, count: 500, rate: { pps: 20_000 }, expectSwap: "all",
      });
      const r = await probe.done();
      assert.equal(r.received, 500);
      assert.equal(r.badRewrite, 500);
      assert.equal(refl.stats().tx_packets, 500);
    });

    const peer = (kind: string, count = 50) =>
      sendFrames(lab.probeNs, lab.probeIf, kind, count, lab.reflectorMac, lab.probeMac, lab.probeIp, lab.reflectorIp);

    await t.step("the raw-frame tool sees reflections of a valid frame (the checks below can fail)", async () => {
      await using refl = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs });
      const r = await peer("ito");
      assert.equal(r.reflected, 50);
      assert.equal(refl.stats().tx_packets, 50);
    });

    for (
      const [kind, counter] of [
        ["broadcast", null],
        ["multicast", null],
        ["foreign-dst", null],
        ["wrong-oui", null],
        ["wrong-port", null],
        ["tcp", null],
        ["src-is-dst", null],
        ["no-signature", "drop_signature"],
      ] as const
    ) {
      await t.step(`${kind} frames are never reflected`, async () => {
        await using refl = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs });
        const r = await peer(kind);
        assert.equal(r.sent, 50);
        assert.equal(r.reflected, 0);
        const s = refl.stats();
        assert.equal(s.tx_packets, 0);
        // Frames the kernel filter already refuses never reach userspace; the rest are counted.
        if (counter) assert.equal(s[counter], 50);
        else assert.equal(s.rx_packets, 0);
      });
    }

    await t.step("no ICMP port-unreachable leaves the reflector (and without one, it would)", async () => {
      // Control: with nothing holding the port, the host answers test frames with ICMP.
      const control = await peer("ito", 20);
      assert.ok(control.icmp_unreachable > 0, "the control run must see ICMP port-unreachable");
      await using refl = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs });
      assert.equal(refl.info.guarded, true);
      const watch = watchFrames(lab.probeNs, lab.probeIf, 2.5);
      await new Promise((r) => setTimeout(r, 300));
      await using probe = await Probe.start({ iface: lab.probeIf, netns: lab.probeNs, to: lab.reflectorIp, count: 5000, rate: { pps: 5000 } });
      const r = await probe.done();
      const seen = await watch;
      assert.equal(r.received, 5000);
      assert.equal(seen.icmp_unreachable, 0);
      assert.ok(seen.reflected > 1000, "the watcher saw the reflections");
    });

    await t.step("a second reflector on the same interface is refused and names the first", async () => {
      await using _first = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs });
      const err = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs }).then(() => undefined, (e) => e);
      assert.ok(err instanceof FastpathError);
      assert.equal(err.code, "busy");
      assert.match(err.message, new RegExp(`another fastpath reflector \\(pid ${Deno.pid}\\) is running on ${lab.reflectorIf}`));
    });

    await t.step("a frame size larger than the MTU says how to raise it", async () => {
      await labDown(lab);
      const small = await labUp({ prefix: PREFIX, mtu: 1500 });
      const err = await Probe.start({ iface: small.probeIf, netns: small.probeNs, to: small.reflectorIp, size: 9000, count: 1 })
        .then(() => undefined, (e) => e);
      assert.ok(err instanceof FastpathError);
      assert.match(err.message, /--size 9000 does not fit the MTU of fpt-p0 \(1500\): raise it with 'ip link set fpt-p0 mtu 8982'/);
    });
  } finally {
    await labDown({ prefix: PREFIX });
  }
  assert.ok(!(await netnsList()).some((n) => n.startsWith(`${PREFIX}-`)));
});
