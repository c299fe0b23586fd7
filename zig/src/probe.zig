//! The handheld's side: sends ITO frames at a set rate and size, receives the reflections, and
//! measures loss, reordering, duplicates, RTT and whether each reflection was rewritten exactly as
//! the reflector's mode says. One TX thread paces and sends in `sendmmsg` batches; one RX thread
//! reads a TPACKET_V3 ring. RTT uses the kernel's receive timestamp, so ring hand-over delay on the
//! probe side is not counted.
//!
//! Payload layout (offsets from the UDP payload):
//!   0..5 vendor header, 5..12 signature, 12..16 sequence (BE), 16..18 session (BE),
//!   18..26 send time in ns CLOCK_REALTIME (BE), when the frame has room; then a fixed pattern.
const std = @import("std");
const linux = std.os.linux;
const abi = @import("abi.zig");
const afpacket = @import("afpacket.zig");
const cbpf = @import("cbpf.zig");
const diag = @import("diag.zig");
const guard = @import("guard.zig");
const ito = @import("ito.zig");
const checksum = @import("checksum.zig");
const sum16 = checksum.sum16;
const sys = @import("linux.zig");
const Error = abi.Error;

const vendor_header = [5]u8{ 0x09, 0x10, 0xEA, 0x1D, 0x00 };
const off_seq = 12;
const off_session = 16;
const off_ts = 18;
const seq_fields_end = 18; // sequence and session must fit
const ts_end = 26;

/// In-flight window: send times and seen-bits are kept for this many sequence numbers.
const window_bits = 20;
const window = 1 << window_bits;

pub const imix = [_]u32{ 64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1518 };

pub fn frameSizeFor(opts: *const abi.ProbeOptions, seq: u64) u32 {
    if (opts.frame_size != 0) return opts.frame_size;
    return imix[seq % imix.len];
}

/// The smallest wire size (with FCS) that carries sequence number and session for these options.
pub fn minFrameSize(opts: *const abi.ProbeOptions) u32 {
    const l3: u32 = if (opts.vlan != 0) 18 else 14;
    const ip: u32 = if (opts.ipv6 != 0) 40 else 20;
    return @max(64, l3 + ip + 8 + seq_fields_end + 4);
}

/// One prepared frame of a given size: what we send (with sequence fields zero) and what a correct
/// reflection of it looks like as the probe receives it (VLAN tag taken off by the kernel).
const Template = struct {
    size: u32, // wire size with FCS
    sent: []u8, // len = size - 4
    expect: []u8, // untagged
    l4: u32, // UDP header offset in `sent`
    expect_l4: u32,
    udp_check0: u16, // UDP checksum of `sent` with sequence fields zero
};

fn be16(b: []const u8, off: usize) u16 {
    return std.mem.readInt(u16, b[off..][0..2], .big);
}

