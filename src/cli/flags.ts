/**
 * The CLI's one flag parser: commander (the field's standard, its command tree can drive shell
 * completions), wrapped so that every command parses, helps and fails alike:
 *  - flags apply their defaults and come back typed (`@commander-js/extra-typings`): no casts in handlers;
 *  - values go through the shared parsers in src/parse.ts, whose messages name the option;
 *  - help is generated from the same options that hold the defaults, in one format with examples and
 *    the exit codes;
 *  - every parse error is a one-line FastpathError("usage"), exit code 2.
 */
import { Command, type CommanderError, Option, type OptionValues } from "@commander-js/extra-typings";
import { FastpathError, kebab, snake } from "../../ffi/error.ts";
import type { Layout } from "../../ffi/layout.ts";
import { parseChoice, parseNumber } from "../parse.ts";

export { Command, Option };

/** The exit codes, in every command's help and the README. */
export const EXIT_HELP = `Exit codes:
  0  success (a reflector, sched run or sched observe stopped by Ctrl-C, SIGQUIT, SIGTERM or SIGHUP also exits 0)
  1  unexpected internal error
  2  bad usage or invalid argument
  3  missing privilege (run as root)
  4  no such interface or namespace
  5  interface is down
  6  not supported on this machine or build
  7  busy: another reflector or program holds the interface, port or lab (named)
  8  native library missing or of the wrong version
  9  timed out (e.g. the reflector's address did not answer ARP)
  10 a run failed (a worker stopped, a probe got nothing back, lost more than --max-loss-pct or saw wrong rewrites, …)
  11 the kernel ejected the scheduler (an error or a stalled task; the EXIT: line says which)
  130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP, 131 by SIGQUIT (probe and lab run, after printing what was measured)`;

/** What a command's help says beyond its flags. */
export interface CommandDoc {
  summary: string;
  /** Arguments after the command's name, e.g. "IFACE [flags]". */
  usage: string;
  description: string;
  examples: string[];
}

const docs = new WeakMap<object, CommandDoc>();
let exitCode = 0;

/** A command's handler reports its exit code here (commander's actions return nothing). */
export function setExit(code: number): void {
  exitCode = code;
}

export function takeExit(): number {
  const c = exitCode;
  exitCode = 0;
  return c;
}

/** A command (or subcommand) with fastpath's help, errors and strictness. */
export function command(name: string, doc: CommandDoc): Command {
  const c = new Command(name).summary(doc.summary).description(doc.description).usage(doc.usage);
  docs.set(c, doc);
  return c
    .helpOption("-h, --help", "show this help")
    .allowExcessArguments(false)
    .hook("preSubcommand", (_, sub) => refuseFlagValuesOf(sub))
    .hook("preAction", (_, action) => refuseRepeatsOf(action))
    .exitOverride((err) => {
      throw usageError(c, err);
    })
    .configureOutput({ writeOut: (s) => console.log(s.replace(/\n$/, "")), writeErr: () => {}, outputError: () => {} })
    .configureHelp({ formatHelp: (cmd) => helpOf(cmd) });
}

/** The program: `commands` under `name`, each checked by the preSubcommand hook before it parses. */
export function rootCommand(
  name: string,
  commands: readonly Command<unknown[], OptionValues, OptionValues>[],
): Command {
  const p = new Command(name)
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} })
    .hook("preSubcommand", (_, sub) => refuseFlagValuesOf(sub));
  for (const c of commands) p.addCommand(c);
  return p;
}

/**
 * `--NAME N`: a number. Its range is the library's to check when it crosses into the library; a flag
 * only the CLI uses (a reflector's --duration-s, --interval-ms) gives its range here: `above` (the
 * number must be larger), `min` (at least), `max` (at most); `check`, the scripting API's own check of
 * the same value (it throws FastpathError), runs first.
 */
