//! Placeholder dataplane for systems without one yet: every start fails with `error.Unsupported`.
const std = @import("std");
const abi = @import("abi.zig");
const diag = @import("diag.zig");

fn unsupported() abi.Error {
    return diag.fail(error.Unsupported, "no dataplane for this operating system in this build", .{});
}

pub const Reflector = struct {
    counters: []abi.Counters,
    state: std.atomic.Value(u32),
    failure: [256]u8,

    pub fn start(_: std.mem.Allocator, _: *const abi.ReflectorOptions) abi.Error!*Reflector {
        return unsupported();
    }
    pub fn info(_: *const Reflector) abi.ReflectorInfo {
        unreachable;
    }
    pub fn refresh(_: *Reflector) void {}
    pub fn stop(_: *Reflector) void {}
    pub fn destroy(_: *Reflector) void {}
};

pub const Probe = struct {
    stats: *abi.ProbeStats,
    failure: [256]u8,

    pub fn start(_: std.mem.Allocator, _: *const abi.ProbeOptions) abi.Error!*Probe {
        return unsupported();
    }
    pub fn stop(_: *Probe) void {}
    pub fn wait(_: *Probe, _: u64) bool {
        return true;
    }
    pub fn destroy(_: *Probe) void {}
};

pub fn neighSolicit(_: []const u8, _: []const u8, _: *const [16]u8, _: bool) abi.Error!void {
    return unsupported();
}

/// No libbpf in this build.
pub fn libbpfVersion() u32 {
    return 0;
}

pub fn xdpPass(_: []const u8, _: []const u8, _: bool) abi.Error!void {
    return unsupported();
}
