//! Receive-interrupt deferral for afxdp mode. A device's NAPI instance can hold back its interrupt
//! after a receive pass that found frames (napi_defer_hard_irqs) and poll again after
//! gro_flush_timeout instead: software interrupt moderation, a NIC's rx-usecs where the device has
//! none (veth). A loaded queue then costs one receive pass, and one wake-up of the worker, per
//! period rather than one per burst of the sender; when traffic stops the interrupt comes back.
//!
//! Set per NAPI instance through the netdev generic netlink family (napi-get, napi-set: kernel 6.13
//! and later), which works in any network namespace. The values found at start are put back at
//! stop; a state file beside the reflector's lock puts them back at the next start on the same
//! interface if the process was killed before it could (a veth's NAPI dies with the XDP program).
const std = @import("std");
const linux = std.os.linux;
const sys = @import("../sys/linux.zig");
const idle = @import("idle.zig");

// uapi/linux/genetlink.h and uapi/linux/netdev.h.
const genl_id_ctrl = 0x10;
const ctrl_cmd_getfamily = 3;
const ctrl_attr_family_id = 1;
const ctrl_attr_family_name = 2;
const netdev_cmd_dev_get = 1;
const netdev_a_dev_ifindex = 1;
const netdev_a_dev_xdp_rx_metadata_features = 5;
const netdev_xdp_rx_metadata_vlan_tag = 4;
const netdev_cmd_napi_get = 11;
const netdev_cmd_napi_set = 14;
const netdev_a_napi_ifindex = 1;
const netdev_a_napi_id = 2;
const netdev_a_napi_defer_hard_irqs = 5;
const netdev_a_napi_gro_flush_timeout = 6;
const nlmsg_error = 2;
const nlmsg_done = 3;

const NlMsgHdr = extern struct { len: u32, type: u16, flags: u16, seq: u32, pid: u32 };
const GenlMsgHdr = extern struct { cmd: u8, version: u8, reserved: u16 = 0 };
const NlAttr = extern struct { len: u16, type: u16 };

comptime {
    std.debug.assert(@sizeOf(NlMsgHdr) == 16 and @sizeOf(GenlMsgHdr) == 4 and @sizeOf(NlAttr) == 4);
}

/// Empty passes (with nothing received) before the interrupt comes back: the kernel's suggestion.
const defer_passes: u32 = 2;
pub const max_napis = 64;

pub const Napi = struct { id: u32, defer_hard_irqs: u32, gro_flush_timeout_ns: u64 };

/// One request being built: netlink header, generic netlink header, attributes.
const Request = struct {
    buf: [128]u8 align(4) = undefined,
    len: usize = @sizeOf(NlMsgHdr) + @sizeOf(GenlMsgHdr),

    fn init(family: u16, flags: u16, seq: u32, cmd: u8) Request {
        var r = Request{};
        r.header().* = .{ .len = 0, .type = family, .flags = linux.NLM_F_REQUEST | flags, .seq = seq, .pid = 0 };
        std.mem.bytesAsValue(GenlMsgHdr, r.buf[@sizeOf(NlMsgHdr)..][0..@sizeOf(GenlMsgHdr)]).* = .{ .cmd = cmd, .version = 1 };
        return r;
    }

    fn header(r: *Request) *NlMsgHdr {
        return std.mem.bytesAsValue(NlMsgHdr, r.buf[0..@sizeOf(NlMsgHdr)]);
    }

    fn put(r: *Request, attr: u16, payload: []const u8) void {
        const total = @sizeOf(NlAttr) + payload.len;
        std.debug.assert(r.len + std.mem.alignForward(usize, total, 4) <= r.buf.len);
        std.mem.bytesAsValue(NlAttr, r.buf[r.len..][0..@sizeOf(NlAttr)]).* = .{ .len = @intCast(total), .type = attr };
        @memcpy(r.buf[r.len + @sizeOf(NlAttr) ..][0..payload.len], payload);
        @memset(r.buf[r.len + total .. r.len + std.mem.alignForward(usize, total, 4)], 0);
        r.len += std.mem.alignForward(usize, total, 4);
    }

    fn bytes(r: *Request) []const u8 {
        r.header().len = @intCast(r.len);
        return r.buf[0..r.len];
    }
};

