//! The handheld's side, the part every platform shares: the prepared frames, the pacing loop, the
//! in-flight window, and the checks on each reflection (loss, reordering, duplicates, RTT, and
//! whether it was rewritten exactly as the reflector's mode says). The platforms add only I/O:
//! AF_PACKET on Linux (probe_linux.zig), /dev/bpf on macOS (probe_darwin.zig). One TX thread paces
//! and sends in batches; one RX thread reads the kernel's buffer. RTT uses the kernel's receive
//! timestamp, so hand-over delay on the probe side is not counted.
//!
//! Payload layout (offsets from the UDP payload):
//!   0..5 vendor header, 5..12 signature, 12..16 sequence (BE), 16..18 session (BE),
//!   18..26 send time in ns CLOCK_REALTIME (BE), when the frame has room; then a fixed pattern.
const std = @import("std");
const abi = @import("../abi.zig");
const clock = @import("../sys/clock.zig");
const monotonicNs = clock.monotonicNs;
const realtimeNs = clock.realtimeNs;
const diag = @import("../sys/diag.zig");
const cpus = @import("../sys/cpus.zig");
const ito = @import("../ito/ito.zig");
const checksum = @import("../ito/checksum.zig");
const sum16 = checksum.sum16;
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

/// IMIX's frame sizes for these options: its 64-byte frames become the smallest the headers fit
/// (68 with a VLAN tag, 84 over IPv6), so `size` imix works with every option.
pub fn imixSize(opts: *const abi.ProbeOptions, i: usize) u32 {
    return @max(imix[i], minFrameSize(opts));
}

pub fn frameSizeFor(opts: *const abi.ProbeOptions, seq: u64) u32 {
    if (opts.frame_size != 0) return opts.frame_size;
    return imixSize(opts, @intCast(seq % imix.len));
}

