//! Clocks, sleeps and percentiles the probes share (fp-schedprobe, fp-inputprobe).
const std = @import("std");
const linux = std.os.linux;

pub fn now(clock: linux.CLOCK) u64 {
    var ts: linux.timespec = undefined;
    _ = linux.clock_gettime(clock, &ts);
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

/// Sleeps until CLOCK_MONOTONIC reaches `t` (ns), through signals.
pub fn sleepUntil(t: u64) void {
    const ts = linux.timespec{ .sec = @intCast(t / std.time.ns_per_s), .nsec = @intCast(t % std.time.ns_per_s) };
    while (true) {
        const rc = linux.clock_nanosleep(.MONOTONIC, .{ .ABSTIME = true }, &ts, null);
        if (linux.E.init(rc) != .INTR) return;
    }
}

/// The `p` quantile (0..1) of ascending `sorted` (nearest rank); 0 when empty.
pub fn percentile(sorted: []const u64, p: f64) u64 {
    if (sorted.len == 0) return 0;
    const idx: usize = @intFromFloat(@min(@as(f64, @floatFromInt(sorted.len - 1)), @ceil(p * @as(f64, @floatFromInt(sorted.len))) - 1));
    return sorted[idx];
}

pub fn us(ns: u64) f64 {
    return @as(f64, @floatFromInt(ns)) / 1000.0;
}

test "percentiles pick from the sorted samples" {
    const v = [_]u64{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
    try std.testing.expectEqual(@as(u64, 5), percentile(&v, 0.5));
    try std.testing.expectEqual(@as(u64, 10), percentile(&v, 0.99));
    try std.testing.expectEqual(@as(u64, 0), percentile(&[_]u64{}, 0.5));
}
