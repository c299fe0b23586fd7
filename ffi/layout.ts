/**
 * Struct offsets and enum values, read from the library itself (`fp_layout_json`), so TypeScript
 * never hard-codes an offset. Structs going in are built with `StructBuilder`; structs coming out
 * are read through live typed arrays over native memory.
 */
import { type EnumKey, type EnumName, ENUMS } from "./enums.ts";
import { FastpathError, snake } from "./error.ts";

export interface FieldSpec {
  offset: number;
  type: string;
  /** The library's range of meaning for a knob (abi.zig sched_limits, detect_limits), when it has one. */
  range?: [number, number];
  /** 0 is allowed besides `range` (watchdogMs: the kernel's default). */
  or_zero?: boolean;
}
export interface StructSpec {
  size: number;
  align: number;
  fields: Record<string, FieldSpec>;
}
export interface LayoutJson {
  abi_version: number;
  hist_sub_bits: number;
  hist_buckets: number;
  structs: Record<string, StructSpec>;
  enums: Record<string, Record<string, number>>;
}

export class Layout {
  constructor(readonly json: LayoutJson) {}

  /** The value of an enumerator TypeScript knows (ffi/enums.ts), checked against the library at load. */
  value<E extends EnumName>(name: E, key: EnumKey<E>): number {
    return this.enumValue(name, key);
  }

  /** The name of an enum value; a value the library added without TypeScript knowing is an error. */
  key<E extends EnumName>(name: E, value: number): EnumKey<E> {
    const k = this.enumName(name, value);
    if (k === undefined || !(ENUMS[name] as readonly string[]).includes(k)) {
      throw new Error(`enum ${name} has no value ${value} that TypeScript knows`);
    }
    return k as EnumKey<E>;
  }

  struct(name: string): StructSpec {
    const s = this.json.structs[name];
    if (!s) throw new Error(`the library does not describe struct ${name}`);
    return s;
  }

  field(struct: string, field: string): FieldSpec {
    const f = this.struct(struct).fields[field];
    if (!f) throw new Error(`struct ${struct} has no field ${field}`);
    return f;
  }

  enumValue(name: string, key: string): number {
    const v = this.json.enums[name]?.[key];
    if (v === undefined) throw new Error(`enum ${name} has no value ${key}`);
    return v;
  }

  enumName(name: string, value: number): string | undefined {
    return Object.entries(this.json.enums[name] ?? {}).find(([, v]) => v === value)?.[0];
  }

  /** The names of all u64 fields of a struct, in offset order (counter blocks). */
  u64Fields(struct: string): Array<[string, number]> {
    return Object.entries(this.struct(struct).fields)
      .filter(([, f]) => f.type === "u64")
      .map(([name, f]) => [name, f.offset / 8] as [string, number])
      .sort((a, b) => a[1] - b[1]);
  }

  builder(struct: string): StructBuilder {
    return new StructBuilder(this.struct(struct), struct);
  }

  /** Lower bound in ns of an RTT histogram bucket (mirrors abi.histLower in Zig). */
  histLower(i: number): number {
    const sub = 1 << this.json.hist_sub_bits;
    if (i < sub) return i;
    const e = Math.floor(i / sub) - 1 + this.json.hist_sub_bits;
    return (sub + (i % sub)) * 2 ** (e - this.json.hist_sub_bits);
  }
}

/** Fills a struct's bytes field by field, checking names and ranges. */
export class StructBuilder {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;

  constructor(readonly spec: StructSpec, readonly name: string) {
    this.bytes = new Uint8Array(spec.size);
    this.#view = new DataView(this.bytes.buffer);
  }

