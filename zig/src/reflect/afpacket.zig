//! AF_PACKET with an mmap'd TPACKET_V3 receive ring and `sendmmsg` transmit batches that point
//! straight into the ring (rewrite in place, no copy). Used by the reflector's packet mode and by the
//! probe on Linux.
const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const cbpf = @import("../ito/cbpf.zig");
const backoff_limits = @import("../sys/backoff.zig");
const Backoff = backoff_limits.Backoff;
const diag = @import("../sys/diag.zig");
const sys = @import("../sys/linux.zig");
const Error = abi.Error;

const eth_p_all: u16 = 0x0003;
const tp_status_kernel: u32 = 0;
const tp_status_user: u32 = 1;
const tp_status_vlan_valid: u32 = 1 << 4;
const tp_status_vlan_tpid_valid: u32 = 1 << 6;

pub const Options = struct {
    ifindex: i32,
    filter: *const cbpf.Filter,
    /// Many small blocks rather than a few large: a block is handed over at the latest after
    /// `retire_ms`, so `block_nr` is the milliseconds of traffic the ring holds while no one reads it.
    block_size: u32 = 64 * 1024,
    block_nr: u32 = 256,
    /// Milliseconds after which the kernel hands over a partly filled block (the packet-mode latency floor).
    retire_ms: u32 = 1,
    fanout: ?struct { group: u16, mode: abi.Fanout } = null,
    /// Receive frames addressed to other MACs too (the probe with a chosen source MAC).
    promisc: bool = false,
    sndbuf: u32 = 4 * 1024 * 1024,
};

fn setopt(fd: i32, level: i32, opt: u32, value: anytype, comptime what: []const u8) Error!void {
    const bytes = std.mem.asBytes(value);
    _ = try sys.check(linux.setsockopt(fd, level, opt, bytes.ptr, @intCast(bytes.len)), what, .{});
}

