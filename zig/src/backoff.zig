//! Waiting out a full transmit queue. ENOBUFS/EAGAIN on send means the device queue (or, on a veth,
//! the peer's 256-entry ring: Linux 6.17+ stops the sender instead of dropping) is full for now. A
//! sender that gives up after a few retries drops frames a moment of scheduling delay would have
//! carried; one that never gives up hangs on a dead peer. So: yield a few times, then sleep in short
//! steps, and give up after a bounded time.
const std = @import("std");

pub const Backoff = struct {
    /// How long to keep trying after the first sleep.
    limit_ns: u64,
    tries: u32 = 0,
    deadline: u64 = 0,

    const yields = 16;
    const step_ns = 20 * std.time.ns_per_us;

    /// Waits a little; false when the time is up (the caller counts the rest as failed).
    pub fn wait(b: *Backoff) bool {
        b.tries += 1;
        if (b.tries <= yields) {
            std.Thread.yield() catch {};
            return true;
        }
        const ts = std.posix.clock_gettime(.MONOTONIC) catch unreachable;
        const now = @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
        if (b.deadline == 0) b.deadline = now + b.limit_ns;
        if (now >= b.deadline) return false;
        std.time.sleep(step_ns);
        return true;
    }
};

test "a backoff yields, then sleeps, and gives up after its limit" {
    var b = Backoff{ .limit_ns = 2 * std.time.ns_per_ms };
    const t0 = std.time.nanoTimestamp();
    var n: u32 = 0;
    while (b.wait()) n += 1;
    const took: u64 = @intCast(std.time.nanoTimestamp() - t0);
    try std.testing.expect(n > Backoff.yields);
    try std.testing.expect(took >= 2 * std.time.ns_per_ms);
    try std.testing.expect(!b.wait());
}
