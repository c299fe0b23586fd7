//! The macOS dataplane: /dev/bpf + kqueue, the way XNU works.
//!   - a free /dev/bpfN; BIOCSBLEN set before BIOCSETIF and read back (the kernel clamps it silently
//!     to debug.bpf_bufsize_cap), and every read() asks for exactly that length;
//!   - BIOCIMMEDIATE 1 (otherwise frames wait for a full buffer or the read timeout: fatal for
//!     latency), BIOCSHDRCMPLT 1 (our source MAC stays as written), BIOCSSEESENT 0 (not our own frames);
//!   - BIOCSETF with the same classic BPF program the Linux packet path attaches (IHL, VLAN, IPv6);
//!   - records walked by BPF_WORDALIGN(bh_hdrlen + bh_caplen) (bpfbuf.zig), rewritten in place;
//!   - sent with BIOCSBATCHWRITE (macOS 14+: records behind a bpf_hdr, many frames per write()), or one
//!     write() per frame where the ioctl is refused — never raw frames concatenated;
//!   - a worker thread at QOS_CLASS_USER_INTERACTIVE (Darwin has no CPU affinity), a kqueue with an
//!     EVFILT_USER stop event, preallocated buffers, the guard UDP socket against ICMP unreachable.
//! Built and cross-compiled here; only a Mac runs it (docs/macos.md).
const std = @import("std");
const c = std.c;
const abi = @import("abi.zig");
const bpfbuf = @import("bpfbuf.zig");
const cbpf = @import("cbpf.zig");
const diag = @import("diag.zig");
const ito = @import("ito.zig");
const Error = abi.Error;

// <net/bpf.h> ioctls: _IOR/_IOW('B', n, size).
const BIOCGBLEN: u32 = 0x40044266;
const BIOCSBLEN: u32 = 0xC0044266;
const BIOCSETF: u32 = 0x80104267;
const BIOCSETIF: u32 = 0x8020426c;
const BIOCIMMEDIATE: u32 = 0x80044270;
const BIOCSHDRCMPLT: u32 = 0x80044275;
const BIOCSSEESENT: u32 = 0x80044277;
/// XNU's private _IOW('B', 143, int), macOS 14 and later.
const BIOCSBATCHWRITE: u32 = 0x8004428f;
const IP_BOUND_IF = 25;
const AF_LINK = 18;

fn ioctl(fd: c.fd_t, req: u32, arg: anytype) c_int {
    return c.ioctl(fd, @bitCast(req), arg);
}

fn errno() c.E {
    return @enumFromInt(c._errno().*);
}

fn fail(err: Error, comptime what: []const u8, args: anytype) Error {
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

const IfaceInfo = struct { mac: [6]u8, index: u32, up: bool };

fn ifaceInfo(name: [:0]const u8) Error!IfaceInfo {
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
        return .{ .mac = mac, .index = if_nametoindex(name), .up = ifa.flags & 1 != 0 };
    }
    return diag.fail(error.NoSuchDevice, "no interface named '{s}' (see 'ifconfig -l')", .{name});
}

/// Opens the first free /dev/bpfN.
fn openBpf() Error!c.fd_t {
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
    return diag.fail(error.Busy, "no free /dev/bpf device", .{});
}

