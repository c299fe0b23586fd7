//! Waiting out a full transmit queue. ENOBUFS/EAGAIN on send means the device queue (or, on a veth,
//! the peer's 256-entry ring: Linux 6.17+ stops the sender instead of dropping) is full for now. A
//! sender that gives up after a few retries drops frames a moment of scheduling delay would have
//! carried; one that never gives up hangs on a dead peer. So: yield for a millisecond, then sleep in
//! short steps, and give up after a bounded time.
const std = @import("std");
const monotonicNs = @import("clock.zig").monotonicNs;

/// A dataplane's send: its receive ring holds far more than this.
pub const dataplane_limit_ns = 20 * std.time.ns_per_ms;
/// The probe's send: a frame the reflector's side takes late is a late reflection (its RTT shows
/// it), not a frame the probe threw away.
pub const probe_limit_ns = 200 * std.time.ns_per_ms;

pub const Backoff = struct {
    /// How long to keep trying in all.
    limit_ns: u64,
    start: u64 = 0,

    /// Yielding keeps a sender at full speed through the usual sub-millisecond stalls; sleeping
    /// after that leaves the CPU to whoever must drain the queue.
    const spin_ns = std.time.ns_per_ms;
    const step_ns = 20 * std.time.ns_per_us;

    /// Waits a little; false when the time is up (the caller counts the rest as failed).
    pub fn wait(b: *Backoff) bool {
        const now = monotonicNs();
        if (b.start == 0) b.start = now;
        const waited = now - b.start;
        if (waited >= b.limit_ns) return false;
        if (waited < spin_ns) std.Thread.yield() catch {} else std.time.sleep(step_ns);
        return true;
    }
};

test "a backoff keeps trying for its limit and then gives up" {
    var b = Backoff{ .limit_ns = 3 * std.time.ns_per_ms };
    const t0 = std.time.nanoTimestamp();
    var n: u32 = 0;
    while (b.wait()) n += 1;
    const took: u64 = @intCast(std.time.nanoTimestamp() - t0);
    try std.testing.expect(n > 1);
    try std.testing.expect(took >= 3 * std.time.ns_per_ms);
    try std.testing.expect(!b.wait());
}
