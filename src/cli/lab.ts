/** `fastpath lab up|down|run`: a throw-away two-namespace veth lab, and real ITO traffic through it. */
import { FastpathError } from "../../ffi/error.ts";
import { pct, table, us } from "../format.ts";
import { labDown, labNames, labUp } from "../lab.ts";
import { type LabResult, startLabCase } from "../labrun.ts";
import { Probe, probeNotes } from "../probe.ts";
import { parseRate, parseSizes, rateText } from "../parse.ts";
import { command, formatOption, num, Option, setExit, text } from "./flags.ts";
import { emit } from "./json.ts";
import { type Board, Dashboard, dashboardWanted } from "./dashboard.ts";
import { interruptedExit, monitor, summaryText, untilSignal } from "./monitor.ts";
import { PROBE_HEADER, probeRow, probeSections } from "./probe.ts";
import { reflectorFlags, reflectorMode, reflectorSections } from "./reflect.ts";
import { Reflector, type ReflectorInfo } from "../reflector.ts";
import { socketName, startStats, type Stats, statsOptions, statsPlan } from "./stats.ts";

const [statsSocket, noStatsSocket, http, httpAllowRemote] = statsOptions("lab-PREFIX");

/** What `lab run` does unless told otherwise. */
export const LAB_DEFAULTS = { prefix: "fp", sizes: "min,1518,9000", rate: "20kpps", durationS: 2 } as const;

const prefixOption = () =>
  text("prefix", "prefix of the namespace and interface names", "NAME").default(LAB_DEFAULTS.prefix);

function label(r: LabResult): string {
  return `${r.mode} ${r.case.size}B${r.case.vlan ? ` vlan${r.case.vlan}` : ""}${r.case.ipv6 ? " ipv6" : ""}`;
}

function rows(results: LabResult[]): string {
  return table(
    // The worker thread's own CPU time is exact at any rate; the whole-core figure (deno task bench)
    // is only meaningful at high rates, where other processes on that core do not dominate it.
    [...PROBE_HEADER, "worker CPU/frame"],
    results.map((r) => [
      ...probeRow(label(r), r.probe),
      r.workerNsPerFrame === null ? "-" : `${Math.round(r.workerNsPerFrame)} ns`,
    ]),
  );
}

const up = command("up", {
  summary: "create the lab's namespaces and veth pair",
  usage: "[flags]",
  description: "",
  examples: [],
})
  .addOption(prefixOption())
  .addOption(formatOption())
  .action(async (f) => {
    const lab = await labUp({ prefix: f.prefix, owner: "lab up" });
    if (f.format === "json") emit("lab_up", { ...lab, kept: lab.kept === true });
    else {
      console.error(
        `lab up: ${lab.reflectorNs}/${lab.reflectorIf} ${lab.reflectorIp} (${lab.reflectorMac}) <-> ${lab.probeNs}/${lab.probeIf} ${lab.probeIp} (${lab.probeMac})${
          lab.kept ? " was up already: kept as it is" : ""
        }`,
      );
      console.error(`  reflect: sudo fastpath reflect ${lab.reflectorIf} --netns ${lab.reflectorNs}`);
      console.error(`  probe:   sudo fastpath probe ${lab.probeIf} --netns ${lab.probeNs} --to ${lab.reflectorIp}`);
      console.error(
        `  remove:  sudo fastpath lab down${f.prefix !== LAB_DEFAULTS.prefix ? ` --prefix ${f.prefix}` : ""}`,
      );
    }
    setExit(0);
  });

const down = command("down", { summary: "remove the lab", usage: "[flags]", description: "", examples: [] })
  .addOption(prefixOption())
  .addOption(formatOption())
  .action(async (f) => {
    const removed = await labDown({ prefix: f.prefix });
    if (f.format === "json") emit("lab_down", { removed });
    else console.error(removed.length ? `removed ${removed.join(", ")}` : "no lab to remove");
    setExit(0);
  });

