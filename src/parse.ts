/**
 * Text into typed values, for the CLI and the scripting API alike (a script may pass "100kpps" where the
 * CLI gets `--rate 100kpps`). Parsers check form only — is this a rate, a MAC, one of these names —
 * never whether a value is in range: that is the library's, once, for every caller.
 * Messages mark the option's API name in backticks (see ffi/error.ts).
 */
import { FastpathError } from "../ffi/error.ts";

/** A sending rate: frames per second, Mbit/s on the wire, or as fast as possible. */
export type Rate = { pps: number } | { mbps: number } | "max";

/** "100kpps", "250000" (frames/s), "500mbps", "1gbps", "2.5gbit/s", "max"; a Rate passes through. */
export function parseRate(s: string | Rate, option = "rate"): Rate {
  if (typeof s !== "string") return s;
  const v = s.trim().toLowerCase();
  if (v === "max") return "max";
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(pps|bps|bit\/s)?$/.exec(v);
  if (!m) {
    throw new FastpathError(
      "usage",
      `\`${option}\` '${s}' is not a rate: use e.g. 100kpps, 250000, 500mbps, 1gbps or max`,
    );
  }
  // "1M" could be a million frames or a megabit a second: a multiplier needs its unit.
  if (m[2] && !m[3]) {
    const unit = m[2] === "k" ? "k" : m[2].toUpperCase();
    throw new FastpathError(
      "usage",
      `\`${option}\` '${s}' is ambiguous: say ${m[1]}${unit}pps (frames/s) or ${m[1]}${unit}bps (bits/s)`,
    );
  }
  const n = Number(m[1]) * { "": 1, k: 1e3, m: 1e6, g: 1e9 }[m[2] as "" | "k" | "m" | "g"];
  if (m[3] === "bps" || m[3] === "bit/s") return { mbps: n / 1e6 };
  return { pps: n };
}

/** A rate as the CLI would take it back ("20kpps", "500mbps", "max"). */
export function rateText(r: Rate): string {
  if (r === "max") return "max";
  if ("pps" in r) return r.pps > 0 && r.pps % 1000 === 0 ? `${r.pps / 1000}kpps` : `${r.pps}`;
  return `${r.mbps}mbps`;
}

/** A frame size in bytes on the wire, FCS included, or "imix". */
export type FrameSize = number | "imix";
/**
 * A size as asked for: also "min", the smallest frame the probe's headers fit (64 bytes; 68 with a
 * VLAN tag, 84 over IPv6), which the probe resolves with the library that builds the frames.
 */
export type SizeSpec = FrameSize | "min";

export function parseSize(s: string | SizeSpec, option = "size"): SizeSpec {
  if (s === "imix" || s === "min") return s;
  const t = String(s).trim().toLowerCase();
  if (t === "imix" || t === "min") return t;
  // 0 is not a size: across the boundary it would mean imix (the library's frame_size 0).
  if (!/^\d+$/.test(t) || Number(t) === 0) {
    throw new FastpathError(
      "usage",
      `\`${option}\` '${s}' is not a frame size: give whole bytes (64 … 9018), min or imix`,
    );
  }
  return Number(t);
}

/** A comma list of frame sizes. */
export function parseSizes(s: string | SizeSpec[], option = "sizes"): SizeSpec[] {
  if (typeof s !== "string") return s;
  return s.split(",").map((x) => parseSize(x, option));
}

/** One of `choices`, as given (scripts) or from a flag. */
export function parseChoice<const C extends readonly string[]>(option: string, value: string, choices: C): C[number] {
  if (!choices.includes(value)) {
    throw new FastpathError("usage", `\`${option}\` must be one of ${choices.join(", ")}, not '${value}'`);
  }
  return value;
}

/**
 * An interface name as the kernel takes one (dev_valid_name; IFNAMSIZ 16 on Linux and macOS): 1 to 15
 * bytes, not "." or "..", no "/", ":" or white space.
 */
export function parseIfaceName(name: string): string {
  const bytes = new TextEncoder().encode(name).length;
  const why = bytes === 0
    ? "it is empty"
    : bytes > 15
    ? `it has ${bytes} bytes, at most 15 fit`
    : name === "." || name === ".."
    ? "it is a directory's name"
    : /[/:\s]/.test(name)
    ? "it has a '/', ':' or white space"
    : undefined;
  if (why) throw new FastpathError("usage", `'${name}' cannot be an interface name: ${why} (see 'ip link')`);
  return name;
}

/** A number from a flag's text. */
export function parseNumber(option: string, text: string): number {
  // Decimal only: Number() would also take 0x10, 1e3, 0b1 and surrounding spaces.
  if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(text)) {
    throw new FastpathError("usage", `\`${option}\` needs a decimal number, not '${text}'`);
  }
  return Number(text);
}

/** The test signatures as handhelds and the field write them, by the library's enum name. */
export const SIGNATURES = {
  "PROBEOT": "probeot",
  "DATA:OT": "dataot",
  "LATENCY": "latency",
  "RFC2544": "rfc2544",
  "Y.1564": "y1564",
} as const;
export type SignatureName = keyof typeof SIGNATURES;
const SIGNATURE_NAMES = Object.keys(SIGNATURES) as SignatureName[];

/** "DATA:OT", "dataot" or "data:ot" → "DATA:OT". */
export function parseSignature(s: string, option = "signature"): SignatureName {
  const key = SIGNATURE_NAMES.find((k) =>
    k.toLowerCase() === s.toLowerCase() || k.replace(/[:.]/g, "").toLowerCase() === s.toLowerCase()
  );
  if (!key) throw new FastpathError("usage", `\`${option}\` '${s}' is not one of ${SIGNATURE_NAMES.join(", ")}`);
  return key;
}

/** A comma list of signatures. */
export function parseSignatures(s: string | SignatureName[], option = "signatures"): SignatureName[] {
  return (typeof s === "string" ? s.split(",") : s).map((x) => parseSignature(x.trim(), option));
}

/** A source-MAC OUI ("00:c0:17") as bytes, or false for "any". */
export function parseOui(s: string | false, option = "oui"): Uint8Array | false {
  if (s === false || s.toLowerCase() === "any") return false;
  const parts = s.split(/[:-]/);
  if (parts.length !== 3 || parts.some((p) => !/^[0-9a-f]{2}$/i.test(p))) {
    throw new FastpathError("usage", `\`${option}\` '${s}' is not an OUI (three bytes like 00:c0:17) or any`);
  }
  return new Uint8Array(parts.map((p) => parseInt(p, 16)));
}
