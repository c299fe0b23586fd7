//! Collects every file's tests for `zig build test`.
test {
    _ = @import("abi.zig");
    _ = @import("diag.zig");
    _ = @import("ito.zig");
    _ = @import("checksum.zig");
    _ = @import("cbpf.zig");
    _ = @import("linux.zig");
    _ = @import("afpacket.zig");
    _ = @import("afxdp.zig");
    _ = @import("napi.zig");
    _ = @import("backoff.zig");
    _ = @import("clock.zig");
    _ = @import("guard.zig");
    _ = @import("frames.zig");
    _ = @import("bpfbuf.zig");
    _ = @import("xdp.zig");
    _ = @import("bpf.zig");
    _ = @import("probe.zig");
    _ = @import("probe_linux.zig");
    _ = @import("reflector.zig");
    _ = @import("sched.zig");
    _ = @import("schedprobe.zig");
    _ = @import("root.zig");
}
