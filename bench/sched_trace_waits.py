#!/usr/bin/env python3
"""The frame thread's longest waits in traces from bench/sched-trace.sh.

usage: python3 bench/sched_trace_waits.py .vm/trace/trace-*.txt

For each trace (tracefs text with sched_switch events and a "probe start" marker): the frame thread
(the fp-schedprobe thread switched in most often), how many times it waited more than 10 ms while
runnable (switched out in state R, or R+, until switched in again), and its three longest such waits:
when (ms after the marker) and what ran on the CPUs meanwhile, in ms ("stress-ng": the hogs together;
others as comm/tid).
"""
import collections
import re
import sys

EVENT = re.compile(r"\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (\w+): (.*)")
SWITCH = re.compile(r"prev_comm=(.+?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+)")


def waits_of(path):
    start = None
    switches = []  # (time s, cpu, prev tid, prev state, next comm, next tid)
    for line in open(path):
        m = EVENT.match(line)
        if not m:
            continue
        t, cpu, kind, rest = float(m.group(4)), int(m.group(3)), m.group(5), m.group(6)
        if kind == "tracing_mark_write" and "probe start" in rest and start is None:
            start = t
        elif kind == "sched_switch":
            s = SWITCH.search(rest)
            switches.append((t, cpu, int(s.group(2)), s.group(3), s.group(4), int(s.group(5))))
    if start is None or not switches:
        sys.exit(f"{path}: no 'probe start' marker or no sched_switch events: not a trace of bench/sched-trace.sh")
    ins = collections.Counter(s[5] for s in switches if s[4] == "fp-schedprobe")
    frame = ins.most_common(1)[0][0]
    waits, out, state = [], None, ""
    for t, _, prev, st, _, nxt in switches:
        if prev == frame:
            out, state = t, st
        if nxt == frame and out is not None and state.startswith("R"):
            waits.append((t - out, out, t))
    waits.sort(reverse=True)
    print(f"{path} frame tid {frame} runnable waits >10ms: {len([w for w in waits if w[0] > 0.010])}")
    for w, a, b in waits[:3]:
        ran, cur = collections.Counter(), {}
        for t, cpu, _, _, comm, tid in switches:
            if t > b:
                break
            if cpu in cur and t > a:
                what, since = cur[cpu]
                ran[what] += min(t, b) - max(since, a)
            cur[cpu] = ("stress-ng" if comm.startswith("stress-ng") else f"{comm}/{tid}", t)
        for cpu, (what, since) in cur.items():  # still running at the end of the wait
            if since < b:
                ran[what] += b - max(since, a)
        ran.pop(f"fp-schedprobe/{frame}", None)
        top = ", ".join(f"{k} {v * 1000:.1f}" for k, v in ran.most_common(6))
        print(f"   wait {w * 1000:6.1f} ms at {(a - start) * 1000:7.1f} ms: {top}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip().split("\n\n")[1])
    for p in sys.argv[1:]:
        waits_of(p)
