#!/usr/bin/env python3
"""Runs a command in a pseudo-terminal, as a person at a terminal would, for tests/dashboard_test.ts.

  pty_run.py CONFIG_JSON
      CONFIG_JSON: {"argv": [...], "env": {...}, "size": [COLS, ROWS], "timeout_s": N,
                    "steps": [{"wait_for": TEXT, "then": "resize", "size": [COLS, ROWS]} |
                              {"wait_for": TEXT, "then": "ctrl_c" | "ctrl_z" | "sigterm" | "sigcont"} |
                              {"sleep_s": N}]}
      Starts argv on a new terminal of that size (the child's controlling terminal, so Ctrl-C and
      resizes reach it from the kernel as from a terminal emulator), then for each step waits until
      TEXT has appeared in the output since the previous step (or sleeps), and resizes the terminal
      (the kernel sends SIGWINCH), types Ctrl-C or Ctrl-Z, or sends the child SIGTERM or SIGCONT. Prints JSON {"code": exit code (-N: killed by
      signal N), "timed_out": bool, "chunks": [[STEPS_DONE, BASE64 OUTPUT], ...]}.
"""
import base64
import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import termios
import time


def set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    cfg = json.loads(sys.argv[1])
    cols, rows = cfg["size"]
    pid, fd = pty.fork()
    if pid == 0:
        set_size(0, cols, rows)  # before exec: the child's first look at its size sees this one
        os.execvpe(cfg["argv"][0], cfg["argv"], {**os.environ, **cfg.get("env", {})})
    deadline = time.monotonic() + cfg.get("timeout_s", 60)
    steps = list(cfg.get("steps", []))
    done = 0
    seen = b""  # output since the last step
    chunks = []
    timed_out = False
    step_started = time.monotonic()
    while True:
        if done < len(steps):
            step = steps[done]
            ready = (
                step["wait_for"].encode() in seen
                if "wait_for" in step
                else time.monotonic() - step_started >= step["sleep_s"]
            )
            if ready:
                if step.get("then") == "resize":
                    set_size(fd, *step["size"])
                elif step.get("then") == "ctrl_c":
                    os.write(fd, b"\x03")
                elif step.get("then") == "ctrl_z":
                    os.write(fd, b"\x1a")
                elif step.get("then") == "sigterm":
                    os.kill(pid, signal.SIGTERM)
                elif step.get("then") == "sigcont":
                    os.kill(pid, signal.SIGCONT)
                done += 1
                seen = b""
                step_started = time.monotonic()
                continue
        if time.monotonic() > deadline:
            timed_out = True
            os.kill(pid, 9)
            deadline = float("inf")
        r, _, _ = select.select([fd], [], [], 0.05)
        if not r:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child and everything it started have closed the terminal
            break
        if not data:
            break
        seen += data
        chunks.append([done, base64.b64encode(data).decode()])
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps({"code": code, "timed_out": timed_out, "chunks": chunks}))


if __name__ == "__main__":
    main()
