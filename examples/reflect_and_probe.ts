/**
 * The scripting API in one page: build the namespace lab, reflect on one side, probe from the other,
 * print what came back. Run it as root:
 *
 *   sudo .tools/bin/deno run -A --unstable-ffi examples/reflect_and_probe.ts
 */
import { labDown, labUp, Probe, Reflector } from "../mod.ts";

const lab = await labUp({ prefix: "fpx" });
try {
  await using reflector = await Reflector.start({ iface: lab.reflectorIf, netns: lab.reflectorNs, mode: "packet" });
  await using probe = await Probe.start({
    iface: lab.probeIf,
    netns: lab.probeNs,
    to: lab.reflectorIp,
    size: 512,
    rate: { pps: 10_000 },
    count: 5_000,
  });
  const report = await probe.done();
  const counters = reflector.stats();
  console.log(JSON.stringify({
    sent: report.sent,
    received: report.received,
    lossPct: report.lossPct,
    badRewrite: report.badRewrite,
    rttP99Us: report.rttUs?.p99,
    reflected: counters.tx_packets,
    mode: reflector.info.mode,
  }));
} finally {
  await labDown(lab);
}
