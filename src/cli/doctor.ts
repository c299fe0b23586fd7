/** `fastpath doctor [IFACE]`: what this machine (and an interface) offers fastpath, and how to fix what is missing. */
import { type Check, doctor as check } from "../doctor.ts";
import { interfaceReport } from "../doctor_iface.ts";
import { command, formatOption, setExit, text } from "./flags.ts";
import { emit } from "./json.ts";

const jsonCheck = (c: Check) => ({ type: "doctor_check", ...c, fix: c.fix ?? null });

export const doctor = command("doctor", {
  summary: "what this machine offers fastpath, and how to fix what is missing",
  usage: "[IFACE] [flags]",
  description: `Checks privilege, kernel features (BPF, XDP, AF_XDP, BTF, sched_ext), the native library and tools.
With IFACE, also that interface: its driver, whether it runs XDP natively, AF_XDP zero-copy, its
queues and its receive VLAN offload.`,
  examples: ["fastpath doctor", "fastpath doctor eth0", "fastpath doctor --format json | jq '.modes'"],
})
  .argument("[IFACE]")
  .addOption(text("netns", "network namespace IFACE lives in (ip netns)", "NAME"))
  .addOption(formatOption())
  .action(async (iface, f) => {
    const report = await check();
    const nic = iface ? await interfaceReport(iface, f.netns) : null;
    if (f.format === "json") {
      emit("doctor_report", {
        ...report,
        checks: report.checks.map(jsonCheck),
        modes: report.modes.map((m) => ({ type: "doctor_mode", ...m })),
        interface: nic && { type: "doctor_interface", ...nic, checks: nic.checks.map(jsonCheck) },
      });
      return setExit(0);
    }
    const mark = { ok: "ok  ", missing: "MISS", warn: "warn", info: "    " };
    const print = (c: Check) =>
      console.log(
        `${mark[c.status]} ${c.name.padEnd(10)} ${c.detail}${c.fix ? `\n     ${"".padEnd(10)} fix: ${c.fix}` : ""}`,
      );
    report.checks.forEach(print);
    console.log(
      `reflector modes: ${report.modes.map((m) => `${m.mode} ${m.available ? "yes" : `no (${m.why})`}`).join(", ")}`,
    );
    if (nic) {
      console.log(`${nic.iface}${nic.netns ? ` (namespace ${nic.netns})` : ""}:`);
      nic.checks.forEach(print);
    }
    setExit(0);
  });
