/** The JSON contract's checker itself: it reads docs/json.md and refuses what the documentation does not say. */
import assert from "node:assert/strict";
import { checkJsonLine, checkObject, documentedShapes } from "./json_contract.ts";

const SHAPES = documentedShapes();

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
      in_flight: 0,
      loss_pct: 0,
      duplicates: 0,
      reordered: 0,
      bad_rewrite: 0,
      foreign: 0,
      tx_errors: 0,
      rx_ring_drops: 0,
      tx_slipped: 0,
      tx_late_max_ms: 0,
      host_rx_dropped: null,
      link_rx_dropped: null,
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
