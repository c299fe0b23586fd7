//! Which CPUs a caller may pin threads to: checked with the options, before anything starts, so a
//! CPU that is offline or outside this process's cpuset is a usage error, not a failed run.
//!
//! Not the process's current affinity: sched_setaffinity(2) lets a thread move to any CPU of its
//! cpuset, and a process narrowed with `taskset` (as `deno task bench` narrows itself to the probe's
//! CPU, so that JavaScript never runs on the reflector's) still pins its workers elsewhere.
const std = @import("std");
const builtin = @import("builtin");
const abi = @import("../abi.zig");
const diag = @import("diag.zig");
const readSys = @import("linux.zig").readSys;

const CpuSet = std.os.linux.cpu_set_t;

/// Fails unless CPUs `first` … `first + count - 1` are all ones this process may pin to (`first` < 0:
/// no pinning). `option` names the option as scripts spell it. Only Linux pins (macOS uses QoS classes).
pub fn check(first: i32, count: u32, comptime option: []const u8) abi.Error!void {
    if (first < 0 or builtin.os.tag != .linux) return;
    var set: CpuSet = undefined;
    if (!pinnable(&set)) return;
    return checkIn(&set, first, count, option);
}

/// The CPUs this process may pin to: online, and in its cgroup's cpuset where it has one (cgroup v2
/// cpuset.cpus.effective). Falls back to the current affinity when sysfs says nothing.
fn pinnable(set: *CpuSet) bool {
    var buf: [4096]u8 = undefined;
    var online: CpuSet = undefined;
    const online_ok = parseList(readSys("/sys/devices/system/cpu/online", &buf), &online);
    var cpuset: CpuSet = undefined;
    const cpuset_ok = parseList(cgroupCpus(&buf), &cpuset);
    if (!online_ok and !cpuset_ok) {
        set.* = std.posix.sched_getaffinity(0) catch return false;
        return true;
    }
    for (set, 0..) |*w, i| w.* = (if (online_ok) online[i] else ~@as(usize, 0)) & (if (cpuset_ok) cpuset[i] else ~@as(usize, 0));
    return true;
}

/// cpuset.cpus.effective of this process's cgroup (v2), or null.
fn cgroupCpus(buf: []u8) ?[]const u8 {
    var cg_buf: [512]u8 = undefined;
    const cg = readSys("/proc/self/cgroup", &cg_buf) orelse return null;
    // cgroup v2: the one line "0::/path".
    var lines = std.mem.tokenizeScalar(u8, cg, '\n');
    while (lines.next()) |line| {
        if (!std.mem.startsWith(u8, line, "0::")) continue;
        var path_buf: [600]u8 = undefined;
        const path = std.fmt.bufPrint(&path_buf, "/sys/fs/cgroup{s}/cpuset.cpus.effective", .{std.mem.trimRight(u8, line[3..], "/")}) catch return null;
        return readSys(path, buf);
    }
    return null;
}

/// Parses a kernel CPU list ("0-3,8,10-11") into `set`; false when `text` is null, empty or malformed.
fn parseList(text: ?[]const u8, set: *CpuSet) bool {
    const t = text orelse return false;
    set.* = std.mem.zeroes(CpuSet);
    if (t.len == 0) return false;
    const bits = @bitSizeOf(usize);
    var ranges = std.mem.tokenizeScalar(u8, t, ',');
    while (ranges.next()) |r| {
        const dash = std.mem.indexOfScalar(u8, r, '-');
        const lo = std.fmt.parseInt(usize, if (dash) |d| r[0..d] else r, 10) catch return false;
        const hi = if (dash) |d| std.fmt.parseInt(usize, r[d + 1 ..], 10) catch return false else lo;
        if (hi < lo) return false;
        var cpu = lo;
        while (cpu <= hi and cpu < set.len * bits) : (cpu += 1) set[cpu / bits] |= @as(usize, 1) << @intCast(cpu % bits);
    }
    return true;
}

fn checkIn(set: *const CpuSet, first: i32, count: u32, comptime option: []const u8) abi.Error!void {
    const bits = @bitSizeOf(usize);
    const last: u64 = @as(u64, @intCast(first)) + @max(count, 1) - 1;
    var allowed: u64 = 0;
    for (set) |w| allowed += @popCount(w);
    var cpu: u64 = @intCast(first);
    while (cpu <= last) : (cpu += 1) {
        const ok = cpu < set.len * bits and set[cpu / bits] & (@as(usize, 1) << @intCast(cpu % bits)) != 0;
        if (!ok) {
            if (count > 1)
                return diag.fail(error.InvalidArgument, "`" ++ option ++ "` {d} with {d} workers needs CPUs {d} to {d}, and CPU {d} is not one this process may use ({d} CPUs are; see nproc --all)", .{ first, count, first, last, cpu, allowed });
            return diag.fail(error.InvalidArgument, "`" ++ option ++ "` {d} is not a CPU this process may use ({d} CPUs are; see nproc --all)", .{ first, allowed });
        }
    }
}

test "a CPU outside the set is refused naming the option and how many CPUs there are" {
    var set = std.mem.zeroes(CpuSet);
    set[0] = 0b1111; // CPUs 0-3
    try checkIn(&set, 3, 1, "cpu");
    try std.testing.expectError(error.InvalidArgument, checkIn(&set, 99, 1, "cpu"));
    try std.testing.expectEqualStrings("`cpu` 99 is not a CPU this process may use (4 CPUs are; see nproc --all)", std.mem.span(diag.message()));
    try std.testing.expectError(error.InvalidArgument, checkIn(&set, 2, 4, "cpu"));
    try std.testing.expect(std.mem.startsWith(u8, std.mem.span(diag.message()), "`cpu` 2 with 4 workers needs CPUs 2 to 5, and CPU 4"));
}

test "kernel CPU lists parse into sets; malformed ones are rejected" {
    var set: CpuSet = undefined;
    try std.testing.expect(parseList("0-3,8,10-11", &set));
    try std.testing.expectEqual(@as(usize, 0b1101_0000_1111), set[0]);
    try std.testing.expect(parseList("65", &set));
    try std.testing.expectEqual(@as(usize, 0), set[0]);
    try std.testing.expect(set[1] & 0b10 != 0);
    try std.testing.expect(!parseList("", &set));
    try std.testing.expect(!parseList(null, &set));
    try std.testing.expect(!parseList("3-1", &set));
    try std.testing.expect(!parseList("a-b", &set));
}

test "a process narrowed to one CPU may still pin to the others it is allowed (taskset, the bench)" {
    if (builtin.os.tag != .linux) return error.SkipZigTest;
    var set: CpuSet = undefined;
    try std.testing.expect(pinnable(&set));
    var n: u64 = 0;
    for (set) |w| n += @popCount(w);
    const before = try std.posix.sched_getaffinity(0);
    var one = std.mem.zeroes(CpuSet);
    var first: usize = 0;
    while (before[first / @bitSizeOf(usize)] & (@as(usize, 1) << @intCast(first % @bitSizeOf(usize))) == 0) first += 1;
    one[first / @bitSizeOf(usize)] = @as(usize, 1) << @intCast(first % @bitSizeOf(usize));
    try std.os.linux.sched_setaffinity(0, &one);
    defer std.os.linux.sched_setaffinity(0, &before) catch {};
    var narrowed: CpuSet = undefined;
    try std.testing.expect(pinnable(&narrowed));
    var m: u64 = 0;
    for (narrowed) |w| m += @popCount(w);
    try std.testing.expectEqual(n, m);
}
