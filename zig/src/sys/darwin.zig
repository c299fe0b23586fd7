//! What the macOS reflector and probe share: a configured /dev/bpf device, interface facts from
//! getifaddrs, the guard sockets against ICMP port-unreachable, and a kqueue with a stop event.
//! Built and cross-compiled here; only a Mac runs it (docs/macos.md).
const std = @import("std");
const c = std.c;
const abi = @import("../abi.zig");
const Backoff = @import("backoff.zig").Backoff;
const cbpf = @import("../ito/cbpf.zig");
const diag = @import("diag.zig");
const Error = abi.Error;

// <net/bpf.h> ioctls: _IO/_IOR/_IOW('B', n, size).
const BIOCGBLEN: u32 = 0x40044266;
const BIOCSBLEN: u32 = 0xC0044266;
const BIOCSETF: u32 = 0x80104267;
const BIOCPROMISC: u32 = 0x20004269;
const BIOCSETIF: u32 = 0x8020426c;
const BIOCGSTATS: u32 = 0x4008426f;
const BIOCIMMEDIATE: u32 = 0x80044270;
const BIOCSHDRCMPLT: u32 = 0x80044275;
const BIOCSSEESENT: u32 = 0x80044277;
/// XNU's private _IOW('B', 143, int), macOS 14 and later.
const BIOCSBATCHWRITE: u32 = 0x8004428f;
const IP_BOUND_IF = 25;
const IPV6_V6ONLY = 27;
const IPV6_BOUND_IF = 125;
const AF_LINK = 18;

fn ioctl(fd: c.fd_t, req: u32, arg: anytype) c_int {
    return c.ioctl(fd, @bitCast(req), arg);
}

pub fn errno() c.E {
    return @enumFromInt(c._errno().*);
}

pub fn fail(err: Error, comptime what: []const u8, args: anytype) Error {
    return diag.fail(err, what ++ ": {s}", args ++ .{@tagName(errno())});
}

const ifaddrs = extern struct {
    next: ?*ifaddrs,
    name: [*:0]const u8,
    flags: c_uint,
    addr: ?*c.sockaddr,
    netmask: ?*c.sockaddr,
    dstaddr: ?*c.sockaddr,
    data: ?*anyopaque,
};
extern "c" fn getifaddrs(out: *?*ifaddrs) c_int;
extern "c" fn freeifaddrs(ifa: ?*ifaddrs) void;
extern "c" fn if_nametoindex(name: [*:0]const u8) c_uint;

pub const IfaceInfo = struct { mac: [6]u8, index: u32, up: bool, mtu: u32 };

/// A NUL-terminated copy of an interface name, checked for length.
pub fn ifname(opts_name: []const u8) Error![16:0]u8 {
    var z: [16:0]u8 = .{0} ** 16;
    if (opts_name.len == 0 or opts_name.len > 15) return diag.fail(error.InvalidArgument, "interface name '{s}' must be 1 to 15 characters", .{opts_name});
    @memcpy(z[0..opts_name.len], opts_name);
    return z;
}

pub fn ifaceInfo(name: []const u8) Error!IfaceInfo {
    const z = try ifname(name);
    var list: ?*ifaddrs = null;
    if (getifaddrs(&list) != 0) return fail(error.System, "getifaddrs", .{});
    defer freeifaddrs(list);
    var it = list;
    while (it) |ifa| : (it = ifa.next) {
        if (!std.mem.eql(u8, std.mem.span(ifa.name), name)) continue;
        const sa = ifa.addr orelse continue;
        if (sa.family != AF_LINK) continue;
        const dl: [*]const u8 = @ptrCast(sa); // sockaddr_dl: len, family, index(2), type, nlen, alen, slen, data
        const nlen = dl[5];
        const alen = dl[6];
        if (alen != 6) return diag.fail(error.Unsupported, "{s} is not an Ethernet interface", .{name});
        var mac: [6]u8 = undefined;
        @memcpy(&mac, dl[8 + nlen ..][0..6]);
        // AF_LINK entries carry struct if_data: eight single-byte fields, then ifi_mtu.
        const mtu: u32 = if (ifa.data) |d| std.mem.readInt(u32, @as([*]const u8, @ptrCast(d))[8..12], .little) else 1500;
        return .{ .mac = mac, .index = if_nametoindex(&z), .up = ifa.flags & 1 != 0, .mtu = mtu };
    }
    return diag.fail(error.NoSuchDevice, "no interface named '{s}' (see 'ifconfig -l')", .{name});
}

