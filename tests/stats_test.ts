/**
 * The stats socket and --http: scraped from outside while a lab run reflects real frames, parsed with a
 * Prometheus text-format parser (an npm package), checked against the run's own counters, and attacked
 * by hostile clients; the scx_stats JSON-line protocol; the flags' checks.
 */
import assert from "node:assert/strict";
import { cli, DENO, isRoot, labPrefix, ROOT, skipUnless, spawnCli, waitFor } from "./helpers.ts";
import { get, parsePrometheus, reader, scxRequests, sleep } from "./stats_client.ts";
import { checkObject } from "./json_contract.ts";
import { StatsCore } from "../src/stats/core.ts";
import { labDown, labUp } from "../src/lab.ts";
import { LIMITS, StatsServer } from "../src/stats/server.ts";
import type { FastpathError } from "../ffi/error.ts";
import { socketName, startStats, statsPlan } from "../src/cli/stats.ts";

const enc = new TextEncoder();

Deno.test("the stats socket", async (t) => {
  const tmp = await Deno.makeTempDir({ prefix: "fastpath-stats-" });
  try {
    await t.step("a sched run's socket answers scx_stats requests line by line, as scx_stats clients ask", async () => {
      const core = new StatsCore({ command: "sched run", intervalMs: 1000, families: ["sched"] });
      const server = new StatsServer(core);
      const path = `${tmp}/sched.sock`;
      await server.listenUnix(path);
      try {
        const before = await scxRequests(path, ['{"req":"stats"}']);
        assert.equal(before[0].errno, 22, "no interval yet: EINVAL with a message");
        const counters = { runs: 7, wakeups: 9, busy_ns: 1_000_000, nr_cpus: 2 };
        core.observe("sched_interval", { timeS: 1, intervalS: 1, ...counters });
        const [meta, stats, bad] = await scxRequests(path, [
          '{"req":"stats_meta"}',
          '{"req":"stats","args":{"target":"top"}}',
          '{"req":"launch"}',
        ]);
        assert.equal(meta.errno, 0);
        const structs = Object.values(meta.args.resp) as Array<{ top?: string; fields: Record<string, unknown> }>;
        const top = structs.find((s) => s.top === "true");
        assert.ok(top, `a top-level struct in ${JSON.stringify(meta)}`);
        assert.deepEqual(top.fields.runs, { datum: "u64", desc: "times any task got a CPU" });
        assert.equal(stats.errno, 0);
        assert.equal(stats.args.resp.runs, 7);
        assert.equal(stats.args.resp.busy_ns, 1_000_000);
        for (const k of Object.keys(stats.args.resp)) assert.ok(k in top.fields, `${k} is described in stats_meta`);
        assert.equal(bad.errno, 22);
        assert.match(bad.args.resp, /unknown request "launch": use stats or stats_meta/);
      } finally {
        server.close();
      }
      assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound, "the socket file is removed on close");
    });

    await t.step(
      "/health says starting, then ok, then stale (503) once the loop stops handing over intervals",
      async () => {
        const core = new StatsCore({ command: "reflect", intervalMs: 100, families: ["reflector"] });
        const server = new StatsServer(core);
        const path = `${tmp}/health.sock`;
        await server.listenUnix(path);
        try {
          const health = async () => {
            const r = await get(path, "/health");
            return { code: r.status, status: JSON.parse(r.body).status };
          };
          assert.deepEqual(await health(), { code: 200, status: "starting" });
          core.observe("reflect_interval", { timeS: 1, intervalS: 0.1 });
          assert.deepEqual(await health(), { code: 200, status: "ok" });
          await sleep(1500); // 3 intervals and a second
          assert.deepEqual(await health(), { code: 503, status: "stale" });
        } finally {
          server.close();
        }
      },
    );

    await t.step("a live socket on the path is refused as busy naming it; a stale one is replaced", async () => {
      const path = `${tmp}/busy.sock`;
      const first = new StatsServer(new StatsCore({ command: "reflect", intervalMs: 1000, families: ["reflector"] }));
      await first.listenUnix(path);
      const second = new StatsServer(new StatsCore({ command: "reflect", intervalMs: 1000, families: ["reflector"] }));
      try {
        await assert.rejects(second.listenUnix(path), (err: FastpathError) => {
          assert.equal(err.code, "busy");
          assert.equal(err.exitCode, 7);
          assert.match(
            err.message,
            new RegExp(`another program serves stats on ${path}.*choose another --stats-socket`),
          );
          return true;
        });
      } finally {
        first.close();
      }
      // A socket file nobody listens on (its program was killed: nothing removed the file) is taken over.
      const py = new Deno.Command("python3", {
        args: ["-c", "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path],
      });
      assert.equal((await py.output()).code, 0);
      assert.ok(Deno.lstatSync(path).isSocket, "the killed program's socket file is still there");
      await second.listenUnix(path);
      assert.equal((await get(path, "/health")).status, 200);
      second.close();
    });

    await t.step(
      "the probe's RTT is a summary (quantiles, _sum, _count) and no number carries binary noise",
      async () => {
        const core = new StatsCore({ command: "probe", intervalMs: 1000, families: ["probe"] });
        const server = new StatsServer(core);
        const path = `${tmp}/probe.sock`;
        await server.listenUnix(path);
        try {
          core.label({ probeIface: "p0" });
          // µs as the probe reports them: each one / 1e6 is a double with noise (3.115 / 1e6 = 0.0000031150000000000002).
          const rtt = { min: 3.115, p50: 10.3, p99: 20.7, p999: 30.1, max: 41.3, mean: 12.2 };
          core.observe("probe_interval", { received: 100, lossPct: 18.748, intervalS: 0.1 + 0.2, rttUs: rtt });
          const body = (await get(path, "/metrics")).body;
          const fam = parsePrometheus(body).find((f) => f.name === "fastpath_probe_rtt_seconds") as unknown as {
            type: string;
            metrics: Array<{ quantiles: Record<string, string> }>;
          };
          assert.equal(fam?.type, "SUMMARY", body);
          assert.deepEqual(fam.metrics[0].quantiles, {
            "0": "0.000003115",
            "0.5": "0.0000103",
            "0.99": "0.0000207",
            "0.999": "0.0000301",
            "1": "0.0000413",
          });
          // The parser keeps a summary's other labels, _sum and _count only without labels: read those lines.
          assert.match(body, /^fastpath_probe_rtt_seconds\{interface="p0",quantile="0\.99"\} 0\.0000207$/m);
          assert.match(body, /^fastpath_probe_rtt_seconds_sum\{interface="p0"\} 0\.00122$/m);
          assert.match(body, /^fastpath_probe_rtt_seconds_count\{interface="p0"\} 100$/m);
          assert.match(body, /^fastpath_probe_frame_loss_ratio\{interface="p0"\} 0\.18748$/m);
          const noisy = /\d\.\d*(?:0{6,}|9{6,})\d\b/;
          assert.doesNotMatch(body, noisy, "a metric with binary noise");
          const stats = (await get(path, "/stats")).body;
          assert.match(stats, /"interval_s":0\.3\b/);
          assert.doesNotMatch(stats, noisy, "/stats with binary noise");
          assert.doesNotMatch((await get(path, "/health")).body, noisy, "/health with binary noise");
        } finally {
          server.close();
        }
      },
    );

    await t.step(
      "--stats-socket in a directory that does not exist is refused naming it, and nothing is made",
      async () => {
        const path = `${tmp}/nonexist/dir/x.sock`;
        const plan = statsPlan({ statsSocket: path }, socketName("reflect", "lo"));
        await assert.rejects(
          startStats(plan, { command: "reflect", intervalMs: 1000, families: ["reflector"] }),
          (err: FastpathError) => {
            assert.equal(err.exitCode, 2);
            assert.match(
              err.message,
              new RegExp(`no directory ${tmp}/nonexist/dir .*create it first, or choose another --stats-socket`),
            );
            return true;
          },
        );
        assert.throws(() => Deno.lstatSync(`${tmp}/nonexist`), Deno.errors.NotFound, "no directory was made");
      },
    );

    await t.step("default socket names of different jobs never collide, whatever the names", () => {
      assert.equal(socketName("reflect", "eth0"), "reflect-eth0");
      assert.equal(socketName("reflect", "r0", "lab"), "reflect-r0@lab");
      assert.equal(socketName("lab", "fp"), "lab-fp");
      assert.equal(socketName("sched"), "sched");
      const jobs: Array<[string, string?, string?]> = [
        ["reflect", "refl-rl-r0", "rl"],
        ["reflect", "rl-r0", "rl-refl"],
        ["reflect", "r0@x", "y"],
        ["reflect", "r0", "x@y"],
        ["reflect", "a_b"],
        ["reflect", "a b"],
        ["reflect", "a%20b"],
        ["reflect", "a@b"],
        ["reflect", "a", "b"],
        ["probe", "a", "b"],
        ["reflect", "../x"],
      ];
      const names = jobs.map((j) => socketName(...j));
      assert.equal(new Set(names).size, names.length, names.join(" "));
      for (const n of names) assert.match(n, /^[A-Za-z0-9_.%@-]+$/, "no / or space in a socket's file name");
    });

    await t.step("into systemd's journal the intervals are one line a minute, not one a second", async () => {
      if (skipUnless(isRoot, "a reflector needs root")) return;
      const lab = await labUp({ prefix: labPrefix("fsj") });
      try {
        /** A reflector for 2 s at 10 intervals a second; with `journal`, its stdout is what JOURNAL_STREAM names. */
        const run = async (journal: boolean) => {
          const argv = [DENO, "run", "-A", "--unstable-ffi", "--quiet", `${ROOT}/main.ts`, "reflect", lab.reflectorIf];
          argv.push("--netns", lab.reflectorNs, "--mode", "packet", "--interval-ms", "100", "--duration-s", "2");
          argv.push("--no-stats-socket");
          // systemd sets JOURNAL_STREAM to the DEV:INODE of the stream it hands the service as stdout.
          const setStream = journal ? "exec 3>&1; export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/3);" : "";
          const out = await new Deno.Command("sh", {
            args: ["-c", `${setStream} exec "$@"`, "sh", ...argv],
            env: { NO_COLOR: "1" },
            stdout: "piped",
            stderr: "piped",
            signal: AbortSignal.timeout(60_000),
          }).output();
          const dec = new TextDecoder();
          assert.equal(out.code, 0, dec.decode(out.stderr));
          return dec.decode(out.stdout).split("\n").filter((l) => l.includes('"reflect_interval"'));
        };
        const piped = await run(false);
        assert.ok(piped.length >= 10, `a pipe gets every interval: ${piped.length} lines`);
        const journal = await run(true);
        assert.equal(journal.length, 1, `the journal gets the first interval only in 2 s:\n${journal.join("\n")}`);
      } finally {
        await labDown(lab);
      }
    });

    await t.step("--http on a non-loopback address is refused unless --http-allow-remote, naming it", async () => {
      const r = await cli(["reflect", "lo", "--http", "0.0.0.0:9100"]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--http 0\.0\.0\.0:9100 is not a loopback address: .*--http-allow-remote/);
      const bad = await cli(["reflect", "lo", "--http", "localhost"]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /--http needs HOST:PORT/);
    });

    await t.step(
      "during a lab run the endpoints answer, and hostile clients stall neither them nor the run",
      async (s) => {
        if (skipUnless(isRoot, "the lab needs root to create network namespaces")) return;
        const prefix = labPrefix("fst");
        // The default socket: /run/fastpath/lab-PREFIX.sock.
        const sock = `/run/fastpath/lab-${prefix}.sock`;
        const run = spawnCli([
          "lab",
          "run",
          "--prefix",
          prefix,
          "--size",
          "64",
          "--rate",
          "2kpps",
          "--duration-s",
          "8",
          "--http",
          "127.0.0.1:0",
          "--format",
          "json",
        ]);
        const scraped: number[] = [];
        const extra: Deno.Conn[] = [];
        try {
          await run.waitFor("stats: GET /metrics", 30_000);
          const port = Number(/http:\/\/127\.0\.0\.1:(\d+)/.exec(run.stderr)?.[1]);
          await waitFor(() => run.stdout.includes('"lab_interval"'), "the first interval", 10_000);

          await s.step("the socket is the default one, mode 0660", () => {
            const st = Deno.lstatSync(sock);
            assert.ok(st.isSocket);
            assert.equal(st.mode! & 0o777, 0o660);
          });

          await s.step("/metrics parses as Prometheus text with the documented names and labels", async () => {
            const r = await get(sock, "/metrics");
            assert.equal(r.status, 200);
            assert.match(r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
            const families = parsePrometheus(r.body);
            const byName = new Map(families.map((f) => [f.name, f]));
            const reflected = byName.get("fastpath_reflector_reflected_frames_total");
            assert.ok(reflected, `no reflected-frames counter in:\n${r.body}`);
            assert.equal(reflected.type, "COUNTER");
            assert.deepEqual(reflected.metrics[0].labels, { interface: `${prefix}-r0`, mode: "xdp" });
            scraped.push(Number(reflected.metrics[0].value));
            const drops = byName.get("fastpath_reflector_dropped_frames_total")!;
            assert.ok(drops.metrics.some((m) => m.labels?.reason === "not_ours"), "drop reasons are labels");
            const sigs = byName.get("fastpath_reflector_signature_frames_total")!;
            assert.ok(sigs.metrics.some((m) => m.labels?.signature === "DATA:OT" && Number(m.value) > 0));
            assert.equal(byName.get("fastpath_probe_sent_frames_total")?.type, "COUNTER");
            assert.equal(byName.get("fastpath_probe_rtt_seconds")?.type, "SUMMARY");
            for (const f of families) {
              if (f.type === "COUNTER") assert.match(f.name, /_total$/, `${f.name} is a counter without _total`);
            }
          });

          await s.step("/stats and /health have their documented shapes", async () => {
            const st = await get(sock, "/stats");
            assert.equal(st.status, 200);
            const stats = JSON.parse(st.body);
            checkObject(stats, "/stats", "stats");
            assert.equal(stats.command, "lab run");
            assert.equal(stats.interval.type, "lab_interval");
            scraped.push(stats.interval.reflector.tx_packets);
            const h = await get(sock, "/health");
            assert.equal(h.status, 200);
            const health = JSON.parse(h.body);
            checkObject(health, "/health", "stats_health");
            assert.equal(health.status, "ok");
            const none = await get(sock, "/nothing");
            assert.equal(none.status, 404);
            assert.match(none.body, /GET \/health, \/stats or \/metrics/);
          });

          await s.step("--http serves the same on loopback, read-only and without CORS headers", async () => {
            const r = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { Origin: "http://evil.example" } });
            const body = await r.text();
            assert.equal(r.status, 200);
            assert.ok(parsePrometheus(body).length > 0);
            for (const [k] of r.headers) assert.doesNotMatch(k, /^access-control-/, `CORS header ${k}`);
            const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST", body: "x" });
            await post.body?.cancel();
            assert.equal(post.status, 405);
            assert.equal(post.headers.get("allow"), "GET, HEAD");
          });

          /** A scrape answered within a second, its reflected frames kept for the last step. */
          const quickScrape = async (after: string) => {
            const t0 = performance.now();
            const r = await get(sock, "/metrics");
            const ms = performance.now() - t0;
            assert.equal(r.status, 200, after);
            assert.ok(ms < 1000, `a scrape ${after} took ${ms.toFixed(0)} ms`);
            const reflected = parsePrometheus(r.body)
              .find((f) => f.name === "fastpath_reflector_reflected_frames_total")!;
            scraped.push(Number(reflected.metrics[0].value));
          };

          await s.step("a client that connects and sends nothing is cut off and holds nothing up", async () => {
            const silent = await Deno.connect({ transport: "unix", path: sock });
            extra.push(silent);
            const quiet = reader(silent);
            await quickScrape("beside a silent client");
            await Promise.race([quiet.done, sleep(LIMITS.requestMs + 1500)]);
            assert.ok(quiet.closed, "the server closed the silent client after its request deadline");
            assert.equal(quiet.text, "", "the silent client got nothing");
          });

          await s.step("a 1 MB request line is refused as too large without reading it all", async () => {
            const big = await Deno.connect({ transport: "unix", path: sock });
            extra.push(big);
            const answer = reader(big);
            // The server stops reading after LIMITS.requestBytes: this write may never finish.
            big.write(enc.encode(`GET /${"a".repeat(1 << 20)} HTTP/1.1\r\n\r\n`)).catch(() => 0);
            await Promise.race([answer.done, sleep(3000)]);
            assert.match(answer.text, /^HTTP\/1\.1 431 /, "the 1 MB line is answered 431");
            await quickScrape("after the 1 MB line");
          });

          await s.step("200 connections at once do not lock a scraper out", async () => {
            for (let i = 0; i < 200; i++) extra.push(await Deno.connect({ transport: "unix", path: sock }));
            // The newest connection takes the slot of the oldest silent one.
            await quickScrape("after 200 silent connections");
          });

          const end = await run.finish();
          assert.equal(end.code, 0, end.stderr);
          await s.step("the scraped reflected frames equal the reflector's own counter within one interval", () => {
            const lines = end.stdout.trim().split("\n").map((l) => JSON.parse(l));
            const intervals = lines.filter((l) => l.type === "lab_interval").map((l) => l.reflector.tx_packets);
            // 8 s at one interval a second: the loop kept its pace through the flood.
            assert.ok(intervals.length >= 7, `only ${intervals.length} intervals in 8 s`);
            for (const v of scraped) {
              assert.ok(v > 0, "frames were reflected by the time of the scrape");
              assert.ok(intervals.includes(v), `scraped ${v} is one of the run's intervals: ${intervals.join(", ")}`);
            }
            const result = lines.find((l) => l.type === "lab_result");
            assert.ok(scraped.every((v) => v <= result.reflector.tx_packets));
          });

          await s.step("after the run the socket is gone", () => {
            assert.throws(() => Deno.lstatSync(sock), Deno.errors.NotFound);
          });
        } finally {
          for (const c of extra) {
            try {
              c.close();
            } catch { /* closed by the server */ }
          }
          try {
            run.child.kill("SIGINT");
          } catch { /* ended */ }
          await run.finish().catch(() => {});
        }
      },
    );

    await t.step("a reflector stopped by SIGTERM removes its default socket; --http-allow-remote warns", async () => {
      if (skipUnless(isRoot, "the lab needs root to create network namespaces")) return;
      const lab = await labUp({ prefix: labPrefix("fsr") });
      try {
        const sock = `/run/fastpath/reflect-${lab.reflectorIf}@${lab.reflectorNs}.sock`;
        const run = spawnCli([
          "reflect",
          lab.reflectorIf,
          "--netns",
          lab.reflectorNs,
          "--mode",
          "packet",
          "--http",
          "0.0.0.0:0",
          "--http-allow-remote",
        ]);
        try {
          await run.waitFor("stats: GET /metrics", 30_000);
          assert.ok(run.stderr.includes(sock), run.stderr);
          assert.match(
            run.stderr,
            /warning: --http 0\.0\.0\.0 serves the stats to other machines, without authentication/,
          );
          assert.equal((await get(sock, "/health")).status, 200);
        } finally {
          run.child.kill("SIGTERM");
        }
        const end = await run.finish();
        assert.equal(end.code, 0, end.stderr);
        assert.throws(() => Deno.lstatSync(sock), Deno.errors.NotFound, "the socket is removed on SIGTERM");
      } finally {
        await labDown(lab);
      }
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
