#!/bin/bash
# Runs INSIDE the sched_ext test VM (scripts/test boots it with ../shared/vm/run-vm.sh), or directly
# on a host whose kernel has sched_ext. Writes the JUnit report to $1; with $2, runs only the steps
# whose name that regular expression matches (FP_VM_STEPS, tests/helpers.ts vmStep).
set -u
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export NO_COLOR=1
if [ -n "${2:-}" ]; then export FP_VM_STEPS="$2"; fi
echo "guest: kernel $(uname -r), $(nproc) CPUs, sched_ext state $(cat /sys/kernel/sched_ext/state 2>/dev/null || echo absent)"
exec "$root/.tools/bin/deno" test -A --unstable-ffi --junit-path="$1" tests/vm/sched.vmtest.ts tests/vm/detect.vmtest.ts
