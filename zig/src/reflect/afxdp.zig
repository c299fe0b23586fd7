//! AF_XDP: the XDP program redirects ITO frames to a socket per receive queue; a worker rewrites
//! them in place in the UMEM and transmits them from the same buffer.
//!
//! Buffer ownership is the whole game (reflectors that get it wrong return unmodified originals or
//! duplicates under load). Every UMEM frame is in exactly one place at any time:
//!   free list (ours) -> fill ring (kernel) -> rx ring (ours, being rewritten) -> tx ring (kernel)
//!   -> completion ring (ours) -> free list.
//! A frame leaves the rx ring either into the tx ring or back to the free list, never both, and goes
//! back to the fill ring only after its transmission completed. `audit` checks this when the worker
//! stops: every frame address must be found exactly once.
const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const diag = @import("../sys/diag.zig");
const ito = @import("../ito/ito.zig");
const sys = @import("../sys/linux.zig");
const Error = abi.Error;

pub const frame_size = 4096;
/// 32 MiB per queue. The rx ring holds 20 ms at 200 kpps: a sender that falls behind and catches
/// up in a burst (the probe on a loaded 2-vCPU VM) overran 2 048 descriptors about once a minute.
pub const frame_count = 8192;
pub const ring_size = 4096;
/// Largest frame a 4096-byte chunk holds after the kernel's XDP headroom (256): MTU ≤ 3808. Longer
/// frames span several chunks, which needs multi-buffer AF_XDP (XDP_USE_SG, Linux 6.6+).
pub const max_frame = frame_size - 256 - 32;

const need_wakeup: u32 = 1; // XDP_RING_NEED_WAKEUP
/// The user buffer of every zero-length transmit kick.
const kick_byte = [1]u8{0};
const use_sg: u16 = 1 << 4; // XDP_USE_SG: one packet may span several descriptors
/// xdp_desc.options: more descriptors of this packet follow (XDP_PKT_CONTD).
const pkt_contd: u32 = 1 << 0;

fn Ring(comptime Desc: type) type {
    return struct {
        const Self = @This();
        producer: *u32,
        consumer: *u32,
        flags: *u32,
        descs: [*]Desc,
        mask: u32,
        size: u32,
        cached_prod: u32 = 0,
        cached_cons: u32 = 0,
        map: []align(std.heap.page_size_min) u8,

        fn init(fd: i32, off: linux.xdp_ring_offset, pgoff: u64, size: u32) Error!Self {
            const len = off.desc + @as(u64, size) * @sizeOf(Desc);
            const addr = linux.mmap(null, len, linux.PROT.READ | linux.PROT.WRITE, .{ .TYPE = .SHARED, .POPULATE = true }, fd, @bitCast(pgoff));
            _ = try sys.check(addr, "mapping an AF_XDP ring", .{});
            const base: [*]align(std.heap.page_size_min) u8 = @ptrFromInt(addr);
            return .{
                .producer = @ptrCast(@alignCast(base + off.producer)),
                .consumer = @ptrCast(@alignCast(base + off.consumer)),
                .flags = @ptrCast(@alignCast(base + off.flags)),
                .descs = @ptrCast(@alignCast(base + off.desc)),
                .mask = size - 1,
                .size = size,
                .map = base[0..len],
            };
        }

        fn deinit(r: *Self) void {
            _ = linux.munmap(r.map.ptr, r.map.len);
        }

        // Rings we produce into (fill, tx).
        fn free(r: *Self, want: u32) u32 {
            var n = r.size - (r.cached_prod -% r.cached_cons);
            if (n < want) {
                r.cached_cons = @atomicLoad(u32, r.consumer, .acquire);
                n = r.size - (r.cached_prod -% r.cached_cons);
            }
            return @min(n, want);
        }
        fn slot(r: *Self, i: u32) *Desc {
            return &r.descs[(r.cached_prod +% i) & r.mask];
        }
        fn submit(r: *Self, n: u32) void {
            r.cached_prod +%= n;
            @atomicStore(u32, r.producer, r.cached_prod, .release);
        }

        // Rings we consume from (rx, completion).
        fn available(r: *Self, want: u32) u32 {
            var n = r.cached_prod -% r.cached_cons;
            if (n == 0) {
                r.cached_prod = @atomicLoad(u32, r.producer, .acquire);
                n = r.cached_prod -% r.cached_cons;
            }
            return @min(n, want);
        }
        fn at(r: *Self, i: u32) *Desc {
            return &r.descs[(r.cached_cons +% i) & r.mask];
        }
        fn release(r: *Self, n: u32) void {
            r.cached_cons +%= n;
            @atomicStore(u32, r.consumer, r.cached_cons, .release);
        }

        fn needsWakeup(r: *const Self) bool {
            return @atomicLoad(u32, r.flags, .monotonic) & need_wakeup != 0;
        }
    };
}

