//! The probe's I/O on Linux: frames go out in `sendmmsg` batches on an AF_PACKET socket that never
//! receives, reflections come in on a TPACKET_V3 ring filtered in the kernel. Pacing, the window and
//! every check are the shared core's (probe.zig).
const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const afpacket = @import("../reflect/afpacket.zig");
const backoff_limits = @import("../sys/backoff.zig");
const Backoff = backoff_limits.Backoff;
const cbpf = @import("../ito/cbpf.zig");
const diag = @import("../sys/diag.zig");
const guard = @import("../reflect/guard.zig");
const core = @import("probe.zig");
const sys = @import("../sys/linux.zig");
const Error = abi.Error;

pub const Probe = struct {
    core: core.Core,
    stats: *abi.ProbeStats,
    failure: *[256]u8,
    promisc: bool,
    filter: cbpf.Filter = .{},
    rx: afpacket.Socket = undefined,
    tx_fd: i32 = -1,
    stop_signal: sys.StopSignal = undefined,
    guard: guard.Guard = .{},

    pub fn start(gpa: std.mem.Allocator, opts: *const abi.ProbeOptions) Error!*Probe {
        try core.checkOptions(opts); // before anything is opened
        const ifname = std.mem.sliceTo(&opts.ifname, 0);
        var ns = try sys.Netns.enter(std.mem.sliceTo(&opts.netns, 0));
        defer ns.leave();
        const iface = try sys.ifaceInfo(ifname);
        if (!iface.up) return diag.fail(error.InterfaceDown, "interface {s} is down: bring it up with 'ip link set {s} up'", .{ ifname, ifname });

        const self = gpa.create(Probe) catch return error.OutOfMemory;
        errdefer gpa.destroy(self);
        self.* = .{ .core = try core.Core.init(gpa, opts, iface.mac, iface.mtu), .stats = undefined, .failure = undefined, .promisc = false };
        errdefer self.core.deinit();
        self.stats = self.core.stats;
        self.failure = &self.core.failure;
        self.promisc = self.core.foreignSource(iface.mac);

        // Receive: reflections come back addressed to our source MAC, from any vendor, any port.
        const rx_cfg = self.core.rxConfig();
        cbpf.build(&self.filter, &rx_cfg);
        self.rx = try afpacket.Socket.open(.{ .ifindex = iface.index, .filter = &self.filter, .promisc = self.promisc });
        errdefer self.rx.close();

        // Transmit: bound with protocol 0, so this socket never receives.
        const tx_fd: i32 = @intCast(try sys.check(linux.socket(linux.AF.PACKET, linux.SOCK.RAW | linux.SOCK.CLOEXEC, 0), "opening an AF_PACKET socket", .{}));
        errdefer sys.close(tx_fd);
        const one: c_int = 1;
        _ = try sys.check(linux.setsockopt(tx_fd, linux.SOL.PACKET, linux.PACKET.QDISC_BYPASS, std.mem.asBytes(&one), 4), "PACKET_QDISC_BYPASS", .{});
        const sndbuf: c_int = 4 * 1024 * 1024;
        _ = linux.setsockopt(tx_fd, linux.SOL.SOCKET, linux.SO.SNDBUFFORCE, std.mem.asBytes(&sndbuf), 4);
        var sll = std.mem.zeroes(linux.sockaddr.ll);
        sll.family = linux.AF.PACKET;
        sll.ifindex = iface.index;
        _ = try sys.check(linux.bind(tx_fd, @ptrCast(&sll), @sizeOf(linux.sockaddr.ll)), "binding the transmit socket", .{});
        self.tx_fd = tx_fd;

        // Reflections reach this host's stack too; hold the ports they arrive on (no ICMP back).
        self.guard = try guard.Guard.open(ifname, &.{ opts.src_port, opts.dst_port });
        errdefer self.guard.close();

        self.stop_signal = try sys.StopSignal.init();
        errdefer self.stop_signal.deinit();

        try self.core.spawn(self);
        return self;
    }

    pub fn stop(self: *Probe) void {
        self.core.stop();
    }

    pub fn wait(self: *Probe, timeout_ns: u64) bool {
        return self.core.wait(timeout_ns);
    }

    pub fn destroy(self: *Probe) void {
        self.core.join(self);
        self.rx.close();
        sys.close(self.tx_fd);
        self.guard.close();
        self.stop_signal.deinit();
        const gpa = self.core.gpa;
        self.core.deinit();
        gpa.destroy(self);
    }

    /// One `sendmmsg` batch: each frame as two iovecs (stamped head, template tail), no copy.
    const Sender = struct {
        fd: i32,
        n: usize = 0,
        iovs: [core.tx_batch_max][2]std.posix.iovec_const = undefined,
        msgs: [core.tx_batch_max]linux.mmsghdr_const = undefined,
        lens: [core.tx_batch_max]usize = undefined,

        pub fn add(s: *Sender, head: []const u8, tail: []const u8) void {
            s.iovs[s.n] = .{ .{ .base = head.ptr, .len = head.len }, .{ .base = tail.ptr, .len = tail.len } };
            s.msgs[s.n] = .{ .hdr = .{ .name = null, .namelen = 0, .iov = &s.iovs[s.n], .iovlen = if (tail.len > 0) 2 else 1, .control = null, .controllen = 0, .flags = 0 }, .len = 0 };
            s.lens[s.n] = head.len + tail.len;
            s.n += 1;
        }

        pub fn flush(s: *Sender) core.Sent {
            defer s.n = 0;
            var r = core.Sent{};
            var done: usize = 0;
            var backoff = Backoff{ .limit_ns = backoff_limits.probe_limit_ns };
            while (done < s.n) {
                const rc = linux.sendmmsg(s.fd, s.msgs[done..].ptr, @intCast(s.n - done), 0);
                switch (linux.E.init(rc)) {
                    .SUCCESS => {
                        for (s.lens[done .. done + rc]) |len| r.bytes += len;
                        r.frames += rc;
                        done += rc;
                    },
                    .AGAIN, .NOBUFS, .INTR => if (!backoff.wait()) break,
                    .NETDOWN, .NXIO => {
                        r.down = true;
                        break;
                    },
                    else => done += 1, // refused for good: counted as a transmit error, never received
                }
            }
            return r;
        }
    };

    /// Interrupts the receive thread's wait.
    pub fn wake(self: *Probe) void {
        self.stop_signal.raise();
    }

    pub fn txMain(self: *Probe) void {
        sys.placeThread("fp-probe-tx", self.core.opts.tx_cpu, self.core.opts.nice) catch {
            self.core.fail("transmit thread: {s}", .{std.mem.span(diag.message())});
            self.core.tx_done_ns.store(sys.monotonicNs(), .release);
            return;
        };
        // Sleeps shorter than the default 50 us slack keep pacing smooth at low rates.
        _ = linux.syscall2(.prctl, @intFromEnum(linux.PR.SET_TIMERSLACK), 1);
        var sender = Sender{ .fd = self.tx_fd };
        self.core.transmit(&sender);
    }

    pub fn rxMain(self: *Probe) void {
        // The transmit thread reports what cannot be done; this one runs on as it can.
        sys.placeThread("fp-probe-rx", self.core.opts.rx_cpu, self.core.opts.nice) catch {};
        var rx = self.core.receiver();
        while (!rx.done()) {
            const blk = self.rx.next() orelse {
                _ = self.rx.wait(self.stop_signal, 20);
                rx.publish(self.rx.takeDrops());
                continue;
            };
            var it = blk.iterator();
            while (it.next()) |f| rx.frame(f.data, if (f.vlan) |v| v.tci else null, f.ts_ns);
            self.rx.release();
            rx.publish(0);
        }
        rx.finish(self.rx.takeDrops());
    }
};
