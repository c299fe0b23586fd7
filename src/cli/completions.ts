/**
 * `fastpath completions bash|zsh|fish`: shell completion generated from the command table (the
 * commander tree main.ts builds), so it never drifts from the flags: commands, subcommands, every
 * visible flag, the choices of a `--flag a|b|c`, and interface names where a command takes IFACE.
 */
import { FastpathError } from "../../ffi/error.ts";
import { CHOICES, type Command, command, setExit } from "./flags.ts";

const SHELLS = ["bash", "zsh", "fish"] as const;
type Shell = typeof SHELLS[number];

/** What can follow one command path ("", "reflect", "sched run"). */
export interface CompletionNode {
  path: string;
  /** Its subcommands (a command with subcommands takes no flags of its own here). */
  subs: string[];
  /** Its visible long flags, `--mode` … */
  flags: string[];
  /**
   * The values of flags that take one: a list of choices, [] for a free value (a number, a name),
   * "files" for a path, "netns" for a network namespace's name.
   */
  values: Record<string, Values>;
  /** Each flag's help text (fish shows it beside the flag). */
  help: Record<string, string>;
  /** Words its positional argument takes, or "iface" for interface names. */
  args: string[] | "iface" | null;
}

type Values = string[] | "files" | "netns";

type AnyCommand = Command<unknown[], Record<string, unknown>, Record<string, unknown>>;

/** The completion table of `root`'s tree, one node per command path. */
export function completionTree(root: AnyCommand): CompletionNode[] {
  const nodes: CompletionNode[] = [{
    path: "",
    subs: [...root.commands.map((c) => c.name()), "help"],
    flags: ["--help", "--version"],
    values: {},
    help: {},
    args: null,
  }, {
    path: "help",
    subs: [],
    flags: [],
    values: {},
    help: {},
    args: root.commands.map((c) => c.name()),
  }];
  const walk = (c: AnyCommand, path: string) => {
    const values: Record<string, Values> = {};
    const flags: string[] = [];
    const help: Record<string, string> = {};
    for (const o of c.options) {
      if (o.hidden || !o.long) continue;
      flags.push(o.long);
      help[o.long] = o.description;
      if (o.required || o.optional) {
        const meta = /<([^>]+)>/.exec(o.flags)?.[1];
        values[o.long] = o.long === "--netns" ? "netns" : meta === "PATH" ? "files" : [...(CHOICES.get(o) ?? [])];
      }
    }
    flags.push("--help");
    const arg = c.registeredArguments[0]?.name();
    nodes.push({
      path,
      subs: c.commands.map((s) => s.name()),
      flags: c.commands.length ? ["--help"] : flags,
      values,
      help,
      args: arg === "IFACE" ? "iface" : arg === "JOB" ? ["reflect", "sched"] : arg === "SHELL" ? [...SHELLS] : null,
    });
    for (const s of c.commands) walk(s as AnyCommand, `${path} ${s.name()}`);
  };
  for (const c of root.commands) walk(c as AnyCommand, c.name());
  // `service print JOB …` goes on with the job's own arguments and flags, and service print's.
  const node = (path: string) => nodes.find((n) => n.path === path);
  const print = node("service print");
  for (const [job, path] of [["reflect", "reflect"], ["sched", "sched run"]]) {
    const own = node(path);
    if (!print || !own) continue;
    const flags = [...new Set([...own.flags, ...print.flags])];
    nodes.push({
      ...own,
      path: `service print ${job}`,
      flags,
      values: { ...own.values, ...print.values },
      help: { ...own.help, ...print.help },
    });
  }
  return nodes;
}

const q = (words: string[]) => words.join(" ");

/** A `case` pattern for a path in bash/zsh (spaces quoted). */
const pat = (s: string) => `"${s}"`;

/** Network namespaces' names (ip netns). */
const NETNS_SH = "$(ls /run/netns 2>/dev/null)";

/** Interface names: Linux's /sys/class/net, else macOS's ifconfig -l. */
const IFACES_SH = "$(ls /sys/class/net 2>/dev/null || ifconfig -l 2>/dev/null)";

/** How bash and zsh differ in a completion function; the rest of it is the same text. */
interface ShDialect {
  /** The typed words, the current word's index, and the index of the first word after "fastpath". */
  words: string;
  current: string;
  first: number;
  /** What completes a flag's value (choices, or [] for a free value) and what completes `words`. */
  values(v: Values): string;
  candidates(words: string[], args: string): string;
  finish: string;
}

/** The body of `_fastpath` for bash or zsh: find the command path typed so far, then complete after it. */
function shFunction(nodes: CompletionNode[], d: ShDialect): string {
  const known = nodes.filter((n) => n.path && n.path !== "help").map((n) => pat(n.path)).join("|");
  const valueCases = nodes.flatMap((n) =>
    Object.entries(n.values).map(([flag, v]) => `    ${pat(`${n.path}|${flag}`)}) ${d.values(v)}; return ;;`)
  );
  const wordCases = nodes.map((n) => {
    const args = n.args === "iface" ? IFACES_SH : n.args ? q(n.args) : "";
    return `    ${pat(n.path)}) ${d.candidates([...n.subs, ...n.flags], args)} ;;`;
  });
  return `_fastpath() {
  local cur=\${${d.words}[${d.current}]} prev=\${${d.words}[${d.current}-1]} path_="" next w i words_=""
  local -a cands
  for ((i = ${d.first}; i < ${d.current}; i++)); do
    w=\${${d.words}[i]}
    next="$path_\${path_:+ }$w"
    case "$next" in
      ${known}) path_=$next ;;
      *) break ;;
    esac
  done
  case "$path_|$prev" in
${valueCases.join("\n")}
  esac
  case "$path_" in
${wordCases.join("\n")}
  esac
  ${d.finish}
}`;
}