/// One /dev/bpf device bound to an interface and configured the way XNU works:
///   - BIOCSBLEN before BIOCSETIF, then BIOCGBLEN: the kernel clamps silently to
///     debug.bpf_bufsize_cap, and every read() must ask for exactly the length read back;
///   - BIOCIMMEDIATE 1: otherwise frames wait for a full buffer or the read timeout;
///   - BIOCSHDRCMPLT 1: our source MAC goes out as written; BIOCSSEESENT 0: not our own frames;
///   - BIOCSETF with a classic BPF program (ito/cbpf.zig: IHL, one VLAN tag, IPv6);
///   - BIOCSBATCHWRITE detected, not assumed: macOS 13 and older refuse it.
pub const Device = struct {
    fd: c.fd_t,
    blen: u32,
    batch_write: bool,
    drops_seen: u32 = 0,

    pub const Options = struct {
        /// The frames to read; a device that only writes passes cbpf.drop_all.
        filter: []const cbpf.Insn,
        promisc: bool = false,
        want_blen: u32 = 4 * 1024 * 1024,
    };

    pub fn open(name: []const u8, o: Options) Error!Device {
        const fd = try openFree();
        errdefer _ = c.close(fd);
        var blen: u32 = o.want_blen;
        if (ioctl(fd, BIOCSBLEN, &blen) != 0) return fail(error.System, "BIOCSBLEN", .{});
        var ifr = std.mem.zeroes([32]u8);
        @memcpy(ifr[0..name.len], name);
        if (ioctl(fd, BIOCSETIF, &ifr) != 0) return fail(error.NoSuchDevice, "attaching /dev/bpf to {s}", .{name});
        if (ioctl(fd, BIOCGBLEN, &blen) != 0) return fail(error.System, "BIOCGBLEN", .{});
        var one: u32 = 1;
        var zero: u32 = 0;
        if (ioctl(fd, BIOCIMMEDIATE, &one) != 0) return fail(error.System, "BIOCIMMEDIATE", .{});
        if (ioctl(fd, BIOCSHDRCMPLT, &one) != 0) return fail(error.System, "BIOCSHDRCMPLT", .{});
        if (ioctl(fd, BIOCSSEESENT, &zero) != 0) return fail(error.System, "BIOCSSEESENT", .{});
        const prog = extern struct { len: u32, insns: [*]const cbpf.Insn }{ .len = @intCast(o.filter.len), .insns = o.filter.ptr };
        if (ioctl(fd, BIOCSETF, &prog) != 0) return fail(error.System, "installing the BPF filter (BIOCSETF)", .{});
        if (o.promisc and ioctl(fd, BIOCPROMISC, @as(?*anyopaque, null)) != 0) return fail(error.System, "promiscuous mode on {s} (BIOCPROMISC)", .{name});
        const batch_write = ioctl(fd, BIOCSBATCHWRITE, &one) == 0;
        return .{ .fd = fd, .blen = blen, .batch_write = batch_write };
    }

    /// The first free /dev/bpfN.
    fn openFree() Error!c.fd_t {
        var path_buf: [32]u8 = undefined;
        var n: u32 = 0;
        while (n < 256) : (n += 1) {
            const path = std.fmt.bufPrintZ(&path_buf, "/dev/bpf{d}", .{n}) catch unreachable;
            const fd = c.open(path, .{ .ACCMODE = .RDWR, .CLOEXEC = true });
            if (fd >= 0) return fd;
            switch (errno()) {
                .BUSY => continue,
                .ACCES, .PERM => return diag.fail(error.PermissionDenied, "opening {s}: permission denied (run with sudo)", .{path}),
                else => break,
            }
        }
        return diag.fail(error.Busy, "no free /dev/bpf device: close other capture programs (Wireshark, tcpdump) or raise debug.bpf_maxdevices", .{});
    }

    /// Frames the kernel dropped (buffer full) since the last call.
    pub fn takeDrops(d: *Device) u64 {
        var st = extern struct { recv: u32, drop: u32 }{ .recv = 0, .drop = 0 };
        if (ioctl(d.fd, BIOCGSTATS, &st) != 0) return 0;
        const delta = st.drop -% d.drops_seen;
        d.drops_seen = st.drop;
        return delta;
    }

    pub const WriteResult = enum { ok, full, down, failed };

    /// One write(): a frame, or with batch_write a buffer of records. A full interface queue is
    /// waited out for up to `limit_ns` (backoff.zig); a vanished interface says so.
    pub fn write(d: *const Device, bytes: []const u8, limit_ns: u64) WriteResult {
        var backoff = Backoff{ .limit_ns = limit_ns };
        while (true) {
            const rc = c.write(d.fd, bytes.ptr, bytes.len);
            if (rc == bytes.len) return .ok;
            if (rc >= 0) return .failed;
            switch (errno()) {
                .NOBUFS, .AGAIN, .INTR => if (!backoff.wait()) return .full,
                .NXIO, .NETDOWN => return .down,
                else => return .failed,
            }
        }
    }

    pub fn close(d: *Device) void {
        if (d.fd >= 0) _ = c.close(d.fd);
        d.fd = -1;
    }
};