export function num<const F extends string>(
  flag: F,
  help: string,
  range?: { above?: number; min?: number; max?: number; check?: (n: number) => void },
) {
  const o = new Option(`--${flag} <N>` as `--${F} <N>`, help);
  // One wording for help and for the refusal: "100 to 3600000", "at least 0", "more than 0".
  const span = range?.min !== undefined && range.max !== undefined
    ? `${range.min} to ${range.max}`
    : range?.min !== undefined
    ? `at least ${range.min}`
    : range?.max !== undefined
    ? `at most ${range.max}`
    : undefined;
  const above = range?.above !== undefined ? `more than ${range.above}` : undefined;
  const shown = [above, span].filter((t) => t).join(", ");
  if (shown) RANGES.set(o, { text: shown });
  return o.argParser((v: string) => {
    const n = parseNumber(camel(flag), v);
    range?.check?.(n);
    if (range?.above !== undefined && !(n > range.above)) {
      throw new FastpathError("usage", `\`${camel(flag)}\` must be ${above}, not ${v}`);
    }
    if ((range?.min !== undefined && !(n >= range.min)) || (range?.max !== undefined && !(n <= range.max))) {
      throw new FastpathError("usage", `\`${camel(flag)}\` must be ${span}, not ${v}`);
    }
    return n;
  });
}

/** `--NAME VALUE`: text, with what it takes in the help (`--to IP|MAC`). */
export function text<const F extends string, const M extends string = "VALUE">(flag: F, help: string, meta?: M) {
  return new Option(`--${flag} <${meta ?? "VALUE"}>` as `--${F} <${M}>`, help);
}

/** The values of each `choice()` flag (shell completion lists them). */
export const CHOICES = new WeakMap<object, readonly string[]>();

/** Offers `values` for a free-text flag's value in shell completion (it still takes any text). */
export function suggest<O extends object>(o: O, values: readonly string[]): O {
  CHOICES.set(o, values);
  return o;
}

/** `--NAME a|b|c`: one of `choices`. */
export function choice<const F extends string, const C extends readonly string[]>(flag: F, choices: C, help: string) {
  const o = new Option(`--${flag} <${choices.join("|")}>` as `--${F} <CHOICE>`, help)
    .argParser((v: string): C[number] => parseChoice(camel(flag), v, choices));
  CHOICES.set(o, choices);
  return o;
}

/** `--NAME` (true), and `--no-NAME` (false, hidden from help): undefined unless given, so a default elsewhere (a profile's) applies. */
export function bool<const F extends string>(name: F, help: string) {
  return [new Option(`--${name}` as `--${F}`, help), new Option(`--no-${name}` as `--no-${F}`).hideHelp()] as const;
}

/** `--format text|json`, on every command that prints results. */
export function formatOption() {
  return choice("format", ["text", "json"] as const, "output: text for people, json for scripts (docs/json.md)")
    .default("text" as const);
}

export interface Knob {
  default: number;
  help: string;
}

/**
 * Where a flag's range for help comes from: `num`'s own (a flag only the CLI uses), or a knob's, which
 * the library owns (its struct and field in the layout).
 */
const RANGES = new WeakMap<object, { text: string } | { struct: string; field: string }>();
let helpLayout: Layout | undefined;

/**
 * Lets help show each knob's range, read from the library's layout (main.ts loads the library when
 * `needsLayoutForHelp`). Without it help shows the CLI's own ranges and the defaults only.
 */
export function useLayoutForHelp(layout: Layout): void {
  helpLayout = layout;
}

/** Whether `cmd` or one of its actions has a knob whose range only the library's layout gives. */
export function needsLayoutForHelp(cmd: Command<unknown[], OptionValues, OptionValues>): boolean {
  const fromLibrary = (o: object) => {
    const r = RANGES.get(o);
    return r !== undefined && "struct" in r;
  };
  return [cmd, ...cmd.commands].some((c) => c.options.some(fromLibrary));
}

/**
 * A `--kebab-name N` flag for each knob of a table (SCHED_KNOBS), its default from the table; `struct`
 * is the library struct whose field of the same name (snake case) carries it, and its range.
 */
export function knobs<A extends unknown[], O extends OptionValues, K extends Record<string, Knob>>(
  cmd: Command<A, O>,
  table: K,
  struct: string,
): Command<A, O & { [P in keyof K]: number }> {
  for (const [name, k] of Object.entries(table)) {
    const o = num(kebab(name), k.help).default(k.default);
    RANGES.set(o, { struct, field: snake(name) });
    cmd.addOption(o);
  }
  return cmd as unknown as Command<A, O & { [P in keyof K]: number }>;
}