pub const Socket = struct {
    fd: i32,
    umem: []align(std.heap.page_size_min) u8,
    fill: Ring(u64),
    comp: Ring(u64),
    rx: Ring(linux.xdp_desc),
    tx: Ring(linux.xdp_desc),
    free_list: []u64,
    free_len: u32,
    /// Frames handed to the tx ring whose completion has not come back yet.
    tx_outstanding: u32 = 0,
    zerocopy: bool,
    /// The kernel's running total of frames lost at this socket, at the last `takeDrops`.
    drops_seen: u64 = 0,
    /// Multi-buffer: packets longer than a chunk arrive (and go back) as chained descriptors.
    multi_buffer: bool,
    queue: u32,

    pub fn open(gpa: std.mem.Allocator, ifindex: i32, queue: u32, busy_poll_us: u32) Error!Socket {
        const fd: i32 = @intCast(try sys.check(linux.socket(linux.AF.XDP, linux.SOCK.RAW | linux.SOCK.CLOEXEC, 0), "opening an AF_XDP socket", .{}));
        errdefer sys.close(fd);
        const umem_len = @as(usize, frame_size) * frame_count;
        const umem_addr = linux.mmap(null, umem_len, linux.PROT.READ | linux.PROT.WRITE, .{ .TYPE = .PRIVATE, .ANONYMOUS = true, .POPULATE = true }, -1, 0);
        _ = try sys.check(umem_addr, "allocating the UMEM", .{});
        const umem = @as([*]align(std.heap.page_size_min) u8, @ptrFromInt(umem_addr))[0..umem_len];
        errdefer _ = linux.munmap(umem.ptr, umem.len);

        var reg = std.mem.zeroes(linux.xdp_umem_reg);
        reg.addr = umem_addr;
        reg.len = umem_len;
        reg.chunk_size = frame_size;
        reg.headroom = 0;
        try setopt(fd, linux.XDP.UMEM_REG, std.mem.asBytes(&reg), "registering the UMEM");
        const rs: u32 = ring_size;
        try setopt(fd, linux.XDP.UMEM_FILL_RING, std.mem.asBytes(&rs), "sizing the fill ring");
        try setopt(fd, linux.XDP.UMEM_COMPLETION_RING, std.mem.asBytes(&rs), "sizing the completion ring");
        try setopt(fd, linux.XDP.RX_RING, std.mem.asBytes(&rs), "sizing the rx ring");
        try setopt(fd, linux.XDP.TX_RING, std.mem.asBytes(&rs), "sizing the tx ring");
        var off: linux.xdp_mmap_offsets = undefined;
        var olen: linux.socklen_t = @sizeOf(linux.xdp_mmap_offsets);
        _ = try sys.check(linux.getsockopt(fd, linux.SOL.XDP, linux.XDP.MMAP_OFFSETS, std.mem.asBytes(&off), &olen), "reading AF_XDP ring offsets", .{});

        var fill = try Ring(u64).init(fd, off.fr, linux.XDP.UMEM_PGOFF_FILL_RING, ring_size);
        errdefer fill.deinit();
        var comp = try Ring(u64).init(fd, off.cr, linux.XDP.UMEM_PGOFF_COMPLETION_RING, ring_size);
        errdefer comp.deinit();
        var rx = try Ring(linux.xdp_desc).init(fd, off.rx, linux.XDP.PGOFF_RX_RING, ring_size);
        errdefer rx.deinit();
        var tx = try Ring(linux.xdp_desc).init(fd, off.tx, linux.XDP.PGOFF_TX_RING, ring_size);
        errdefer tx.deinit();

        if (busy_poll_us > 0) {
            // asm-generic/socket.h; not all in Zig's std yet.
            const SO_BUSY_POLL = 46;
            const SO_PREFER_BUSY_POLL = 69;
            const SO_BUSY_POLL_BUDGET = 70;
            const one: c_int = 1;
            const us: c_int = @intCast(busy_poll_us);
            const budget: c_int = 64;
            _ = linux.setsockopt(fd, linux.SOL.SOCKET, SO_PREFER_BUSY_POLL, std.mem.asBytes(&one), 4);
            _ = linux.setsockopt(fd, linux.SOL.SOCKET, SO_BUSY_POLL, std.mem.asBytes(&us), 4);
            _ = linux.setsockopt(fd, linux.SOL.SOCKET, SO_BUSY_POLL_BUDGET, std.mem.asBytes(&budget), 4);
        }

        // Neither XDP_COPY nor XDP_ZEROCOPY: the kernel takes zero-copy where the driver offers it and
        // falls back to copy mode (veth has no zero-copy); XDP_OPTIONS says which it chose.
        // Multi-buffer where the kernel has it (6.6+; EINVAL or EOPNOTSUPP before), so jumbo frames
        // are reflected too; without it frames longer than a chunk stay with the stack.
        var sxdp = linux.sockaddr.xdp{ .flags = linux.XDP.USE_NEED_WAKEUP | use_sg, .ifindex = @intCast(ifindex), .queue_id = queue, .shared_umem_fd = 0 };
        // A socket closed a moment ago gives its queue back from deferred kernel work: EBUSY until
        // then. Wait for that (bounded); a queue still held after 2 s belongs to another program.
        var rc = linux.bind(fd, @ptrCast(&sxdp), @sizeOf(linux.sockaddr.xdp));
        var tries: u32 = 0;
        while (true) : (tries += 1) {
            switch (linux.E.init(rc)) {
                .BUSY => if (tries >= 200) break else sys.sleepNs(10 * std.time.ns_per_ms),
                .INVAL, .OPNOTSUPP => if (sxdp.flags & use_sg != 0) {
                    sxdp.flags &= ~use_sg;
                } else break,
                else => break,
            }
            rc = linux.bind(fd, @ptrCast(&sxdp), @sizeOf(linux.sockaddr.xdp));
        }
        if (linux.E.init(rc) == .BUSY)
            return diag.fail(error.Busy, "queue {d} is held by another AF_XDP program: stop it, or use `mode` xdp", .{queue});
        _ = try sys.check(rc, "binding the AF_XDP socket to queue {d}", .{queue});
        var xopts: linux.xdp_options = .{ .flags = 0 };
        var xlen: linux.socklen_t = @sizeOf(linux.xdp_options);
        _ = linux.getsockopt(fd, linux.SOL.XDP, linux.XDP.OPTIONS, std.mem.asBytes(&xopts), &xlen);
        const zerocopy = xopts.flags & linux.XDP.OPTIONS_ZEROCOPY != 0;

        const free_list = gpa.alloc(u64, frame_count) catch return error.OutOfMemory;
        var s = Socket{
            .fd = fd,
            .umem = umem,
            .fill = fill,
            .comp = comp,
            .rx = rx,
            .tx = tx,
            .free_list = free_list,
            .free_len = 0,
            .zerocopy = zerocopy,
            .multi_buffer = sxdp.flags & use_sg != 0,
            .queue = queue,
        };
        for (0..frame_count) |i| s.pushFree(@as(u64, i) * frame_size);
        s.refill();
        return s;
    }

    fn setopt(fd: i32, opt: u32, bytes: []const u8, comptime what: []const u8) Error!void {
        _ = try sys.check(linux.setsockopt(fd, linux.SOL.XDP, opt, bytes.ptr, @intCast(bytes.len)), what, .{});
    }

    pub fn close(s: *Socket, gpa: std.mem.Allocator) void {
        if (s.fd < 0) return;
        s.fill.deinit();
        s.comp.deinit();
        s.rx.deinit();
        s.tx.deinit();
        sys.close(s.fd);
        _ = linux.munmap(s.umem.ptr, s.umem.len);
        gpa.free(s.free_list);
        s.fd = -1;
    }

    fn pushFree(s: *Socket, addr: u64) void {
        std.debug.assert(s.free_len < s.free_list.len);
        s.free_list[s.free_len] = addr;
        s.free_len += 1;
    }

    /// Frames the kernel lost at this socket since the last call: no fill-ring buffer to copy into, or
    /// no room in the rx ring (the worker fell behind). XDP_STATISTICS counts from the socket's start.
    pub fn takeDrops(s: *Socket) u64 {
        var st: linux.xdp_statistics = undefined;
        var len: linux.socklen_t = @sizeOf(linux.xdp_statistics);
        const rc = linux.getsockopt(s.fd, linux.SOL.XDP, linux.XDP.STATISTICS, std.mem.asBytes(&st), &len);
        if (linux.E.init(rc) != .SUCCESS) return 0;
        const total = st.rx_dropped + st.rx_ring_full;
        defer s.drops_seen = total;
        return total -% s.drops_seen;
    }

    /// Completed transmissions come back to the free list.
    pub fn reclaim(s: *Socket) void {
        const n = s.comp.available(ring_size);
        for (0..n) |i| s.pushFree(s.comp.at(@intCast(i)).*);
        s.comp.release(n);
        s.tx_outstanding -= n;
    }

    /// Hands free frames to the kernel for receiving.
    pub fn refill(s: *Socket) void {
        const n = s.fill.free(s.free_len);
        for (0..n) |i| {
            s.free_len -= 1;
            s.fill.slot(@intCast(i)).* = s.free_list[s.free_len];
        }
        s.fill.submit(n);
    }

    /// In copy mode, and whenever the kernel asks, transmission needs a system call — but only
    /// while the tx ring holds descriptors the kernel has not taken yet. In copy mode the kernel
    /// transmits inside this call. Returns the call's error (AGAIN/BUSY: the device queue is full,
    /// try again; NETDOWN/NXIO: the link is gone) or SUCCESS when nothing was needed.
    pub fn kickTx(s: *Socket) linux.E {
        while (s.txUnsent()) {
            if (s.zerocopy and !s.tx.needsWakeup()) return .SUCCESS;
            const before = @atomicLoad(u32, s.tx.consumer, .acquire);
            // The buffer must be a real user address even for zero bytes: a pointer to a zero-length
            // array is not one, and the kernel answers EFAULT before the socket sees the call (the
            // frames then went out only when poll() ran, a millisecond later).
            const e = linux.E.init(linux.sendto(s.fd, &kick_byte, 0, linux.MSG.DONTWAIT, null, 0));
            // Copy mode sends at most 32 frames per call and answers AGAIN when more are left: call
            // again while that makes progress. No progress: the device queue is full.
            if (e != .AGAIN or @atomicLoad(u32, s.tx.consumer, .acquire) == before) return e;
        }
        return .SUCCESS;
    }

    /// Whether received frames are waiting (to spin on: no system call).
    pub fn ready(s: *Socket) bool {
        return s.rx.available(1) > 0;
    }

    /// Descriptors in the tx ring that the kernel has not taken yet (they need another kick).
    pub fn txUnsent(s: *const Socket) bool {
        return @atomicLoad(u32, s.tx.consumer, .acquire) != s.tx.cached_prod;
    }

    /// One batch: take received frames, rewrite the ITO ones in place, submit them for transmission,
    /// release the rest. Returns how many frames were taken (0: nothing waiting).
    pub fn batch(s: *Socket, cfg: *const abi.ItoConfig, max: u32, local: *abi.Counters) u32 {
        s.reclaim();
        s.refill();
        var room = s.tx.free(max);
        if (room < max) {
            // Frames not yet sent fill the tx ring: push them out and take completions back first.
            _ = s.kickTx();
            s.reclaim();
            s.refill();
            room = s.tx.free(max);
        }
        // Take no more than can be sent: the rest waits in the rx ring (back-pressure), none is dropped.
        var n = s.rx.available(room);
        // Whole packets only: a packet's descriptors carry XDP_PKT_CONTD on all but its last, and
        // the kernel publishes a packet's descriptors together.
        while (n > 0 and s.rx.at(n - 1).options & pkt_contd != 0) n -= 1;
        if (n == 0) return 0;
        // The XDP program's copy wrote these frames from another core: fetch every header now
        // instead of missing the cache on each in turn.
        for (0..n) |i| @prefetch(s.umem.ptr + s.rx.at(@intCast(i)).addr, .{});
        var queued: u32 = 0;
        var first: u32 = 0;
        while (first < n) {
            var last = first;
            while (s.rx.at(last).options & pkt_contd != 0) last += 1;
            // Every header is in the first buffer (a chunk holds 3808 bytes); the rest is payload.
            const d = s.rx.at(first).*;
            const frame = s.umem[d.addr..][0..d.len];
            // Received frames are counted by the XDP program (the kernel block), not here.
            const p = ito.classify(cfg, frame);
            if (p.verdict != .reflect) {
                // The XDP program validated it; a disagreement is counted, never sent.
                local.countVerdict(p.verdict);
                for (first..last + 1) |i| s.pushFree(s.rx.at(@intCast(i)).addr);
            } else {
                ito.rewrite(cfg, frame, p);
                local.tx_packets += 1;
                for (first..last + 1) |i| {
                    const di = s.rx.at(@intCast(i)).*;
                    s.tx.slot(queued).* = .{ .addr = di.addr, .len = di.len, .options = di.options & pkt_contd };
                    queued += 1;
                    local.tx_bytes += di.len;
                }
            }
            first = last + 1;
        }
        s.tx.submit(queued);
        s.tx_outstanding += queued;
        s.rx.release(n);
        if (queued > 0) _ = s.kickTx();
        return n;
    }

    pub const Wait = enum { ready, stop, timeout };

    pub fn wait(s: *Socket, stop: sys.StopSignal, timeout_ms: i32) Wait {
        var fds = [2]linux.pollfd{
            .{ .fd = s.fd, .events = linux.POLL.IN, .revents = 0 },
            .{ .fd = stop.fd, .events = linux.POLL.IN, .revents = 0 },
        };
        const rc = linux.poll(&fds, 2, timeout_ms);
        if (linux.E.init(rc) != .SUCCESS or rc == 0) return .timeout;
        if (fds[1].revents != 0) return .stop;
        return .ready;
    }

    /// Waits (up to `timeout_ns`) for every transmission to complete, takes back what is left in
    /// the rx ring, then checks that each UMEM frame is in exactly one place: the free list or the
    /// fill ring. Returns how many frames are missing and how many are held twice.
    pub fn audit(s: *Socket, gpa: std.mem.Allocator, timeout_ns: u64) struct { missing: u64, duplicated: u64 } {
        const deadline = sys.monotonicNs() + timeout_ns;
        while (s.tx_outstanding > 0 and sys.monotonicNs() < deadline) {
            _ = s.kickTx();
            s.reclaim();
            if (s.tx_outstanding > 0) sys.sleepNs(100_000);
        }
        const n = s.rx.available(ring_size);
        for (0..n) |i| s.pushFree(s.rx.at(@intCast(i)).addr);
        s.rx.release(n);

        const seen = gpa.alloc(u8, frame_count) catch return .{ .missing = 0, .duplicated = 0 };
        defer gpa.free(seen);
        @memset(seen, 0);
        var duplicated: u64 = 0;
        const mark = struct {
            fn f(tbl: []u8, addr: u64, dup: *u64) void {
                const idx = addr / frame_size;
                if (idx >= tbl.len) return;
                if (tbl[idx] != 0) dup.* += 1;
                tbl[idx] = 1;
            }
        }.f;
        for (s.free_list[0..s.free_len]) |a| mark(seen, a, &duplicated);
        const fill_cons = @atomicLoad(u32, s.fill.consumer, .acquire);
        var i = fill_cons;
        while (i != s.fill.cached_prod) : (i +%= 1) mark(seen, s.fill.descs[i & s.fill.mask], &duplicated);
        // In copy mode the kernel takes a fill entry only to deliver a frame into the rx ring, so once
        // traffic stopped and the rx ring is drained every frame is ours or in the fill ring. (A
        // zero-copy driver holds fill entries in its hardware ring: no such audit there.)
        var missing: u64 = 0;
        if (!s.zerocopy) for (seen) |v| {
            missing += @intFromBool(v == 0);
        };
        return .{ .missing = missing, .duplicated = duplicated };
    }
};