/// A kqueue watching one descriptor for reading, plus a user event that stops the waiter.
pub const Waiter = struct {
    kq: c.fd_t,

    pub fn open(fd: c.fd_t) Error!Waiter {
        const kq = c.kqueue();
        if (kq < 0) return fail(error.System, "kqueue", .{});
        var changes = [2]c.Kevent{
            .{ .ident = @intCast(fd), .filter = c.EVFILT.READ, .flags = c.EV.ADD, .fflags = 0, .data = 0, .udata = 0 },
            .{ .ident = 1, .filter = c.EVFILT.USER, .flags = c.EV.ADD | c.EV.CLEAR, .fflags = 0, .data = 0, .udata = 0 },
        };
        if (c.kevent(kq, &changes, 2, &changes, 0, null) != 0) {
            _ = c.close(kq);
            return fail(error.System, "kevent", .{});
        }
        return .{ .kq = kq };
    }

    pub const Event = enum { readable, stop, timeout };

    pub fn wait(w: Waiter, timeout_ms: u32) Event {
        var events: [2]c.Kevent = undefined;
        const timeout = c.timespec{ .sec = @intCast(timeout_ms / 1000), .nsec = @intCast((timeout_ms % 1000) * std.time.ns_per_ms) };
        const n = c.kevent(w.kq, &.{}, 0, &events, events.len, &timeout);
        if (n <= 0) return .timeout;
        var readable = false;
        for (events[0..@intCast(n)]) |e| {
            if (e.filter == c.EVFILT.USER) return .stop;
            if (e.filter == c.EVFILT.READ) readable = true;
        }
        return if (readable) .readable else .timeout;
    }

    pub fn stop(w: Waiter) void {
        var trigger = [1]c.Kevent{.{ .ident = 1, .filter = c.EVFILT.USER, .flags = 0, .fflags = c.NOTE.TRIGGER, .data = 0, .udata = 0 }};
        _ = c.kevent(w.kq, &trigger, 1, &trigger, 0, null);
    }

    pub fn close(w: *Waiter) void {
        if (w.kq >= 0) _ = c.close(w.kq);
        w.kq = -1;
    }
};