/// Every check of the probe's options that does not need the interface, done before anything is
/// opened; messages name each option as the scripting API spells it, marked `likeThis`.
pub fn checkOptions(o: *const abi.ProbeOptions) Error!void {
    if (std.mem.indexOfScalar(u8, &o.ifname, 0) == null or o.ifname[0] == 0)
        return diag.fail(error.InvalidArgument, "`iface` must name an interface of at most 15 bytes", .{});
    if (std.mem.indexOfScalar(u8, &o.netns, 0) == null)
        return diag.fail(error.InvalidArgument, "`netns` must be at most 63 bytes", .{});
    if (o.count == 0 and o.duration_ns == 0)
        return diag.fail(error.InvalidArgument, "set `count` or `durationS`: the probe never runs unbounded", .{});
    _ = std.meta.intToEnum(abi.Signature, o.signature) catch
        return diag.fail(error.InvalidArgument, "`signature` {d} is not a known signature", .{o.signature});
    _ = std.meta.intToEnum(abi.SwapMode, o.expect_mode) catch
        return diag.fail(error.InvalidArgument, "`expectSwap` {d} is not a known swap mode", .{o.expect_mode});
    if (o.dst_mac[0] & 1 != 0 or std.mem.allEqual(u8, &o.dst_mac, 0))
        return diag.fail(error.InvalidArgument, "`to`: the reflector's MAC must be a unicast address", .{});
    if (o.frame_size != 0 and (o.frame_size < 64 or o.frame_size > 9018))
        return diag.fail(error.InvalidArgument, "`size` {d} must be a frame size from 64 to 9018 bytes, or imix", .{o.frame_size});
    const min = minFrameSize(o);
    if (o.frame_size != 0 and o.frame_size < min)
        return diag.fail(error.InvalidArgument, "`size` {d} is too small for these headers: use {d} or more", .{ o.frame_size, min });
    if (o.vlan > 4094)
        return diag.fail(error.InvalidArgument, "`vlan` {d} must be a VLAN ID from 1 to 4094 (0 = untagged)", .{o.vlan});
    // UDP port 0 is no destination: a handheld sends to a port (3842 for ITO tests).
    if (o.dst_port == 0) return diag.fail(error.InvalidArgument, "`port` 0 is not a UDP destination port: use the reflector's (3842 for ITO tests)", .{});
    if (o.src_port == 0) return diag.fail(error.InvalidArgument, "`srcPort` 0 is not a UDP source port: use 1 to 65535", .{});
    if (o.nice < -20 or o.nice > 19)
        return diag.fail(error.InvalidArgument, "`nice` {d} must be a whole number from -20 to 19", .{o.nice});
    if (o.tx_cpu < -1) return diag.fail(error.InvalidArgument, "`cpu` must be a CPU number, not {d}", .{o.tx_cpu});
    if (o.rx_cpu < -1) return diag.fail(error.InvalidArgument, "`rxCpu` must be a CPU number, not {d}", .{o.rx_cpu});
    try cpus.check(o.tx_cpu, 1, "cpu");
    try cpus.check(o.rx_cpu, 1, "rxCpu");
    if (o.drain_ns > 60 * std.time.ns_per_s)
        return diag.fail(error.InvalidArgument, "`drainMs` {d} must be at most 60000", .{o.drain_ns / std.time.ns_per_ms});
    if (o.ipv6 > 1) return diag.fail(error.InvalidArgument, "`ipv6` must be 0 or 1", .{});
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

const set_mtu = if (@import("builtin").os.tag == .macos) "sudo ifconfig {s} mtu {d}" else "ip link set {s} mtu {d}";

pub const tx_batch_max = 64;
/// Bytes of each frame rebuilt per send; the rest is sent straight from the template.
pub const header_room = 128;

/// What a platform's sender reports for one batch.
pub const Sent = struct {
    frames: u64 = 0,
    bytes: u64 = 0,
    /// The interface went away; the run fails with this message.
    down: bool = false,
};

/// Everything but I/O. A platform's probe embeds one, calls `init` once it knows the interface, runs
/// `transmit` on its TX thread with a sender, and feeds each received frame to a `Receiver`.
pub const Core = struct {
    gpa: std.mem.Allocator,
    opts: abi.ProbeOptions,
    src_mac: [6]u8,
    templates: []Template = &.{},
    stats: *abi.ProbeStats,
    tx_times: []u64 = &.{},
    tx_seqs: []u32 = &.{},
    seen: []std.atomic.Value(u64) = &.{},
    stop_tx: std.atomic.Value(bool) = .init(false),
    /// Teardown: the receive side stops without waiting for the drain.
    quitting: std.atomic.Value(bool) = .init(false),
    tx_done_ns: std.atomic.Value(u64) = .init(0),
    finished: std.Thread.ResetEvent = .{},
    failure: [256]u8 = .{0} ** 256,
    tx_thread: ?std.Thread = null,
    rx_thread: ?std.Thread = null,

    /// Checks the options against the interface (`iface_mac`, `mtu`) and prepares every frame.
    pub fn init(gpa: std.mem.Allocator, opts: *const abi.ProbeOptions, iface_mac: [6]u8, mtu: u32) Error!Core {
        try checkOptions(opts);
        const ifname = std.mem.sliceTo(&opts.ifname, 0);
        const min = minFrameSize(opts);
        const max: u32 = mtu + 14 + 4 + @as(u32, if (opts.vlan != 0) 4 else 0);
        var sizes_buf: [3]u32 = undefined;
        const sizes: []const u32 = if (opts.frame_size != 0) blk: {
            sizes_buf[0] = opts.frame_size;
            break :blk sizes_buf[0..1];
        } else blk: {
            // The distinct IMIX sizes: imix[0], imix[7] and imix[11].
            sizes_buf = .{ imixSize(opts, 0), imixSize(opts, 7), imixSize(opts, 11) };
            break :blk &sizes_buf;
        };
        for (sizes) |s| {
            if (s < min) return diag.fail(error.InvalidArgument, "`size` {d} is too small for these headers: use {d} or more", .{ s, min });
            if (s > max) return diag.fail(error.InvalidArgument, "`size` {d} does not fit the MTU of {s} ({d}): raise it with '" ++ set_mtu ++ "'", .{ s, ifname, mtu, ifname, s - 18 });
        }

        const src_mac = if (std.mem.allEqual(u8, &opts.src_mac, 0)) iface_mac else opts.src_mac;
        var self = Core{ .gpa = gpa, .opts = opts.*, .src_mac = src_mac, .stats = undefined };
        self.opts.batch = @min(@max(opts.batch, 1), tx_batch_max);
        self.stats = gpa.create(abi.ProbeStats) catch return error.OutOfMemory;
        errdefer gpa.destroy(self.stats);
        self.stats.* = .{};

        self.templates = gpa.alloc(Template, sizes.len) catch return error.OutOfMemory;
        var built: usize = 0;
        errdefer {
            for (self.templates[0..built]) |t| freeTemplate(gpa, t);
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
        @memset(self.tx_seqs, 0xffff_ffff);
        @memset(self.seen, .init(0));
        return self;
    }

    pub fn deinit(self: *Core) void {
        const gpa = self.gpa;
        for (self.templates) |t| freeTemplate(gpa, t);
        gpa.free(self.templates);
        gpa.free(self.tx_times);
        gpa.free(self.tx_seqs);
        gpa.free(self.seen);
        gpa.destroy(self.stats);
    }

    /// What the receive side accepts: reflections addressed to our source MAC, from any vendor and
    /// port (the kernel filter and the per-frame check use the same rules).
    pub fn rxConfig(self: *const Core) abi.ItoConfig {
        var cfg = ito.profileConfig(.plain);
        cfg.our_mac = self.src_mac;
        cfg.oui_filter = 0;
        cfg.port = 0;
        return cfg;
    }

    /// Whether the run uses a source MAC other than the interface's (received in promiscuous mode).
    pub fn foreignSource(self: *const Core, iface_mac: [6]u8) bool {
        return !std.mem.eql(u8, &self.src_mac, &iface_mac);
    }

    pub fn fail(self: *Core, comptime fmt: []const u8, args: anytype) void {
        _ = std.fmt.bufPrintZ(&self.failure, fmt, args) catch {};
        @atomicStore(u32, &self.stats.state, abi.probe_state.failed, .release);
        self.stop_tx.store(true, .release);
    }

    /// Ends sending early; the receive side still drains and finishes normally.
    pub fn stop(self: *Core) void {
        self.stop_tx.store(true, .release);
    }

    /// Waits for the run to finish (false on timeout).
    pub fn wait(self: *Core, timeout_ns: u64) bool {
        self.finished.timedWait(timeout_ns) catch return false;
        return true;
    }

    /// Teardown (or a failed start): sending stops and the receive side ends without draining.
    fn quit(self: *Core) void {
        self.stop_tx.store(true, .release);
        self.quitting.store(true, .release);
    }

    /// Starts `platform.rxMain`, then `platform.txMain`; if the second cannot start, the first is
    /// stopped (`platform.wake()` interrupts its wait) before the error returns.
    pub fn spawn(self: *Core, platform: anytype) Error!void {
        const P = @TypeOf(platform.*);
        self.rx_thread = std.Thread.spawn(.{}, P.rxMain, .{platform}) catch return diag.fail(error.System, "cannot start the receive thread", .{});
        errdefer self.join(platform);
        self.tx_thread = std.Thread.spawn(.{}, P.txMain, .{platform}) catch return diag.fail(error.System, "cannot start the transmit thread", .{});
    }

    /// Ends both threads at once, without the drain (teardown).
    pub fn join(self: *Core, platform: anytype) void {
        self.quit();
        if (self.tx_thread) |t| t.join();
        platform.wake();
        if (self.rx_thread) |t| t.join();
        self.tx_thread = null;
        self.rx_thread = null;
    }

    fn templateFor(self: *const Core, seq: u64) *const Template {
        if (self.templates.len == 1) return &self.templates[0];
        const size = frameSizeFor(&self.opts, seq);
        for (self.templates) |*t| if (t.size == size) return t;
        unreachable;
    }

    /// The TX thread's loop: paces, stamps up to `batch` frames and hands them to `sender`, which
    /// has `add(head, tail)` (a frame in two pieces: the stamped first bytes, then the untouched
    /// rest of the template; both stay valid until `flush`) and `flush() Sent`.
    pub fn transmit(self: *Core, sender: anytype) void {
        const o = &self.opts;
        @atomicStore(u32, &self.stats.state, abi.probe_state.sending, .release);
        var heads: [tx_batch_max][header_room]u8 = undefined;
        const t0 = monotonicNs();
        var seq: u64 = 0;
        var sent: u64 = 0;
        var sent_bytes: u64 = 0;
        const batch: u64 = o.batch;
        // Paced: frame k is due at schedule0 + k / rate. A sender that was kept off the CPU makes up
        // at most `catch_up` frames (1 ms of them) at full speed; the rest of its debt is dropped
        // from the schedule (counted in tx_slipped) rather than sent as a burst far above the rate
        // asked for, which a handheld pacing in hardware never sends.
        var schedule0 = t0;
        const catch_up: u64 = @max(batch, o.rate_pps / 1000);
        var slipped: u64 = 0;
        var late_max: u64 = 0;
        const tx0 = realtimeNs();
        @atomicStore(u64, &self.stats.first_tx_ns, tx0, .monotonic);

        while (!self.stop_tx.load(.acquire)) {
            if (o.count != 0 and seq >= o.count) break;
            const now = monotonicNs();
            if (o.duration_ns != 0 and now - t0 >= o.duration_ns) {
                // Out of time. Frames the schedule wanted before the end that a stall kept back are
                // slipped, and the sending span is the whole duration: a sender stopped near the end
                // must not look like one that kept its rate.
                const end = t0 + o.duration_ns;
                if (o.rate_pps != 0 and end > schedule0) {
                    var due_end: u64 = @intCast((@as(u128, end - schedule0) * o.rate_pps + std.time.ns_per_s - 1) / std.time.ns_per_s);
                    if (o.count != 0) due_end = @min(due_end, o.count);
                    if (due_end > seq) {
                        slipped += due_end - seq;
                        @atomicStore(u64, &self.stats.tx_slipped, slipped, .monotonic);
                        const due_ns = schedule0 + @as(u64, @intCast(@as(u128, seq) * std.time.ns_per_s / o.rate_pps));
                        if (end > due_ns) late_max = @max(late_max, end - due_ns);
                        @atomicStore(u64, &self.stats.tx_late_max_ns, late_max, .monotonic);
                    }
                }
                @atomicStore(u64, &self.stats.last_tx_ns, tx0 + o.duration_ns, .monotonic);
                break;
            }
            var n: u64 = batch;
            if (o.count != 0) n = @min(n, o.count - seq);
            if (o.rate_pps != 0) {
                var due: u64 = @intCast(@as(u128, now - schedule0) * o.rate_pps / std.time.ns_per_s + 1);
                if (due <= seq) {
                    const next_ns: u64 = @intCast(@as(u128, seq) * std.time.ns_per_s / o.rate_pps);
                    if (schedule0 + next_ns > now) std.time.sleep(schedule0 + next_ns - now);
                    continue;
                }
                if (due - seq > catch_up) {
                    const due_ns = schedule0 + @as(u64, @intCast(@as(u128, seq) * std.time.ns_per_s / o.rate_pps));
                    late_max = @max(late_max, now -| due_ns);
                    @atomicStore(u64, &self.stats.tx_late_max_ns, late_max, .monotonic);
                    const skip = due - seq - catch_up;
                    schedule0 += @intCast(@as(u128, skip) * std.time.ns_per_s / o.rate_pps);
                    slipped += skip;
                    due = seq + catch_up;
                    @atomicStore(u64, &self.stats.tx_slipped, slipped, .monotonic);
                }
                n = @min(n, due - seq);
            }
            const ts = realtimeNs();
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
                sender.add(heads[i][0..head_len], t.sent[head_len..]);
            }
            const r: Sent = sender.flush();
            if (r.down) self.fail("sending: interface {s} went down", .{std.mem.sliceTo(&o.ifname, 0)});
            // Sequence numbers of frames that were not sent are never received: they count as lost.
            seq += n;
            sent += r.frames;
            sent_bytes += r.bytes;
            @atomicStore(u64, &self.stats.sent, seq, .release);
            @atomicStore(u64, &self.stats.sent_bytes, sent_bytes, .monotonic);
            @atomicStore(u64, &self.stats.tx_errors, seq - sent, .monotonic);
            @atomicStore(u64, &self.stats.last_tx_ns, ts, .monotonic);
            if (r.down) break;
        }
        if (@atomicLoad(u32, &self.stats.state, .acquire) != abi.probe_state.failed)
            @atomicStore(u32, &self.stats.state, abi.probe_state.draining, .release);
        self.tx_done_ns.store(monotonicNs(), .release);
    }

    pub fn receiver(self: *Core) Receiver {
        var cfg = self.rxConfig();
        cfg.signatures = @as(u8, 1) << @as(u3, @intCast(self.opts.signature));
        return .{ .core = self, .cfg = cfg };
    }

    /// Compares a reflection (without its VLAN tag, which goes in `vlan`) byte for byte with the
    /// frame we sent, swapped as the mode says.
    fn rewriteCorrect(self: *const Core, data: []const u8, vlan: ?u16, seq: u32, tx_ts: u64, scratch: *[header_room]u8) bool {
        const t = self.templateFor(seq);
        if ((vlan != null) != (self.opts.vlan != 0)) return false;
        if (vlan) |v| if (v != self.opts.vlan) return false;
        if (data.len != t.expect.len) return false;
        // Stamp the expected header the way the sender stamped the original.
        const head_len = @min(t.expect.len, header_room - 4);
        @memcpy(scratch[0..head_len], t.expect[0..head_len]);
        stamp(Shape.expected(t), scratch[0..head_len], seq, tx_ts);
        if (!std.mem.eql(u8, scratch[0..head_len], data[0..head_len])) return false;
        return std.mem.eql(u8, t.expect[head_len..], data[head_len..]);
    }
};

fn freeTemplate(gpa: std.mem.Allocator, t: Template) void {
    gpa.free(t.sent);
    gpa.free(t.expect.ptr[0..t.sent.len]);
}

/// The RX thread's state: each received frame goes through `frame`, counters are published once per
/// batch with `publish`, and `finish` ends the run.
pub const Receiver = struct {
    core: *Core,
    cfg: abi.ItoConfig,
    max_seen: ?u32 = null,
    received: u64 = 0,
    received_bytes: u64 = 0,
    unique: u64 = 0,
    scratch: [header_room]u8 = undefined,

    /// Whether the run is over: sending ended and every frame came back, or the drain time passed.
    pub fn done(r: *const Receiver) bool {
        if (r.core.quitting.load(.acquire)) return true;
        const done_at = r.core.tx_done_ns.load(.acquire);
        if (done_at == 0) return false;
        return r.unique >= @atomicLoad(u64, &r.core.stats.sent, .acquire) or monotonicNs() >= done_at + r.core.opts.drain_ns;
    }

    /// One received frame, with its VLAN tag already taken off (`vlan` is the TCI), and its kernel
    /// receive time.
    pub fn frame(r: *Receiver, data: []const u8, vlan: ?u16, ts_ns: u64) void {
        const st = r.core.stats;
        const p = ito.classify(&r.cfg, data);
        if (p.verdict != .reflect) return r.foreign();
        const pl = @as(usize, p.l4) + 8;
        if (data.len < pl + seq_fields_end or be16(data, pl + off_session) != @as(u16, @truncate(r.core.opts.session)))
            return r.foreign();
        const seq = std.mem.readInt(u32, data[pl + off_seq ..][0..4], .big);
        const slot = seq & (window - 1);
        if (@atomicLoad(u32, &r.core.tx_seqs[slot], .acquire) != seq) return r.foreign(); // never sent, or too old to judge
        r.received += 1;
        r.received_bytes += data.len + @as(u64, if (vlan != null) 4 else 0);
        const bit = @as(u64, 1) << @intCast(slot % 64);
        if (r.core.seen[slot / 64].fetchOr(bit, .monotonic) & bit != 0) {
            @atomicStore(u64, &st.duplicates, st.duplicates + 1, .monotonic);
            return;
        }
        r.unique += 1;
        if (r.max_seen) |m| {
            if (seq < m) @atomicStore(u64, &st.reordered, st.reordered + 1, .monotonic) else r.max_seen = seq;
        } else r.max_seen = seq;

        const tx_ts = r.core.tx_times[slot];
        const rtt = ts_ns -| tx_ts;
        const b = abi.histBucket(rtt);
        @atomicStore(u64, &st.rtt_hist[b], st.rtt_hist[b] + 1, .monotonic);
        @atomicStore(u64, &st.rtt_sum_ns, st.rtt_sum_ns + rtt, .monotonic);
        if (st.rtt_min_ns == 0 or rtt < st.rtt_min_ns) @atomicStore(u64, &st.rtt_min_ns, rtt, .monotonic);
        if (rtt > st.rtt_max_ns) @atomicStore(u64, &st.rtt_max_ns, rtt, .monotonic);

        if (!r.core.rewriteCorrect(data, vlan, seq, tx_ts, &r.scratch))
            @atomicStore(u64, &st.bad_rewrite, st.bad_rewrite + 1, .monotonic);
    }

    fn foreign(r: *Receiver) void {
        const st = r.core.stats;
        @atomicStore(u64, &st.foreign, st.foreign + 1, .monotonic);
    }

    /// Publishes the totals (once per batch) and adds frames the kernel dropped before we read them.
    pub fn publish(r: *Receiver, kernel_drops: u64) void {
        const st = r.core.stats;
        if (kernel_drops != 0) @atomicStore(u64, &st.rx_ring_drops, st.rx_ring_drops + kernel_drops, .monotonic);
        @atomicStore(u64, &st.unique, r.unique, .monotonic);
        @atomicStore(u64, &st.received_bytes, r.received_bytes, .monotonic);
        @atomicStore(u64, &st.received, r.received, .release);
    }

    pub fn finish(r: *Receiver, kernel_drops: u64) void {
        r.publish(kernel_drops);
        const st = r.core.stats;
        if (@atomicLoad(u32, &st.state, .acquire) != abi.probe_state.failed)
            @atomicStore(u32, &st.state, abi.probe_state.done, .release);
        r.core.finished.set();
    }
};

/// Takes an 802.1Q/802.1ad tag out of a frame in place (the 12 address bytes move up by 4) and
/// returns the untagged frame and the tag's TCI; a frame without a tag comes back as it is. For
/// kernels that deliver tags inline (/dev/bpf), so the checks see frames as AF_PACKET delivers them.
pub fn untag(frame: []u8) struct { data: []u8, vlan: ?u16 } {
    if (frame.len < 18) return .{ .data = frame, .vlan = null };
    const tpid = be16(frame, 12);
    if (tpid != 0x8100 and tpid != 0x88A8) return .{ .data = frame, .vlan = null };
    const tci = be16(frame, 14);
    std.mem.copyBackwards(u8, frame[4..16], frame[0..12]);
    return .{ .data = frame[4..], .vlan = tci };
}

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
    @memcpy(o.ifname[0..2], "lo");
    o.duration_ns = std.time.ns_per_s;
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

test "the probe's options are checked before anything opens, naming each as scripts spell it" {
    var o = testOptions();
    try checkOptions(&o);
    o.frame_size = 63;
    try std.testing.expectError(error.InvalidArgument, checkOptions(&o));
    try std.testing.expectEqualStrings("`size` 63 must be a frame size from 64 to 9018 bytes, or imix", std.mem.span(diag.message()));
    o = testOptions();
    o.vlan = 4095;
    try std.testing.expectError(error.InvalidArgument, checkOptions(&o));
    o = testOptions();
    o.duration_ns = 0; // and no count: unbounded
    try std.testing.expectError(error.InvalidArgument, checkOptions(&o));
    o = testOptions();
    o.dst_mac[0] = 1; // multicast
    try std.testing.expectError(error.InvalidArgument, checkOptions(&o));
}

test "imix with a VLAN tag or over IPv6 sends its small frames at the smallest size the headers fit" {
    var o = testOptions();
    o.frame_size = 0;
    try std.testing.expectEqual(@as(u32, 64), frameSizeFor(&o, 0));
    o.vlan = 7;
    try std.testing.expectEqual(@as(u32, 68), frameSizeFor(&o, 0));
    try std.testing.expectEqual(@as(u32, 594), frameSizeFor(&o, 7));
    o.vlan = 0;
    o.ipv6 = 1;
    try std.testing.expectEqual(@as(u32, 84), frameSizeFor(&o, 12));
    try std.testing.expectEqual(@as(u32, 1518), frameSizeFor(&o, 11));
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
            var probe: Core = undefined;
            probe.opts = o;
            var templates = [1]Template{t};
            probe.templates = &templates;
            var scratch: [header_room]u8 = undefined;
            try std.testing.expect(probe.rewriteCorrect(frame, null, 77, 123456789, &scratch));
            // One flipped payload byte, or the wrong sequence, is caught.
            frame[frame.len - 1] ^= 1;
            try std.testing.expect(!probe.rewriteCorrect(frame, null, 77, 123456789, &scratch));
            frame[frame.len - 1] ^= 1;
            try std.testing.expect(!probe.rewriteCorrect(frame, null, 78, 123456789, &scratch));
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
    var probe: Core = undefined;
    probe.opts = o;
    var templates = [1]Template{t};
    probe.templates = &templates;
    var scratch: [header_room]u8 = undefined;
    try std.testing.expect(!probe.rewriteCorrect(frame, null, 5, 0, &scratch));
}

test "an inline VLAN tag is taken out in place and an untagged frame is left alone" {
    var tagged = [_]u8{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x81, 0x00, 0x20, 0x05, 0x08, 0x00, 0x45 };
    const u = untag(&tagged);
    try std.testing.expectEqual(@as(?u16, 0x2005), u.vlan);
    try std.testing.expectEqualSlices(u8, &.{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00, 0x45 }, u.data);
    var plain = [_]u8{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00, 0x45, 0, 0, 0 };
    const p = untag(&plain);
    try std.testing.expectEqual(@as(?u16, null), p.vlan);
    try std.testing.expectEqual(@as(usize, plain.len), p.data.len);
    var short = [_]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0x00 };
    try std.testing.expectEqual(@as(?u16, null), untag(&short).vlan);
}

