//! Thin helpers over Linux system calls: errno to `abi.Error` with a message, interface facts,
//! network namespaces, CPU pinning, clocks.
const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const diag = @import("diag.zig");
const Error = abi.Error;

pub fn errorOf(e: linux.E) Error {
    return switch (e) {
        .PERM, .ACCES => error.PermissionDenied,
        .NODEV, .NXIO, .NOENT => error.NoSuchDevice,
        .NETDOWN => error.InterfaceDown,
        .NOMEM, .NOBUFS => error.OutOfMemory,
        .BUSY, .ADDRINUSE, .EXIST => error.Busy,
        .INVAL, .MSGSIZE, .RANGE => error.InvalidArgument,
        .NOSYS, .OPNOTSUPP, .PROTONOSUPPORT, .AFNOSUPPORT => error.Unsupported,
        .TIMEDOUT => error.Timeout,
        else => error.System,
    };
}

/// Checks a raw syscall return; on failure records "<what>: <errno name>" and returns the mapped error.
pub fn check(rc: usize, comptime what: []const u8, args: anytype) Error!usize {
    const e = linux.E.init(rc);
    if (e == .SUCCESS) return rc;
    diag.set(what ++ ": {s}", args ++ .{describe(e)});
    return errorOf(e);
}

pub fn describe(e: linux.E) []const u8 {
    return switch (e) {
        .PERM => "operation not permitted (run as root or with CAP_NET_RAW and CAP_NET_ADMIN)",
        .ACCES => "permission denied (run as root or with CAP_NET_RAW and CAP_NET_ADMIN)",
        .NODEV => "no such device",
        .NOENT => "no such file or directory",
        .NETDOWN => "network is down",
        .ADDRINUSE => "address already in use",
        .BUSY => "device or resource busy",
        .NOMEM => "out of memory",
        .NOBUFS => "no buffer space available",
        .INVAL => "invalid argument",
        .AGAIN => "resource temporarily unavailable",
        .MSGSIZE => "message too long (frame larger than the MTU?)",
        else => std.enums.tagName(linux.E, e) orelse "unknown error",
    };
}

pub fn close(fd: i32) void {
    if (fd >= 0) _ = linux.close(fd);
}

pub const IfaceInfo = struct {
    index: i32,
    mac: [6]u8,
    mtu: u32,
    up: bool,
    running: bool,
};

fn ifreqFor(name: []const u8) Error!linux.ifreq {
    if (name.len == 0 or name.len >= linux.IFNAMESIZE)
        return diag.fail(error.InvalidArgument, "interface name '{s}' must be 1 to 15 characters", .{name});
    var ifr = std.mem.zeroes(linux.ifreq);
    @memcpy(ifr.ifrn.name[0..name.len], name);
    return ifr;
}

/// Reads index, MAC, MTU and flags of interface `name` in the calling thread's network namespace.
pub fn ifaceInfo(name: []const u8) Error!IfaceInfo {
    return ifaceInfoIn(name, "");
}

/// `ifaceInfo` where the calling thread is in network namespace `netns` (its `ip netns` name, "" for
/// none): a missing interface is looked for with 'ip -n NETNS link'.
pub fn ifaceInfoIn(name: []const u8, netns: []const u8) Error!IfaceInfo {
    const fd: i32 = @intCast(try check(linux.socket(linux.AF.INET, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0), "socket", .{}));
    defer close(fd);
    var ifr = try ifreqFor(name);
    const idx_rc = linux.ioctl(fd, linux.SIOCGIFINDEX, @intFromPtr(&ifr));
    if (linux.E.init(idx_rc) != .SUCCESS)
        return if (netns.len == 0)
            diag.fail(error.NoSuchDevice, "no interface named '{s}' (see 'ip link')", .{name})
        else
            diag.fail(error.NoSuchDevice, "no interface named '{s}' in network namespace {s} (see 'ip -n {s} link')", .{ name, netns, netns });
    var info: IfaceInfo = .{ .index = ifr.ifru.ivalue, .mac = undefined, .mtu = 0, .up = false, .running = false };
    _ = try check(linux.ioctl(fd, linux.SIOCGIFHWADDR, @intFromPtr(&ifr)), "reading the MAC of {s}", .{name});
    @memcpy(&info.mac, ifr.ifru.hwaddr.data[0..6]);
    _ = try check(linux.ioctl(fd, linux.SIOCGIFMTU, @intFromPtr(&ifr)), "reading the MTU of {s}", .{name});
    info.mtu = @intCast(ifr.ifru.mtu);
    _ = try check(linux.ioctl(fd, linux.SIOCGIFFLAGS, @intFromPtr(&ifr)), "reading the flags of {s}", .{name});
    info.up = ifr.ifru.flags.UP;
    info.running = ifr.ifru.flags.RUNNING;
    return info;
}