fn buildTemplate(gpa: std.mem.Allocator, o: *const abi.ProbeOptions, src_mac: [6]u8, size: u32) Error!Template {
    const len = size - 4;
    const sent = gpa.alloc(u8, len) catch return error.OutOfMemory;
    errdefer gpa.free(sent);
    const expect = gpa.alloc(u8, len) catch return error.OutOfMemory;
    errdefer gpa.free(expect);
    @memset(sent, 0);
    @memcpy(sent[0..6], &o.dst_mac);
    @memcpy(sent[6..12], &src_mac);
    var off: u32 = 12;
    if (o.vlan != 0) {
        std.mem.writeInt(u16, sent[12..14], 0x8100, .big);
        std.mem.writeInt(u16, sent[14..16], o.vlan, .big);
        off = 16;
    }
    const ipv6 = o.ipv6 != 0;
    std.mem.writeInt(u16, sent[off..][0..2], if (ipv6) 0x86DD else 0x0800, .big);
    const l3 = off + 2;
    const l4: u32 = l3 + @as(u32, if (ipv6) 40 else 20);
    const udp_len: u16 = @intCast(len - l4);
    if (ipv6) {
        sent[l3] = 0x60 | (o.tos >> 4);
        sent[l3 + 1] = o.tos << 4;
        std.mem.writeInt(u16, sent[l3 + 4 ..][0..2], udp_len, .big);
        sent[l3 + 6] = 17;
        sent[l3 + 7] = 64;
        @memcpy(sent[l3 + 8 ..][0..16], &o.src_ip);
        @memcpy(sent[l3 + 24 ..][0..16], &o.dst_ip);
    } else {
        sent[l3] = 0x45;
        sent[l3 + 1] = o.tos;
        std.mem.writeInt(u16, sent[l3 + 2 ..][0..2], @intCast(len - l3), .big);
        sent[l3 + 6] = 0x40; // DF; ID stays 0 so the header checksum is constant
        sent[l3 + 8] = 64;
        sent[l3 + 9] = 17;
        @memcpy(sent[l3 + 12 ..][0..4], o.src_ip[0..4]);
        @memcpy(sent[l3 + 16 ..][0..4], o.dst_ip[0..4]);
        std.mem.writeInt(u16, sent[l3 + 10 ..][0..2], checksum.ipv4Header(sent[l3 .. l3 + 20]), .big);
    }
    std.mem.writeInt(u16, sent[l4..][0..2], o.src_port, .big);
    std.mem.writeInt(u16, sent[l4 + 2 ..][0..2], o.dst_port, .big);
    std.mem.writeInt(u16, sent[l4 + 4 ..][0..2], udp_len, .big);
    const pl = l4 + 8;
    const sig = ito.signatureText(@enumFromInt(o.signature));
    if (sig.offset != 0) @memcpy(sent[pl..][0..5], &vendor_header);
    @memcpy(sent[pl + sig.offset ..][0..7], sig.text);
    if (len > pl + ts_end) for (pl + ts_end..len) |i| {
        sent[i] = @truncate(i *% 7);
    };
    if (len >= pl + off_session + 2) std.mem.writeInt(u16, sent[pl + off_session ..][0..2], @truncate(o.session), .big);
    // UDP checksum over pseudo-header, header and payload with the sequence fields zero.
    var sum: u32 = if (ipv6) sum16(sent[l3 + 8 .. l3 + 40], 0) else sum16(sent[l3 + 12 .. l3 + 20], 0);
    sum += 17 + @as(u32, udp_len);
    sum = sum16(sent[l4..len], sum);
    var check = checksum.finish(sum);
    if (check == 0) check = 0xffff;
    std.mem.writeInt(u16, sent[l4 + 6 ..][0..2], check, .big);

    // The expected reflection, independent of ito.rewrite so a bug there cannot hide itself.
    const tag: u32 = if (o.vlan != 0) 4 else 0;
    const elen = len - tag;
    @memcpy(expect[0..12], sent[0..12]);
    @memcpy(expect[12..elen], sent[12 + tag .. len]);
    const el3 = l3 - tag;
    const el4 = l4 - tag;
    @memcpy(expect[0..6], &src_mac);
    @memcpy(expect[6..12], &o.dst_mac);
    const mode: abi.SwapMode = @enumFromInt(o.expect_mode);
    if (mode != .mac) {
        if (ipv6) {
            @memcpy(expect[el3 + 8 ..][0..16], &o.dst_ip);
            @memcpy(expect[el3 + 24 ..][0..16], &o.src_ip);
        } else {
            @memcpy(expect[el3 + 12 ..][0..4], o.dst_ip[0..4]);
            @memcpy(expect[el3 + 16 ..][0..4], o.src_ip[0..4]);
            if (o.expect_tos_toggle != 0) {
                expect[el3 + 1] ^= 1;
                std.mem.writeInt(u16, expect[el3 + 10 ..][0..2], checksum.ipv4Header(expect[el3 .. el3 + 20]), .big);
            }
        }
    }
    if (mode == .all) {
        std.mem.writeInt(u16, expect[el4..][0..2], o.dst_port, .big);
        std.mem.writeInt(u16, expect[el4 + 2 ..][0..2], o.src_port, .big);
    }
    return .{ .size = size, .sent = sent, .expect = expect[0..elen], .l4 = l4, .expect_l4 = el4, .udp_check0 = check };
}

