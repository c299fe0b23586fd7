/** `fastpath doctor`: what this machine offers fastpath, and how to fix what is missing. */
import { doctor as check } from "../doctor.ts";
import { command, formatOption, setExit } from "./flags.ts";
import { emit } from "./json.ts";

export const doctor = command("doctor", {
  summary: "what this machine offers fastpath, and how to fix what is missing",
  usage: "[flags]",
  description: "Checks privilege, kernel features (BPF, XDP, AF_XDP, BTF, sched_ext), the native library and tools.",
  examples: ["fastpath doctor", "fastpath doctor --format json | jq '.modes'"],
})
  .addOption(formatOption())
  .action(async (f) => {
    const report = await check();
    if (f.format === "json") {
      emit("doctor_report", {
        ...report,
        checks: report.checks.map((c) => ({ type: "doctor_check", ...c, fix: c.fix ?? null })),
        modes: report.modes.map((m) => ({ type: "doctor_mode", ...m })),
      });
      return setExit(0);
    }
    const mark = { ok: "ok  ", missing: "MISS", warn: "warn", info: "    " };
    for (const c of report.checks) {
      console.log(
        `${mark[c.status]} ${c.name.padEnd(10)} ${c.detail}${c.fix ? `\n     ${"".padEnd(10)} fix: ${c.fix}` : ""}`,
      );
    }
    console.log(
      `reflector modes: ${report.modes.map((m) => `${m.mode} ${m.available ? "yes" : `no (${m.why})`}`).join(", ")}`,
    );
    setExit(0);
  });
