//! The frame loop the probes share (fp-schedprobe's game, fp-inputprobe's game's render thread): every
//! `period_ns` it wakes (recording how late), does `work_ns` of work measured on `work_clock`, and
//! misses its deadline when the work ends after the frame's period.
const std = @import("std");
const linux = std.os.linux;
const timing = @import("timing.zig");
const now = timing.now;

pub const Config = struct {
    /// The clock the frame's work is measured on: the thread's CPU time (time preempted does not
    /// count as work done, as for a real frame) or wall time (a frame is "done" after that long however
    /// little it ran: only late wake-ups can make it miss).
    work_clock: linux.CLOCK = .THREAD_CPUTIME_ID,
    duration_ns: u64 = 10 * std.time.ns_per_s,
    period_ns: u64 = 16_666_667,
    work_ns: u64 = 4 * std.time.ns_per_ms,
};

pub const Frames = struct {
    frames: u64 = 0,
    misses: u64 = 0,
    worst_ns: u64 = 0,
    worst_at_ns: u64 = 0, // since the loop started: tells a start-up hiccup from a steady-state one
    /// How late the frame thread woke for each frame (after the first).
    wake: std.ArrayList(u64),
};

/// Runs frames from `start` (CLOCK_MONOTONIC ns) for `cfg.duration_ns`, counting into `out`.
pub fn loop(cfg: Config, start: u64, out: *Frames) void {
    var frame_start = start;
    var sink: u64 = 0;
    while (frame_start < start + cfg.duration_ns) {
        if (out.frames > 0) out.wake.append(now(.MONOTONIC) -| frame_start) catch {};
        const cpu0 = now(cfg.work_clock);
        while (now(cfg.work_clock) - cpu0 < cfg.work_ns) {
            for (0..256) |i| sink +%= i *% 2654435761;
        }
        const done = now(.MONOTONIC);
        const took = done - frame_start;
        out.frames += 1;
        if (took > cfg.period_ns) out.misses += 1;
        if (took > out.worst_ns) {
            out.worst_ns = took;
            out.worst_at_ns = frame_start - start;
        }
        // The next frame starts at the next period boundary (a missed frame skips, like vsync).
        var next = frame_start + cfg.period_ns;
        while (next < done) next += cfg.period_ns;
        timing.sleepUntil(next);
        frame_start = next;
    }
    std.mem.doNotOptimizeAway(sink);
}

test "a frame whose work fits its period is on time; one that cannot fit misses" {
    var f = Frames{ .wake = std.ArrayList(u64).init(std.testing.allocator) };
    defer f.wake.deinit();
    // 49 ms of slack per frame: with 9 it missed once beside a build and the test VM on 2 cores.
    loop(.{ .work_clock = .MONOTONIC, .duration_ns = 150 * std.time.ns_per_ms, .period_ns = 50 * std.time.ns_per_ms, .work_ns = std.time.ns_per_ms }, now(.MONOTONIC), &f);
    try std.testing.expectEqual(@as(u64, 3), f.frames);
    try std.testing.expectEqual(@as(u64, 0), f.misses);
    var g = Frames{ .wake = std.ArrayList(u64).init(std.testing.allocator) };
    defer g.wake.deinit();
    loop(.{ .work_clock = .MONOTONIC, .duration_ns = 20 * std.time.ns_per_ms, .period_ns = 5 * std.time.ns_per_ms, .work_ns = 6 * std.time.ns_per_ms }, now(.MONOTONIC), &g);
    try std.testing.expect(g.frames >= 1);
    try std.testing.expectEqual(g.frames, g.misses);
}
