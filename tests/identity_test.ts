/**
 * A running reflector answers only for what is its own: the MAC its interface has now, the interface
 * it started on (not a new one of the same name), and test frames whose port the host cannot answer
 * with ICMP. Every run is bounded by a frame count.
 */
import assert from "node:assert/strict";
import { labDown, labUp, peerForMode } from "../src/lab.ts";
import { Reflector } from "../src/reflector.ts";
import { Probe } from "../src/probe.ts";
import { FastpathError } from "../ffi/error.ts";
import { cli, isRoot, labPrefix, skipUnless, watchFrames } from "./helpers.ts";
import { ip } from "../src/net.ts";

const PREFIX = labPrefix("fpi");

Deno.test("every port the reflector accepts is guarded", async (t) => {
  if (skipUnless(isRoot, "the lab needs root to create network namespaces")) return;
  const lab = await labUp({ prefix: PREFIX });
  try {
    /** A bounded run to UDP port 5000 over IPv4 and IPv6: what came back, and the ICMP the host sent. */
    const anyPortRun = async (mode: string) => {
      await peerForMode(lab, mode);
      // The probe resolves an address it does not know with a datagram to port 9, which the host
      // rightly answers with ICMP: both are known before counting.
      for (const to of [lab.reflectorIp, lab.reflectorIp6]) {
        await ip(
          lab.probeNs,
          "neigh",
          "replace",
          to,
          "lladdr",
          lab.reflectorMac,
          "dev",
          lab.probeIf,
          "nud",
          "permanent",
        );
      }
      const watch = watchFrames(lab.probeNs, lab.probeIf, 3);
      await new Promise((r) => setTimeout(r, 300));
      let received = 0;
      for (const to of [lab.reflectorIp, lab.reflectorIp6]) {
        await using probe = await Probe.start({
          iface: lab.probeIf,
          netns: lab.probeNs,
          to,
          port: 5000,
          size: 128,
          count: 2000,
          rate: { pps: 5000 },
        });
        received += (await probe.done()).received;
      }
      return { received, icmp: (await watch).icmp_unreachable };
    };

    for (const mode of ["xdp", "afxdp"] as const) {
      await t.step(`${mode} mode with port 0 reflects every port and the host answers none with ICMP`, async () => {
        await using refl = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs, mode, port: 0 });
        assert.equal(refl.info.port, 0);
        const r = await anyPortRun(mode);
        assert.equal(r.received, 4000);
        assert.equal(r.icmp, 0, "ICMP port-unreachable counted on the probe's side");
      });
    }

    await t.step("packet mode refuses port 0, naming why and the fix, and leaves nothing to answer", async () => {
      const err = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs, mode: "packet", port: 0 })
        .then(async (refl) => {
          // Today's behaviour, kept as the evidence in the failure message: the host answers with ICMP.
          const r = await anyPortRun("packet");
          refl.close();
          return new Error(`packet mode reflected port 0 unguarded: ${r.icmp} ICMP port-unreachable`);
        }, (e) => e);
      assert.ok(err instanceof FastpathError, String(err));
      assert.equal(err.code, "invalid_argument");
      assert.equal(
        err.message,
        `cannot reflect on ${lab.reflectorIf}: port 0 (any) cannot be guarded in packet mode: the host would answer test frames with ICMP port-unreachable; name the tester's port (port 3842) or use mode xdp`,
      );
      const r = await cli([
        "reflect",
        lab.reflectorIf,
        "--netns",
        lab.reflectorNs,
        "--mode",
        "packet",
        "--port",
        "0",
        "--duration-s",
        "1",
      ]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        /^error: .*port 0 \(any\) cannot be guarded in packet mode.*--port 3842\) or use --mode xdp$/m,
      );
    });
  } finally {
    await labDown({ prefix: PREFIX });
  }
});
