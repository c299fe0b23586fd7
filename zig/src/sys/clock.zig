//! The clocks every platform's code reads, in nanoseconds.
const std = @import("std");

fn ns(id: std.posix.clockid_t) u64 {
    const ts = std.posix.clock_gettime(id) catch unreachable; // only fails for an unknown clock
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

pub fn monotonicNs() u64 {
    return ns(.MONOTONIC);
}

/// The clock both kernels stamp received frames with (AF_PACKET tp_sec/tp_nsec, bpf_hdr bh_tstamp).
pub fn realtimeNs() u64 {
    return ns(.REALTIME);
}

/// CPU time the calling thread has used (a system call, not the vDSO).
pub fn threadCpuNs() u64 {
    return ns(.THREAD_CPUTIME_ID);
}
