import assert from "node:assert/strict";
import { cli, isRoot, labPrefix, skipUnless } from "./helpers.ts";
import { run } from "../src/net.ts";

/** Whether `program` runs here (`-c CODE` does nothing in it). */
const has = async (program: string, code = "exit 0") =>
  (await run([program, "-c", code]).catch(() => undefined))?.code === 0;

/** The completion script for `shell`, written to a file. */
async function script(shell: string, dir: string): Promise<string> {
  const r = await cli(["completions", shell]);
  assert.equal(r.code, 0, r.stderr);
  const file = `${dir}/fastpath.${shell}`;
  await Deno.writeTextFile(file, r.stdout);
  return file;
}

/** What bash offers for `words` (typed so far, the last one being completed), as its readline would. */
async function bashComplete(file: string, words: string[]): Promise<string[]> {
  const arr = words.map((w) => `'${w}'`).join(" ");
  const r = await run([
    "bash",
    "-c",
    `source '${file}'; COMP_WORDS=(${arr}); COMP_CWORD=${
      words.length - 1
    }; _fastpath; printf '%s\\n' "\${COMPREPLY[@]}"`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

/** What fish offers for `line` (its own `complete -C`, as at a prompt). */
async function fishComplete(file: string, line: string): Promise<string[]> {
  const r = await run(["fish", "--no-config", "-c", `source '${file}'; complete -C '${line}'`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "", `fish printed errors completing '${line}'`);
  return r.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]);
}

/**
 * The line zsh has after typing `line` and a Tab at an interactive prompt (in a pseudo-terminal,
 * python3's pty module), then Enter: a `fastpath` function prints the words it got.
 */
async function zshTab(file: string, line: string): Promise<string> {
  const py = `
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.environ.update(TERM="dumb", HOME=sys.argv[1])
    os.execvp("zsh", ["zsh", "-f", "-i"])
def read(t, until=None):
    out, end = b"", time.time() + t
    while time.time() < end and not (until and until in out):
        if select.select([fd], [], [], 0.1)[0]:
            try: out += os.read(fd, 4096)
            except OSError: break
    return out
os.write(fd, ("autoload -U compinit; compinit -u; source %s; fastpath() { print -r -- \\"ARGS:$*:END\\" }; print READY\\n" % sys.argv[2]).encode())
read(5, b"READY\\r\\n")
os.write(fd, (sys.argv[3] + "\\t").encode()); read(1)
os.write(fd, b"\\n"); out = read(5, b":END")
os.write(fd, b"exit\\n"); read(0.5)
sys.stdout.write(out.decode(errors="replace"))
`;
  const home = file.replace(/\/[^/]+$/, "");
  const r = await run(["python3", "-c", py, home, file, line]);
  return /ARGS:(.*):END/.exec(r.stdout)?.[1] ?? `(no line: ${JSON.stringify(r.stdout + r.stderr)})`;
}

Deno.test("shell completion", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "fastpath-completions-" });
  try {
    await t.step("bash completes commands, a flag and a flag's choices", async () => {
      const file = await script("bash", dir);
      assert.deepEqual(await bashComplete(file, ["fastpath", "re"]), ["reflect"]);
      assert.deepEqual(await bashComplete(file, ["fastpath", "reflect", "lo", "--mo"]), ["--mode"]);
      assert.deepEqual(await bashComplete(file, ["fastpath", "reflect", "lo", "--mode", "a"]), ["auto", "afxdp"]);
      assert.deepEqual(await bashComplete(file, ["fastpath", "sched", "run", "--slice-m"]), ["--slice-min-us"]);
      assert.ok((await bashComplete(file, ["fastpath", "reflect", ""])).includes("lo"), "interface names");
    });

    await t.step("zsh completes a flag and a choice at an interactive prompt", async () => {
      if (skipUnless(await has("zsh"), "zsh is not installed (scripts/setup --test installs it)")) return;
      if (skipUnless(await has("python3", "pass"), "python3 is not installed (it drives the pseudo-terminal)")) return;
      const file = await script("zsh", dir);
      assert.equal(await zshTab(file, "fastpath reflect lo --mo"), "reflect lo --mode");
      assert.equal(await zshTab(file, "fastpath reflect lo --mode pa"), "reflect lo --mode packet");
      assert.equal(await zshTab(file, "fastpath sched ru"), "sched run");
    });

    await t.step("fish completes a flag and a choice", async () => {
      if (skipUnless(await has("fish"), "fish is not installed (scripts/setup --test installs it)")) return;
      const file = await script("fish", dir);
      assert.deepEqual(await fishComplete(file, "fastpath reflect lo --mo"), ["--mode"]);
      assert.deepEqual((await fishComplete(file, "fastpath reflect lo --mode ")).sort(), [
        "afxdp",
        "auto",
        "bpf",
        "packet",
        "xdp",
      ]);
      assert.deepEqual(await fishComplete(file, "fastpath lab r"), ["run"]);
    });

    await t.step(
      "completion goes on past a flag's value and after service print's job, and offers shells, paths, namespaces and signatures",
      async () => {
        const ns = `${labPrefix("fpc")}-ns`;
        const made = isRoot && (await run(["ip", "netns", "add", ns])).code === 0;
        try {
          const bash = await script("bash", dir);
          const b = (...w: string[]) => bashComplete(bash, ["fastpath", ...w]);
          assert.deepEqual(await b("reflect", "lo", "--mode", "xdp", "--mo"), ["--mode"]);
          assert.ok((await b("service", "print", "reflect", "lo", "--")).includes("--mode"), "reflect's flags");
          assert.ok((await b("service", "print", "reflect", "lo", "--")).includes("--manager"), "service print's own");
          assert.deepEqual(await b("service", "print", "reflect", "lo", "--mode", "pa"), ["packet"]);
          assert.ok((await b("service", "print", "sched", "--")).includes("--slice-us"), "sched run's flags");
          assert.deepEqual((await b("completions", "")).filter((w) => !w.startsWith("-")), ["bash", "zsh", "fish"]);
          assert.deepEqual(await b("probe", "lo", "--signature", "RFC"), ["RFC2544"]);
          assert.deepEqual(await b("reflect", "lo", "--stats-socket", `${dir}/fastpath.ba`), [`${dir}/fastpath.bash`]);
          if (made) assert.ok((await b("reflect", "lo", "--netns", "")).includes(ns), "namespace names");
          if (skipUnless(await has("fish"), "fish is not installed (scripts/setup --test installs it)")) return;
          const fish = await script("fish", dir);
          const f = (line: string) => fishComplete(fish, line);
          assert.deepEqual(await f("fastpath reflect lo --mode xdp --mo"), ["--mode"]);
          // A flag right after the command is a word fish's `string join` must not take as its option.
          assert.deepEqual(await f("fastpath reflect --mode xdp --mo"), ["--mode"]);
          assert.ok((await f("fastpath service print reflect lo --")).includes("--mode"), "reflect's flags");
          assert.deepEqual((await f("fastpath completions ")).filter((w) => !w.startsWith("-")).sort(), [
            "bash",
            "fish",
            "zsh",
          ]);
          assert.deepEqual(await f("fastpath probe lo --signature RFC"), ["RFC2544"]);
          assert.deepEqual(await f(`fastpath service print reflect lo --exec ${dir}/fastpath.fi`), [
            `${dir}/fastpath.fish`,
          ]);
          if (made) assert.ok((await f("fastpath reflect lo --netns ")).includes(ns), "namespace names");
        } finally {
          if (made) await run(["ip", "netns", "del", ns]);
        }
      },
    );

    await t.step("every flag a command's help lists is completed for it (the table is the one source)", async () => {
      const file = await script("bash", dir);
      for (const path of [["reflect"], ["probe"], ["lab", "run"], ["sched", "run"], ["doctor"], ["service", "print"]]) {
        const help = await cli([...path, "--help"]);
        const own = help.stdout.split(/\n\n(Flags of \w+:)/)[0]; // a command with subcommands lists theirs after
        const listed = [...own.matchAll(/^ {2}(?:-\w, )?(--[a-z0-9-]+)/gm)].map((m) => m[1]);
        assert.ok(listed.length > 1, `${path.join(" ")}: no flags in its help`);
        const offered = await bashComplete(file, ["fastpath", ...path, "--"]);
        assert.deepEqual(offered.filter((f) => listed.includes(f)).sort(), [...new Set(listed)].sort(), path.join(" "));
      }
    });

    await t.step("an unknown shell is a usage error naming the three", async () => {
      const r = await cli(["completions", "powershell"]);
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr.trim(),
        "error: completions are for bash, zsh or fish, not 'powershell': see 'fastpath completions --help'",
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