/// The attributes of one generic netlink message, in order.
const Attrs = struct {
    rest: []const u8,

    fn next(a: *Attrs) ?struct { type: u16, payload: []const u8 } {
        if (a.rest.len < @sizeOf(NlAttr)) return null;
        const h = std.mem.bytesToValue(NlAttr, a.rest[0..@sizeOf(NlAttr)]);
        if (h.len < @sizeOf(NlAttr) or h.len > a.rest.len) return null;
        const payload = a.rest[@sizeOf(NlAttr)..h.len];
        a.rest = a.rest[@min(a.rest.len, std.mem.alignForward(usize, h.len, 4))..];
        return .{ .type = h.type & 0x3fff, .payload = payload };
    }
};

/// A u32 or u64 attribute (the kernel's NLA_UINT is either).
fn uint(payload: []const u8) u64 {
    return switch (payload.len) {
        4 => std.mem.readInt(u32, payload[0..4], .little),
        8 => std.mem.readInt(u64, payload[0..8], .little),
        else => 0,
    };
}

pub const Deferral = struct {
    fd: i32,
    family: u16,
    seq: u32 = 1,
    /// The device's NAPI instances as found at start (the values to put back).
    found: [max_napis]Napi = undefined,
    n: usize = 0,
    /// The timeout in force now (0: deferral off).
    timeout_ns: u64 = 0,
    state_path: [128]u8 = .{0} ** 128,

    /// Finds the NAPI instances of `ifindex` (after the XDP program is attached: a veth has none
    /// before). Returns null where the kernel cannot defer per NAPI (before 6.13), or the device
    /// has no NAPI (generic XDP): the caller falls back to coalescing in the worker.
    pub fn open(ifindex: i32, state_path: []const u8) ?Deferral {
        var d = connect(state_path) orelse return null;
        d.recover();
        if (!d.list(ifindex) or d.n == 0) {
            d.close();
            return null;
        }
        // Can it be set at all (6.13+)? Set what is there: a no-op that answers EOPNOTSUPP before.
        if (!d.setOne(d.found[0].id, d.found[0].defer_hard_irqs, d.found[0].gro_flush_timeout_ns)) {
            d.close();
            return null;
        }
        d.saveState();
        return d;
    }

    /// For a reflector of another mode starting on the interface: puts back what a killed afxdp
    /// reflector left deferred there (its state file at `state_path`), which only an afxdp start
    /// would otherwise do - a packet-mode reflector ran with the device's interrupts still deferred.
    /// No file: nothing to do, no socket opened.
    pub fn recoverLeft(state_path: [:0]const u8) void {
        if (linux.E.init(linux.access(state_path, linux.F_OK)) != .SUCCESS) return;
        var d = connect(state_path) orelse return;
        defer _ = linux.close(d.fd);
        d.recover();
    }

    /// A netdev generic-netlink socket for the state file at `state_path`; null where the kernel
    /// has no netdev family (nothing set, nothing recovered: any record stays).
    fn connect(state_path: []const u8) ?Deferral {
        const rc = linux.socket(linux.AF.NETLINK, linux.SOCK.RAW | linux.SOCK.CLOEXEC, linux.NETLINK.GENERIC);
        if (linux.E.init(rc) != .SUCCESS) return null;
        var d = Deferral{ .fd = @intCast(rc), .family = 0 };
        std.debug.assert(state_path.len < d.state_path.len);
        @memcpy(d.state_path[0..state_path.len], state_path);
        d.family = d.resolveFamily() orelse {
            _ = linux.close(d.fd);
            return null;
        };
        return d;
    }

    /// After the link went down and up: a driver may have made new NAPI instances (a veth always
    /// does), which start without the deferral. Takes the device's instances again (known ones keep
    /// the values found at start, new ones those they came with) and defers them all.
    pub fn rediscover(d: *Deferral, ifindex: i32) void {
        var fresh = Deferral{ .fd = d.fd, .family = d.family, .seq = d.seq };
        _ = fresh.list(ifindex);
        d.seq = fresh.seq;
        // Instances that are gone need nothing put back.
        for (fresh.found[0..fresh.n]) |*f| {
            for (d.found[0..d.n]) |k| if (k.id == f.id) {
                f.* = k;
            };
        }
        d.found = fresh.found;
        d.n = fresh.n;
        d.saveState();
        d.set(d.timeout_ns);
    }

    /// Defers every NAPI of the device by `timeout_ns` (0: interrupts as they were found).
    pub fn set(d: *Deferral, timeout_ns: u64) void {
        for (d.found[0..d.n]) |f| {
            if (timeout_ns == 0) {
                _ = d.setOne(f.id, f.defer_hard_irqs, f.gro_flush_timeout_ns);
            } else {
                _ = d.setOne(f.id, defer_passes, timeout_ns);
            }
        }
        d.timeout_ns = timeout_ns;
    }

    /// Puts the values found at start back (a NAPI gone with its XDP program is skipped), removes
    /// the state file, closes the socket. Closing twice is a no-op.
    pub fn close(d: *Deferral) void {
        if (d.fd < 0) return;
        d.set(0);
        _ = linux.unlink(@ptrCast(&d.state_path));
        _ = linux.close(d.fd);
        d.fd = -1;
        d.n = 0;
    }

    fn resolveFamily(d: *Deferral) ?u16 {
        var req = Request.init(genl_id_ctrl, 0, d.nextSeq(), ctrl_cmd_getfamily);
        req.put(ctrl_attr_family_name, "netdev\x00");
        const Ctx = struct {
            id: ?u16 = null,
            fn onMsg(ctx: *@This(), attrs: *Attrs) void {
                while (attrs.next()) |a| if (a.type == ctrl_attr_family_id and a.payload.len >= 2) {
                    ctx.id = std.mem.readInt(u16, a.payload[0..2], .little);
                };
            }
        };
        var ctx = Ctx{};
        if (!d.exchange(req.bytes(), &ctx, Ctx.onMsg)) return null;
        return ctx.id;
    }

    /// Dumps the NAPI instances of `ifindex` with their current deferral into `found`.
    fn list(d: *Deferral, ifindex: i32) bool {
        var req = Request.init(d.family, linux.NLM_F_DUMP, d.nextSeq(), netdev_cmd_napi_get);
        req.put(netdev_a_napi_ifindex, std.mem.asBytes(&@as(u32, @bitCast(ifindex))));
        const Ctx = struct {
            d: *Deferral,
            complete: bool = true,
            fn onMsg(ctx: *@This(), attrs: *Attrs) void {
                var napi = Napi{ .id = 0, .defer_hard_irqs = 0, .gro_flush_timeout_ns = 0 };
                var have_defer = false;
                while (attrs.next()) |a| switch (a.type) {
                    netdev_a_napi_id => napi.id = @intCast(uint(a.payload)),
                    netdev_a_napi_defer_hard_irqs => {
                        napi.defer_hard_irqs = @intCast(uint(a.payload));
                        have_defer = true;
                    },
                    netdev_a_napi_gro_flush_timeout => napi.gro_flush_timeout_ns = uint(a.payload),
                    else => {},
                };
                // Without the deferral attributes the kernel cannot set them either (before 6.13).
                if (!have_defer) ctx.complete = false;
                if (napi.id == 0 or ctx.d.n == max_napis) return;
                ctx.d.found[ctx.d.n] = napi;
                ctx.d.n += 1;
            }
        };
        var ctx = Ctx{ .d = d };
        return d.exchange(req.bytes(), &ctx, Ctx.onMsg) and ctx.complete;
    }

    fn setOne(d: *Deferral, id: u32, defer_hard_irqs: u32, timeout_ns: u64) bool {
        var req = Request.init(d.family, linux.NLM_F_ACK, d.nextSeq(), netdev_cmd_napi_set);
        req.put(netdev_a_napi_id, std.mem.asBytes(&id));
        req.put(netdev_a_napi_defer_hard_irqs, std.mem.asBytes(&defer_hard_irqs));
        req.put(netdev_a_napi_gro_flush_timeout, std.mem.asBytes(&timeout_ns));
        const Ctx = struct {
            fn onMsg(_: *@This(), _: *Attrs) void {}
        };
        var ctx = Ctx{};
        return d.exchange(req.bytes(), &ctx, Ctx.onMsg);
    }

    fn nextSeq(d: *Deferral) u32 {
        d.seq +%= 1;
        return d.seq;
    }

    /// Sends one request and reads the answer to its end (the ack, the dump's end, or an error),
    /// handing each message's attributes to `onMsg`. False when the kernel answered an error.
    fn exchange(d: *Deferral, req: []const u8, ctx: anytype, comptime onMsg: anytype) bool {
        const seq = std.mem.bytesToValue(NlMsgHdr, req[0..@sizeOf(NlMsgHdr)]).seq;
        var sa = std.mem.zeroes(linux.sockaddr.nl);
        sa.family = linux.AF.NETLINK;
        if (linux.E.init(linux.sendto(d.fd, req.ptr, req.len, 0, @ptrCast(&sa), @sizeOf(linux.sockaddr.nl))) != .SUCCESS) return false;
        const dump = std.mem.bytesToValue(NlMsgHdr, req[0..@sizeOf(NlMsgHdr)]).flags & linux.NLM_F_DUMP != 0;
        var buf: [16384]u8 align(4) = undefined;
        while (true) {
            const rc = linux.recvfrom(d.fd, &buf, buf.len, 0, null, null);
            if (linux.E.init(rc) != .SUCCESS) return false;
            var rest: []const u8 = buf[0..rc];
            while (rest.len >= @sizeOf(NlMsgHdr)) {
                const h = std.mem.bytesToValue(NlMsgHdr, rest[0..@sizeOf(NlMsgHdr)]);
                if (h.len < @sizeOf(NlMsgHdr) or h.len > rest.len) return false;
                const body = rest[@sizeOf(NlMsgHdr)..h.len];
                rest = rest[@min(rest.len, std.mem.alignForward(usize, h.len, 4))..];
                if (h.seq != seq) continue;
                switch (h.type) {
                    nlmsg_done => return true,
                    nlmsg_error => {
                        if (body.len < 4) return false;
                        return std.mem.readInt(i32, body[0..4], .little) == 0;
                    },
                    else => if (body.len >= @sizeOf(GenlMsgHdr)) {
                        var attrs = Attrs{ .rest = body[@sizeOf(GenlMsgHdr)..] };
                        onMsg(ctx, &attrs);
                        if (!dump) return true;
                    },
                }
            }
        }
    }

    /// Records the values found, so that a later start can put them back after a kill.
    fn saveState(d: *Deferral) void {
        var text: [max_napis * 48]u8 = undefined;
        var len: usize = 0;
        for (d.found[0..d.n]) |f| {
            const line = std.fmt.bufPrint(text[len..], "{d} {d} {d}\n", .{ f.id, f.defer_hard_irqs, f.gro_flush_timeout_ns }) catch break;
            len += line.len;
        }
        const rc = linux.open(@ptrCast(&d.state_path), .{ .ACCMODE = .WRONLY, .CREAT = true, .TRUNC = true, .CLOEXEC = true }, 0o644);
        if (linux.E.init(rc) != .SUCCESS) return;
        _ = linux.write(@intCast(rc), &text, len);
        _ = linux.close(@intCast(rc));
    }

    /// A state file left by a reflector that was killed: put its values back (NAPI instances that
    /// are gone are skipped) and remove it. The caller holds the interface's lock: nobody else is
    /// deferring this device.
    fn recover(d: *Deferral) void {
        const rc = linux.open(@ptrCast(&d.state_path), .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0);
        if (linux.E.init(rc) != .SUCCESS) return;
        var text: [max_napis * 48]u8 = undefined;
        const n = linux.read(@intCast(rc), &text, text.len);
        _ = linux.close(@intCast(rc));
        if (linux.E.init(n) == .SUCCESS) {
            var lines = std.mem.tokenizeScalar(u8, text[0..n], '\n');
            while (lines.next()) |line| {
                var it = std.mem.tokenizeScalar(u8, line, ' ');
                const id = std.fmt.parseInt(u32, it.next() orelse continue, 10) catch continue;
                const dh = std.fmt.parseInt(u32, it.next() orelse continue, 10) catch continue;
                const to = std.fmt.parseInt(u64, it.next() orelse continue, 10) catch continue;
                _ = d.setOne(id, dh, to);
            }
        }
        _ = linux.unlink(@ptrCast(&d.state_path));
    }
};

