//! The platform's dataplanes, chosen at compile time. Linux: AF_PACKET (XDP and AF_XDP to come);
//! other systems: not yet (the macOS /dev/bpf dataplane is its own piece of work).
const builtin = @import("builtin");

const impl = switch (builtin.os.tag) {
    .linux => @import("os_linux.zig"),
    else => @import("os_unsupported.zig"),
};

pub const Reflector = impl.Reflector;
pub const Probe = impl.Probe;
pub const neighSolicit = impl.neighSolicit;
pub const libbpfVersion = impl.libbpfVersion;
pub const xdpPass = impl.xdpPass;
