/**
 * `fastpath --version`: the version (deno.json's, the one place it is written), the native library's
 * ABI version, and the kernel features doctor finds (without attaching anything).
 */
import meta from "../../deno.json" with { type: "json" };
import { load } from "../../ffi/load.ts";
import { doctor } from "../doctor.ts";

export const VERSION: string = meta.version;

/** Checks of `doctor` that are not kernel features (who runs it, which tools are installed). */
const NOT_FEATURES = new Set(["root", "kernel", "library", "libbpf", "bpftool", "iproute2", "fentry", "macos"]);

export async function versionText(): Promise<string> {
  const lines = [`fastpath ${VERSION}`];
  try {
    const lib = await load();
    const v = lib.native.fp_libbpf_version();
    lines.push(`library: ABI ${lib.layout.json.abi_version}, libbpf ${v >> 16}.${v & 0xffff} (${lib.path})`);
  } catch (err) {
    lines.push(`library: not loaded: ${(err as Error).message.split("\n")[0]}`);
  }
  const report = await doctor({ attach: false });
  const features = report.checks
    .filter((c) => !NOT_FEATURES.has(c.name) && c.status !== "info")
    .map((c) => `${c.name} ${c.status === "missing" ? "no" : "yes"}`);
  lines.push(`kernel: ${report.os} ${report.kernel}${features.length ? `: ${features.join(", ")}` : ""}`);
  return lines.join("\n");
}
