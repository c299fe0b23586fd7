//! Placeholder dataplane for systems without one yet: every start fails with `error.Unsupported`.
const std = @import("std");
const abi = @import("../abi.zig");
const diag = @import("diag.zig");

fn unsupported() abi.Error {
    return diag.fail(error.Unsupported, "no dataplane for this operating system in this build", .{});
}

/// No dataplane here: `auto` has nothing to try.
pub const reflector_modes: []const abi.Dataplane = &.{};

pub const Reflector = struct {
    counters: []abi.Counters,
    state: std.atomic.Value(u32),
    failure: [256]u8,
    reason: [256]u8,

    pub fn start(_: std.mem.Allocator, _: *const abi.ReflectorOptions, _: abi.ItoConfig, _: abi.Dataplane) abi.Error!*Reflector {
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

pub fn xdpFeatures(_: []const u8, _: []const u8, _: *u64, _: *u32, _: *bool) abi.Error!void {
    return unsupported();
}

pub fn xdpPass(_: []const u8, _: []const u8, _: bool) abi.Error!void {
    return unsupported();
}

/// The lab's ownership records live in /run/fastpath: a Linux lab only.
pub fn runLock(_: []const u8) abi.Error!i32 {
    return unsupported();
}

pub fn runUnlock(_: i32, _: []const u8, _: bool) void {}

fn noSchedExt() abi.Error {
    return diag.fail(error.Unsupported, "sched_ext is a Linux feature: run fastpath sched on Linux 6.12 or newer built with CONFIG_SCHED_CLASS_EXT=y", .{});
}

pub fn schedReadAttached(_: *abi.SchedCounters) abi.Error!void {
    return noSchedExt();
}

pub fn schedPreflight() abi.Error!void {
    return noSchedExt();
}

fn noDetectors() abi.Error {
    return diag.fail(error.Unsupported, "the detectors are BPF programs: run fastpath sched observe on Linux with BTF (CONFIG_DEBUG_INFO_BTF=y)", .{});
}

pub fn detectReadAttached(_: *abi.DetectStatus, _: []abi.DetectThread) abi.Error!u32 {
    return noDetectors();
}

pub const Detector = struct {
    pub fn start(_: std.mem.Allocator, _: *const abi.DetectOptions) abi.Error!*Detector {
        return noDetectors();
    }
    pub fn status(_: *Detector, _: *abi.DetectStatus) void {}
    pub fn threads(_: *Detector, _: []abi.DetectThread) u32 {
        return 0;
    }
    pub fn setKnobs(_: *Detector, _: *const abi.DetectKnobs) abi.Error!void {
        return noDetectors();
    }
    pub fn destroy(_: *Detector) void {}
};

pub const Scheduler = struct {
    counters: *abi.SchedCounters,
    exit: abi.SchedExit,
    state: std.atomic.Value(u32),
    detector: ?*Detector = null,

    pub fn start(_: std.mem.Allocator, _: *const abi.SchedOptions) abi.Error!*Scheduler {
        return noSchedExt();
    }
    /// Nothing to check against here (the limits live with the Linux loader): a unit printed on
    /// this system for a Linux one is checked there, at its start.
    pub fn validate(_: *const abi.SchedOptions) abi.Error!void {}
    /// Nothing to check either: start refuses next, for want of sched_ext.
    pub fn checkTgids(_: []const u32) abi.Error!void {}
    pub fn refresh(_: *Scheduler) void {}
    pub fn foreground(_: *Scheduler, _: []u32) usize {
        return 0;
    }
    pub fn foregroundLeftOut(_: *Scheduler) usize {
        return 0;
    }
    pub fn setForeground(_: *Scheduler, _: []const u32, _: []const u8, _: u32) abi.Error!void {
        return noSchedExt();
    }
    pub fn setKnobs(_: *Scheduler, _: *const abi.SchedOptions) abi.Error!void {
        return noSchedExt();
    }
    pub fn wait(_: *Scheduler, _: u64) bool {
        return true;
    }
    pub fn stop(_: *Scheduler) void {}
    pub fn destroy(_: *Scheduler) void {}
};
