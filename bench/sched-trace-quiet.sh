#!/bin/bash
# bench/sched-trace-quiet.sh - a quiet machine's timer wake-ups traced under the default scheduler
# and under fastpath, alternating (docs/sched-measurements.md, "The quiet row in a trace"). Runs in
# the sched_ext VM, as root:
#
#   ../shared/vm/run-vm.sh --share "$PWD" --timeout 900 -- /bin/bash "$PWD/bench/sched-trace-quiet.sh" [ROUNDS]
#
# ROUNDS (default 3) times: a 6 s `fp-schedprobe --frame-work-us 4000` (bench:sched's quiet-4ms row:
# a 60 Hz frame loop and a 1 kHz waker, no load) under the default scheduler, then the same under
# `fastpath sched run`. tracefs records hrtimer_start, hrtimer_expire_entry, sched_waking,
# sched_switch and sched_migrate_task during each probe, on the mono clock (so a timestamp compares
# with the expiry a timer was armed for). Writes .vm/trace-quiet/ afresh (what an earlier run left
# there is removed first): default-N.txt and fastpath-N.txt (the traces), default-N.json and
# fastpath-N.json (the probe's results), sched-N.log. Read the traces with
# bench/sched_trace_wakeups.py. SCHED_ARGS adds flags to `sched run` (e.g. "--no-signals"). Build
# first (scripts/build: the library and fp-schedprobe); exit 2 for a bad ROUNDS, 1 when the probe is
# not built or fastpath does not attach.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "sched-trace-quiet.sh: ROUNDS must be 1 to 99, not '$ROUNDS'" >&2; exit 2; }
export DENO_DIR=$ROOT/.tools/deno-dir NO_COLOR=1
OUT=$ROOT/.vm/trace-quiet
T=/sys/kernel/tracing
cd "$ROOT" || exit 1
[ -x zig/zig-out/bin/fp-schedprobe ] || { echo "sched-trace-quiet.sh: zig/zig-out/bin/fp-schedprobe is not built: run scripts/build first" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"
mountpoint -q $T || mount -t tracefs nodev $T
echo 0 > $T/tracing_on
echo mono > $T/trace_clock
echo 20000 > $T/buffer_size_kb
echo 'timer:hrtimer_start timer:hrtimer_expire_entry sched:sched_waking sched:sched_switch sched:sched_migrate_task' > $T/set_event
sched=
trap 'echo 0 > $T/tracing_on; [ -n "$sched" ] && kill -INT $sched 2>/dev/null && wait $sched' EXIT
probe() { # $1: the files' name
  echo > $T/trace
  echo 1 > $T/tracing_on
  zig/zig-out/bin/fp-schedprobe --duration-s 6 --frame-work-us 4000 > "$OUT/$1.json"
  echo 0 > $T/tracing_on
  cp $T/trace "$OUT/$1.txt"
}
for i in $(seq "$ROUNDS"); do
  probe "default-$i"
  .tools/bin/deno run -A --unstable-ffi main.ts sched run ${SCHED_ARGS:-} > "$OUT/sched-$i.log" 2>&1 &
  sched=$!
  for _ in $(seq 240); do grep -q enabled /sys/kernel/sched_ext/state 2>/dev/null && break; sleep 0.5; done
  grep -q enabled /sys/kernel/sched_ext/state || { echo "fastpath did not attach: see $OUT/sched-$i.log" >&2; exit 1; }
  sleep 3
  probe "fastpath-$i"
  kill -INT $sched && wait $sched
  sched=
  sleep 2
done
