/**
 * The JSON contract: docs/json.md documents every `type` the CLI prints and every key of each; this
 * reads those tables and checks objects against them. tests/helpers.ts runs every JSON line the CLI
 * tests produce through `checkJsonLine`, so output and documentation cannot drift apart.
 */

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
