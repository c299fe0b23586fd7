#!/usr/bin/env python3
"""Where a timer wake-up's time goes, in traces from bench/sched-trace-quiet.sh.

usage: python3 bench/sched_trace_wakeups.py .vm/trace-quiet/*.txt

For each trace (tracefs text on the mono clock with hrtimer_start, hrtimer_expire_entry,
sched_waking, sched_switch and sched_migrate_task): for each thread of fp-schedprobe woken more than
50 times (its frame thread, about 60 a second, and its 1 kHz waker), every wake-up from its own
timer split into three parts, in µs:
  timer    the timer's callback starts (hrtimer_expire_entry) after the time the thread asked for
           (the timer's soft expiry: what fp-schedprobe counts a wake-up's lateness from)
  waking   sched_waking after that
  to run   the thread switched in after that
with the median and p99 of each and of their sum, and how many sums were over 0.3 ms - of those,
how many ran on another CPU than the one that woke them, and how many ran only after that CPU's
tick fired (a tick_nohz_handler callback between the wake-up and the switch). Then the CPU time of
everything else that ran during the trace, in ms per second, by command name (idle left out).
Exit status: 0; 1 when a file cannot be read or holds no fp-schedprobe wake-ups; 2 without a file.
"""
import collections
import re
import statistics
import sys

EVENT = re.compile(r"\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (\w+): (.*)")
SWITCH = re.compile(r"prev_comm=(.+?) prev_pid=(\d+) .* next_comm=(.+?) next_pid=(\d+)")
SLOW_S = 0.0003


def fields(rest):
    return dict(re.findall(r"(\w+)=(\S+)", rest))


def events(path):
    out = []
    for line in open(path, errors="replace"):
        m = EVENT.match(line)
        if m:
            out.append((float(m.group(4)), int(m.group(3)), m.group(5), m.group(6), int(m.group(2))))
    return out


def wakeups(evs, tid):
    """(timer, waking, to run, total) in s, migrated, ticked - one per wake-up from tid's own timer."""
    armed = {}  # hrtimer -> soft expiry (s), for timers tid armed
    fired = {}  # cpu -> (callback start, soft expiry)
    pending = None  # (soft expiry, callback start, waking, waking cpu, index of waking)
    rows = []
    for i, (t, cpu, kind, rest, pid) in enumerate(evs):
        if kind == "hrtimer_start" and pid == tid:
            f = fields(rest)
            armed[f["hrtimer"]] = int(f["softexpires"]) / 1e9
        elif kind == "hrtimer_expire_entry":
            f = fields(rest)
            if f["hrtimer"] in armed:
                fired[cpu] = (t, armed[f["hrtimer"]])
        elif kind == "sched_waking" and fields(rest).get("pid") == str(tid) and cpu in fired:
            start, soft = fired.pop(cpu)
            pending = (soft, start, t, cpu, i)
        elif kind == "sched_switch" and pending and re.search(rf"next_pid={tid}\b", rest):
            soft, start, waking, wcpu, j = pending
            ticked = any(
                evs[k][2] == "hrtimer_expire_entry" and evs[k][1] == cpu and "tick_nohz_handler" in evs[k][3]
                for k in range(j + 1, i)
            )
            rows.append((start - soft, waking - start, t - waking, t - soft, cpu != wcpu, ticked))
            pending = None
    return rows


def cpu_time(evs):
    """ms of CPU per s of trace, by command name (from sched_switch), and the trace's length in s."""
    since, used = {}, collections.Counter()
    switches = [(t, cpu, SWITCH.search(rest)) for t, cpu, kind, rest, _ in evs if kind == "sched_switch"]
    if len(switches) < 2:
        return used, 0
    for t, cpu, m in switches:
        if m is None:  # a line cut short (a trace copied while it was written)
            continue
        if cpu in since:
            used[since[cpu][1]] += t - since[cpu][0]
        since[cpu] = (t, m.group(3))
    length = switches[-1][0] - switches[0][0]
    return {k: v / length * 1000 for k, v in used.items() if not k.startswith("swapper")}, length


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def main():
    if len(sys.argv) < 2:
        print("usage: python3 bench/sched_trace_wakeups.py TRACE.txt... (from bench/sched-trace-quiet.sh)", file=sys.stderr)
        sys.exit(2)
    status = 0
    for path in sys.argv[1:]:
        try:
            evs = events(path)
        except OSError as e:
            print(f"error: {path}: {e.strerror}: give a trace that bench/sched-trace-quiet.sh wrote", file=sys.stderr)
            status = 1
            continue
        woken = collections.Counter(
            int(fields(rest)["pid"]) for _, _, kind, rest, _ in evs if kind == "sched_waking" and "comm=fp-schedprobe" in rest
        )
        print(path)
        if not any(n > 50 for n in woken.values()):
            print(f"error: {path}: no fp-schedprobe thread woken more than 50 times: not a trace of bench/sched-trace-quiet.sh", file=sys.stderr)
            status = 1
            continue
        for tid in sorted((t for t in woken if woken[t] > 50), key=lambda t: woken[t]):
            rows = wakeups(evs, tid)
            if not rows:
                continue
            us = lambda k, f: f([r[k] for r in rows]) * 1e6
            slow = [r for r in rows if r[3] > SLOW_S]
            parts = "  ".join(
                f"{name} {us(k, statistics.median):.0f}/{us(k, lambda xs: pct(xs, 0.99)):.0f}"
                for k, name in ((0, "timer"), (1, "waking"), (2, "to run"), (3, "total"))
            )
            print(
                f"  thread {tid} ({len(rows)} timer wake-ups), median/p99 µs: {parts}; over 0.3 ms: {len(slow)}"
                f" ({sum(r[4] for r in slow)} on another CPU, {sum(r[5] for r in slow)} after that CPU's tick)"
            )
        used, length = cpu_time(evs)
        top = sorted(((v, k) for k, v in used.items() if k != "fp-schedprobe"), reverse=True)[:6]
        print(f"  CPU besides fp-schedprobe over {length:.1f} s, ms/s: " + ", ".join(f"{k} {v:.1f}" for v, k in top))
    return status


if __name__ == "__main__":
    sys.exit(main())