pub const Reflector = struct {
    gpa: std.mem.Allocator,
    opts: abi.ReflectorOptions,
    cfg: abi.ItoConfig,
    filter: cbpf.Filter = .{},
    iface: IfaceInfo,
    counters: []align(64) abi.Counters,
    state: std.atomic.Value(u32) = .init(abi.reflector_state.starting),
    stopping: std.atomic.Value(bool) = .init(false),
    failure: [256]u8 = .{0} ** 256,
    fd: c.fd_t = -1,
    kq: c.fd_t = -1,
    guard: c.fd_t = -1,
    blen: u32 = 0,
    batch_write: bool = false,
    read_buf: []u8 = &.{},
    write_buf: []u8 = &.{},
    thread: ?std.Thread = null,
    stopped: bool = false,

    pub fn start(gpa: std.mem.Allocator, opts: *const abi.ReflectorOptions) Error!*Reflector {
        if (opts.dataplane != @intFromEnum(abi.Dataplane.packet))
            return diag.fail(error.Unsupported, "on macOS the reflector runs on /dev/bpf (mode bpf)", .{});
        const name = std.mem.sliceTo(&opts.ifname, 0);
        var zname: [16:0]u8 = .{0} ** 16;
        if (name.len == 0 or name.len > 15) return diag.fail(error.InvalidArgument, "interface name '{s}' must be 1 to 15 characters", .{name});
        @memcpy(zname[0..name.len], name);
        const iface = try ifaceInfo(zname[0..name.len :0]);
        if (!iface.up) return diag.fail(error.InterfaceDown, "interface {s} is down: bring it up with 'sudo ifconfig {s} up'", .{ name, name });

        const self = gpa.create(Reflector) catch return error.OutOfMemory;
        errdefer gpa.destroy(self);
        self.* = .{ .gpa = gpa, .opts = opts.*, .cfg = opts.ito, .iface = iface, .counters = undefined };
        self.cfg.our_mac = iface.mac;
        cbpf.build(&self.filter, &self.cfg);
        self.counters = gpa.alignedAlloc(abi.Counters, 64, 1) catch return error.OutOfMemory;
        errdefer gpa.free(self.counters);
        self.counters[0] = .{};
        errdefer self.closeFds();

        self.fd = try openBpf();
        var blen: u32 = 4 * 1024 * 1024; // asked for; the kernel clamps to debug.bpf_bufsize_cap
        if (ioctl(self.fd, BIOCSBLEN, &blen) != 0) return fail(error.System, "BIOCSBLEN", .{});
        var ifr = std.mem.zeroes([32]u8);
        @memcpy(ifr[0..name.len], name);
        if (ioctl(self.fd, BIOCSETIF, &ifr) != 0) return fail(error.NoSuchDevice, "attaching /dev/bpf to {s}", .{name});
        if (ioctl(self.fd, BIOCGBLEN, &blen) != 0) return fail(error.System, "BIOCGBLEN", .{});
        self.blen = blen;
        var one: u32 = 1;
        var zero: u32 = 0;
        if (ioctl(self.fd, BIOCIMMEDIATE, &one) != 0) return fail(error.System, "BIOCIMMEDIATE", .{});
        if (ioctl(self.fd, BIOCSHDRCMPLT, &one) != 0) return fail(error.System, "BIOCSHDRCMPLT", .{});
        if (ioctl(self.fd, BIOCSSEESENT, &zero) != 0) return fail(error.System, "BIOCSSEESENT", .{});
        const prog = extern struct { len: u32, insns: [*]const cbpf.Insn }{ .len = @intCast(self.filter.insns.len), .insns = self.filter.insns.ptr };
        if (ioctl(self.fd, BIOCSETF, &prog) != 0) return fail(error.System, "installing the BPF filter (BIOCSETF)", .{});
        // Detected, not assumed: macOS 13 and older refuse the ioctl.
        self.batch_write = ioctl(self.fd, BIOCSBATCHWRITE, &one) == 0;

        self.read_buf = gpa.alloc(u8, blen) catch return error.OutOfMemory;
        self.write_buf = gpa.alloc(u8, blen) catch return error.OutOfMemory;
        try self.openGuard();

        self.kq = c.kqueue();
        if (self.kq < 0) return fail(error.System, "kqueue", .{});
        var changes = [2]c.Kevent{
            .{ .ident = @intCast(self.fd), .filter = c.EVFILT.READ, .flags = c.EV.ADD, .fflags = 0, .data = 0, .udata = 0 },
            .{ .ident = 1, .filter = c.EVFILT.USER, .flags = c.EV.ADD | c.EV.CLEAR, .fflags = 0, .data = 0, .udata = 0 },
        };
        if (c.kevent(self.kq, &changes, 2, &changes, 0, null) != 0) return fail(error.System, "kevent", .{});

        self.thread = std.Thread.spawn(.{}, run, .{self}) catch return diag.fail(error.System, "cannot start the worker thread", .{});
        self.state.store(abi.reflector_state.running, .release);
        return self;
    }

    /// A bound UDP socket on the test port of this interface: the stack delivers test frames to it
    /// (and drops them once its small buffer is full) instead of answering ICMP port-unreachable.
    fn openGuard(self: *Reflector) Error!void {
        if (self.cfg.port == 0) return;
        const fd = c.socket(c.AF.INET, c.SOCK.DGRAM, 0);
        if (fd < 0) return fail(error.System, "guard socket", .{});
        self.guard = fd;
        const idx: c_int = @intCast(self.iface.index);
        _ = c.setsockopt(fd, c.IPPROTO.IP, IP_BOUND_IF, std.mem.asBytes(&idx), @sizeOf(c_int));
        const small: c_int = 1024;
        _ = c.setsockopt(fd, c.SOL.SOCKET, c.SO.RCVBUF, std.mem.asBytes(&small), @sizeOf(c_int));
        var sa = std.mem.zeroes(c.sockaddr.in);
        sa.family = c.AF.INET;
        sa.port = std.mem.nativeToBig(u16, self.cfg.port);
        if (c.bind(fd, @ptrCast(&sa), @sizeOf(c.sockaddr.in)) != 0) {
            if (errno() == .ADDRINUSE) return diag.fail(error.Busy, "UDP port {d} is already in use by another program; stop it or choose another --port", .{self.cfg.port});
            return fail(error.System, "binding the guard socket", .{});
        }
    }

    fn run(self: *Reflector) void {
        _ = c.pthread_set_qos_class_self_np(.QOS_CLASS_USER_INTERACTIVE, 0);
        const shared: *align(64) abi.Counters = &self.counters[0];
        var local: abi.Counters = .{};
        var events: [2]c.Kevent = undefined;
        const timeout = c.timespec{ .sec = 0, .nsec = 250 * std.time.ns_per_ms };
        var batch = bpfbuf.BatchWriter{ .buf = self.write_buf };
        while (!self.stopping.load(.acquire)) {
            const n = c.kevent(self.kq, &.{}, 0, &events, events.len, &timeout);
            if (n <= 0) continue;
            var readable = false;
            for (events[0..@intCast(n)]) |e| {
                if (e.filter == c.EVFILT.USER) return;
                if (e.filter == c.EVFILT.READ) readable = true;
            }
            if (!readable) continue;
            // Take: one read of exactly the buffer length.
            const got = c.read(self.fd, self.read_buf.ptr, self.blen);
            if (got <= 0) continue;
            // Process: walk the records, rewrite in place; submit in batches.
            var walker = bpfbuf.Walker{ .buf = self.read_buf[0..@intCast(got)] };
            while (walker.next()) |rec| {
                local.rx_packets += 1;
                local.rx_bytes += rec.frame.len;
                const p = ito.classify(&self.cfg, rec.frame);
                if (p.verdict != .reflect) {
                    local.countVerdict(p.verdict);
                    continue;
                }
                local.countSignature(p.signature);
                ito.rewrite(&self.cfg, rec.frame, p);
                if (self.batch_write) {
                    if (!batch.add(rec.frame)) {
                        self.flush(&batch, &local);
                        _ = batch.add(rec.frame);
                    }
                } else self.writeOne(rec.frame, &local);
            }
            if (walker.malformed) local.drop_malformed += 1;
            self.flush(&batch, &local);
            // Release: the read buffer is ours again; fold counters once per batch.
            local.batches += 1;
            abi.Counters.fold(shared, &local);
            local = .{};
        }
    }

    fn writeOne(self: *Reflector, frame: []const u8, local: *abi.Counters) void {
        if (c.write(self.fd, frame.ptr, frame.len) == frame.len) {
            local.tx_packets += 1;
            local.tx_bytes += frame.len;
        } else local.drop_tx_error += 1;
    }

    fn flush(self: *Reflector, batch: *bpfbuf.BatchWriter, local: *abi.Counters) void {
        if (batch.frames == 0) return;
        const bytes = batch.bytes();
        if (c.write(self.fd, bytes.ptr, bytes.len) == bytes.len) {
            local.tx_packets += batch.frames;
            local.tx_bytes += bytes.len - @as(u64, batch.frames) * bpfbuf.eth_hdrlen;
        } else local.drop_tx_error += batch.frames;
        batch.reset();
    }

    pub fn info(self: *const Reflector) abi.ReflectorInfo {
        return .{
            .mac = self.iface.mac,
            .guarded = @intFromBool(self.guard >= 0),
            .ifindex = @intCast(self.iface.index),
            .mtu = 0,
            .workers = 1,
            .dataplane = @intFromEnum(abi.Dataplane.packet),
            .xdp_attach = 0,
            // On macOS this byte says whether BIOCSBATCHWRITE is in use.
            .zerocopy = @intFromBool(self.batch_write),
        };
    }

    pub fn refresh(_: *Reflector) void {}

    pub fn stop(self: *Reflector) void {
        if (self.stopped) return;
        self.stopped = true;
        self.stopping.store(true, .release);
        if (self.kq >= 0) {
            var trigger = [1]c.Kevent{.{ .ident = 1, .filter = c.EVFILT.USER, .flags = 0, .fflags = c.NOTE.TRIGGER, .data = 0, .udata = 0 }};
            _ = c.kevent(self.kq, &trigger, 1, &trigger, 0, null);
        }
        if (self.thread) |t| t.join();
        self.thread = null;
        if (self.state.load(.acquire) != abi.reflector_state.failed) self.state.store(abi.reflector_state.stopped, .release);
    }

    fn closeFds(self: *Reflector) void {
        for ([_]c.fd_t{ self.fd, self.kq, self.guard }) |fd| {
            if (fd >= 0) _ = c.close(fd);
        }
        self.fd = -1;
        self.kq = -1;
        self.guard = -1;
        if (self.read_buf.len > 0) self.gpa.free(self.read_buf);
        if (self.write_buf.len > 0) self.gpa.free(self.write_buf);
        self.read_buf = &.{};
        self.write_buf = &.{};
    }

    pub fn destroy(self: *Reflector) void {
        self.stop();
        self.closeFds();
        const gpa = self.gpa;
        gpa.free(self.counters);
        gpa.destroy(self);
    }
};

const unsupported = @import("os_unsupported.zig");
/// The probe over /dev/bpf is not written yet.
pub const Probe = unsupported.Probe;
pub const Scheduler = unsupported.Scheduler;
pub const schedReadAttached = unsupported.schedReadAttached;
pub const schedPreflight = unsupported.schedPreflight;
pub const neighSolicit = unsupported.neighSolicit;
pub const libbpfVersion = unsupported.libbpfVersion;
pub const xdpPass = unsupported.xdpPass;
