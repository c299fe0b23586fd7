//! Bound UDP sockets on the test ports of an interface, so the host stack does not answer test
//! frames (AF_PACKET and /dev/bpf see them, and so does the stack) with ICMP port-unreachable. They
//! drop everything they would receive. A port held by another program is reported with the fix.
const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const cbpf = @import("../ito/cbpf.zig");
const diag = @import("../sys/diag.zig");
const sys = @import("../sys/linux.zig");

pub const max_ports = 2;

pub const Guard = struct {
    fds: [max_ports * 2]i32 = .{-1} ** (max_ports * 2),

    /// Holds each distinct non-zero port of `ports` for IPv4 and IPv6 on `ifname`.
    pub fn open(ifname: []const u8, ports: []const u16) abi.Error!Guard {
        var g = Guard{};
        errdefer g.close();
        for (ports, 0..) |port, i| {
            if (port == 0) continue; // "any port" cannot be held; the caller says so
            if (std.mem.indexOfScalar(u16, ports[0..i], port) != null) continue;
            for ([_]u32{ linux.AF.INET, linux.AF.INET6 }, 0..) |family, f| {
                g.fds[i * 2 + f] = try bind(ifname, port, family) orelse continue;
            }
        }
        return g;
    }

    pub fn held(g: *const Guard) bool {
        return g.fds[0] >= 0 or g.fds[1] >= 0;
    }

    pub fn close(g: *Guard) void {
        for (&g.fds) |*fd| {
            sys.close(fd.*);
            fd.* = -1;
        }
    }
};

fn bind(ifname: []const u8, port: u16, family: u32) abi.Error!?i32 {
    const rc = linux.socket(family, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0);
    if (linux.E.init(rc) == .AFNOSUPPORT) return null; // IPv6 disabled
    const fd: i32 = @intCast(try sys.check(rc, "opening the guard UDP socket", .{}));
    errdefer sys.close(fd);
    _ = try sys.check(linux.setsockopt(fd, linux.SOL.SOCKET, linux.SO.BINDTODEVICE, ifname.ptr, @intCast(ifname.len)), "binding the guard socket to {s}", .{ifname});
    const prog = cbpf.Program{ .len = cbpf.drop_all.len, .filter = &cbpf.drop_all };
    _ = try sys.check(linux.setsockopt(fd, linux.SOL.SOCKET, linux.SO.ATTACH_FILTER, std.mem.asBytes(&prog), @sizeOf(cbpf.Program)), "filtering the guard socket", .{});
    var bind_rc: usize = undefined;
    if (family == linux.AF.INET) {
        const sa = linux.sockaddr.in{ .port = std.mem.nativeToBig(u16, port), .addr = 0 };
        bind_rc = linux.bind(fd, @ptrCast(&sa), @sizeOf(linux.sockaddr.in));
    } else {
        const one: c_int = 1;
        _ = linux.setsockopt(fd, linux.IPPROTO.IPV6, linux.IPV6.V6ONLY, std.mem.asBytes(&one), 4);
        const sa = linux.sockaddr.in6{ .port = std.mem.nativeToBig(u16, port), .flowinfo = 0, .addr = .{0} ** 16, .scope_id = 0 };
        bind_rc = linux.bind(fd, @ptrCast(&sa), @sizeOf(linux.sockaddr.in6));
    }
    if (linux.E.init(bind_rc) == .ADDRINUSE)
        return diag.fail(error.Busy, "UDP port {d} on {s} is already in use by another program; stop it or choose another `port`", .{ port, ifname });
    _ = try sys.check(bind_rc, "binding the guard socket to UDP port {d}", .{port});
    return fd;
}

test "a guard holds its port until closed, and a second guard is refused with the fix" {
    var g = Guard.open("lo", &.{ 38420, 38420 }) catch |e| switch (e) {
        error.PermissionDenied => return error.SkipZigTest, // SO_BINDTODEVICE needs CAP_NET_RAW
        else => return e,
    };
    try std.testing.expect(g.held());
    try std.testing.expectError(error.Busy, Guard.open("lo", &.{38420}));
    try std.testing.expect(std.mem.indexOf(u8, std.mem.span(diag.message()), "choose another `port`") != null);
    g.close();
    var again = try Guard.open("lo", &.{38420});
    again.close();
}