/// Where the per-frame fields sit in one of a template's two frames: as sent, or as expected back.
const Shape = struct {
    l4: u32,
    len: usize,
    /// UDP checksum with the sequence fields zero (the same in both frames: swaps keep it valid).
    check0: u16,

    fn sent(t: *const Template) Shape {
        return .{ .l4 = t.l4, .len = t.sent.len, .check0 = t.udp_check0 };
    }
    fn expected(t: *const Template) Shape {
        return .{ .l4 = t.expect_l4, .len = t.expect.len, .check0 = t.udp_check0 };
    }
};

/// Writes sequence number and send time (when the frame has room) into the first bytes of a frame
/// of shape `s`, fixing the UDP checksum.
fn stamp(s: Shape, frame: []u8, seq: u32, ts: u64) void {
    const pl = s.l4 + 8;
    var check = s.check0;
    std.mem.writeInt(u32, frame[pl + off_seq ..][0..4], seq, .big);
    check = ito.checksumAdjust(check, 0, @truncate(seq >> 16));
    check = ito.checksumAdjust(check, 0, @truncate(seq));
    if (s.len >= pl + ts_end) {
        std.mem.writeInt(u64, frame[pl + off_ts ..][0..8], ts, .big);
        var i: u6 = 0;
        while (i < 4) : (i += 1) check = ito.checksumAdjust(check, 0, @truncate(ts >> (48 - @as(u6, i) * 16)));
    }
    if (check == 0) check = 0xffff;
    std.mem.writeInt(u16, frame[s.l4 + 6 ..][0..2], check, .big);
}