/** "50 to 100000" for a flag whose range is known (see RANGES); "" otherwise. */
function rangeHelp(o: Option): string {
  const r = RANGES.get(o);
  if (!r) return "";
  if ("text" in r) return r.text;
  const f = helpLayout?.json.structs[r.struct]?.fields[r.field];
  return f?.range ? `${f.or_zero ? "0 or " : ""}${f.range[0]} to ${f.range[1]}` : "";
}

/**
 * Refuses a flag where a value belongs: commander takes the word after a flag that needs a value
 * whatever it is, so `sched run --foreground --duration-s 1` complained about the '1' and `probe lo
 * --to --count=3` that '--count=3' is no address. Run before the command parses (the parent's
 * preSubcommand hook), so it is the first error the user sees.
 */
function refuseFlagValuesOf(sub: Command<unknown[], OptionValues, OptionValues>): void {
  refuseFlagValues(sub.options, rawArgsOf(sub), path(sub));
}

/**
 * The check above for `args` against `options` (also `service print`'s, on a unit's flags): after a
 * flag that needs a value, a long flag (`--x`, any case), one of `options`' short flags or `--` is
 * refused; a negative number (`--nice -5`) or another word with one dash (`--prefix -rv`) is a value
 * for the option's own check to judge, `--help` and `-h` show the help, and `--flag=--text` too goes
 * to the option's check. Scanned up to a `--` that is not a flag's value.
 */
export function refuseFlagValues(options: readonly Option[], args: string[], name: string): void {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") return;
    const o = options.find((o) => o.long === a || (o.short !== undefined && o.short === a));
    if (!o?.required) continue;
    const next = args[i + 1];
    if (next === undefined || next === "--help" || next === "-h") return;
    if (next === "--" || /^--[A-Za-z]/.test(next) || options.some((s) => s.short === next)) {
      const got = next === "--" ? "'--'" : `the flag ${next.replace(/=.*/, "")}`;
      throw new FastpathError(
        "usage",
        `${o.long} needs a value, got ${got}: give ${o.long} its value, or ${o.long}=VALUE for one that starts with '-' (see '${name} --help')`,
      );
    }
    i++; // the value
  }
}

/**
 * A flag given twice (`--game a --game b`, or `--tos-toggle --no-tos-toggle`) is a usage error:
 * commander keeps the last value without a word, and a script that appended a flag to a command line
 * would silently change what it ran. Counted on the command line as typed, up to a `--`.
 */
function refuseRepeatsOf(action: Command<unknown[], OptionValues, OptionValues>): void {
  refuseRepeats(action.options, rawArgsOf(action), path(action));
}

/** The command line as typed: commander keeps it in the root's rawArgs (its typings leave it out). */
function rawArgsOf(c: Command<unknown[], OptionValues, OptionValues>): string[] {
  let root = c;
  while (root.parent) root = root.parent;
  return (root as unknown as { rawArgs?: string[] }).rawArgs ?? [];
}

/** The check above for `args` against `options` (also `service print`'s, on a unit's flags). */
export function refuseRepeats(options: readonly Option[], args: string[], name: string): void {
  const end = args.indexOf("--");
  const seen = new Map<string, string>();
  for (const a of end < 0 ? args : args.slice(0, end)) {
    const o = options.find((o) => o.long && (a === o.long || a.startsWith(`${o.long}=`)));
    if (!o?.long) continue;
    const key = o.attributeName();
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      const what = earlier === o.long
        ? `${o.long} is given twice: give it once`
        : `${earlier} and ${o.long} are both given: give one of them`;
      throw new FastpathError("usage", `${what} (see '${name} --help')`);
    }
    seen.set(key, o.long);
  }
}

