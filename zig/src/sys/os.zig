//! The platform's dataplanes, chosen at compile time. Linux: XDP, AF_XDP, AF_PACKET; macOS: /dev/bpf
//! (reflector and probe). Parts a platform lacks (sched_ext on macOS) say so.
const builtin = @import("builtin");

const impl = switch (builtin.os.tag) {
    .linux => @import("os_linux.zig"),
    .macos => @import("os_darwin.zig"),
    else => @import("os_unsupported.zig"),
};

pub const Reflector = impl.Reflector;
pub const reflector_modes = impl.reflector_modes;
pub const Probe = impl.Probe;
pub const Scheduler = impl.Scheduler;
pub const schedReadAttached = impl.schedReadAttached;
pub const schedPreflight = impl.schedPreflight;
pub const Detector = impl.Detector;
pub const detectReadAttached = impl.detectReadAttached;
pub const neighSolicit = impl.neighSolicit;
pub const libbpfVersion = impl.libbpfVersion;
pub const xdpPass = impl.xdpPass;
pub const xdpFeatures = impl.xdpFeatures;
pub const runLock = impl.runLock;
pub const runUnlock = impl.runUnlock;
