//! Which CPUs a caller may pin threads to: checked with the options, before anything starts, so a
//! CPU that is offline or outside this process's affinity is a usage error, not a failed run.
const std = @import("std");
const builtin = @import("builtin");
const abi = @import("../abi.zig");
const diag = @import("diag.zig");

/// Fails unless CPUs `first` … `first + count - 1` are all ones this process may run on (`first` < 0:
/// no pinning). `option` names the option as scripts spell it. Only Linux pins (macOS uses QoS classes).
pub fn check(first: i32, count: u32, comptime option: []const u8) abi.Error!void {
    if (first < 0 or builtin.os.tag != .linux) return;
    const set = std.posix.sched_getaffinity(0) catch return;
    return checkIn(&set, first, count, option);
}

fn checkIn(set: *const std.os.linux.cpu_set_t, first: i32, count: u32, comptime option: []const u8) abi.Error!void {
    const bits = @bitSizeOf(usize);
    const last: u64 = @as(u64, @intCast(first)) + @max(count, 1) - 1;
    var allowed: u64 = 0;
    for (set) |w| allowed += @popCount(w);
    var cpu: u64 = @intCast(first);
    while (cpu <= last) : (cpu += 1) {
        const ok = cpu < set.len * bits and set[cpu / bits] & (@as(usize, 1) << @intCast(cpu % bits)) != 0;
        if (!ok) {
            if (count > 1)
                return diag.fail(error.InvalidArgument, "`" ++ option ++ "` {d} with {d} workers needs CPUs {d} to {d}, and CPU {d} is not one this process may use ({d} CPUs are; see nproc)", .{ first, count, first, last, cpu, allowed });
            return diag.fail(error.InvalidArgument, "`" ++ option ++ "` {d} is not a CPU this process may use ({d} CPUs are; see nproc)", .{ first, allowed });
        }
    }
}

test "a CPU outside the affinity set is refused naming the option and how many CPUs there are" {
    var set = std.mem.zeroes(std.os.linux.cpu_set_t);
    set[0] = 0b1111; // CPUs 0-3
    try checkIn(&set, 3, 1, "cpu");
    try std.testing.expectError(error.InvalidArgument, checkIn(&set, 99, 1, "cpu"));
    try std.testing.expectEqualStrings("`cpu` 99 is not a CPU this process may use (4 CPUs are; see nproc)", std.mem.span(diag.message()));
    try std.testing.expectError(error.InvalidArgument, checkIn(&set, 2, 4, "cpu"));
    try std.testing.expect(std.mem.startsWith(u8, std.mem.span(diag.message()), "`cpu` 2 with 4 workers needs CPUs 2 to 5, and CPU 4"));
}