pub const Socket = struct {
    fd: i32,
    ring: []align(std.heap.page_size_min) u8,
    block_size: u32,
    block_nr: u32,
    cur: u32 = 0,

    pub fn open(o: Options) Error!Socket {
        // Protocol 0 until bind: nothing is queued before the filter and ring are in place.
        const fd: i32 = @intCast(try sys.check(linux.socket(linux.AF.PACKET, linux.SOCK.RAW | linux.SOCK.CLOEXEC, 0), "opening an AF_PACKET socket", .{}));
        errdefer sys.close(fd);
        const prog = o.filter.program();
        try setopt(fd, linux.SOL.SOCKET, linux.SO.ATTACH_FILTER, &prog, "attaching the socket filter");
        const version: c_int = @intFromEnum(linux.tpacket_versions.V3);
        try setopt(fd, linux.SOL.PACKET, linux.PACKET.VERSION, &version, "selecting TPACKET_V3");
        const one: c_int = 1;
        try setopt(fd, linux.SOL.PACKET, linux.PACKET.QDISC_BYPASS, &one, "PACKET_QDISC_BYPASS");
        try setopt(fd, linux.SOL.PACKET, linux.PACKET.IGNORE_OUTGOING, &one, "PACKET_IGNORE_OUTGOING");
        const sndbuf: c_int = @intCast(o.sndbuf);
        // SNDBUFFORCE (root) goes past net.core.wmem_max; plain SNDBUF is the unprivileged fallback.
        setopt(fd, linux.SOL.SOCKET, linux.SO.SNDBUFFORCE, &sndbuf, "SO_SNDBUFFORCE") catch
            try setopt(fd, linux.SOL.SOCKET, linux.SO.SNDBUF, &sndbuf, "SO_SNDBUF");

        const req = linux.tpacket_req3{
            .block_size = o.block_size,
            .block_nr = o.block_nr,
            .frame_size = 2048,
            .frame_nr = o.block_size / 2048 * o.block_nr,
            .retire_blk_tov = o.retire_ms,
            .sizeof_priv = 0,
            .feature_req_word = 0,
        };
        try setopt(fd, linux.SOL.PACKET, linux.PACKET.RX_RING, &req, "setting up the receive ring");
        const len = @as(usize, o.block_size) * o.block_nr;
        const addr = linux.mmap(null, len, linux.PROT.READ | linux.PROT.WRITE, .{ .TYPE = .SHARED, .POPULATE = true }, fd, 0);
        _ = try sys.check(addr, "mapping the receive ring", .{});
        const ring = @as([*]align(std.heap.page_size_min) u8, @ptrFromInt(addr))[0..len];
        errdefer _ = linux.munmap(ring.ptr, ring.len);

        if (o.promisc) {
            const mreq = extern struct { ifindex: c_int, type: u16, alen: u16, address: [8]u8 }{
                .ifindex = o.ifindex,
                .type = 1, // PACKET_MR_PROMISC
                .alen = 0,
                .address = .{0} ** 8,
            };
            try setopt(fd, linux.SOL.PACKET, linux.PACKET.ADD_MEMBERSHIP, &mreq, "entering promiscuous mode");
        }

        var sll = std.mem.zeroes(linux.sockaddr.ll);
        sll.family = linux.AF.PACKET;
        sll.protocol = std.mem.nativeToBig(u16, eth_p_all);
        sll.ifindex = o.ifindex;
        _ = try sys.check(linux.bind(fd, @ptrCast(&sll), @sizeOf(linux.sockaddr.ll)), "binding the AF_PACKET socket", .{});

        if (o.fanout) |f| {
            const arg: u32 = @as(u32, f.group) | (@as(u32, switch (f.mode) {
                .hash => linux.PACKET.FANOUT_HASH,
                .cpu => linux.PACKET.FANOUT_CPU,
                .lb => linux.PACKET.FANOUT_LB,
            }) << 16);
            try setopt(fd, linux.SOL.PACKET, linux.PACKET.FANOUT, &arg, "joining the PACKET_FANOUT group");
        }
        return .{ .fd = fd, .ring = ring, .block_size = o.block_size, .block_nr = o.block_nr };
    }

    pub fn close(s: *Socket) void {
        if (s.fd < 0) return;
        _ = linux.munmap(s.ring.ptr, s.ring.len);
        sys.close(s.fd);
        s.fd = -1;
    }

    fn statusPtr(s: *Socket, i: u32) *u32 {
        const blk: *linux.tpacket_block_desc = @ptrCast(@alignCast(s.ring.ptr + @as(usize, i) * s.block_size));
        return @ptrCast(&blk.hdr.bh1.block_status);
    }

    /// The next block the kernel has handed to us, if any.
    pub fn next(s: *Socket) ?Block {
        if (@atomicLoad(u32, s.statusPtr(s.cur), .acquire) & tp_status_user == 0) return null;
        const base = s.ring.ptr + @as(usize, s.cur) * s.block_size;
        const blk: *linux.tpacket_block_desc = @ptrCast(@alignCast(base));
        return .{ .base = base, .count = blk.hdr.bh1.num_pkts, .offset = blk.hdr.bh1.offset_to_first_pkt, .size = s.block_size };
    }

    /// Hands the current block back to the kernel. Frames in it must not be used afterwards.
    pub fn release(s: *Socket) void {
        @atomicStore(u32, s.statusPtr(s.cur), tp_status_kernel, .release);
        s.cur = (s.cur + 1) % s.block_nr;
    }

    /// Frames the kernel dropped for want of ring space since the last call.
    pub fn takeDrops(s: *Socket) u64 {
        var st: linux.tpacket_stats_v3 = undefined;
        var len: linux.socklen_t = @sizeOf(linux.tpacket_stats_v3);
        const rc = linux.getsockopt(s.fd, linux.SOL.PACKET, linux.PACKET.STATISTICS, std.mem.asBytes(&st), &len);
        if (linux.E.init(rc) != .SUCCESS) return 0;
        return st.drops;
    }

    pub const Wait = enum { ready, stop, timeout, link_error };

    /// Sleeps until the ring has a block, `stop` is raised, or `timeout_ms` passes.
    pub fn wait(s: *Socket, stop: sys.StopSignal, timeout_ms: i32) Wait {
        var fds = [2]linux.pollfd{
            .{ .fd = s.fd, .events = linux.POLL.IN | linux.POLL.ERR, .revents = 0 },
            .{ .fd = stop.fd, .events = linux.POLL.IN, .revents = 0 },
        };
        const rc = linux.poll(&fds, 2, timeout_ms);
        if (linux.E.init(rc) != .SUCCESS or rc == 0) return .timeout;
        if (fds[1].revents != 0) return .stop;
        if (fds[0].revents & linux.POLL.ERR != 0) {
            // ENETDOWN when the interface went down; reading SO_ERROR clears it.
            var err: c_int = 0;
            var len: linux.socklen_t = @sizeOf(c_int);
            _ = linux.getsockopt(s.fd, linux.SOL.SOCKET, linux.SO.ERROR, std.mem.asBytes(&err), &len);
            return .link_error;
        }
        return .ready;
    }
};

pub const Frame = struct {
    data: []u8,
    /// The 802.1Q/802.1ad tag the kernel took off the frame (it is not in `data`).
    vlan: ?Vlan,
    /// Kernel receive time, CLOCK_REALTIME.
    ts_ns: u64,
};