/// Whether the driver of `ifindex` hands XDP programs the receive VLAN tag it keeps as metadata
/// (netdev dev-get's xdp-rx-metadata-features: kernel 6.8+; false where the kernel cannot say).
pub fn xdpRxVlanTag(ifindex: i32) bool {
    const rc = linux.socket(linux.AF.NETLINK, linux.SOCK.RAW | linux.SOCK.CLOEXEC, linux.NETLINK.GENERIC);
    if (linux.E.init(rc) != .SUCCESS) return false;
    var d = Deferral{ .fd = @intCast(rc), .family = 0 };
    defer _ = linux.close(d.fd);
    d.family = d.resolveFamily() orelse return false;
    var req = Request.init(d.family, 0, d.nextSeq(), netdev_cmd_dev_get);
    req.put(netdev_a_dev_ifindex, std.mem.asBytes(&@as(u32, @bitCast(ifindex))));
    const Ctx = struct {
        features: u64 = 0,
        fn onMsg(ctx: *@This(), attrs: *Attrs) void {
            while (attrs.next()) |a| if (a.type == netdev_a_dev_xdp_rx_metadata_features) {
                ctx.features = uint(a.payload);
            };
        }
    };
    var ctx = Ctx{};
    if (!d.exchange(req.bytes(), &ctx, Ctx.onMsg)) return false;
    return ctx.features & netdev_xdp_rx_metadata_vlan_tag != 0;
}

