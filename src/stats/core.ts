/**
 * The stats core: what a running command's stats listener answers, from the latest interval the
 * live-monitor loop handed it. GET /health, GET /stats (JSON, docs/json.md `stats_health`, `stats`),
 * GET /metrics (Prometheus text, src/stats/metrics.ts) and, for `sched run`, scx_stats requests.
 */
import { toJson } from "../cli/json.ts";
import { clean, type Family, type Json, metricsRegistry } from "./metrics.ts";
import { scxAnswer } from "./scx.ts";
import type { Answer, StatsHandler } from "./server.ts";
import type { Registry } from "prom-client";
import denoJson from "../../deno.json" with { type: "json" };

/** The version the metrics and /stats report (the package's). */
const VERSION: string = denoJson.version;

export interface StatsContext {
  /** The command as typed: `reflect`, `probe`, `lab run`, `sched run`. */
  command: string;
  intervalMs: number;
  families: Family[];
}

/** Labels of what runs now (a lab run's reflector changes mode from case to case). */
export interface StatsLabels {
  reflectorIface?: string | null;
  mode?: string | null;
  probeIface?: string | null;
}

export class StatsCore implements StatsHandler {
  readonly #ctx: StatsContext;
  readonly #startedMs = Date.now();
  readonly #registry: Registry;
  #latest: Json | null = null;
  #latestAt = 0;
  #latestS: number | null = null;
  #labels = { reflectorIface: null as string | null, mode: null as string | null, probeIface: null as string | null };

  constructor(ctx: StatsContext) {
    this.#ctx = ctx;
    this.#registry = metricsRegistry(
      { interval: () => this.#latest, timeS: () => this.#latestS, labels: () => this.#labels },
      { command: ctx.command, version: VERSION },
      ctx.families,
    );
  }

  /** What runs now: the labels of the metrics that follow. */
  label(l: StatsLabels): void {
    this.#labels = { ...this.#labels, ...l };
  }

  /** The monitor loop's hook: an interval object (API names), as its JSON line would carry it. */
  observe(type: string, obj: Record<string, unknown>): void {
    this.#latest = cleanAll(toJson(type, obj)) as Json;
    this.#latestS = Date.now() / 1000;
    this.#latestAt = performance.now();
  }

  /** The `stats` object: the command, what runs and the latest interval. */
  stats(): Json {
    return {
      type: "stats",
      command: this.#ctx.command,
      version: VERSION,
      started_s: this.#startedMs / 1000,
      interface: this.#labels.reflectorIface ?? this.#labels.probeIface,
      mode: this.#labels.mode,
      interval_ms: this.#ctx.intervalMs,
      time_s: this.#latestS,
      interval: this.#latest,
    };
  }

  /** The `stats_health` object: `ok`, `starting` (no interval yet) or `stale` (none for 3 intervals). */
  health(): Json {
    // Whole milliseconds over 1000: seconds without binary noise.
    const ageS = this.#latest ? Math.round(performance.now() - this.#latestAt) / 1000 : null;
    const staleS = (3 * this.#ctx.intervalMs) / 1000 + 1;
    return {
      type: "stats_health",
      status: ageS === null ? "starting" : ageS > staleS ? "stale" : "ok",
      command: this.#ctx.command,
      uptime_s: (Date.now() - this.#startedMs) / 1000,
      last_interval_age_s: ageS,
    };
  }

  async get(path: string): Promise<Answer> {
    const json = (status: number, o: Json): Answer => ({
      status,
      contentType: "application/json",
      body: JSON.stringify(o) + "\n",
    });
    switch (path) {
      case "/health": {
        const h = this.health();
        return json(h.status === "stale" ? 503 : 200, h);
      }
      case "/stats":
        return json(200, this.stats());
      case "/metrics":
        return { status: 200, contentType: this.#registry.contentType, body: await this.#registry.metrics() };
      default:
        return { status: 404, contentType: "text/plain", body: "not found: GET /health, /stats or /metrics\n" };
    }
  }

  scx(line: string): string {
    return scxAnswer(line, this.#latest, this.#ctx.command);
  }
}

/** Every number in `v` without binary noise (metrics.ts `clean`): an interval as /stats serves it. */
function cleanAll(v: unknown): unknown {
  if (typeof v === "number") return clean(v);
  if (Array.isArray(v)) return v.map(cleanAll);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cleanAll(x)]));
  return v;
}
