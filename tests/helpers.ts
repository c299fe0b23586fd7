/** Shared by the Deno tests: running the CLI, skipping with a reason, namespace checks. */
import { run } from "../src/net.ts";
import type { ProbeReport } from "../src/probe.ts";
import { checkJsonLine } from "./json_contract.ts";

export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const DENO = Deno.execPath();
export const isRoot = Deno.uid() === 0;
/**
 * Namespace prefix for a test file's lab: `base` plus `FP_TEST_NS` (one letter), so two checkouts can
 * run the namespace tests on one machine at once without tearing down each other's labs.
 */
export function labPrefix(base: string): string {
  return base + (Deno.env.get("FP_TEST_NS") ?? "");
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main.ts` with `args` in a child process (the way users run it); killed after 60 s. */
export async function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const out = await new Deno.Command(DENO, {
    args: ["run", "-A", "--unstable-ffi", "--quiet", `${ROOT}/main.ts`, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  const r = { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  checkJsonOutput(args, r.stdout);
  return r;
}

/** With `--format json`, every line of stdout must be an object docs/json.md documents (tests/json_contract.ts). */
export function checkJsonOutput(args: string[], stdout: string): void {
  const at = args.indexOf("--format");
  if (at < 0 || args[at + 1] !== "json") return;
  for (const line of stdout.split("\n").filter(Boolean)) checkJsonLine(line);
}

/**
 * Starts the CLI (or another `script`) and returns the child plus a promise of everything it printed;
 * with `netns`, inside that namespace ('ip netns exec', which execs the CLI: the child's pid is the CLI's);
 * with `wrap`, through that command (e.g. setpriv with fewer capabilities), which must exec it too.
 * It is killed after `lifetimeMs` (120 s unless given), so no test hangs CI.
 */
export function spawnCli(
  args: string[],
  opts: { netns?: string; script?: string; wrap?: string[]; lifetimeMs?: number } = {},
) {
  const argv = [DENO, "run", "-A", "--unstable-ffi", "--quiet", opts.script ?? `${ROOT}/main.ts`, ...args];
  const full = [...(opts.netns ? ["ip", "netns", "exec", opts.netns] : []), ...(opts.wrap ?? []), ...argv];
  const child = new Deno.Command(full[0], {
    args: full.slice(1),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(opts.lifetimeMs ?? 120_000),
  }).spawn();
  const dec = new TextDecoder();
  let stderr = "";
  let stdout = "";
  const readErr = (async () => {
    for await (const chunk of child.stderr) stderr += dec.decode(chunk);
  })();
  const readOut = (async () => {
    for await (const chunk of child.stdout) stdout += dec.decode(chunk);
  })();
  return {
    child,
    get stderr() {
      return stderr;
    },
    get stdout() {
      return stdout;
    },
    async waitFor(text: string, timeoutMs = 15_000): Promise<void> {
      const end = Date.now() + timeoutMs;
      while (!stderr.includes(text) && !stdout.includes(text)) {
        if (Date.now() > end) throw new Error(`timed out waiting for '${text}'; stderr so far:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async finish(): Promise<CliResult> {
      const status = await child.status;
      await Promise.all([readErr, readOut]);
      checkJsonOutput(args, stdout);
      return { code: status.code, stdout, stderr };
    },
  };
}