/// Frames the device's receive ring holds (ethtool's rx_pending), or 256 when the driver does not
/// say: veth's ring, and the smallest in common use.
pub fn rxRingEntries(fd: i32, ifname: []const u8) u32 {
    const ethtool_ringparam = extern struct {
        cmd: u32,
        rx_max_pending: u32 = 0,
        rx_mini_max_pending: u32 = 0,
        rx_jumbo_max_pending: u32 = 0,
        tx_max_pending: u32 = 0,
        rx_pending: u32 = 0,
        rx_mini_pending: u32 = 0,
        rx_jumbo_pending: u32 = 0,
        tx_pending: u32 = 0,
    };
    var rp = ethtool_ringparam{ .cmd = 0x10 }; // ETHTOOL_GRINGPARAM
    if (!sys.ethtool(fd, ifname, &rp) or rp.rx_pending == 0) return 256;
    return rp.rx_pending;
}

/// The deferral that lets at most a quarter of the device's ring fill at `pps` per NAPI, capped by
/// `coalesce_ns`; 0 (off) while the rate is low (idle.zig: deferring then only adds latency; `loaded`:
/// whether it was deferring until now, for the hysteresis) or when the cap is under 10 µs, where
/// deferring saves nothing.
pub fn timeoutFor(coalesce_ns: u64, ring_entries: u32, pps: u64, loaded: bool) u64 {
    if (!idle.isLoaded(loaded, pps)) return 0;
    const limit = @as(u64, ring_entries / 4) * std.time.ns_per_s / pps;
    const t = @min(coalesce_ns, limit);
    return if (t < 10 * std.time.ns_per_us) 0 else t;
}

