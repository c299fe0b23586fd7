#!/bin/bash
# Runs INSIDE the sched_ext test VM (scripts/test boots it with ../shared/vm/run-vm.sh), or directly
# on a host whose kernel has sched_ext. Writes the JUnit report to $1; with $2, runs only the steps
# whose name that regular expression matches (FP_VM_STEPS, tests/helpers.ts vmStep).
set -u
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export NO_COLOR=1
echo "guest: kernel $(uname -r), $(nproc) CPUs, sched_ext state $(cat /sys/kernel/sched_ext/state 2>/dev/null || echo absent)"
files=(tests/vm/sched.vmtest.ts tests/vm/detect.vmtest.ts)
if [ -z "${2:-}" ]; then
  unset FP_VM_STEPS FP_VM_STEPS_RAN # one left exported would skip steps
  exec "$root/.tools/bin/deno" test -A --unstable-ffi --junit-path="$1" "${files[@]}"
fi
# Some steps: a pattern that matches none would pass with nothing run.
export FP_VM_STEPS="$2" FP_VM_STEPS_RAN
FP_VM_STEPS_RAN=$(mktemp)
"$root/.tools/bin/deno" test -A --unstable-ffi --junit-path="$1" "${files[@]}"
rc=$?
if [ ! -s "$FP_VM_STEPS_RAN" ]; then
  echo "guest: no VM step's name matches '$2' (a regular expression: escape ( ) [ ] . \\ in a name pasted whole)" >&2
  rc=1
fi
rm -f "$FP_VM_STEPS_RAN"
exit $rc