/// A sender that sends instantly, except once, when it is kept off the CPU for `stall_ns`.
const StallingSender = struct {
    frames: u64 = 0,
    flushes: u64 = 0,
    stall_at: u64,
    stall_ns: u64,
    /// Monotonic time and size of every flush.
    log: [4096]struct { ns: u64, frames: u64 } = undefined,

    fn add(self: *StallingSender, head: []const u8, tail: []const u8) void {
        _ = head;
        _ = tail;
        self.frames += 1;
    }

    fn flush(self: *StallingSender) Sent {
        if (self.flushes == self.stall_at) std.time.sleep(self.stall_ns);
        const r: Sent = .{ .frames = self.frames, .bytes = self.frames * 64 };
        if (self.flushes < self.log.len) self.log[self.flushes] = .{ .ns = monotonicNs(), .frames = self.frames };
        self.flushes += 1;
        self.frames = 0;
        return r;
    }
};

/// A paced run of 100 ms at 100 kpps in batches of 64 through `sender`; its final counters.
fn stalledRun(sender: *StallingSender) !abi.ProbeStats {
    var o = testOptions();
    o.frame_size = 64;
    o.rate_pps = 100_000;
    o.duration_ns = 100 * std.time.ns_per_ms;
    o.batch = 64;
    var core = try Core.init(std.testing.allocator, &o, ito.testing.peer_mac, 1500);
    defer core.deinit();
    core.transmit(sender);
    return core.stats.*;
}

