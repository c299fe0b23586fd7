//! Collects every file's tests for `zig build test` (the tools in zig/tools/ are separate modules:
//! build.zig adds their tests to the same step).
test {
    _ = @import("abi.zig");
    _ = @import("sys/diag.zig");
    _ = @import("sys/cpus.zig");
    _ = @import("ito/ito.zig");
    _ = @import("ito/checksum.zig");
    _ = @import("ito/cbpf.zig");
    _ = @import("sys/linux.zig");
    _ = @import("sys/runlock.zig");
    _ = @import("reflect/afpacket.zig");
    _ = @import("reflect/afxdp.zig");
    _ = @import("reflect/napi.zig");
    _ = @import("reflect/idle.zig");
    _ = @import("sys/backoff.zig");
    _ = @import("sys/clock.zig");
    _ = @import("reflect/guard.zig");
    _ = @import("ito/frames.zig");
    _ = @import("reflect/bpfbuf.zig");
    _ = @import("reflect/xdp.zig");
    _ = @import("sys/bpf.zig");
    _ = @import("probe/probe.zig");
    _ = @import("probe/probe_linux.zig");
    _ = @import("reflect/reflector.zig");
    _ = @import("reflect/stale_locks.zig");
    _ = @import("reflect/options.zig");
    _ = @import("reflect/start.zig");
    _ = @import("sched/sched.zig");
    _ = @import("sched/roles.zig");
    _ = @import("sched/detect.zig");
    _ = @import("root.zig");
}
