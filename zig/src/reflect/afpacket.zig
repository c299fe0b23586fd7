//! AF_PACKET with an mmap'd receive ring and `sendmmsg` transmit batches that point straight into the
//! ring (rewrite in place, no copy). Used by the reflector's packet mode and by the probe on Linux.
//!
//! Two ring layouts. TPACKET_V3 (the probe) packs frames into blocks and hands a block over when it is
//! full or its timer (1 ms at the least) runs out: few wake-ups, but every frame may wait that long.
//! TPACKET_V2 (the reflector) has a slot per frame, handed over and announced (poll wakes) as soon as
//! it is written: a reflector adds no latency of its own, and the worker gathers frames under load
//! itself (idle.zig).
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

pub const Version = enum { v2, v3 };

/// Where a TPACKET_V2 slot's frame starts: the header (32 bytes) and a sockaddr_ll (20), aligned to
/// 16, with room for a 16-byte link header before the network header (net/packet/af_packet.c).
const v2_mac_offset = std.mem.alignForward(u32, std.mem.alignForward(u32, 32, 16) + 20 + 16, 16) - 14;

/// The size of a TPACKET_V2 slot that holds frames up to `max_frame` bytes.
pub fn v2FrameSize(max_frame: u32) u32 {
    return std.mem.alignForward(u32, v2_mac_offset + max_frame, 16);
}

/// linux/if_packet.h
const Tpacket2Hdr = extern struct {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    net: u16,
    sec: u32,
    nsec: u32,
    vlan_tci: u16,
    vlan_tpid: u16,
    padding: [4]u8,
};

comptime {
    std.debug.assert(@sizeOf(Tpacket2Hdr) == 32);
}