test "the deferral never lets more than a quarter of the ring fill" {
    const us = std.time.ns_per_us;
    try std.testing.expectEqual(250 * us, timeoutFor(250 * us, 256, 100_000, false)); // 25 frames per period
    try std.testing.expectEqual(160 * us, timeoutFor(250 * us, 256, 400_000, true)); // 64 frames: the cap
    try std.testing.expectEqual(@as(u64, 17_204), timeoutFor(250 * us, 1024, 14_880_000, true)); // 10 GbE line rate
    try std.testing.expectEqual(@as(u64, 0), timeoutFor(250 * us, 256, 14_880_000, true)); // 4 µs: not worth it
}

test "no deferral while the rate is low, and it stops only well below where it starts" {
    const us = std.time.ns_per_us;
    try std.testing.expectEqual(@as(u64, 0), timeoutFor(500 * us, 256, 0, false)); // idle: a frame goes at once
    try std.testing.expectEqual(@as(u64, 0), timeoutFor(500 * us, 256, 20_000, false)); // a latency test
    try std.testing.expectEqual(@as(u64, 0), timeoutFor(500 * us, 256, 40_000, false)); // not yet
    try std.testing.expectEqual(500 * us, timeoutFor(500 * us, 256, 40_000, true)); // not off yet
    try std.testing.expectEqual(@as(u64, 0), timeoutFor(500 * us, 256, 20_000, true));
}
