//! What a worker does when its ring is empty, by the rate it has been receiving. Under load frames
//! gather for a period (`--coalesce-us`: one wake-up per period instead of one per frame, what keeps
//! the CPU per frame low at 100 kpps and up); while the rate is low nothing is held back: the worker
//! spins briefly for the next frame (a wake-up from poll costs 30-50 µs on a VM, more than the whole
//! path through xdp mode) and then sleeps until a frame comes. Hysteresis keeps a rate near the
//! threshold from flipping between the two every window.
const std = @import("std");
const sys = @import("../sys/linux.zig");

/// Per worker (per NAPI for the interrupt deferral): coalescing starts at this rate...
pub const loaded_pps: u64 = 50_000;
/// ...and stops below this one.
pub const unloaded_pps: u64 = 30_000;
/// The window the rate is measured over: short enough to follow a sender that starts or stops.
const window_ns: u64 = 10 * std.time.ns_per_ms;
/// How long a worker at low rates spins for the next frame before it sleeps. Under a frame gap of
/// 20 kpps (50 µs) plus a wake-up, so that a paced 20 kpps stream never waits for a wake-up.
pub const spin_ns: u64 = 100 * std.time.ns_per_us;

/// Whether `pps` is a load worth coalescing, given whether it was one (`loaded`) until now.
pub fn isLoaded(loaded: bool, pps: u64) bool {
    return if (loaded) pps >= unloaded_pps else pps >= loaded_pps;
}

pub const Action = enum { spin, sleep, wait };

/// Spins up to `spin_ns` for a frame on `sock` (anything with `ready() bool`: no system call); true
/// when one came.
pub fn spin(sock: anytype) bool {
    const until = sys.monotonicNs() + spin_ns;
    while (!sock.ready()) {
        if (sys.monotonicNs() >= until) return false;
        std.atomic.spinLoopHint();
    }
    return true;
}

pub const Idle = struct {
    /// The coalescing period under load (0: never coalesce here, e.g. the device's interrupts are
    /// deferred instead, but still no spinning under load).
    period_ns: u64,
    loaded: bool = false,
    window_start_ns: u64 = 0,
    window_frames: u64 = 0,

    /// Counts `n` frames taken at `now` (once per batch).
    pub fn took(i: *Idle, n: u64, now: u64) void {
        i.window_frames += n;
        i.roll(now);
    }

    /// What to do with an empty ring at `now`.
    pub fn next(i: *Idle, now: u64) Action {
        i.roll(now);
        if (!i.loaded) return .spin;
        return if (i.period_ns > 0) .sleep else .wait;
    }

    fn roll(i: *Idle, now: u64) void {
        const dt = now -% i.window_start_ns;
        if (dt < window_ns) return;
        // A window that ended long ago (the worker slept) counts over all the time since it began.
        i.loaded = isLoaded(i.loaded, i.window_frames * std.time.ns_per_s / dt);
        i.window_start_ns = now;
        i.window_frames = 0;
    }
};

test "coalescing starts under load and stops only well below it" {
    const ms = std.time.ns_per_ms;
    var i = Idle{ .period_ns = 500_000 };
    var now: u64 = 0;
    try std.testing.expectEqual(Action.spin, i.next(now)); // nothing seen: low rate
    // 20 kpps: 200 frames per 10 ms window.
    for (0..5) |_| {
        now += 10 * ms;
        i.took(200, now);
    }
    try std.testing.expectEqual(Action.spin, i.next(now));
    // Frames per 10 ms window, and what an empty ring then means.
    const steps = [_]struct { frames: u64, want: Action }{
        .{ .frames = 1000, .want = .sleep }, // 100 kpps: coalesce
        .{ .frames = 400, .want = .sleep }, // 40 kpps, between the thresholds: no flip-flop
        .{ .frames = 200, .want = .spin }, // 20 kpps again
    };
    for (steps) |st| {
        now += 10 * ms;
        i.took(st.frames, now);
        try std.testing.expectEqual(st.want, i.next(now));
    }
    // Under load with the interrupts deferred instead: wait, never spin.
    var d = Idle{ .period_ns = 0, .loaded = true };
    try std.testing.expectEqual(Action.wait, d.next(0));
}