  #field(name: string): FieldSpec {
    const f = this.spec.fields[name];
    if (!f) throw new Error(`struct ${this.name} has no field ${name}`);
    return f;
  }

  /**
   * Sets a numeric field. A value the field's C type cannot hold (a fraction, a negative number in an
   * unsigned field, too large) is refused, naming the option as the scripting API spells it: ranges
   * of meaning are the library's to check, but nothing is silently truncated on the way there.
   * `scaled` is the option's own value when the field holds it in a smaller unit (`drainMs` 500 as
   * `drain_ns` 500e6, per 1e6): the refusal then speaks in the option's unit.
   */
  set(
    name: string,
    value: number | bigint | boolean,
    option: string = camel(name),
    scaled?: { value: number; per: number },
  ): this {
    const f = this.#field(name);
    const v = typeof value === "boolean" ? Number(value) : value;
    const range = f.range ? [BigInt(f.range[0]), BigInt(f.range[1])] as const : INT_RANGES[f.type];
    if (range) {
      const inRange = typeof v === "bigint"
        ? v >= range[0] && v <= range[1]
        : Number.isInteger(v) && BigInt(v) >= range[0] && BigInt(v) <= range[1];
      const ok = inRange || (f.or_zero === true && v === 0);
      if (!ok && scaled) {
        const max = Number(range[1] / BigInt(scaled.per));
        throw new FastpathError(
          "invalid_argument",
          `\`${option}\` must be from ${Number(range[0]) / scaled.per} to ${max}, not ${scaled.value}`,
        );
      }
      if (!ok) {
        // A knob's range in the library's own words (sched.zig, detect.zig), whichever side refuses it.
        const span = `${f.or_zero ? "0 or " : ""}${range[0]} to ${range[1]}`;
        const whole = f.range && Number.isInteger(v) ? "" : f.or_zero ? "a whole number, " : "a whole number from ";
        throw new FastpathError("invalid_argument", `\`${option}\` must be ${whole}${span}, not ${value}`);
      }
    }
    const o = f.offset;
    switch (f.type) {
      case "u8":
        this.#view.setUint8(o, Number(v));
        break;
      case "i8":
        this.#view.setInt8(o, Number(v));
        break;
      case "u16":
        this.#view.setUint16(o, Number(v), true);
        break;
      case "i16":
        this.#view.setInt16(o, Number(v), true);
        break;
      case "u32":
        this.#view.setUint32(o, Number(v), true);
        break;
      case "i32":
        this.#view.setInt32(o, Number(v), true);
        break;
      case "u64":
        this.#view.setBigUint64(o, BigInt(v), true);
        break;
      default:
        throw new Error(`field ${this.name}.${name} is ${f.type}, not a number`);
    }
    return this;
  }

  /** Sets a `u8[N]` field from bytes, or from a string (NUL-padded; must leave room for the NUL). */
  setBytes(name: string, value: Uint8Array | string, option: string = camel(name)): this {
    const f = this.#field(name);
    const m = /^u8\[(\d+)\]$/.exec(f.type);
    if (!m) throw new Error(`field ${this.name}.${name} is ${f.type}, not bytes`);
    const cap = Number(m[1]);
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
    const limit = typeof value === "string" ? cap - 1 : cap;
    if (bytes.length > limit) {
      throw new FastpathError("invalid_argument", `\`${option}\` is longer than ${limit} bytes`);
    }
    this.bytes.fill(0, f.offset, f.offset + cap);
    this.bytes.set(bytes, f.offset);
    return this;
  }

  /** Copies a nested struct (built separately) into field `name`. */
  setStruct(name: string, inner: StructBuilder): this {
    const f = this.#field(name);
    this.bytes.set(inner.bytes, f.offset);
    return this;
  }
}

const INT_RANGES: Record<string, [bigint, bigint]> = {
  u8: [0n, 255n],
  i8: [-128n, 127n],
  u16: [0n, 65535n],
  i16: [-32768n, 32767n],
  u32: [0n, 4294967295n],
  i32: [-2147483648n, 2147483647n],
  u64: [0n, 18446744073709551615n],
};

/** The NUL-terminated text of a `u8[N]` field at `offset` of `bytes` (`type` is the field's layout type). */
export function textAt(bytes: Uint8Array, offset: number, type: string): string {
  const raw = bytes.subarray(offset, offset + Number(/\[(\d+)\]/.exec(type)?.[1] ?? 0));
  const end = raw.indexOf(0);
  return new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end));
}

/**
 * Every field of struct `name` at `offset` of `bytes`: integers as numbers (u64 too: counters and
 * nanosecond times stay below 2^53), `u8[N]` as text, a nested struct as an object.
 */
export function readStruct(layout: Layout, name: string, bytes: Uint8Array, offset = 0): Record<string, unknown> {
  const spec = layout.struct(name);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, unknown> = {};
  for (const [field, f] of Object.entries(spec.fields)) {
    const o = offset + f.offset;
    switch (f.type) {
      case "u8":
        out[field] = view.getUint8(o);
        break;
      case "u16":
        out[field] = view.getUint16(o, true);
        break;
      case "u32":
        out[field] = view.getUint32(o, true);
        break;
      case "i32":
        out[field] = view.getInt32(o, true);
        break;
      case "u64":
        out[field] = Number(view.getBigUint64(o, true));
        break;
      default:
        if (/^u8\[\d+\]$/.test(f.type)) out[field] = textAt(bytes, o, f.type);
        else if (f.type.startsWith("abi.")) out[field] = readStruct(layout, f.type.slice(4), bytes, o);
        else throw new Error(`field ${name}.${field} is ${f.type}: readStruct cannot read it`);
    }
  }
  return out;
}

/** "slice_min_us" → "sliceMinUs" (the inverse of `snake`, for messages about a struct field). */
function camel(field: string): string {
  return field.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Sets each of `options` (API spelling) into the field of the same name in snake case. */
export function setAll(b: StructBuilder, options: Record<string, number | boolean>): StructBuilder {
  for (const [k, v] of Object.entries(options)) b.set(snake(k), v, k);
  return b;
}

/** A live read-only view of a native struct of u64 counters. */
export class CounterView<K extends string = string> {
  readonly #words: BigUint64Array;
  readonly #index: Map<string, number>;

  constructor(pointer: Deno.PointerObject, byteLength: number, fields: Array<[string, number]>) {
    this.#words = new BigUint64Array(Deno.UnsafePointerView.getArrayBuffer(pointer, byteLength));
    this.#index = new Map(fields);
  }

  get(name: K): number {
    const i = this.#index.get(name);
    if (i === undefined) throw new Error(`no counter ${name}`);
    return Number(this.#words[i]);
  }

  word(i: number): number {
    return Number(this.#words[i]);
  }

  /** A snapshot of every named counter. */
  snapshot(): Record<K, number> {
    const out = {} as Record<K, number>;
    for (const [name, i] of this.#index) out[name as K] = Number(this.#words[i]);
    return out;
  }
}
