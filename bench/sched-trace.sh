#!/bin/bash
# bench/sched-trace.sh - where the frame thread waits beside eight CPU hogs under fastpath (the
# trace in docs/sched-measurements.md). Runs in the sched_ext VM, as root:
#
#   ../shared/vm/run-vm.sh --share "$PWD" --timeout 900 -- /bin/bash "$PWD/bench/sched-trace.sh" [ROUNDS]
#
# Starts `fastpath sched run` once, then ROUNDS (default 7) rounds of `stress-ng --cpu 8` with one
# 8 s `fp-schedprobe --frame-work-us 6000 --wake-period-us 0` each, tracefs recording sched_switch,
# sched_wakeup, sched_waking and sched_migrate_task during the probe. Writes .vm/trace/: probe-N.json
# for every round, trace-N.txt for rounds whose worst frame took 30 ms or more, rounds.txt. Read the
# traces with bench/sched_trace_waits.py. The tracing slows the VM: traced rounds miss more frames.
# SCHED_ARGS adds flags to `sched run` (e.g. "--foreground fp-schedprobe"); PROBE_ARGS adds flags to
# the probe (e.g. "--work-clock wall"), after the ones above.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-7}
export DENO_DIR=$ROOT/.tools/deno-dir NO_COLOR=1
OUT=$ROOT/.vm/trace
T=/sys/kernel/tracing
cd "$ROOT" || exit 1
rm -rf "$OUT" && mkdir -p "$OUT"
mountpoint -q $T || mount -t tracefs nodev $T
echo 0 > $T/tracing_on
echo 40000 > $T/buffer_size_kb
echo 'sched:sched_switch sched:sched_wakeup sched:sched_waking sched:sched_migrate_task' > $T/set_event
.tools/bin/deno run -A --unstable-ffi main.ts sched run ${SCHED_ARGS:-} > "$OUT/sched.log" 2>&1 &
sched=$!
trap 'echo 0 > $T/tracing_on; pkill -KILL stress-ng; kill -INT $sched 2>/dev/null; wait $sched' EXIT
for _ in $(seq 240); do grep -q enabled /sys/kernel/sched_ext/state 2>/dev/null && break; sleep 0.5; done
grep -q enabled /sys/kernel/sched_ext/state || { echo "fastpath did not attach: see $OUT/sched.log" >&2; exit 1; }
sleep 3
for i in $(seq "$ROUNDS"); do
  echo > $T/trace
  stress-ng --cpu 8 -t 12s --quiet &
  hogs=$!
  sleep 1
  echo 1 > $T/tracing_on
  echo "probe start" > $T/trace_marker
  zig/zig-out/bin/fp-schedprobe --duration-s 8 --frame-work-us 6000 --wake-period-us 0 ${PROBE_ARGS:-} > "$OUT/probe-$i.json"
  echo 0 > $T/tracing_on
  kill $hogs; pkill -KILL stress-ng; wait $hogs
  worst=$(python3 -c "import json; print(int(json.load(open('$OUT/probe-$i.json'))['frame_worst_us']))")
  echo "round $i worst $worst" >> "$OUT/rounds.txt"
  [ "$worst" -ge 30000 ] && cp $T/trace "$OUT/trace-$i.txt"
  sleep 1
done