pub const Options = struct {
    ifindex: i32,
    version: Version = .v3,
    /// v2: the longest frame a slot must hold (link header and tags included).
    max_frame: u32 = 1522,
    filter: *const cbpf.Filter,
    /// Many small blocks rather than a few large: a block is handed over at the latest after
    /// `retire_ms`, so `block_nr` is the milliseconds of traffic the ring holds while no one reads it.
    block_size: u32 = 64 * 1024,
    block_nr: u32 = 256,
    /// v3: milliseconds after which the kernel hands over a partly filled block (its latency floor).
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
    version: Version,
    frame_size: u32,
    frame_nr: u32,
    /// v3: the block next handed over; v2: the slot.
    cur: u32 = 0,
    /// v2: the slots `next` handed out, given back by `release`.
    taken: u32 = 0,

    /// v2: the most slots one `next` hands out (a worker's batch).
    pub const v2_take = 64;

    pub fn open(o: Options) Error!Socket {
        // Protocol 0 until bind: nothing is queued before the filter and ring are in place.
        const fd: i32 = @intCast(try sys.check(linux.socket(linux.AF.PACKET, linux.SOCK.RAW | linux.SOCK.CLOEXEC, 0), "opening an AF_PACKET socket", .{}));
        errdefer sys.close(fd);
        const prog = o.filter.program();
        try setopt(fd, linux.SOL.SOCKET, linux.SO.ATTACH_FILTER, &prog, "attaching the socket filter");
        const version: c_int = @intCast(@intFromEnum(switch (o.version) {
            .v2 => linux.tpacket_versions.V2,
            .v3 => linux.tpacket_versions.V3,
        }));
        try setopt(fd, linux.SOL.PACKET, linux.PACKET.VERSION, &version, "selecting the ring version");
        const one: c_int = 1;
        try setopt(fd, linux.SOL.PACKET, linux.PACKET.QDISC_BYPASS, &one, "PACKET_QDISC_BYPASS");
        try setopt(fd, linux.SOL.PACKET, linux.PACKET.IGNORE_OUTGOING, &one, "PACKET_IGNORE_OUTGOING");
        const sndbuf: c_int = @intCast(o.sndbuf);
        // SNDBUFFORCE (root) goes past net.core.wmem_max; plain SNDBUF is the unprivileged fallback.
        setopt(fd, linux.SOL.SOCKET, linux.SO.SNDBUFFORCE, &sndbuf, "SO_SNDBUFFORCE") catch
            try setopt(fd, linux.SOL.SOCKET, linux.SO.SNDBUF, &sndbuf, "SO_SNDBUF");

        // v2: a slot holds the longest frame; a block holds whole slots (and is at least one).
        const frame_size: u32 = switch (o.version) {
            .v2 => v2FrameSize(o.max_frame),
            .v3 => 2048,
        };
        const block_size = @max(o.block_size, std.mem.alignForward(u32, frame_size, std.heap.page_size_min));
        // For v2 the kernel reads only the first four fields (struct tpacket_req).
        const req = linux.tpacket_req3{
            .block_size = block_size,
            .block_nr = o.block_nr,
            .frame_size = frame_size,
            .frame_nr = block_size / frame_size * o.block_nr,
            .retire_blk_tov = o.retire_ms,
            .sizeof_priv = 0,
            .feature_req_word = 0,
        };
        try setopt(fd, linux.SOL.PACKET, linux.PACKET.RX_RING, &req, "setting up the receive ring");
        const len = @as(usize, block_size) * o.block_nr;
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
        return .{ .fd = fd, .ring = ring, .block_size = block_size, .block_nr = o.block_nr, .version = o.version, .frame_size = frame_size, .frame_nr = req.frame_nr };
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

    fn slotHdr(s: *Socket, i: u32) *Tpacket2Hdr {
        const per_block = s.block_size / s.frame_size;
        const off = @as(usize, i / per_block) * s.block_size + @as(usize, i % per_block) * s.frame_size;
        return @ptrCast(@alignCast(s.ring.ptr + off));
    }

    /// The next frames the kernel has handed to us, if any: a v3 block, or up to `v2_take` v2 slots.
    pub fn next(s: *Socket) ?Block {
        if (s.version == .v2) {
            var n: u32 = 0;
            while (n < v2_take and @atomicLoad(u32, &s.slotHdr((s.cur + n) % s.frame_nr).status, .acquire) & tp_status_user != 0) n += 1;
            if (n == 0) return null;
            s.taken = n;
            return .{ .base = s.ring.ptr, .count = n, .offset = 0, .size = s.block_size, .slots = .{ .sock = s, .first = s.cur } };
        }
        if (@atomicLoad(u32, s.statusPtr(s.cur), .acquire) & tp_status_user == 0) return null;
        const base = s.ring.ptr + @as(usize, s.cur) * s.block_size;
        const blk: *linux.tpacket_block_desc = @ptrCast(@alignCast(base));
        return .{ .base = base, .count = blk.hdr.bh1.num_pkts, .offset = blk.hdr.bh1.offset_to_first_pkt, .size = s.block_size };
    }

    /// Hands the current block (or slots) back to the kernel. Frames in it must not be used afterwards.
    pub fn release(s: *Socket) void {
        if (s.version == .v2) {
            for (0..s.taken) |k| @atomicStore(u32, &s.slotHdr((s.cur + @as(u32, @intCast(k))) % s.frame_nr).status, tp_status_kernel, .release);
            s.cur = (s.cur + s.taken) % s.frame_nr;
            s.taken = 0;
            return;
        }
        @atomicStore(u32, s.statusPtr(s.cur), tp_status_kernel, .release);
        s.cur = (s.cur + 1) % s.block_nr;
    }

    /// Whether frames are waiting (to spin on: no system call).
    pub fn ready(s: *Socket) bool {
        if (s.version == .v2) return @atomicLoad(u32, &s.slotHdr(s.cur).status, .acquire) & tp_status_user != 0;
        return @atomicLoad(u32, s.statusPtr(s.cur), .acquire) & tp_status_user != 0;
    }

    /// Frames the kernel dropped for want of ring space since the last call.
    pub fn takeDrops(s: *Socket) u64 {
        // tpacket_stats_v3 starts as tpacket_stats (v2) does; the kernel writes what its version has.
        var st: linux.tpacket_stats_v3 = std.mem.zeroes(linux.tpacket_stats_v3);
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
    /// v2: `count` slots from `first`.
    slots: ?struct { sock: *Socket, first: u32 } = null,

    pub fn iterator(b: Block) Iterator {
        return .{ .block = b, .left = b.count, .offset = b.offset };
    }
};

pub const Iterator = struct {
    block: Block,
    left: u32,
    offset: u32,

    pub fn next(it: *Iterator) ?Frame {
        if (it.block.slots) |sl| {
            if (it.left == 0) return null;
            const h = sl.sock.slotHdr((sl.first + it.block.count - it.left) % sl.sock.frame_nr);
            it.left -= 1;
            const start: [*]u8 = @as([*]u8, @ptrCast(h)) + h.mac;
            const len = @min(@as(usize, h.snaplen), sl.sock.frame_size -| @as(usize, h.mac));
            return .{
                .data = start[0..len],
                .vlan = if (h.status & tp_status_vlan_valid != 0) .{
                    .tpid = if (h.status & tp_status_vlan_tpid_valid != 0) h.vlan_tpid else 0x8100,
                    .tci = h.vlan_tci,
                } else null,
                .ts_ns = @as(u64, h.sec) * std.time.ns_per_s + h.nsec,
            };
        }
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