/** "busy-poll-us" → "busyPollUs": a flag's API name, as messages mark it. */
function camel(flag: string): string {
  return flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function path(c: Command<unknown[], OptionValues, OptionValues>): string {
  const names: string[] = [];
  for (let x: typeof c | null = c; x; x = x.parent) names.unshift(x.name());
  return names.join(" ");
}

/** A commander error as fastpath's one-line usage error (or, for help, the exit code 0). */
function usageError(c: Command<unknown[], OptionValues, OptionValues>, err: CommanderError): Error {
  const name = path(c);
  const line = err.message.replace(/^error: /, "").split("\n")[0];
  const hint = /\(Did you mean (.+)\?\)/.exec(err.message)?.[1];
  const see = `see '${name} --help'`;
  switch (err.code) {
    case "commander.helpDisplayed":
    case "commander.version":
      return new HelpShown();
    case "commander.unknownOption": {
      const opt = /'([^']+)'/.exec(line)?.[1] ?? line;
      return new FastpathError(
        "usage",
        `unknown flag '${opt}' for ${name.replace(/^fastpath /, "")}${hint ? ` (did you mean ${hint}?)` : ""}: ${see}`,
      );
    }
    case "commander.unknownCommand": {
      const cmd = /'([^']+)'/.exec(line)?.[1] ?? line;
      if (c.parent) {
        const subs = c.commands.map((s) => s.name());
        return new FastpathError(
          "usage",
          `unknown ${c.name()} action '${cmd}': use ${
            subs.length > 1 ? `${subs.slice(0, -1).join(", ")} or ${subs.at(-1)}` : subs[0]
          }`,
        );
      }
      return new FastpathError("usage", `unknown command '${cmd}'${hint ? ` (did you mean ${hint}?)` : ""}: ${see}`);
    }
    case "commander.missingArgument":
    case "commander.excessArguments": {
      const usage = `usage: ${name} ${docs.get(c)?.usage ?? ""}`.trimEnd();
      const want = c.registeredArguments.map((a) => a.name()).join(" ");
      return new FastpathError(
        "usage",
        err.code === "commander.missingArgument"
          ? `${c.name()} needs ${want}: ${usage}`
          : `${c.name()} takes ${want || "no arguments"}, got '${c.args.join(" ")}': ${usage}`,
      );
    }
    case "commander.optionMissingArgument": {
      const opt = /'(--[a-z0-9-]+)/.exec(line)?.[1] ?? line;
      return new FastpathError("usage", `${opt} needs a value: ${see}`);
    }
    case "commander.missingMandatoryOptionValue": {
      const opt = /'(--[a-z0-9-]+)/.exec(line)?.[1] ?? line;
      return new FastpathError("usage", `${c.name()} needs ${opt}: ${see}`);
    }
    default:
      return new FastpathError("usage", `${line}: ${see}`);
  }
}

/** Thrown when help was printed: the command ends there, exit code 0. */
export class HelpShown extends Error {}

/** A command's help: summary, usage, description, flags (from its options), examples, exit codes. */
function helpOf(c: Command<unknown[], OptionValues, OptionValues>): string {
  const doc = docs.get(c);
  const name = path(c);
  const flagsOf = (x: typeof c) =>
    x.options.filter((o) => !o.hidden).map((o) => {
      const term = o.flags.replace(/[<>]/g, "");
      const shown = o.defaultValueDescription ?? o.defaultValue;
      // A flag with no default still gives its range: [0 to 65536].
      const bits = [rangeHelp(o), shown !== undefined ? `default: ${shown}` : ""].filter((b) => b);
      const def = bits.length ? ` [${bits.join(", ")}]` : "";
      return `  ${term}\n      ${o.description}${def}`;
    });
  const parts = [`${doc?.summary ?? c.summary()}`, `Usage: ${name} ${doc?.usage ?? ""}`.trimEnd()];
  if (doc?.description) parts.push(doc.description);
  if (c.commands.length) {
    for (const sub of c.commands) {
      const lines = flagsOf(sub as typeof c);
      parts.push(`Flags of ${sub.name()}:\n${lines.length ? lines.join("\n") : "  (none)"}`);
    }
    parts.push("  -h, --help\n      show this help");
  } else {
    parts.push(`Flags:\n${[...flagsOf(c), "  -h, --help\n      show this help"].join("\n")}`);
  }
  if (doc?.examples.length) parts.push(`Examples:\n${doc.examples.map((e) => `  ${e}`).join("\n")}`);
  parts.push(EXIT_HELP);
  return parts.join("\n\n") + "\n";
}