/// Watches an interface through sockets created in its namespace (ioctls on them resolve names
/// there, whichever thread asks): its flags, its identity (ifindex and MAC), and the kernel's link
/// notifications (rtnetlink, RTMGRP_LINK), which wake the watcher the moment the interface changes.
pub const LinkWatch = struct {
    fd: i32,
    ifr: linux.ifreq,
    /// NETLINK_ROUTE socket subscribed to link changes (non-blocking; poll it for POLL.IN).
    events: i32 = -1,

    pub fn open(name: []const u8) Error!LinkWatch {
        const ifr = try ifreqFor(name);
        const fd: i32 = @intCast(try check(linux.socket(linux.AF.INET, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0), "socket", .{}));
        errdefer close_fd(fd);
        const nl: i32 = @intCast(try check(linux.socket(linux.AF.NETLINK, linux.SOCK.RAW | linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK, linux.NETLINK.ROUTE), "opening a netlink socket", .{}));
        errdefer close_fd(nl);
        const sa = linux.sockaddr.nl{ .pid = 0, .groups = rtmgrp_link };
        _ = try check(linux.bind(nl, @ptrCast(&sa), @sizeOf(linux.sockaddr.nl)), "subscribing to link notifications", .{});
        return .{ .fd = fd, .ifr = ifr, .events = nl };
    }

    pub const State = enum { up, down, gone };

    pub fn state(w: *LinkWatch) State {
        var ifr = w.ifr;
        const rc = linux.ioctl(w.fd, linux.SIOCGIFFLAGS, @intFromPtr(&ifr));
        if (linux.E.init(rc) != .SUCCESS) return .gone;
        return if (ifr.ifru.flags.UP and ifr.ifru.flags.RUNNING) .up else .down;
    }

    pub const Identity = struct { index: i32, mac: [6]u8 };

    /// The ifindex and MAC the interface's name stands for now; null when no interface has it.
    pub fn identity(w: *LinkWatch) ?Identity {
        var ifr = w.ifr;
        if (linux.E.init(linux.ioctl(w.fd, linux.SIOCGIFINDEX, @intFromPtr(&ifr))) != .SUCCESS) return null;
        const index = ifr.ifru.ivalue;
        ifr = w.ifr;
        if (linux.E.init(linux.ioctl(w.fd, linux.SIOCGIFHWADDR, @intFromPtr(&ifr))) != .SUCCESS) return null;
        var id = Identity{ .index = index, .mac = undefined };
        @memcpy(&id.mac, ifr.ifru.hwaddr.data[0..6]);
        return id;
    }

    /// Reads every pending link notification; true when one said interface `index` was deleted
    /// (or notifications were lost, so it may have been).
    pub fn drain(w: *LinkWatch, index: i32) bool {
        var buf: [8192]u8 align(4) = undefined;
        var deleted = false;
        while (true) {
            const rc = linux.recvfrom(w.events, &buf, buf.len, 0, null, null);
            switch (linux.E.init(rc)) {
                .SUCCESS => {},
                .NOBUFS => {
                    deleted = true; // overflowed: the caller checks the interface again either way
                    continue;
                },
                .INTR => continue,
                else => return deleted,
            }
            deleted = deletedIn(buf[0..rc], index) or deleted;
        }
    }

    pub fn close(w: *LinkWatch) void {
        close_fd(w.fd);
        close_fd(w.events);
        w.fd = -1;
        w.events = -1;
    }
};

const native = @import("builtin").cpu.arch.endian();
const rtmgrp_link: u32 = 1;
const rtm_dellink: u16 = 17;

/// Whether the netlink messages in `msgs` include RTM_DELLINK for ifindex `index`. Read field by
/// field (struct nlmsghdr: len u32, type u16, …; struct ifinfomsg: index at byte 4), host order.
fn deletedIn(msgs: []const u8, index: i32) bool {
    const hdr_len = 16;
    const ifi_len = 16;
    var off: usize = 0;
    while (off + hdr_len + ifi_len <= msgs.len) {
        const len = std.mem.readInt(u32, msgs[off..][0..4], native);
        const kind = std.mem.readInt(u16, msgs[off + 4 ..][0..2], native);
        if (len < hdr_len or len > msgs.len - off) return false;
        if (kind == rtm_dellink and len >= hdr_len + ifi_len and
            std.mem.readInt(i32, msgs[off + hdr_len + 4 ..][0..4], native) == index) return true;
        off += std.mem.alignForward(usize, len, 4);
    }
    return false;
}