export function bashScript(nodes: CompletionNode[]): string {
  const body = shFunction(nodes, {
    words: "COMP_WORDS",
    current: "COMP_CWORD",
    first: 1,
    values: (v) =>
      v === "files"
        ? `COMPREPLY=($(compgen -f -- "$cur"))`
        : `COMPREPLY=(${v.length ? `$(compgen -W "${v === "netns" ? NETNS_SH : q(v)}" -- "$cur")` : ""})`,
    candidates: (w, args) => `words_="${q(w)}"; [[ $cur == -* ]] || words_="$words_ ${args}"`,
    finish: `COMPREPLY=($(compgen -W "$words_" -- "$cur"))`,
  });
  return `# fastpath completion for bash: generated by 'fastpath completions bash' from the command table.
#   source <(fastpath completions bash)     or save it as /etc/bash_completion.d/fastpath
${body}
complete -F _fastpath fastpath
`;
}

export function zshScript(nodes: CompletionNode[]): string {
  const body = shFunction(nodes, {
    words: "words",
    current: "CURRENT",
    first: 2,
    values: (v) =>
      v === "files"
        ? "_files"
        : v === "netns"
        ? `compadd -- ${NETNS_SH}`
        : v.length
        ? `compadd -- ${q(v)}`
        : "_message 'a value'",
    candidates: (w, args) => `cands=(${q(w)}); [[ $cur == -* ]] || cands+=(${args})`,
    finish: "compadd -- $cands",
  });
  return `#compdef fastpath
# fastpath completion for zsh: generated by 'fastpath completions zsh' from the command table.
#   source <(fastpath completions zsh)     (after compinit), or save it as _fastpath in a $fpath directory
${body}
if [ "$funcstack[1]" = "_fastpath" ]; then _fastpath "$@"; else compdef _fastpath fastpath; fi
`;
}

export function fishScript(nodes: CompletionNode[]): string {
  const known = nodes.filter((n) => n.path && n.path !== "help").map((n) => `'${n.path}'`).join(" ");
  const lines: string[] = [];
  for (const n of nodes) {
    const cond = `-n "__fastpath_is '${n.path}'"`;
    if (n.subs.length) lines.push(`complete -c fastpath ${cond} -a '${q(n.subs)}'`);
    if (n.args === "iface") lines.push(`complete -c fastpath ${cond} -a '(__fastpath_ifaces)'`);
    else if (n.args) lines.push(`complete -c fastpath ${cond} -a '${q(n.args)}'`);
    for (const f of n.flags) {
      const v = n.values[f];
      const tail = v === undefined
        ? ""
        : v === "files"
        ? " -r -F"
        : v === "netns"
        ? " -x -a '(ls /run/netns 2>/dev/null)'"
        : v.length
        ? ` -x -a '${q(v)}'`
        : " -x";
      const d = n.help[f] ? ` -d '${n.help[f].split(/[:(;,]/)[0].trim().slice(0, 60).replaceAll("'", "\\'")}'` : "";
      lines.push(`complete -c fastpath ${cond} -l ${f.slice(2)}${tail}${d}`);
    }
  }
  return `# fastpath completion for fish: generated by 'fastpath completions fish' from the command table.
#   fastpath completions fish | source     or save it as ~/.config/fish/completions/fastpath.fish
set -g __fastpath_commands ${known}
function __fastpath_path
  set -l path
  for w in (commandline -opc)[2..-1]
    set -l next (string join -- ' ' $path $w)
    contains -- $next $__fastpath_commands; or break
    set path $path $w
  end
  string join -- ' ' $path
end
function __fastpath_is
  set -l p (__fastpath_path)
  test "$p" = "$argv[1]"
end
function __fastpath_ifaces
  ls /sys/class/net 2>/dev/null; or ifconfig -l 2>/dev/null | string split ' '
end
complete -c fastpath -f
${lines.join("\n")}
`;
}

export const completions = command("completions", {
  summary: "print shell completion for bash, zsh or fish (generated from this command table)",
  usage: "bash|zsh|fish",
  description: `Completes commands, subcommands, flags, the choices of a flag and interface names.
bash: source <(fastpath completions bash)   (or save it as /etc/bash_completion.d/fastpath)
zsh:  source <(fastpath completions zsh)    (after compinit; or save it as _fastpath in $fpath)
fish: fastpath completions fish | source    (or save it as ~/.config/fish/completions/fastpath.fish)`,
  examples: [
    "fastpath completions bash | sudo tee /etc/bash_completion.d/fastpath",
    "fastpath completions fish > ~/.config/fish/completions/fastpath.fish",
  ],
})
  .argument("<SHELL>")
  .action((shell, _f, cmd) => {
    if (!(SHELLS as readonly string[]).includes(shell)) {
      throw new FastpathError(
        "usage",
        `completions are for bash, zsh or fish, not '${shell}': see 'fastpath completions --help'`,
      );
    }
    const root = cmd.parent as AnyCommand | null;
    if (!root) throw new FastpathError("failed", "completions: no command table to complete");
    const nodes = completionTree(root);
    const text = shell === "bash" ? bashScript(nodes) : shell === "zsh" ? zshScript(nodes) : fishScript(nodes);
    console.log(text.trimEnd());
    setExit(0);
  });
