/**
 * The scx_stats protocol (sched-ext/scx, rust/scx_stats), so the tools desktop users already have for
 * sched_ext schedulers can read fastpath's: one JSON request per line, `{"req":"stats"}` (optional
 * `"args":{"target":"top"}`) or `{"req":"stats_meta"}`, each answered by one line
 * `{"errno":0,"args":{"resp":…}}`; an error is a non-zero errno (EINVAL) with a message as `resp`.
 */
import { type Json, SCHED_COUNTERS } from "./metrics.ts";

const EINVAL = 22;

/** The one stats struct fastpath serves: the scheduler's counters of the latest interval. */
const STRUCT = "fastpath_sched";

/** scx_stats' description of STRUCT: its fields, their kinds and what they count. */
export function statsMeta(): Json {
  const fields: Json = {};
  for (const [k, desc] of SCHED_COUNTERS) fields[k] = { datum: "u64", desc };
  fields.busy_ns = { datum: "u64", desc: "time CPUs spent running tasks fastpath schedules, ns" };
  fields.util_pct = { datum: "u64", desc: "utilisation of the last 100 ms, % of all CPUs" };
  fields.busy = { datum: "u64", desc: "1 while utilisation is above the busy watermark" };
  fields.nr_cpus = { datum: "u64", desc: "CPUs scheduled" };
  fields.nr_llcs = { datum: "u64", desc: "last-level caches among them" };
  fields.time_s = { datum: "float", desc: "Unix time of the interval these numbers are from, s" };
  fields.interval_s = { datum: "float", desc: "seconds the interval lasted" };
  return { [STRUCT]: { name: STRUCT, top: "true", desc: "the fastpath sched_ext scheduler's counters", fields } };
}

/**
 * The answer line (without its newline) to one request line; `latest` is the latest sched_interval, and
 * `command` the command serving (only `sched run` has scheduler counters).
 */
export function scxAnswer(line: string, latest: Json | null, command: string): string {
  const reply = (errno: number, resp: unknown) => JSON.stringify({ errno, args: { resp } });
  let req: { req?: unknown; args?: Record<string, unknown> };
  try {
    req = JSON.parse(line);
  } catch (err) {
    return reply(EINVAL, `not a JSON request: ${(err as Error).message}`);
  }
  if (command !== "sched run") {
    return reply(
      EINVAL,
      `this is ${command}'s stats socket: scx_stats requests are for sched run's (GET /metrics here)`,
    );
  }
  if (req?.req === "stats_meta") return reply(0, statsMeta());
  if (req?.req !== "stats") {
    return reply(EINVAL, `unknown request ${JSON.stringify(req?.req)}: use stats or stats_meta`);
  }
  const target = req.args?.target ?? "top";
  if (target !== "top" && target !== STRUCT) return reply(EINVAL, `unknown stats target ${JSON.stringify(target)}`);
  if (!latest || latest.type !== "sched_interval") {
    return reply(EINVAL, "no scheduler counters yet: the first interval has not ended");
  }
  const { type: _, ...counters } = latest;
  return reply(0, counters);
}