/// One SIOCETHTOOL request on `ifname`: `data` is the ethtool struct, its first u32 the command.
/// False when the driver does not answer it.
pub fn ethtool(fd: i32, ifname: []const u8, data: *anyopaque) bool {
    var ifr = std.mem.zeroes(linux.ifreq);
    @memcpy(ifr.ifrn.name[0..ifname.len], ifname);
    ifr.ifru.data = @ptrCast(data);
    return linux.E.init(linux.ioctl(fd, linux.SIOCETHTOOL, @intFromPtr(&ifr))) == .SUCCESS;
}

fn close_fd(fd: i32) void {
    if (fd >= 0) _ = linux.close(fd);
}

/// Switches the calling thread into /run/netns/<name> until `leave`. An empty name does nothing.
pub const Netns = struct {
    saved: i32 = -1,

    pub fn enter(name: []const u8) Error!Netns {
        if (name.len == 0) return .{};
        var path_buf: [128]u8 = undefined;
        const path = std.fmt.bufPrintZ(&path_buf, "/run/netns/{s}", .{name}) catch
            return diag.fail(error.InvalidArgument, "network namespace name '{s}' is too long", .{name});
        const saved: i32 = @intCast(try check(linux.open("/proc/thread-self/ns/net", .{ .CLOEXEC = true }, 0), "opening this thread's network namespace", .{}));
        errdefer close(saved);
        const rc = linux.open(path, .{ .CLOEXEC = true }, 0);
        if (linux.E.init(rc) == .NOENT)
            return diag.fail(error.NoSuchDevice, "no network namespace named '{s}' (see 'ip netns list')", .{name});
        const target: i32 = @intCast(try check(rc, "opening {s}", .{path}));
        defer close(target);
        _ = try check(linux.syscall2(.setns, @intCast(target), linux.CLONE.NEWNET), "entering network namespace {s}", .{name});
        return .{ .saved = saved };
    }

    /// The calling thread's network namespace, told apart from every other by its nsfs inode (what
    /// `stat -L /proc/PID/ns/net` and `stat /run/netns/NAME` show): the same however it was entered.
    pub fn current() Error!u64 {
        var st: linux.Stat = undefined;
        _ = try check(linux.fstatat(linux.AT.FDCWD, "/proc/thread-self/ns/net", &st, 0), "reading this thread's network namespace", .{});
        return st.ino;
    }

    /// The `ip netns` name of namespace `id` (see `current`), or "" when it has none (the host's).
    pub fn nameOf(id: u64, buf: *[64]u8) []const u8 {
        var d = std.fs.openDirAbsolute("/run/netns", .{ .iterate = true }) catch return "";
        defer d.close();
        var it = d.iterate();
        while (it.next() catch null) |e| {
            const st = d.statFile(e.name) catch continue;
            if (st.inode != id or e.name.len > buf.len) continue;
            @memcpy(buf[0..e.name.len], e.name);
            return buf[0..e.name.len];
        }
        return "";
    }

    pub fn leave(self: *Netns) void {
        if (self.saved < 0) return;
        // Returning to the namespace we came from cannot fail for a root thread that left it.
        _ = linux.syscall2(.setns, @intCast(self.saved), linux.CLONE.NEWNET);
        close(self.saved);
        self.saved = -1;
    }
};

pub fn pinToCpu(cpu: i32) Error!void {
    if (cpu < 0) return;
    var set = std.mem.zeroes(linux.cpu_set_t);
    const bits = @bitSizeOf(usize);
    const c: usize = @intCast(cpu);
    if (c >= set.len * bits) return diag.fail(error.InvalidArgument, "CPU {d} is out of range", .{cpu});
    set[c / bits] |= @as(usize, 1) << @intCast(c % bits);
    linux.sched_setaffinity(0, &set) catch
        return diag.fail(error.InvalidArgument, "cannot pin to CPU {d} (is it online? see nproc)", .{cpu});
}

/// Sets the calling thread's nice value (on Linux nice is per thread: PRIO_PROCESS with who = 0 is
/// the caller). 0 leaves it alone.
pub fn setNice(nice: i8) Error!void {
    if (nice == 0) return;
    const prio_process = 0;
    const rc = linux.syscall3(.setpriority, prio_process, 0, @bitCast(@as(isize, nice)));
    switch (linux.E.init(rc)) {
        .SUCCESS => {},
        .PERM, .ACCES => return diag.fail(
            error.PermissionDenied,
            "cannot run at nice {d}: needs root or CAP_SYS_NICE (or pass `nice` 0)",
            .{nice},
        ),
        else => |e| return diag.fail(errorOf(e), "cannot run at nice {d}: {s}", .{ nice, describe(e) }),
    }
}