/** Runs `main.ts` with `args` as the unprivileged user nobody (setpriv), with a DENO_DIR of its own. */
export async function cliAsNobody(args: string[]): Promise<CliResult> {
  const denoDir = await Deno.makeTempDir({ prefix: "fastpath-nobody-" });
  await Deno.chmod(denoDir, 0o777);
  try {
    return await run([
      "setpriv",
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      "--reset-env",
      "env",
      `DENO_DIR=${denoDir}`,
      // The fresh DENO_DIR fetches the CLI's npm packages: keep the machine's certificate settings.
      ...Object.entries(Deno.env.toObject()).filter(([k]) => /CERT|CA_BUNDLE|_PROXY$/i.test(k)).map(([k, v]) =>
        `${k}=${v}`
      ),
      "NO_COLOR=1",
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-ffi",
      "--quiet",
      `${ROOT}/main.ts`,
      ...args,
    ]);
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
}

export async function netnsList(): Promise<string[]> {
  const r = await run(["ip", "netns", "list"]);
  return r.stdout.split("\n").map((l) => l.split(" ")[0]).filter(Boolean);
}

/** Says why a step is skipped, so no skip is silent. Returns true when the caller should skip. */
export function skipUnless(condition: boolean, why: string): boolean {
  if (!condition) console.log(`  SKIPPED: ${why}`);
  return !condition;
}

/**
 * What tests/frames.py saw come back: ITO-signed reflections, ICMP port-unreachable, and the
 * reflections by VLAN tag stack ("88a8/20/3+8100/100/5": TPID/VID/PCP outermost first; "" untagged).
 */
export interface SentFrames {
  sent: number;
  reflected: number;
  icmp_unreachable: number;
  tags: Record<string, number>;
}

export async function sendFrames(
  netns: string,
  iface: string,
  kind: string,
  count: number,
  dst: string,
  src: string,
  sip: string,
  dip: string,
  opts: { listenIface?: string; tagMeta?: boolean } = {},
): Promise<SentFrames> {
  const r = await run([
    "ip",
    "netns",
    "exec",
    netns,
    "python3",
    `${ROOT}/tests/frames.py`,
    "send",
    ...(opts.tagMeta ? ["--tag-meta"] : []),
    iface,
    kind,
    String(count),
    dst,
    src,
    sip,
    dip,
    ...(opts.listenIface ? [opts.listenIface] : []),
  ]);
  if (r.code !== 0) throw new Error(`frames.py failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export function watchFrames(netns: string, iface: string, seconds: number) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, "python3", `${ROOT}/tests/frames.py`, "watch", iface, String(seconds)],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return child.output().then((o) => {
    if (o.code !== 0) throw new Error(`frames.py watch failed: ${new TextDecoder().decode(o.stderr)}`);
    return JSON.parse(new TextDecoder().decode(o.stdout)) as { reflected: number; icmp_unreachable: number };
  });
}

/** Polls `cond` every 20 ms for up to `ms`; fails with `what` (a function is called at the timeout, so it can say what was seen then) if it never holds. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string | (() => string),
  ms = 3000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) {
      let said: string;
      try {
        said = typeof what === "string" ? what : what();
      } catch (e) {
        said = `(its message failed: ${e})`;
      }
      throw new Error(`timed out waiting for: ${said}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether an XDP program is attached to `dev` in `netns` (as `ip link` shows it). */
export async function xdpAttached(netns: string, dev: string): Promise<boolean> {
  const r = await run(["ip", "-n", netns, "-j", "link", "show", "dev", dev]);
  const [link] = JSON.parse(r.stdout || "[{}]");
  return link?.xdp !== undefined;
}

/**
 * Asserts that no more than `maxPct` of the frames sent went missing anywhere but on the probe's own
 * host: what its kernel dropped on receive (a burst of reflections beyond its backlog) is the lab
 * machine's loss, not the reflector's. The message carries both counts.
 */
export function assertReflectorLoss(p: ProbeReport, maxPct: number): void {
  const host = p.hostRxDropped ?? 0;
  const pct = p.sent ? (100 * Math.max(0, p.lost - host)) / p.sent : 0;
  if (pct > maxPct) {
    throw new Error(
      `lost ${p.lost} of ${p.sent} (${p.lossPct.toFixed(3)} %); the probe's host dropped ${host} of them, ` +
        `the rest ${pct.toFixed(3)} % > ${maxPct} %`,
    );
  }
}

/** A probe report for tests of what is made of one: nothing sent, nothing back, unless `over` says. */
export function sampleProbeReport(over: Partial<ProbeReport>): ProbeReport {
  return {
    state: "sending",
    elapsedS: 1,
    sent: 0,
    received: 0,
    lost: 0,
    inFlight: 0,
    lossPct: 0,
    duplicates: 0,
    reordered: 0,
    badRewrite: 0,
    foreign: 0,
    txErrors: 0,
    rxRingDrops: 0,
    hostRxDropped: null,
    linkRxDropped: null,
    txSlipped: 0,
    txLateMaxMs: 0,
    txPps: 0,
    rxPps: 0,
    rxL2Mbps: 0,
    rxWireMbps: 0,
    txWireMbps: 0,
    rttUs: null,
    ...over,
  };
}

/** A short `lab run` of 64-byte frames at 1 kpps: the arguments after the program. */
export function smallLabRun(prefix: string, durationS: number): string[] {
  return ["lab", "run", "--prefix", prefix, "--size", "64", "--rate", "1kpps", "--duration-s", String(durationS)];
}

/**
 * `t.step(name, fn)` of a VM test, ignored (Deno lists it as ignored) when FP_VM_STEPS is set and its
 * regular expression does not match the step's name: `tests/vm/guest.sh REPORT REGEX` runs those alone
 * (and fails when none matched). Deno's JUnit report then places every step here, not in its file.
 */
export function vmStep(t: Deno.TestContext, name: string, fn: (t: Deno.TestContext) => void | Promise<void>) {
  const only = Deno.env.get("FP_VM_STEPS");
  const ignore = only !== undefined && only !== "" && !new RegExp(only).test(name);
  // guest.sh fails a run in which the pattern matched no step.
  const ran = Deno.env.get("FP_VM_STEPS_RAN");
  if (!ignore && ran) Deno.writeTextFileSync(ran, `${name}\n`, { append: true });
  return t.step({ name, fn, ignore });
}