pub const Probe = struct {
    gpa: std.mem.Allocator,
    opts: abi.ProbeOptions,
    src_mac: [6]u8,
    templates: []Template,
    stats: *abi.ProbeStats,
    filter: cbpf.Filter = .{},
    rx: afpacket.Socket,
    tx_fd: i32,
    tx_times: []u64,
    tx_seqs: []u32,
    seen: []std.atomic.Value(u64),
    stop_signal: sys.StopSignal,
    guard: guard.Guard = .{},
    stop_tx: std.atomic.Value(bool) = .init(false),
    tx_done_ns: std.atomic.Value(u64) = .init(0),
    finished: std.Thread.ResetEvent = .{},
    tx_thread: ?std.Thread = null,
    rx_thread: ?std.Thread = null,
    failure: [256]u8 = .{0} ** 256,

    pub fn start(gpa: std.mem.Allocator, opts: *const abi.ProbeOptions) Error!*Probe {
        const ifname = std.mem.sliceTo(&opts.ifname, 0);
        const netns = std.mem.sliceTo(&opts.netns, 0);
        if (opts.count == 0 and opts.duration_ns == 0)
            return diag.fail(error.InvalidArgument, "set a frame count or a duration: the probe never runs unbounded", .{});
        if (opts.signature > @intFromEnum(abi.Signature.y1564)) return diag.fail(error.InvalidArgument, "unknown signature {d}", .{opts.signature});
        if (opts.dst_mac[0] & 1 != 0 or std.mem.allEqual(u8, &opts.dst_mac, 0))
            return diag.fail(error.InvalidArgument, "the reflector's MAC must be a unicast address", .{});

        var ns = try sys.Netns.enter(netns);
        defer ns.leave();
        const iface = try sys.ifaceInfo(ifname);
        if (!iface.up) return diag.fail(error.InterfaceDown, "interface {s} is down: bring it up with 'ip link set {s} up'", .{ ifname, ifname });
        const min = minFrameSize(opts);
        const max: u32 = iface.mtu + 14 + 4 + @as(u32, if (opts.vlan != 0) 4 else 0);
        var sizes_buf: [imix.len]u32 = undefined;
        const sizes: []const u32 = if (opts.frame_size != 0) blk: {
            sizes_buf[0] = opts.frame_size;
            break :blk sizes_buf[0..1];
        } else &.{ 64, 594, 1518 };
        for (sizes) |s| {
            if (s < min) return diag.fail(error.InvalidArgument, "--size {d} is too small for these headers: use {d} or more", .{ s, min });
            if (s > max) return diag.fail(error.InvalidArgument, "--size {d} does not fit the MTU of {s} ({d}): raise it with 'ip link set {s} mtu {d}'", .{ s, ifname, iface.mtu, ifname, s - 18 });
        }

        const self = gpa.create(Probe) catch return error.OutOfMemory;
        errdefer gpa.destroy(self);
        const src_mac = if (std.mem.allEqual(u8, &opts.src_mac, 0)) iface.mac else opts.src_mac;
        self.* = .{
            .gpa = gpa,
            .opts = opts.*,
            .src_mac = src_mac,
            .templates = &.{},
            .stats = undefined,
            .rx = undefined,
            .tx_fd = -1,
            .tx_times = &.{},
            .tx_seqs = &.{},
            .seen = &.{},
            .stop_signal = undefined,
        };
        self.opts.batch = @min(@max(opts.batch, 1), tx_batch_max);
        self.stats = gpa.create(abi.ProbeStats) catch return error.OutOfMemory;
        errdefer gpa.destroy(self.stats);
        self.stats.* = .{};

        self.templates = gpa.alloc(Template, sizes.len) catch return error.OutOfMemory;
        var built: usize = 0;
        errdefer {
            for (self.templates[0..built]) |t| {
                gpa.free(t.sent);
                gpa.free(t.expect.ptr[0..t.sent.len]);
            }
            gpa.free(self.templates);
        }
        for (sizes, 0..) |s, i| {
            self.templates[i] = try buildTemplate(gpa, &self.opts, src_mac, s);
            built += 1;
        }
        self.tx_times = gpa.alloc(u64, window) catch return error.OutOfMemory;
        errdefer gpa.free(self.tx_times);
        self.tx_seqs = gpa.alloc(u32, window) catch return error.OutOfMemory;
        errdefer gpa.free(self.tx_seqs);
        self.seen = gpa.alloc(std.atomic.Value(u64), window / 64) catch return error.OutOfMemory;
        errdefer gpa.free(self.seen);
        @memset(self.tx_seqs, 0xffff_ffff);
        @memset(self.seen, .init(0));

        // Receive: reflections come back addressed to our source MAC, from any vendor, any port.
        var rx_cfg = ito.profileConfig(.plain);
        rx_cfg.our_mac = src_mac;
        rx_cfg.oui_filter = 0;
        rx_cfg.port = 0;
        cbpf.build(&self.filter, &rx_cfg);
        self.rx = try afpacket.Socket.open(.{
            .ifindex = iface.index,
            .filter = &self.filter,
            .promisc = !std.mem.eql(u8, &src_mac, &iface.mac),
        });
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

        self.rx_thread = std.Thread.spawn(.{}, rxMain, .{self}) catch return diag.fail(error.System, "cannot start the receive thread", .{});
        errdefer {
            self.stop_tx.store(true, .release);
            self.tx_done_ns.store(1, .release);
            self.stop_signal.raise();
            self.rx_thread.?.join();
        }
        self.tx_thread = std.Thread.spawn(.{}, txMain, .{self}) catch return diag.fail(error.System, "cannot start the transmit thread", .{});
        return self;
    }

    /// Ends sending early; the probe still drains and finishes normally.
    pub fn stop(self: *Probe) void {
        self.stop_tx.store(true, .release);
    }

    /// Waits for the run to finish (false on timeout).
    pub fn wait(self: *Probe, timeout_ns: u64) bool {
        self.finished.timedWait(timeout_ns) catch return false;
        return true;
    }

    pub fn destroy(self: *Probe) void {
        self.stop_tx.store(true, .release);
        if (self.tx_thread) |t| t.join();
        if (self.tx_done_ns.load(.acquire) == 0) self.tx_done_ns.store(1, .release);
        self.stop_signal.raise();
        if (self.rx_thread) |t| t.join();
        self.rx.close();
        sys.close(self.tx_fd);
        self.guard.close();
        self.stop_signal.deinit();
        const gpa = self.gpa;
        for (self.templates) |t| {
            gpa.free(t.sent);
            gpa.free(t.expect.ptr[0..t.sent.len]);
        }
        gpa.free(self.templates);
        gpa.free(self.tx_times);
        gpa.free(self.tx_seqs);
        gpa.free(self.seen);
        gpa.destroy(self.stats);
        gpa.destroy(self);
    }

    fn fail(self: *Probe, comptime fmt: []const u8, args: anytype) void {
        _ = std.fmt.bufPrintZ(&self.failure, fmt, args) catch {};
        @atomicStore(u32, &self.stats.state, abi.probe_state.failed, .release);
        self.stop_tx.store(true, .release);
    }

    fn templateFor(self: *const Probe, seq: u64) *const Template {
        if (self.templates.len == 1) return &self.templates[0];
        const size = frameSizeFor(&self.opts, seq);
        for (self.templates) |*t| if (t.size == size) return t;
        unreachable;
    }

    const tx_batch_max = 64;
    const header_room = 128; // bytes of each frame rebuilt per send; the rest points at the template

    fn txMain(self: *Probe) void {
        const o = &self.opts;
        sys.pinToCpu(o.tx_cpu) catch {
            self.fail("transmit thread: {s}", .{std.mem.span(diag.message())});
            self.tx_done_ns.store(sys.monotonicNs(), .release);
            return;
        };
        // Sleeps shorter than the default 50 us slack keep pacing smooth at low rates.
        _ = linux.syscall2(.prctl, @intFromEnum(linux.PR.SET_TIMERSLACK), 1);
        @atomicStore(u32, &self.stats.state, abi.probe_state.sending, .release);

        var heads: [tx_batch_max][header_room]u8 = undefined;
        var iovs: [tx_batch_max][2]std.posix.iovec_const = undefined;
        var msgs: [tx_batch_max]linux.mmsghdr_const = undefined;
        const t0 = sys.monotonicNs();
        @atomicStore(u64, &self.stats.first_tx_ns, sys.realtimeNs(), .monotonic);
        var seq: u64 = 0;
        var sent: u64 = 0;
        var sent_bytes: u64 = 0;
        var errors: u64 = 0;
        const batch: u64 = o.batch;

        while (!self.stop_tx.load(.acquire)) {
            if (o.count != 0 and seq >= o.count) break;
            const now = sys.monotonicNs();
            const elapsed = now - t0;
            if (o.duration_ns != 0 and elapsed >= o.duration_ns) break;
            var n: u64 = batch;
            if (o.count != 0) n = @min(n, o.count - seq);
            if (o.rate_pps != 0) {
                const due: u64 = @intCast(@as(u128, elapsed) * o.rate_pps / std.time.ns_per_s + 1);
                if (due <= seq) {
                    const next_ns: u64 = @intCast(@as(u128, seq) * std.time.ns_per_s / o.rate_pps);
                    if (next_ns > elapsed) sys.sleepNs(next_ns - elapsed);
                    continue;
                }
                n = @min(n, due - seq);
            }
            const ts = sys.realtimeNs();
            for (0..n) |i| {
                const s: u32 = @truncate(seq + i);
                const t = self.templateFor(seq + i);
                const head_len = @min(t.sent.len, header_room);
                @memcpy(heads[i][0..head_len], t.sent[0..head_len]);
                stamp(Shape.sent(t), heads[i][0..head_len], s, ts);
                const slot = s & (window - 1);
                self.tx_times[slot] = ts;
                @atomicStore(u32, &self.tx_seqs[slot], s, .release);
                _ = self.seen[slot / 64].fetchAnd(~(@as(u64, 1) << @intCast(slot % 64)), .monotonic);
                iovs[i][0] = .{ .base = &heads[i], .len = head_len };
                iovs[i][1] = .{ .base = t.sent.ptr + head_len, .len = t.sent.len - head_len };
                msgs[i] = .{ .hdr = .{ .name = null, .namelen = 0, .iov = &iovs[i], .iovlen = if (t.sent.len > head_len) 2 else 1, .control = null, .controllen = 0, .flags = 0 }, .len = 0 };
            }
            var done: u64 = 0;
            var retries: u32 = 0;
            while (done < n) {
                const rc = linux.sendmmsg(self.tx_fd, msgs[done..].ptr, @intCast(n - done), 0);
                switch (linux.E.init(rc)) {
                    .SUCCESS => {
                        for (done..done + rc) |i| sent_bytes += self.templateFor(seq + i).sent.len;
                        done += rc;
                    },
                    .AGAIN, .NOBUFS, .INTR => {
                        retries += 1;
                        if (retries > 1000) break;
                        std.Thread.yield() catch {};
                    },
                    .NETDOWN, .NXIO => {
                        self.fail("sending: interface {s} went down", .{std.mem.sliceTo(&o.ifname, 0)});
                        break;
                    },
                    else => |e| {
                        errors += 1;
                        if (errors == 1) diag.set("{s}", .{sys.describe(e)});
                        done += 1;
                    },
                }
            }
            // Sequence numbers of frames that failed are simply never received: they count as lost
            // unless excluded here.
            seq += n;
            sent += done;
            @atomicStore(u64, &self.stats.sent, seq, .release);
            @atomicStore(u64, &self.stats.sent_bytes, sent_bytes, .monotonic);
            @atomicStore(u64, &self.stats.tx_errors, errors + (n - done), .monotonic);
            @atomicStore(u64, &self.stats.last_tx_ns, ts, .monotonic);
        }
        if (@atomicLoad(u32, &self.stats.state, .acquire) != abi.probe_state.failed)
            @atomicStore(u32, &self.stats.state, abi.probe_state.draining, .release);
        self.tx_done_ns.store(sys.monotonicNs(), .release);
    }

    fn rxMain(self: *Probe) void {
        const o = &self.opts;
        sys.pinToCpu(o.rx_cpu) catch {};
        const st = self.stats;
        var cfg = ito.profileConfig(.plain);
        cfg.our_mac = self.src_mac;
        cfg.oui_filter = 0;
        cfg.port = 0;
        cfg.signatures = @as(u8, 1) << @as(u3, @intCast(o.signature));
        var max_seen: ?u32 = null;
        var received: u64 = 0;
        var received_bytes: u64 = 0;
        var unique: u64 = 0;
        var scratch: [header_room]u8 = undefined;

        while (true) {
            const done_at = self.tx_done_ns.load(.acquire);
            if (done_at != 0) {
                const sent = @atomicLoad(u64, &st.sent, .acquire);
                const drained = sys.monotonicNs() >= done_at + o.drain_ns;
                if (drained or unique >= sent) break;
            }
            const blk = self.rx.next() orelse {
                switch (self.rx.wait(self.stop_signal, 20)) {
                    .stop => if (self.tx_done_ns.load(.acquire) != 0 and sys.monotonicNs() >= self.tx_done_ns.load(.acquire) + o.drain_ns) break,
                    else => {},
                }
                @atomicStore(u64, &st.rx_ring_drops, st.rx_ring_drops + self.rx.takeDrops(), .monotonic);
                continue;
            };
            var it = blk.iterator();
            while (it.next()) |f| {
                const p = ito.classify(&cfg, f.data);
                if (p.verdict != .reflect) {
                    @atomicStore(u64, &st.foreign, st.foreign + 1, .monotonic);
                    continue;
                }
                const pl = @as(usize, p.l4) + 8;
                if (f.data.len < pl + seq_fields_end or be16(f.data, pl + off_session) != @as(u16, @truncate(o.session))) {
                    @atomicStore(u64, &st.foreign, st.foreign + 1, .monotonic);
                    continue;
                }
                const seq = std.mem.readInt(u32, f.data[pl + off_seq ..][0..4], .big);
                const slot = seq & (window - 1);
                if (@atomicLoad(u32, &self.tx_seqs[slot], .acquire) != seq) {
                    @atomicStore(u64, &st.foreign, st.foreign + 1, .monotonic);
                    continue; // never sent, or too old to judge
                }
                received += 1;
                received_bytes += f.data.len + @as(u64, if (f.vlan != null) 4 else 0);
                const bit = @as(u64, 1) << @intCast(slot % 64);
                if (self.seen[slot / 64].fetchOr(bit, .monotonic) & bit != 0) {
                    @atomicStore(u64, &st.duplicates, st.duplicates + 1, .monotonic);
                    continue;
                }
                unique += 1;
                if (max_seen) |m| {
                    if (seq < m) @atomicStore(u64, &st.reordered, st.reordered + 1, .monotonic) else max_seen = seq;
                } else max_seen = seq;

                const tx_ts = self.tx_times[slot];
                const rtt = f.ts_ns -| tx_ts;
                const b = abi.histBucket(rtt);
                @atomicStore(u64, &st.rtt_hist[b], st.rtt_hist[b] + 1, .monotonic);
                @atomicStore(u64, &st.rtt_sum_ns, st.rtt_sum_ns + rtt, .monotonic);
                if (st.rtt_min_ns == 0 or rtt < st.rtt_min_ns) @atomicStore(u64, &st.rtt_min_ns, rtt, .monotonic);
                if (rtt > st.rtt_max_ns) @atomicStore(u64, &st.rtt_max_ns, rtt, .monotonic);

                if (!self.rewriteCorrect(f, seq, tx_ts, &scratch))
                    @atomicStore(u64, &st.bad_rewrite, st.bad_rewrite + 1, .monotonic);
            }
            self.rx.release();
            @atomicStore(u64, &st.unique, unique, .monotonic);
            @atomicStore(u64, &st.received_bytes, received_bytes, .monotonic);
            @atomicStore(u64, &st.received, received, .release);
        }
        @atomicStore(u64, &st.rx_ring_drops, st.rx_ring_drops + self.rx.takeDrops(), .monotonic);
        if (@atomicLoad(u32, &st.state, .acquire) != abi.probe_state.failed)
            @atomicStore(u32, &st.state, abi.probe_state.done, .release);
        self.finished.set();
    }

    /// Compares a reflection byte for byte with the frame we sent, swapped as the mode says.
    fn rewriteCorrect(self: *const Probe, f: afpacket.Frame, seq: u32, tx_ts: u64, scratch: *[header_room]u8) bool {
        const t = self.templateFor(seq);
        if ((f.vlan != null) != (self.opts.vlan != 0)) return false;
        if (f.vlan) |v| if (v.tci != self.opts.vlan) return false;
        if (f.data.len != t.expect.len) return false;
        // Stamp the expected header the way the sender stamped the original.
        const head_len = @min(t.expect.len, header_room - 4);
        @memcpy(scratch[0..head_len], t.expect[0..head_len]);
        stamp(Shape.expected(t), scratch[0..head_len], seq, tx_ts);
        if (!std.mem.eql(u8, scratch[0..head_len], f.data[0..head_len])) return false;
        return std.mem.eql(u8, t.expect[head_len..], f.data[head_len..]);
    }
};