/// Names the calling thread (as `top -H` and `ps -L` show it, at most 15 bytes), sets its nice value
/// (0: as it is) and pins it to `cpu` (< 0: any CPU).
pub fn placeThread(name: []const u8, cpu: i32, nice: i8) Error!void {
    var comm = std.mem.zeroes([16]u8);
    const n = @min(name.len, comm.len - 1);
    @memcpy(comm[0..n], name[0..n]);
    _ = linux.prctl(@intFromEnum(linux.PR.SET_NAME), @intFromPtr(&comm), 0, 0, 0);
    try setNice(nice);
    try pinToCpu(cpu);
}

pub const monotonicNs = @import("clock.zig").monotonicNs;
pub const threadCpuNs = @import("clock.zig").threadCpuNs;

/// The `ip` command for network namespace `netns` ("ip -n NS"; "ip" for ours), for messages that name
/// a command to run; `buf` holds it.
pub fn ipIn(buf: *[80]u8, netns: []const u8) []const u8 {
    if (netns.len == 0) return "ip";
    return std.fmt.bufPrint(buf, "ip -n {s}", .{netns}) catch "ip";
}

/// Reads a small sysfs or procfs file, trimmed; `buf` holds the result (null: unreadable).
pub fn readSys(path: []const u8, buf: []u8) ?[]const u8 {
    const f = std.fs.cwd().openFile(path, .{}) catch return null;
    defer f.close();
    const n = f.readAll(buf) catch return null;
    return std.mem.trim(u8, buf[0..n], " \n\t");
}

pub fn sleepNs(ns: u64) void {
    var ts = linux.timespec{ .sec = @intCast(ns / std.time.ns_per_s), .nsec = @intCast(ns % std.time.ns_per_s) };
    _ = linux.nanosleep(&ts, null);
}

/// An eventfd that tells worker threads to stop; they poll it beside their socket.
pub const StopSignal = struct {
    fd: i32,

    pub fn init() Error!StopSignal {
        return .{ .fd = @intCast(try check(linux.eventfd(0, linux.EFD.CLOEXEC | linux.EFD.NONBLOCK), "eventfd", .{})) };
    }
    pub fn raise(self: StopSignal) void {
        const one: u64 = 1;
        _ = linux.write(self.fd, std.mem.asBytes(&one), 8);
    }
    pub fn deinit(self: *StopSignal) void {
        close(self.fd);
        self.fd = -1;
    }
};

test "ifaceInfo reads loopback and names a missing interface" {
    const lo = try ifaceInfo("lo");
    try std.testing.expect(lo.index > 0);
    try std.testing.expect(lo.up);
    try std.testing.expectError(error.NoSuchDevice, ifaceInfo("fp-nonexistent"));
    try std.testing.expect(std.mem.indexOf(u8, std.mem.span(diag.message()), "ip link") != null);
    try std.testing.expectError(error.NoSuchDevice, ifaceInfoIn("fp-nonexistent", "fpe-ns"));
    try std.testing.expect(std.mem.indexOf(u8, std.mem.span(diag.message()), "in network namespace fpe-ns (see 'ip -n fpe-ns link')") != null);
    try std.testing.expectError(error.InvalidArgument, ifaceInfo("a-name-that-is-far-too-long"));
}

test "a link notification names the deleted interface, and a truncated one is ignored" {
    var buf = [_]u8{0} ** 32;
    std.mem.writeInt(u32, buf[0..4], 32, native);
    std.mem.writeInt(u16, buf[4..6], rtm_dellink, native);
    std.mem.writeInt(i32, buf[20..24], 7, native);
    try std.testing.expect(deletedIn(&buf, 7));
    try std.testing.expect(!deletedIn(&buf, 8));
    try std.testing.expect(!deletedIn(buf[0..31], 7));
    std.mem.writeInt(u16, buf[4..6], rtm_dellink - 1, native); // RTM_NEWLINK
    try std.testing.expect(!deletedIn(&buf, 7));
}

test "a link watch sees loopback's identity" {
    var w = try LinkWatch.open("lo");
    defer w.close();
    const id = w.identity().?;
    try std.testing.expect(id.index > 0);
    try std.testing.expectEqualSlices(u8, &.{ 0, 0, 0, 0, 0, 0 }, &id.mac);
    try std.testing.expect(!w.drain(id.index));
}

test "entering a missing network namespace says which" {
    try std.testing.expectError(error.NoSuchDevice, Netns.enter("fp-no-such-ns"));
    try std.testing.expect(std.mem.indexOf(u8, std.mem.span(diag.message()), "fp-no-such-ns") != null);
}