/// Number of receive queues of the interface (ETHTOOL_GCHANNELS through `fd`'s namespace).
pub fn queueCount(fd: i32, ifname: []const u8) u32 {
    const ethtool_channels = extern struct {
        cmd: u32,
        max_rx: u32 = 0,
        max_tx: u32 = 0,
        max_other: u32 = 0,
        max_combined: u32 = 0,
        rx_count: u32 = 0,
        tx_count: u32 = 0,
        other_count: u32 = 0,
        combined_count: u32 = 0,
    };
    var ch = ethtool_channels{ .cmd = 0x3c }; // ETHTOOL_GCHANNELS
    if (!sys.ethtool(fd, ifname, &ch)) return 1;
    return @max(1, @max(ch.rx_count, ch.combined_count));
}

test "a transmit kick sends the frame within the call, not at the next poll" {
    // Loopback: the frame (IEEE local-experimental EtherType, our own addresses) never leaves the host.
    if (linux.geteuid() != 0) {
        std.debug.print("skipped: opening an AF_XDP socket needs root\n", .{});
        return error.SkipZigTest;
    }
    const gpa = std.testing.allocator;
    var s = try Socket.open(gpa, @intCast(std.c.if_nametoindex("lo")), 0, 0);
    defer s.close(gpa);
    try std.testing.expect(!s.zerocopy);

    s.free_len -= 1;
    const addr = s.free_list[s.free_len];
    const frame = s.umem[addr..][0..60];
    @memset(frame, 0);
    @memcpy(frame[0..12], &[_]u8{ 2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1 });
    @memcpy(frame[12..14], &[_]u8{ 0x88, 0xb5 });
    try std.testing.expectEqual(@as(u32, 1), s.tx.free(1));
    s.tx.slot(0).* = .{ .addr = addr, .len = frame.len, .options = 0 };
    s.tx.submit(1);
    s.tx_outstanding += 1;

    try std.testing.expectEqual(linux.E.SUCCESS, s.kickTx());
    s.reclaim();
    try std.testing.expectEqual(@as(u32, 0), s.tx_outstanding);
    try std.testing.expectEqual(addr, s.free_list[s.free_len - 1]);
    // Nothing left to send: no system call.
    try std.testing.expectEqual(linux.E.SUCCESS, s.kickTx());
}
