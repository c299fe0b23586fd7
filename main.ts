/**
 * fastpath — the command line: the command table, help, dispatch and the exit-code mapping. Each
 * command lives in its own module under src/cli/; they share one flag parser (src/cli/flags.ts), one
 * set of value parsers (src/parse.ts) and one live-monitor loop (src/cli/monitor.ts).
 * Errors print `error: <what>: <detail>` on one line and exit with a documented code.
 */
import { cliText, FastpathError } from "./ffi/error.ts";
import {
  type Command,
  EXIT_HELP,
  HelpShown,
  needsLayoutForHelp,
  rootCommand,
  takeExit,
  useLayoutForHelp,
} from "./src/cli/flags.ts";
import { load } from "./ffi/load.ts";
import { doctor } from "./src/cli/doctor.ts";
import { lab } from "./src/cli/lab.ts";
import { probe } from "./src/cli/probe.ts";
import { reflect } from "./src/cli/reflect.ts";
import { sched } from "./src/cli/sched.ts";
import { service } from "./src/cli/service.ts";
import { completions } from "./src/cli/completions.ts";
import { VERSION, versionText } from "./src/cli/version.ts";

export { VERSION };

const COMMANDS = [reflect, probe, lab, sched, doctor, service, completions];

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name().length));
  return `fastpath ${VERSION} — kernel fast paths for people who will never write BPF

Usage: fastpath <command> [flags]

Commands:
${COMMANDS.map((c) => `  ${c.name().padEnd(width)}  ${c.summary()}`).join("\n")}
  help${" ".repeat(Math.max(0, width - 4))}  help for a command

Examples:
  sudo fastpath lab run
  sudo fastpath reflect eth0
  sudo fastpath probe eth0 --to 192.0.2.10 --rate 100kpps
  fastpath doctor

Run 'fastpath <command> --help' for a command's flags and examples.

${EXIT_HELP}`;
}

function program(): Command {
  return rootCommand("fastpath", COMMANDS);
}

/** Runs the CLI on `argv`; resolves with the exit code (errors are thrown as FastpathError). */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "-h" || name === "--help") {
    console.log(mainHelp());
    return name ? 0 : 2;
  }
  if (name === "--version" || name === "version") {
    console.log(await versionText());
    return 0;
  }
  // `help sched run` is `sched run --help`: every word given, not only the first.
  if (name === "help") return await main(rest.length ? [...rest, "--help"] : ["--help"]);
  if (!COMMANDS.some((c) => c.name() === name)) {
    const hint = closest(name, COMMANDS.map((c) => c.name()));
    throw new FastpathError(
      "usage",
      `unknown command '${name}'${hint ? ` (did you mean ${hint}?)` : ""}: see 'fastpath --help'`,
    );
  }
  const sub = COMMANDS.find((c) => c.name() === name)!;
  if (sub.commands.length && (rest.length === 0 || rest[0].startsWith("-")) && !rest.some(isHelp)) {
    const actions = sub.commands.map((c) => c.name());
    throw new FastpathError(
      "usage",
      `${name} needs ${actions.length > 1 ? `${actions.slice(0, -1).join(", ")} or ` : ""}${
        actions.at(-1)
      }: see 'fastpath ${name} --help'`,
    );
  }
  if (rest.some(isHelp)) {
    // Help wins over every other argument, a bad value among them (`sched status --threads -1 -h`
    // printed the --threads error): only the command's words and the help flag are parsed.
    const words = [name];
    let actions = [...sub.commands];
    for (const w of rest) {
      const next = actions.find((c) => c.name() === w);
      if (!next) break;
      words.push(w);
      actions = [...next.commands];
    }
    argv = [...words, "--help"];
    if (needsLayoutForHelp(sub)) {
      // Knob ranges are the library's: shown when it loads, left out when it does not (a knob then
      // shows its default; the CLI's own flags keep their ranges).
      await load().then((lib) => useLayoutForHelp(lib.layout), () => {});
    }
  }
  try {
    await program().parseAsync(argv, { from: "user" });
  } catch (err) {
    if (err instanceof HelpShown) return 0;
    throw err;
  }
  return takeExit();
}

function isHelp(a: string): boolean {
  return a === "-h" || a === "--help";
}

/** The option closest to `word` by edit distance, if it is close enough to be a typo. */
function closest(word: string, options: string[]): string | undefined {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
    }
    return d[a.length][b.length];
  };
  const best = options.map((o) => [o, dist(word, o)] as const).sort((a, b) => a[1] - b[1])[0];
  return best && best[1] <= 2 ? best[0] : undefined;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    if (err instanceof FastpathError) {
      console.error(`error: ${cliText(err.marked)}`);
      code = err.exitCode;
    } else {
      console.error(`error: internal: ${(err as Error)?.stack ?? err}`);
      code = 1;
    }
  }
  Deno.exit(code);
}