pub const Vlan = struct { tpid: u16, tci: u16 };

pub const Block = struct {
    base: [*]u8,
    count: u32,
    offset: u32,
    size: u32,

    pub fn iterator(b: Block) Iterator {
        return .{ .block = b, .left = b.count, .offset = b.offset };
    }
};

pub const Iterator = struct {
    block: Block,
    left: u32,
    offset: u32,

    pub fn next(it: *Iterator) ?Frame {
        if (it.left == 0 or it.offset == 0 or it.offset >= it.block.size) return null;
        it.left -= 1;
        const h: *const linux.tpacket3_hdr = @ptrCast(@alignCast(it.block.base + it.offset));
        const start = @as(usize, it.offset) + h.mac;
        const len = @min(@as(usize, h.snaplen), @as(usize, it.block.size) -| start);
        const frame = Frame{
            .data = it.block.base[start .. start + len],
            .vlan = if (h.status & tp_status_vlan_valid != 0) .{
                .tpid = if (h.status & tp_status_vlan_tpid_valid != 0) h.variant.hv1.vlan_tpid else 0x8100,
                .tci = @truncate(h.variant.hv1.vlan_tci),
            } else null,
            .ts_ns = @as(u64, h.sec) * std.time.ns_per_s + h.nsec,
        };
        it.offset = if (h.next_offset == 0) 0 else it.offset + h.next_offset;
        return frame;
    }
};

/// Frames queued for one `sendmmsg`. A frame whose VLAN tag the kernel stripped on receive goes out
/// as three pieces (MACs, tag, rest), so the tag is restored without moving any bytes.
pub fn TxBatch(comptime max: usize) type {
    return struct {
        const Self = @This();
        msgs: [max]linux.mmsghdr_const = undefined,
        iovs: [max][3]std.posix.iovec_const = undefined,
        tags: [max][4]u8 = undefined,
        n: u32 = 0,
        bytes: u64 = 0,

        pub fn full(b: *const Self) bool {
            return b.n == max;
        }

        pub fn add(b: *Self, frame: []const u8, vlan: ?Vlan) void {
            std.debug.assert(b.n < max);
            const i = b.n;
            var parts: i32 = 1;
            if (vlan) |v| {
                std.mem.writeInt(u16, b.tags[i][0..2], v.tpid, .big);
                std.mem.writeInt(u16, b.tags[i][2..4], v.tci, .big);
                b.iovs[i][0] = .{ .base = frame.ptr, .len = 12 };
                b.iovs[i][1] = .{ .base = &b.tags[i], .len = 4 };
                b.iovs[i][2] = .{ .base = frame.ptr + 12, .len = frame.len - 12 };
                parts = 3;
                b.bytes += frame.len + 4;
            } else {
                b.iovs[i][0] = .{ .base = frame.ptr, .len = frame.len };
                b.bytes += frame.len;
            }
            b.msgs[i] = .{ .hdr = .{
                .name = null,
                .namelen = 0,
                .iov = &b.iovs[i],
                .iovlen = parts,
                .control = null,
                .controllen = 0,
                .flags = 0,
            }, .len = 0 };
            b.n += 1;
        }

        pub const Result = struct { sent: u32, failed: u32, bytes: u64 };

        /// Sends everything queued. A full device queue (ENOBUFS/EAGAIN) is waited out (sys/backoff.zig)
        /// before the rest of the batch counts as failed; any other error fails one frame.
        pub fn flush(b: *Self, fd: i32) Result {
            var res = Result{ .sent = 0, .failed = 0, .bytes = b.bytes };
            var i: u32 = 0;
            var backoff = Backoff{ .limit_ns = backoff_limits.dataplane_limit_ns };
            while (i < b.n) {
                const rc = linux.sendmmsg(fd, b.msgs[i..].ptr, b.n - i, 0);
                switch (linux.E.init(rc)) {
                    .SUCCESS => {
                        i += @intCast(rc);
                        res.sent += @intCast(rc);
                    },
                    .AGAIN, .NOBUFS, .INTR => if (!backoff.wait()) {
                        res.failed += b.n - i;
                        break;
                    },
                    else => {
                        res.failed += 1;
                        i += 1;
                    },
                }
            }
            // Frame sizes in a batch are alike; on a partial failure count bytes pro rata.
            if (res.failed != 0) res.bytes = if (b.n == 0) 0 else b.bytes / b.n * res.sent;
            b.n = 0;
            b.bytes = 0;
            return res;
        }
    };
}
