/**
 * The JSON contract: docs/json.md documents every `type` the CLI prints and every key of each; this
 * reads those tables and checks objects against them. tests/helpers.ts runs every JSON line the CLI
 * tests produce through `checkJsonLine`, so output and documentation cannot drift apart.
 */
import assert from "node:assert/strict";

interface Shape {
  keys: Map<string, string>;
  includes: string[];
}

/** Every documented type and its shape, from docs/json.md. */
export function documentedShapes(doc = Deno.readTextFileSync(new URL("../docs/json.md", import.meta.url))) {
  const shapes = new Map<string, Shape>();
  const sections = doc.split(/^### `([a-z0-9_]+)`$/m);
  for (let i = 1; i < sections.length; i += 2) {
    const name = sections[i];
    const body = sections[i + 1].split(/^## /m)[0];
    if (shapes.has(name)) throw new Error(`docs/json.md documents ${name} twice`);
    const keys = new Map<string, string>();
    for (const line of body.split("\n")) {
      const cells = line.split(/(?<!\\)\|/).map((c) => c.trim());
      const key = /^`([a-z0-9_]+)`$/.exec(cells[1] ?? "")?.[1];
      if (!key) continue;
      keys.set(key, cells[2].replaceAll("\\|", "|"));
    }
    const includes = [...body.matchAll(/[Ee]very key of `([a-z0-9_]+)`/g)].map((m) => m[1]);
    shapes.set(name, { keys, includes });
  }
  return shapes;
}

const SHAPES = documentedShapes();

function keysOf(type: string, shapes = SHAPES): Map<string, string> {
  const s = shapes.get(type);
  if (!s) throw new Error(`type '${type}' is not documented in docs/json.md`);
  const all = new Map(s.keys);
  for (const inc of s.includes) for (const [k, v] of keysOf(inc, shapes)) all.set(k, v);
  return all;
}

function kindOk(kind: string, v: unknown, where: string, shapes: Map<string, Shape>): void {
  if (kind.endsWith("?")) {
    if (v === null) return;
    kind = kind.slice(0, -1);
  }
  const alternatives = kind.split("|");
  const errors: string[] = [];
  for (const k of alternatives) {
    try {
      if (k.endsWith("[]")) {
        if (!Array.isArray(v)) throw new Error(`${where} is not an array`);
        v.forEach((x, i) => kindOk(k.slice(0, -2), x, `${where}[${i}]`, shapes));
      } else if (k === "string" || k === "number" || k === "boolean") {
        const is = { string: typeof v === "string", number: typeof v === "number", boolean: typeof v === "boolean" };
        if (!is[k]) throw new Error(`${where} is ${JSON.stringify(v)}, not a ${k}`);
      } else if (k === "integer") {
        if (!Number.isInteger(v)) throw new Error(`${where} is ${JSON.stringify(v)}, not an integer`);
      } else {
        checkObject(v, where, k, shapes);
      }
      return;
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  throw new Error(errors.join("; "));
}

/** Throws unless `v` is an object of a documented type (of `expected`, when given) with exactly its keys. */
export function checkObject(v: unknown, where = "object", expected?: string, shapes = SHAPES): void {
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error(`${where} is not an object`);
  const o = v as Record<string, unknown>;
  if (typeof o.type !== "string") throw new Error(`${where} has no type`);
  if (expected && o.type !== expected) throw new Error(`${where} is a ${o.type}, not a ${expected}`);
  const keys = keysOf(o.type, shapes);
  for (const k of Object.keys(o)) {
    if (k !== "type" && !keys.has(k)) {
      throw new Error(`${where} (${o.type}) has key '${k}', which docs/json.md does not document`);
    }
  }
  for (const [k, kind] of keys) {
    if (!(k in o)) throw new Error(`${where} (${o.type}) lacks documented key '${k}'`);
    kindOk(kind, o[k], `${where}.${k}`, shapes);
  }
}

/** Checks one line of `--format json` output. */
export function checkJsonLine(line: string): void {
  checkObject(JSON.parse(line), "line");
}

Deno.test("the JSON contract", async (t) => {
  await t.step("docs/json.md documents types whose nested types and inclusions exist", () => {
    assert.ok(SHAPES.size >= 20, `${SHAPES.size} types`);
    for (const [name, s] of SHAPES) {
      for (const inc of s.includes) assert.ok(SHAPES.has(inc), `${name} includes undocumented ${inc}`);
      for (const [k, kind] of s.keys) {
        assert.match(k, /^[a-z0-9_]+$/, `${name}.${k} is snake_case`);
        for (const alt of kind.replace(/\?$/, "").split("|")) {
          const base = alt.replace(/\[\]$/, "");
          assert.ok(
            ["string", "number", "integer", "boolean"].includes(base) || SHAPES.has(base),
            `${name}.${k}: unknown kind ${alt}`,
          );
        }
      }
    }
  });

  await t.step("a line of an unknown type, with an undocumented or missing key, or a wrong kind is refused", () => {
    const ok = { type: "lab_down", removed: ["fp-refl"] };
    checkObject(ok);
    assert.throws(() => checkObject({ type: "lab_gone", removed: [] }), /not documented/);
    assert.throws(() => checkObject({ ...ok, extra: 1 }), /does not document/);
    assert.throws(() => checkObject({ type: "lab_down" }), /lacks documented key 'removed'/);
    assert.throws(() => checkObject({ type: "lab_down", removed: [1] }), /not a string/);
    assert.throws(() => checkObject({ type: "umem_audit", missing: 0.5, duplicated: 0 }), /not an integer/);
    assert.throws(() => checkJsonLine(`{"removed":[]}`), /has no type/);
  });

  await t.step("nested objects are checked against their own type", () => {
    const rtt = { type: "rtt_summary", min: 1, p50: 2, p99: 3, p999: 4, max: 5, mean: 2 };
    const report = {
      state: "done",
      elapsed_s: 1,
      sent: 1,
      received: 1,
      lost: 0,
      loss_pct: 0,
      duplicates: 0,
      reordered: 0,
      bad_rewrite: 0,
      foreign: 0,
      tx_errors: 0,
      rx_ring_drops: 0,
      tx_slipped: 0,
      host_rx_dropped: null,
      tx_pps: 1,
      rx_pps: 1,
      rx_l2_mbps: 0,
      rx_wire_mbps: 0,
      tx_wire_mbps: 0,
      rtt_us: rtt,
    };
    checkObject({ type: "probe_summary", interrupted: false, ...report });
    const { p50: _, ...noP50 } = rtt;
    assert.throws(
      () => checkObject({ type: "probe_summary", interrupted: false, ...report, rtt_us: noP50 }),
      /rtt_us \(rtt_summary\) lacks documented key 'p50'/,
    );
    assert.throws(
      () =>
        checkObject({ type: "probe_summary", interrupted: false, ...report, rtt_us: { ...rtt, type: "umem_audit" } }),
      /not a rtt_summary/,
    );
  });
});
