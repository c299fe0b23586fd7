#!/usr/bin/env python3
"""Where a new thread's first run waits, in traces from bench/sched-trace-fork.sh.

usage: python3 bench/sched_trace_fork.py .vm/trace-fork/*.txt

For each trace (tracefs text on the mono clock with sched_switch, sched_wakeup_new,
sched_process_fork and sched_process_exec) and the probe's result beside it (the same name, .json):
fp-schedprobe's exec, its clone of the frame thread and that thread's first run, in ms -
  exec->clone    from the exec to the clone, and how much of it the main thread ran and how much it
                 waited runnable (switched out in state R until switched in again)
  woken->run     from sched_wakeup_new of the new thread to its first switch-in, with the CPUs it
                 was woken for and ran on, and what ran on each CPU meanwhile (ms by command name)
and the probe's own thread_start_us (from main()'s start, after the exec, to the thread's first run).
Exit status: 0; 1 when a file cannot be read or holds no exec of fp-schedprobe; 2 without a file.
"""
import collections
import json
import os
import re
import sys

from sched_trace_wakeups import events, fields  # tracefs text: one parser for the bench's traces

SWITCH = re.compile(r"prev_comm=(.+?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+)")


def first(evs, pred):
    return next((e for e in evs if pred(e)), None)


def switch_of(rest):
    """A sched_switch's fields (prev comm, prev pid, prev state, next comm, next pid); None for a line cut short."""
    m = SWITCH.search(rest)
    return m and (m.group(1), int(m.group(2)), m.group(3), m.group(4), int(m.group(5)))


def switches(evs):
    """The whole sched_switch events: (time, cpu, fields)."""
    out = []
    for t, cpu, kind, rest, _pid in evs:
        sw = switch_of(rest) if kind == "sched_switch" else None
        if sw:
            out.append((t, cpu, sw))
    return out


def report(path):
    evs = events(path)
    ex = first(evs, lambda e: e[2] == "sched_process_exec" and "fp-schedprobe" in e[3])
    if not ex:
        return None
    main, t_exec = int(fields(ex[3]).get("pid", -1)), ex[0]
    fork = first(
        evs,
        lambda e: e[0] >= t_exec and e[2] == "sched_process_fork" and int(fields(e[3]).get("pid", -1)) == main
        and "child_pid" in fields(e[3]),
    )
    if not fork:
        return None
    tid, t_fork = int(fields(fork[3])["child_pid"]), fork[0]
    woken = first(evs, lambda e: e[2] == "sched_wakeup_new" and int(fields(e[3]).get("pid", -1)) == tid)
    sws = switches(evs)
    run = first(sws, lambda e: e[0] >= t_fork and e[2][4] == tid)
    # The main thread between its exec and the clone: running, or runnable and waiting.
    ran = waited = 0.0
    on = off = None
    for t, _cpu, (_, prev, state, _, nxt) in sws:
        if t < t_exec or t > t_fork:
            continue
        if prev == main:
            if on is not None:
                ran += t - on
                on = None
            off = t if state.startswith("R") else None
        if nxt == main:
            if off is not None:
                waited += t - off
                off = None
            on = t
    if on is not None:
        ran += t_fork - on
    # What ran on each CPU while the new thread waited.
    busy = collections.Counter()
    if woken and run:
        cur = {}
        for t, cpu, sw in sws:
            if t > woken[0] and t <= run[0] and cpu in cur:
                busy[(cpu, cur[cpu][0])] += t - max(cur[cpu][1], woken[0])
            if t > run[0]:
                break
            cur[cpu] = (sw[3], t)
        for cpu, (name, since) in cur.items():
            if since < run[0]:
                busy[(cpu, name)] += run[0] - max(since, woken[0])
    result_path = os.path.splitext(path)[0] + ".json"
    try:
        start_us = json.load(open(result_path))["thread_start_us"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"the probe's result {result_path} beside it gives no thread_start_us ({e})") from None
    line = (f"{os.path.basename(path)}: thread_start {start_us / 1000:.2f} ms; "
            f"exec->clone {(t_fork - t_exec) * 1000:.2f} (main ran {ran * 1000:.2f}, waited runnable {waited * 1000:.2f})")
    if woken and run:
        line += (f"; woken (CPU {fields(woken[3]).get('target_cpu', '?').lstrip('0') or '0'})->run (CPU {run[1]}) "
                 f"{(run[0] - woken[0]) * 1000:.2f} ms")
        meanwhile = [f"CPU {c} {n} {v * 1000:.1f}" for (c, n), v in sorted(busy.items()) if v >= 0.0001]
        if meanwhile:
            line += ": " + ", ".join(meanwhile)
    return line


def main(paths):
    if not paths:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            line = report(path)
        except (OSError, ValueError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            status = 1
            continue
        if line is None:
            print(f"error: {path}: no exec of fp-schedprobe and clone of its thread in it", file=sys.stderr)
            status = 1
            continue
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
