/**
 * The CLI's JSON output: one object per line, each with a `type` (documented in docs/json.md, where a
 * test checks every line the CLI tests print), keys in snake_case with units in their names. API
 * objects are camelCase (`lossPct`); their JSON keys are the same names in snake case (`loss_pct`).
 */
import { snake } from "../../ffi/error.ts";

/** Nested objects of API results and the type they carry in JSON. */
const NESTED: Record<string, string> = { rtt_us: "rtt_summary", umem: "umem_audit" };

/** `obj` with snake_case keys, recursively, and `type` first. */
export function toJson(type: string, obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { type };
  for (const [k, v] of Object.entries(obj)) {
    if (k === "type" || v === undefined) continue;
    const key = snake(k);
    out[key] = convert(key, v);
  }
  return out;
}

function convert(key: string, v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v)) return v.map((x) => convert(key, x));
  if (v && typeof v === "object" && !(v instanceof Uint8Array)) {
    const o = v as Record<string, unknown>;
    return toJson(typeof o.type === "string" ? o.type : NESTED[key] ?? key, o);
  }
  return v;
}

/** Prints one JSON line of `type`. */
export function emit(type: string, obj: Record<string, unknown>): void {
  console.log(JSON.stringify(toJson(type, obj)));
}
