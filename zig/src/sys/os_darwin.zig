//! The macOS dataplanes, both on /dev/bpf + kqueue: the reflector (reflect/reflector_darwin.zig) and
//! the probe (probe/probe_darwin.zig). What macOS lacks (sched_ext, libbpf, XDP) is unsupported.
//! Built and cross-compiled here; only a Mac runs it (docs/macos.md).
const darwin = @import("darwin.zig");

pub const Reflector = @import("../reflect/reflector_darwin.zig").Reflector;
/// The reflector's dataplanes here, fastest first: /dev/bpf only.
pub const reflector_modes: []const @import("../abi.zig").Dataplane = &.{.bpf};
const unsupported = @import("os_unsupported.zig");
pub const Probe = @import("../probe/probe_darwin.zig").Probe;
pub const Scheduler = unsupported.Scheduler;
pub const schedReadAttached = unsupported.schedReadAttached;
pub const schedPreflight = unsupported.schedPreflight;
pub const Detector = unsupported.Detector;
pub const detectReadAttached = unsupported.detectReadAttached;
pub const neighSolicit = darwin.neighSolicit;
pub const libbpfVersion = unsupported.libbpfVersion;
pub const xdpPass = unsupported.xdpPass;
pub const xdpFeatures = unsupported.xdpFeatures;
pub const runLock = unsupported.runLock;
pub const runUnlock = unsupported.runUnlock;