test "a paced sender kept off the CPU makes up at most 1 ms of frames and counts the rest as slipped" {
    const sender = try std.testing.allocator.create(StallingSender);
    defer std.testing.allocator.destroy(sender);
    sender.* = .{ .stall_at = 10, .stall_ns = 30 * std.time.ns_per_ms };
    const st = try stalledRun(sender);
    // 30 ms off the CPU owes 3 000 frames; 1 ms of them (100) is made up.
    try std.testing.expect(st.tx_slipped >= 2_800);
    // Every frame of the schedule was either sent or slipped.
    const scheduled = st.sent + st.tx_slipped;
    try std.testing.expect(scheduled >= 9_800 and scheduled <= 10_200);
    // No 1 ms window carries more than its own 100 frames, the 100 made up and one batch.
    const log = sender.log[0..@min(sender.flushes, sender.log.len)];
    for (log, 0..) |start, i| {
        var in_window: u64 = 0;
        for (log[i..]) |f| {
            if (f.ns - start.ns >= std.time.ns_per_ms) break;
            in_window += f.frames;
        }
        try std.testing.expect(in_window <= 100 + 100 + 64);
    }
    try std.testing.expect(st.tx_late_max_ns >= 29 * std.time.ns_per_ms and st.tx_late_max_ns < 60 * std.time.ns_per_ms);
}

