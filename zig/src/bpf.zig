//! libbpf, linked in statically (see deps.zig). The loader for the XDP and sched_ext programs grows
//! here; for now it answers which libbpf this library carries.
const std = @import("std");
pub const c = @cImport({
    @cInclude("bpf/libbpf.h");
});

/// libbpf's version as major << 16 | minor.
pub fn version() u32 {
    return @as(u32, c.libbpf_major_version()) << 16 | c.libbpf_minor_version();
}

test "the linked libbpf is the pinned 1.4 or newer" {
    const v = version();
    try std.testing.expect(v >> 16 == 1 and (v & 0xffff) >= 4);
}