const run = command("run", {
  summary: "reflect real ITO traffic through the lab for each size, and print what came back",
  usage: "[flags]",
  description: "",
  examples: [],
})
  .addOption(prefixOption())
  .addOption(
    text(
      "size",
      "comma list of frame sizes (64 … 9018), min (the smallest the headers fit: 64, 68 with --vlan, 84 with --ipv6) or imix",
      "LIST",
    ).default(LAB_DEFAULTS.sizes),
  )
  .addOption(text("rate", "rate per run (see probe --rate)", "RATE").default(LAB_DEFAULTS.rate))
  .addOption(num("duration-s", "seconds per size").default(LAB_DEFAULTS.durationS))
  .addOption(reflectorFlags.swap())
  .addOption(reflectorFlags.profile())
  .addOption(reflectorFlags.mode())
  .addOption(num("vlan", "send VLAN-tagged frames with this ID"))
  .addOption(new Option("--ipv6", "test over IPv6 instead of IPv4"))
  .addOption(reflectorFlags.coalesceUs())
  .addOption(reflectorFlags.nice("the reflector's workers"))
  .addOption(formatOption())
  .addOption(statsSocket)
  .addOption(noStatsSocket)
  .addOption(http)
  .addOption(httpAllowRemote)
  .action(async (f) => {
    const json = f.format === "json";
    const sizes = parseSizes(f.size, "size");
    const plan = statsPlan(f, socketName("lab", f.prefix));
    const results: LabResult[] = [];
    const names = labNames({ prefix: f.prefix });
    const cases = sizes.map((size) => ({
      size,
      rate: f.rate,
      durationS: f.durationS,
      swap: f.swap,
      profile: f.profile,
      mode: f.mode,
      vlan: f.vlan,
      ipv6: f.ipv6 === true,
      coalesceUs: f.coalesceUs,
      nice: f.nice,
    }));
    // Every case's options, the reflector's and the probe's, are checked before the lab is built.
    for (const c of cases) {
      await Reflector.check({ ...c, iface: names.reflectorIf, netns: names.reflectorNs });
      await Probe.check({ ...c, iface: names.probeIf, to: c.ipv6 ? names.reflectorIp6 : names.reflectorIp });
    }
    const stop = untilSignal();
    const interruptedBy = () => stop.abort.aborted ? String(stop.abort.reason) : undefined;
    /** A failure after a signal is the signal's doing (Ctrl-C reaches every `ip` of the setup too). */
    const interruptedSetup = (err: unknown, what: string): number => {
      const signal = interruptedBy();
      if (!signal) throw err;
      console.error(`lab run: interrupted by ${signal} while ${what}: nothing more was measured`);
      return interruptedExit(signal);
    };
    let lab;
    try {
      // Outside the try below: a lab this run did not build is never removed by it.
      lab = await labUp({ prefix: f.prefix, owner: "lab run" });
    } catch (err) {
      stop.dispose();
      return setExit(interruptedSetup(err, "building the lab"));
    }
    // Once the lab is there: a refusal (busy, privilege) comes alone.
    if (!json) {
      console.error(
        `lab: ${names.reflectorNs} <-> ${names.probeNs}, ${sizes.join("/")}-byte frames, ${f.durationS} s each`,
      );
    }
    let setupExit: number | undefined;
    let stats: Stats | null = null;
    // One dashboard for every size: the screen stays up between them instead of flashing.
    const dashboard = !json && dashboardWanted() ? new Dashboard() : undefined;
    // The listeners go last, after the summary: with none left a second Ctrl-C or Ctrl-\ kills the
    // process at once - mid-cleanup it left the lab, after it the summary and the exit code.
    try {
      try {
        // After the lab: a lab another run holds is refused for that, naming its holder.
        stats = await startStats(plan, { command: "lab run", intervalMs: 1000, families: ["reflector", "probe"] });
        for (const c of cases) {
          if (interruptedBy()) break;
          const running = await startLabCase(lab, c, { signal: stop.abort }).catch((err) => {
            setupExit = interruptedSetup(err, `starting the ${c.size}-byte run`);
          });
          if (!running) break;
          await using _ = running;
          const size = running.probe.options.size;
          stats?.core.label({
            reflectorIface: lab.reflectorIf,
            mode: running.reflector.info.mode,
            probeIface: lab.probeIf,
          });
          const end = await monitor({
            json,
            intervalMs: 1000,
            stop: stop.promise,
            sample: () => ({ probe: running.probe.report(), reflector: running.reflector.stats() }),
            line: ({ probe: p }) =>
              `${size}B: sent ${p.sent} received ${p.received} loss ${pct(p.lossPct)} rtt p50 ${
                p.rttUs ? us(p.rttUs.p50) : "-"
              }`,
            interval: ({ probe: p, reflector: r }) => [
              "lab_interval",
              { size, probe: { type: "probe_report", ...p }, reflector: { type: "reflector_counters", ...r } },
            ],
            board: (now, prev, dt) => ({
              ...labBoard(names, size, running.reflector.info),
              sections: [
                ...probeSections(now.probe, prev.probe, dt),
                ...reflectorSections(now.reflector, prev.reflector, dt),
              ],
              progress: {
                done: now.probe.elapsedS,
                total: f.durationS,
                label: `size ${results.length + 1} of ${cases.length}`,
              },
            }),
            dashboard,
            wait: async (ms) => (await running.probe.wait(ms)) ? "done" : undefined,
            observe: stats ? (type, obj) => stats!.core.observe(type, obj) : undefined,
          });
          if (end !== "done") running.stop();
          const r = await running.done();
          results.push(r);
          if (json) emit("lab_result", labResultJson(r));
        }
      } finally {
        for (const text of dashboard?.close() ?? []) console.error(text);
        stats?.close();
        await labDown(lab);
      }
      const signal = interruptedBy();
      const bad = results.reduce((n, r) => n + r.probe.badRewrite, 0);
      if (json) emit("lab_summary", { runs: results.length, badRewrite: bad, interrupted: signal !== undefined });
      else if (results.length) {
        summaryText(rows(results));
        // What the table cannot show: a sender that stalled or fell short of its rate, loss on this host.
        for (const r of results) {
          for (const note of probeNotes(r.probe, r.ratePps)) summaryText(`${label(r)}: ${note}`);
        }
        summaryText(
          bad === 0
            ? "every reflection came back with exactly the expected fields swapped"
            : `${bad} reflections had wrong bytes`,
        );
      }
      if (signal) {
        if (results.length) {
          if (!json) {
            summaryText(
              `interrupted by ${signal} after ${results.length} of ${cases.length} sizes: these numbers are partial, not a finished run`,
            );
          }
        } else if (setupExit === undefined) {
          console.error(`lab run: interrupted by ${signal} before the first run: nothing was measured`);
        }
        return setExit(interruptedExit(signal));
      }
      if (bad > 0) throw new FastpathError("failed", `${bad} reflections were rewritten wrongly`);
      setExit(0);
    } finally {
      stop.dispose();
    }
  });