test "minimum frame sizes leave room for sequence and session" {
    var o = std.mem.zeroes(abi.ProbeOptions);
    try std.testing.expectEqual(@as(u32, 64), minFrameSize(&o));
    o.vlan = 5;
    try std.testing.expectEqual(@as(u32, 68), minFrameSize(&o));
    o.ipv6 = 1;
    try std.testing.expectEqual(@as(u32, 88), minFrameSize(&o));
}

fn testOptions() abi.ProbeOptions {
    var o = std.mem.zeroes(abi.ProbeOptions);
    o.dst_mac = ito.testing.our_mac;
    o.src_ip[0..4].* = .{ 198, 18, 0, 2 };
    o.dst_ip[0..4].* = .{ 198, 18, 0, 1 };
    o.src_port = 50000;
    o.dst_port = ito.default_port;
    o.signature = @intFromEnum(abi.Signature.dataot);
    o.expect_mode = @intFromEnum(abi.SwapMode.mac_ip);
    o.expect_tos_toggle = 1;
    o.session = 0xbeef;
    return o;
}

test "probe frames pass the reflector's rules and a reflection matches the expected frame" {
    const gpa = std.testing.allocator;
    for ([_]abi.SwapMode{ .mac, .mac_ip, .all }) |mode| {
        for ([_]u32{ 64, 512, 1518 }) |size| {
            var o = testOptions();
            o.expect_mode = @intFromEnum(mode);
            const t = try buildTemplate(gpa, &o, ito.testing.peer_mac, size);
            defer gpa.free(t.sent);
            defer gpa.free(t.expect.ptr[0..t.sent.len]);
            const frame = try gpa.dupe(u8, t.sent);
            defer gpa.free(frame);
            stamp(Shape.sent(&t), frame[0..@min(frame.len, 128)], 77, 123456789);
            try std.testing.expectEqual(ito.testing.udpChecksum(frame, 14, 34, false), be16(frame, 40));
            var cfg = ito.testing.config(mode);
            const p = ito.classify(&cfg, frame);
            try std.testing.expectEqual(abi.Verdict.reflect, p.verdict);
            ito.rewrite(&cfg, frame, p);
            var probe: Probe = undefined;
            probe.opts = o;
            var templates = [1]Template{t};
            probe.templates = &templates;
            var scratch: [Probe.header_room]u8 = undefined;
            try std.testing.expect(probe.rewriteCorrect(.{ .data = frame, .vlan = null, .ts_ns = 0 }, 77, 123456789, &scratch));
            // One flipped payload byte, or the wrong sequence, is caught.
            frame[frame.len - 1] ^= 1;
            try std.testing.expect(!probe.rewriteCorrect(.{ .data = frame, .vlan = null, .ts_ns = 0 }, 77, 123456789, &scratch));
            frame[frame.len - 1] ^= 1;
            try std.testing.expect(!probe.rewriteCorrect(.{ .data = frame, .vlan = null, .ts_ns = 0 }, 78, 123456789, &scratch));
        }
    }
}

test "a reflection with the wrong fields swapped is caught" {
    const gpa = std.testing.allocator;
    var o = testOptions();
    o.expect_mode = @intFromEnum(abi.SwapMode.all);
    const t = try buildTemplate(gpa, &o, ito.testing.peer_mac, 64);
    defer gpa.free(t.sent);
    defer gpa.free(t.expect.ptr[0..t.sent.len]);
    const frame = try gpa.dupe(u8, t.sent);
    defer gpa.free(frame);
    stamp(Shape.sent(&t), frame, 5, 0);
    var cfg = ito.testing.config(.mac_ip); // reflector in a different mode than expected
    ito.rewrite(&cfg, frame, ito.classify(&cfg, frame));
    var probe: Probe = undefined;
    probe.opts = o;
    var templates = [1]Template{t};
    probe.templates = &templates;
    var scratch: [Probe.header_room]u8 = undefined;
    try std.testing.expect(!probe.rewriteCorrect(.{ .data = frame, .vlan = null, .ts_ns = 0 }, 5, 0, &scratch));
}
