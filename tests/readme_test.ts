/**
 * The README against the code it documents, so neither drifts: its exit-code table is the one
 * `--help` prints, its troubleshooting table has every check `doctor` can print with the fix doctor
 * gives, and its metric table names exactly the metrics the stats socket serves.
 */
import assert from "node:assert/strict";
import { ROOT } from "./helpers.ts";
import { EXIT_HELP } from "../src/cli/flags.ts";
import { StatsCore } from "../src/stats/core.ts";
import { SCHED_COUNTERS } from "../src/stats/metrics.ts";

const readme = Deno.readTextFileSync(`${ROOT}/README.md`);

/** The README's section under `## title`, up to the next `## `. */
function section(title: string): string {
  const at = readme.indexOf(`\n## ${title}\n`);
  assert.ok(at >= 0, `README has no "## ${title}" section`);
  const end = readme.indexOf("\n## ", at + 1);
  return readme.slice(at, end < 0 ? undefined : end);
}

/** The cells of a section's table rows (header and rule left out). */
function rows(text: string): string[][] {
  return text.split("\n").filter((l) => l.startsWith("| ")).slice(1)
    .map((l) => l.slice(2, -2).split(" | ").map((c) => c.trim()));
}

Deno.test("the README", async (t) => {
  await t.step("its exit-code table is the one --help prints, row for row", () => {
    const help = EXIT_HELP.split("\n").slice(1).map((l) => {
      const m = /^\s+(\d+)\s+(.*)$/.exec(l);
      assert.ok(m, `an exit-code line of --help: '${l}'`);
      return [m[1], m[2]];
    });
    assert.deepEqual(rows(section("Exit codes")), help);
  });

  await t.step("its troubleshooting table has every check doctor has, and every fix doctor prints", () => {
    const table = section("Troubleshooting");
    const firsts = rows(table).map((r) => r[0]);
    for (const file of ["src/doctor.ts", "src/doctor_iface.ts"]) {
      const src = Deno.readTextFileSync(`${ROOT}/${file}`);
      const names = [...src.matchAll(/\bname(?::|\s*=)\s*"([^"]+)"/g)].map((m) => m[1]);
      assert.ok(names.length > 3, `check names found in ${file}`);
      for (const name of names) {
        assert.ok(firsts.some((c) => c.includes(`\`${name}\``) || c.includes(` ${name}\``)), `no row for ${name}`);
      }
      // A fix is every string the `fix:` expression can give (comparisons such as === "darwin" left out).
      for (const m of src.matchAll(/\bfix: ([\s\S]*?),\n\s*(?:\w+:|\}|\))/g)) {
        for (const lit of m[1].matchAll(/(["`])(.*?)\1/g)) {
          if (/[=!]==\s*$/.test(m[1].slice(0, lit.index))) continue;
          const pattern = lit[2].split(/\$\{[^}]*\}/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("\\S+");
          assert.match(table, new RegExp(pattern), `the fix '${lit[2]}' (${file}) is in the table`);
        }
      }
    }
  });

  await t.step("its metric table names the metrics /metrics serves, each with its type", async () => {
    const core = new StatsCore({ command: "lab run", intervalMs: 1000, families: ["reflector", "probe", "sched"] });
    const body = (await core.get("/metrics")).body;
    const served = [...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]).sort();
    const documented = rows(section("Metrics")).filter((r) => /^`fastpath_/.test(r[0])).flatMap(([name, type]) => {
      const n = name.replaceAll("`", "");
      return n === "fastpath_sched_COUNTER_total"
        ? SCHED_COUNTERS.map(([c]) => [`fastpath_sched_${c}_total`, type])
        : [[n, type]];
    }).sort();
    assert.deepEqual(documented, served);
  });
});