/**
 * The head of lab run's board: its title, and the reflector's mode and why. The library's reason may
 * add that `cpu` and `workers` are left unused in xdp mode: lab run places the workers itself and has
 * no such flags, so that part is not shown.
 */
export function labBoard(names: { reflectorNs: string; probeNs: string }, size: number | string, info: ReflectorInfo) {
  const [mode, why] = reflectorMode(info);
  return {
    title: `lab run ${names.reflectorNs} <-> ${names.probeNs}: ${size}-byte frames`,
    mode: [
      mode,
      why.replace(/; it has no worker threads, so --cpu and --workers left unused.*$/, "")
        .replace("--cpu, --workers and --coalesce-us left unused", "--coalesce-us left unused"),
    ],
  } satisfies Omit<Board, "sections">;
}

/** A lab result as JSON: its case with the rate as given, the probe's report and the reflector's counters typed. */
function labResultJson(r: LabResult): Record<string, unknown> {
  return {
    ...r,
    case: {
      type: "lab_case",
      ...r.case,
      rate: rateText(parseRate(r.case.rate)),
      vlan: r.case.vlan ?? null,
      coalesceUs: r.case.coalesceUs ?? null,
    },
    probe: { type: "probe_report", ...r.probe },
    reflector: { type: "reflector_counters", ...r.reflector },
  };
}

export const lab = command("lab", {
  summary: "a two-namespace veth lab with the reflector on one side and the probe on the other",
  usage: "up|down|run [flags]",
  description: `up: creates namespaces PREFIX-refl and PREFIX-probe joined by veth PREFIX-r0 <-> PREFIX-p0
    (198.18.0.1 / 198.18.0.2, 2001:2::1 / 2001:2::2, MTU 9000; the probe's MAC has NetAlly's OUI).
down: removes what lab up built. run: brings its own lab up, reflects real ITO traffic for each --size,
    prints a table of what came back, and removes that lab again on every exit path (Ctrl-C, Ctrl-\\,
    SIGTERM and SIGHUP included). A lab in use (a reflector in it, a running lab run), one lab up built (for lab
    run) and namespaces no fastpath lab made are refused with exit 7 naming the holder: stop it, or
    choose another --prefix.
Traffic never leaves the veth pair.`,
  examples: [
    "sudo fastpath lab run",
    "sudo fastpath lab run --size 64,1518,9000 --rate 100kpps --duration-s 5",
    "sudo fastpath lab run --swap all --format json",
    "sudo fastpath lab run --mode afxdp --coalesce-us 0 --size 64 --rate 200kpps   # no coalescing even under load",
    "sudo fastpath lab up && sudo ip netns exec fp-refl ip -br addr && sudo fastpath lab down",
  ],
})
  .addCommand(up)
  .addCommand(down)
  .addCommand(run);
