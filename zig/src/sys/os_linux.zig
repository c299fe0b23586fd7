const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const sys = @import("linux.zig");
const diag = @import("diag.zig");
const runlock = @import("runlock.zig");

pub const Reflector = @import("../reflect/reflector.zig").Reflector;
/// The reflector's dataplanes here, fastest first (what `auto` tries in turn).
pub const reflector_modes: []const abi.Dataplane = &.{ .xdp, .afxdp, .packet };
pub const Probe = @import("../probe/probe_linux.zig").Probe;
pub const Scheduler = @import("../sched/sched.zig").Scheduler;
pub const schedReadAttached = @import("../sched/sched.zig").readAttached;
pub const schedPreflight = @import("../sched/sched.zig").preflight;
pub const Detector = @import("../sched/detect.zig").Detector;
pub const detectReadAttached = @import("../sched/detect.zig").readAttached;
pub const libbpfVersion = @import("bpf.zig").version;

/// Takes the run lock /run/fastpath/`name` (sys/runlock.zig): its descriptor, or error.Busy while
/// another process holds it.
pub fn runLock(name: []const u8) abi.Error!i32 {
    var buf: [128]u8 = undefined;
    const p = try runlock.path(&buf, name);
    return try runlock.tryLock(p) orelse diag.fail(error.Busy, "{s} is held by another process", .{p});
}

/// Gives up a lock `runLock` took; `remove` deletes its file too.
pub fn runUnlock(fd: i32, name: []const u8, remove: bool) void {
    var buf: [128]u8 = undefined;
    const p = runlock.path(&buf, name) catch return sys.close(fd);
    runlock.unlock(fd, p, remove);
}

pub fn xdpPass(netns: []const u8, ifname: []const u8, on: bool) abi.Error!void {
    var ns = try sys.Netns.enter(netns);
    defer ns.leave();
    const info = try sys.ifaceInfo(ifname);
    const xdp = @import("../reflect/xdp.zig");
    if (on) try xdp.attachPass(info.index, ifname) else try xdp.detachPass(info.index, ifname);
}

/// What `ifname`'s driver offers XDP (NETDEV_XDP_ACT_* bits, 0 before Linux 6.3) and the most
/// fragments its AF_XDP zero-copy takes, and whether it hands XDP the receive VLAN tag (`doctor IFACE`).
pub fn xdpFeatures(netns: []const u8, ifname: []const u8, features: *u64, zc_max_segs: *u32, vlan_tag: *bool) abi.Error!void {
    var ns = try sys.Netns.enter(netns);
    defer ns.leave();
    const info = try sys.ifaceInfo(ifname);
    const rc = @import("bpf.zig").fp_bpf_xdp_features(info.index, features, zc_max_segs);
    _ = try sys.check(@bitCast(@as(isize, rc)), "asking {s} for its XDP features", .{ifname});
    vlan_tag.* = @import("../reflect/napi.zig").xdpRxVlanTag(info.index);
}

pub fn neighSolicit(netns: []const u8, ifname: []const u8, ip: *const [16]u8, ipv6: bool) abi.Error!void {
    var ns = try sys.Netns.enter(netns);
    defer ns.leave();
    const family: u32 = if (ipv6) linux.AF.INET6 else linux.AF.INET;
    const fd: i32 = @intCast(try sys.check(linux.socket(family, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0), "opening a UDP socket", .{}));
    defer sys.close(fd);
    _ = try sys.check(linux.setsockopt(fd, linux.SOL.SOCKET, linux.SO.BINDTODEVICE, ifname.ptr, @intCast(ifname.len)), "binding to {s}", .{ifname});
    const msg = "fastpath neighbour solicitation";
    const rc = if (ipv6) blk: {
        const sa = linux.sockaddr.in6{ .port = std.mem.nativeToBig(u16, 9), .flowinfo = 0, .addr = ip.*, .scope_id = 0 };
        break :blk linux.sendto(fd, msg, msg.len, 0, @ptrCast(&sa), @sizeOf(linux.sockaddr.in6));
    } else blk: {
        const sa = linux.sockaddr.in{ .port = std.mem.nativeToBig(u16, 9), .addr = @bitCast(ip[0..4].*) };
        break :blk linux.sendto(fd, msg, msg.len, 0, @ptrCast(&sa), @sizeOf(linux.sockaddr.in));
    };
    _ = try sys.check(rc, "sending to the reflector's address on {s} (is there a route?)", .{ifname});
}
