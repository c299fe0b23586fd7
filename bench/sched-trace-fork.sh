#!/bin/bash
# bench/sched-trace-fork.sh - where a new thread's first run waits beside a fork storm, under the
# default scheduler and under fastpath, alternating (docs/sched-measurements.md, "A new thread's
# first run beside a fork storm, traced"). Runs in the sched_ext VM, as root:
#
#   ../shared/vm/run-vm.sh --share "$PWD" --timeout 900 -- /bin/bash "$PWD/bench/sched-trace-fork.sh" [ROUNDS]
#
# ROUNDS (default 4) times, for the default scheduler and then fastpath (Scheduler.start in a
# `deno eval` child, as bench:sched's --baseline runs it): `stress-ng --fork 4` (bench:sched's
# fork-4ms load on 2 CPUs), and a second later a 1 s `fp-schedprobe --frame-work-us 4000
# --wake-period-us 0` under tracefs (sched_switch, sched_wakeup_new, sched_waking,
# sched_process_fork, sched_process_exec, sched_migrate_task; mono clock). Writes .vm/trace-fork/
# afresh: default-N.txt, fastpath-N.txt (the traces) and their .json (the probe's results). Read
# them with bench/sched_trace_fork.py. Build first (scripts/build); exit 2 for a bad ROUNDS, 1 when
# it is not run as root on a kernel with sched_ext and no scheduler attached, stress-ng or the probe
# is missing, or fastpath does not attach - each checked before anything is changed. Only the
# storms it starts are killed (their process group); tracing is switched off at the end (the event
# list, clock and buffer size it set stay).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1-4}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "sched-trace-fork.sh: ROUNDS must be 1 to 99, not '$ROUNDS'" >&2; exit 2; }
export DENO_DIR=$ROOT/.tools/deno-dir NO_COLOR=1
OUT=$ROOT/.vm/trace-fork
T=/sys/kernel/tracing
cd "$ROOT" || exit 1
fail() { echo "sched-trace-fork.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (tracefs, the scheduler): run it in the sched_ext VM as the header says"
[ "$(cat /sys/kernel/sched_ext/state 2>/dev/null)" = disabled ] || fail "needs a kernel with sched_ext and no scheduler attached (../shared/vm has one)"
command -v stress-ng > /dev/null || fail "stress-ng is not on PATH: install it (scripts/setup --test)"
[ -x zig/zig-out/bin/fp-schedprobe ] || fail "zig/zig-out/bin/fp-schedprobe is not built: run scripts/build first"
rm -rf "$OUT" && mkdir -p "$OUT"
mountpoint -q $T || mount -t tracefs nodev $T
echo 0 > $T/tracing_on
echo mono > $T/trace_clock
echo 40000 > $T/buffer_size_kb
echo 'sched:sched_switch sched:sched_wakeup_new sched:sched_waking sched:sched_process_fork sched:sched_process_exec sched:sched_migrate_task' > $T/set_event
sched= storm=
trap 'echo 0 > $T/tracing_on; [ -n "$storm" ] && kill -KILL -- -$storm 2>/dev/null; [ -n "$sched" ] && kill -TERM $sched 2>/dev/null && wait $sched' EXIT
for i in $(seq "$ROUNDS"); do
  for s in default fastpath; do
    if [ $s = fastpath ]; then
      .tools/bin/deno eval --unstable-ffi "import { Scheduler } from '$ROOT/mod.ts';
const s = await Scheduler.start({});
await new Promise((r) => Deno.addSignalListener('SIGTERM', r));
s.stop();
s.close();" > "$OUT/sched-$i.log" 2>&1 &
      sched=$!
      for _ in $(seq 240); do grep -q enabled /sys/kernel/sched_ext/state 2>/dev/null && break; sleep 0.5; done
      grep -q enabled /sys/kernel/sched_ext/state || { echo "fastpath did not attach: see $OUT/sched-$i.log" >&2; exit 1; }
      sleep 2
    fi
    (cd /tmp && exec setsid stress-ng --fork 4 --timeout 20s --quiet) &
    storm=$!
    sleep 1
    echo > $T/trace
    echo 1 > $T/tracing_on
    zig/zig-out/bin/fp-schedprobe --duration-s 1 --frame-work-us 4000 --wake-period-us 0 > "$OUT/$s-$i.json"
    echo 0 > $T/tracing_on
    cp $T/trace "$OUT/$s-$i.txt"
    kill -KILL -- -$storm 2>/dev/null # its process group: setsid made it the leader
    wait $storm 2>/dev/null
    storm=
    if [ -n "$sched" ]; then kill -TERM $sched && wait $sched; sched=; fi
    sleep 1
  done
done