/// UDP sockets bound to the test ports on the interface (IPv4 and IPv6): the stack sees the test
/// frames too and would answer ICMP port-unreachable. A small receive buffer makes them drop.
pub const Guard = struct {
    fds: [4]c.fd_t = .{-1} ** 4,

    pub fn open(index: u32, ports: []const u16) Error!Guard {
        var g = Guard{};
        errdefer g.close();
        for (ports[0..@min(ports.len, 2)], 0..) |port, i| {
            if (port == 0) continue;
            if (std.mem.indexOfScalar(u16, ports[0..i], port) != null) continue;
            g.fds[i * 2] = try bind(index, port, false);
            g.fds[i * 2 + 1] = bind(index, port, true) catch -1; // IPv6 may be off on the interface
        }
        return g;
    }

    pub fn held(g: *const Guard) bool {
        return g.fds[0] >= 0 or g.fds[1] >= 0;
    }

    fn bind(index: u32, port: u16, v6: bool) Error!c.fd_t {
        const fd = c.socket(if (v6) c.AF.INET6 else c.AF.INET, c.SOCK.DGRAM, 0);
        if (fd < 0) return fail(error.System, "guard socket", .{});
        errdefer _ = c.close(fd);
        const idx: c_int = @intCast(index);
        if (v6) {
            const one: c_int = 1;
            _ = c.setsockopt(fd, c.IPPROTO.IPV6, IPV6_V6ONLY, std.mem.asBytes(&one), @sizeOf(c_int));
            _ = c.setsockopt(fd, c.IPPROTO.IPV6, IPV6_BOUND_IF, std.mem.asBytes(&idx), @sizeOf(c_int));
        } else _ = c.setsockopt(fd, c.IPPROTO.IP, IP_BOUND_IF, std.mem.asBytes(&idx), @sizeOf(c_int));
        const small: c_int = 1024;
        _ = c.setsockopt(fd, c.SOL.SOCKET, c.SO.RCVBUF, std.mem.asBytes(&small), @sizeOf(c_int));
        const rc = if (v6) blk: {
            var sa = std.mem.zeroes(c.sockaddr.in6);
            sa.family = c.AF.INET6;
            sa.port = std.mem.nativeToBig(u16, port);
            break :blk c.bind(fd, @ptrCast(&sa), @sizeOf(c.sockaddr.in6));
        } else blk: {
            var sa = std.mem.zeroes(c.sockaddr.in);
            sa.family = c.AF.INET;
            sa.port = std.mem.nativeToBig(u16, port);
            break :blk c.bind(fd, @ptrCast(&sa), @sizeOf(c.sockaddr.in));
        };
        if (rc != 0) {
            if (errno() == .ADDRINUSE) return diag.fail(error.Busy, "UDP port {d} is already in use by another program; stop it or choose another `port`", .{port});
            return fail(error.System, "binding the guard socket to UDP port {d}", .{port});
        }
        return fd;
    }

    pub fn close(g: *Guard) void {
        for (&g.fds) |*fd| {
            if (fd.* >= 0) _ = c.close(fd.*);
            fd.* = -1;
        }
    }
};

/// Sends one datagram to `ip` out of `name`, so the kernel resolves its MAC (ARP or neighbour
/// discovery) into the table `arp -n` / `ndp -n` show.
pub fn neighSolicit(netns: []const u8, name: []const u8, ip: *const [16]u8, ipv6: bool) Error!void {
    if (netns.len != 0) return diag.fail(error.Unsupported, "network namespaces are a Linux feature: leave out --netns on macOS", .{});
    const info = try ifaceInfo(name);
    const fd = c.socket(if (ipv6) c.AF.INET6 else c.AF.INET, c.SOCK.DGRAM, 0);
    if (fd < 0) return fail(error.System, "opening a UDP socket", .{});
    defer _ = c.close(fd);
    const idx: c_int = @intCast(info.index);
    const msg = "fastpath neighbour solicitation";
    const rc = if (ipv6) blk: {
        _ = c.setsockopt(fd, c.IPPROTO.IPV6, IPV6_BOUND_IF, std.mem.asBytes(&idx), @sizeOf(c_int));
        var sa = std.mem.zeroes(c.sockaddr.in6);
        sa.family = c.AF.INET6;
        sa.port = std.mem.nativeToBig(u16, 9);
        sa.addr = ip.*;
        break :blk c.sendto(fd, msg, msg.len, 0, @ptrCast(&sa), @sizeOf(c.sockaddr.in6));
    } else blk: {
        _ = c.setsockopt(fd, c.IPPROTO.IP, IP_BOUND_IF, std.mem.asBytes(&idx), @sizeOf(c_int));
        var sa = std.mem.zeroes(c.sockaddr.in);
        sa.family = c.AF.INET;
        sa.port = std.mem.nativeToBig(u16, 9);
        sa.addr = @bitCast(ip[0..4].*);
        break :blk c.sendto(fd, msg, msg.len, 0, @ptrCast(&sa), @sizeOf(c.sockaddr.in));
    };
    if (rc < 0) return fail(error.System, "sending to the reflector's address on {s} (is there a route?)", .{name});
}

/// Darwin has no CPU affinity; the QoS class is how a thread asks for a performance core promptly.
pub fn interactiveThread() void {
    _ = c.pthread_set_qos_class_self_np(.QOS_CLASS_USER_INTERACTIVE, 0);
}