test "a paced sender stalled until past its duration counts the schedule's rest as slipped and spans the whole duration" {
    const sender = try std.testing.allocator.create(StallingSender);
    defer std.testing.allocator.destroy(sender);
    // Kept off the CPU for 150 ms on its 90th flush (a millisecond or so in): past the end.
    sender.* = .{ .stall_at = 90, .stall_ns = 150 * std.time.ns_per_ms };
    const st = try stalledRun(sender);
    try std.testing.expect(st.sent < 5_000);
    const scheduled = st.sent + st.tx_slipped;
    try std.testing.expect(scheduled >= 9_900 and scheduled <= 10_001);
    try std.testing.expectEqual(100 * std.time.ns_per_ms, st.last_tx_ns - st.first_tx_ns);
    try std.testing.expect(st.tx_late_max_ns >= 50 * std.time.ns_per_ms);
}

test "the receiver counts a reflection once, a repeat as a duplicate, and a stranger as foreign" {
    const gpa = std.testing.allocator;
    var o = testOptions();
    o.count = 10;
    o.frame_size = 200;
    o.vlan = 7;
    var core = try Core.init(gpa, &o, ito.testing.peer_mac, 1500);
    defer core.deinit();
    const t = &core.templates[0];
    // As the sender would: stamp sequence 3 and record it in the window.
    const frame = try gpa.dupe(u8, t.sent);
    defer gpa.free(frame);
    stamp(Shape.sent(t), frame[0..header_room], 3, 1_000);
    core.tx_times[3] = 1_000;
    core.tx_seqs[3] = 3;
    // The reflector swaps; /dev/bpf hands the frame over with its tag inline.
    var cfg = ito.testing.config(.mac_ip);
    ito.rewrite(&cfg, frame, ito.classify(&cfg, frame));
    var rx = core.receiver();
    const back = try gpa.dupe(u8, frame);
    defer gpa.free(back);
    const u = untag(back);
    rx.frame(u.data, u.vlan, 51_000);
    const again = try gpa.dupe(u8, frame);
    defer gpa.free(again);
    const v = untag(again);
    rx.frame(v.data, v.vlan, 52_000);
    rx.frame(t.sent[0..60], null, 53_000); // our own frame, not a reflection
    rx.publish(2);
    const st = core.stats;
    try std.testing.expectEqual(@as(u64, 1), st.unique);
    try std.testing.expectEqual(@as(u64, 1), st.duplicates);
    try std.testing.expectEqual(@as(u64, 1), st.foreign);
    try std.testing.expectEqual(@as(u64, 0), st.bad_rewrite);
    try std.testing.expectEqual(@as(u64, 50_000), st.rtt_min_ns);
    try std.testing.expectEqual(@as(u64, 2), st.rx_ring_drops);
}
