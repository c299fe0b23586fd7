//! The ITO reflector rulebook: which frames are test frames addressed to us, and how a reflection is
//! rewritten. Every dataplane (AF_PACKET, AF_XDP, /dev/bpf) calls `classify` then `rewrite`; the XDP
//! program in zig/bpf/ implements the same rules and is tested against this file frame by frame.
//!
//! Offsets for the plain case (no VLAN, IHL 5): UDP ports at 34..38, payload at 42, signature at 47..54.
const std = @import("std");
const abi = @import("../abi.zig");
const checksum = @import("checksum.zig");

pub const Config = abi.ItoConfig;
pub const Mode = abi.SwapMode;
pub const Verdict = abi.Verdict;
pub const Signature = abi.Signature;

/// Ethernet + IPv4 + UDP + 5-byte vendor header + 7-byte signature, no FCS.
pub const min_frame = 54;
const vendor_header_len = 5;
const signature_len = 7;

const eth_p_ipv4 = 0x0800;
const eth_p_ipv6 = 0x86DD;
const eth_p_8021q = 0x8100;
const eth_p_8021ad = 0x88A8;
const ip_proto_udp = 17;

/// Where the headers of an accepted frame are; valid only when `verdict == .reflect`.
pub const Parsed = struct {
    verdict: Verdict,
    signature: Signature = .probeot,
    l3: u16 = 0,
    l4: u16 = 0,
    ipv6: bool = false,
};

/// Six bytes as one integer, so address compares are one instruction, not a memcmp call.
inline fn mac48(b: *const [6]u8) u48 {
    return @bitCast(b.*);
}

inline fn sig56(b: *const [7]u8) u56 {
    return @bitCast(b.*);
}

fn reject(v: Verdict) Parsed {
    return .{ .verdict = v };
}

inline fn be16(frame: []const u8, off: usize) u16 {
    return std.mem.readInt(u16, frame[off..][0..2], .big);
}

pub const default_oui = [3]u8{ 0x00, 0xC0, 0x17 };
pub const default_port = 3842;

const signature_text = [_]struct { sig: Signature, text: *const [7]u8, offset: u8 }{
    .{ .sig = .probeot, .text = "PROBEOT", .offset = vendor_header_len },
    .{ .sig = .dataot, .text = "DATA:OT", .offset = vendor_header_len },
    .{ .sig = .latency, .text = "LATENCY", .offset = vendor_header_len },
    .{ .sig = .rfc2544, .text = "RFC2544", .offset = 0 },
    .{ .sig = .y1564, .text = "Y.1564 ", .offset = 0 },
};

/// The 7 ASCII bytes of a signature and where they sit in the UDP payload.
pub fn signatureText(sig: Signature) struct { text: *const [7]u8, offset: u8 } {
    const s = signature_text[@intFromEnum(sig)];
    std.debug.assert(s.sig == sig);
    return .{ .text = s.text, .offset = s.offset };
}

/// VLAN tags a test frame may carry, outer and inner (QinQ: 802.1ad outside 802.1Q, or 802.1Q in
/// 802.1Q), counting one the driver took out of the frame into metadata (`classifyTagged`). A frame
/// with more is refused as `not_udp`, in every dataplane.
pub const max_tags = 2;

/// Decides whether `frame` (starting at the destination MAC, no FCS) is an ITO test frame that we
/// must reflect. Never reads outside `frame`.
pub fn classify(cfg: *const Config, frame: []const u8) Parsed {
    return classifyTagged(cfg, frame, false);
}

/// `classify` for a frame whose outermost VLAN tag the kernel or the driver holds as metadata
/// (`meta_tag`): AF_PACKET's tp_vlan_tci, XDP's rx VLAN tag. That tag counts towards `max_tags`.
pub fn classifyTagged(cfg: *const Config, frame: []const u8, meta_tag: bool) Parsed {
    if (frame.len < 14) return reject(.too_short);
    const dst = mac48(frame[0..6]);
    const src = mac48(frame[6..12]);
    const ours = mac48(&cfg.our_mac);
    // Broadcast and multicast have the group bit set; a multicast source is invalid and would make
    // our reflection a multicast frame.
    if ((frame[0] | frame[6]) & 1 != 0) return reject(.not_ours);
    if (dst != ours or src == ours) return reject(.not_ours); // src == dst follows
    if (cfg.oui_filter != 0 and !std.mem.eql(u8, frame[6..9], &cfg.oui)) return reject(.oui);

    var l3: usize = 14;
    var ethertype = be16(frame, 12);
    var tags: usize = @intFromBool(meta_tag);
    while ((ethertype == eth_p_8021q or ethertype == eth_p_8021ad) and tags < max_tags) : (tags += 1) {
        if (frame.len < l3 + 4) return reject(.too_short);
        ethertype = be16(frame, l3 + 2);
        l3 += 4;
    }

    var l4: usize = undefined;
    var ipv6 = false;
    switch (ethertype) {
        eth_p_ipv4 => {
            if (frame.len < l3 + 20) return reject(.too_short);
            const vihl = frame[l3];
            if (vihl >> 4 != 4) return reject(.malformed);
            const ihl: usize = vihl & 0x0f;
            if (ihl < 5) return reject(.malformed);
            if (frame.len < l3 + ihl * 4) return reject(.malformed);
            if (frame[l3 + 9] != ip_proto_udp) return reject(.not_udp);
            // A later fragment carries no UDP header where we would look for one.
            if (be16(frame, l3 + 6) & 0x1fff != 0) return reject(.malformed);
            l4 = l3 + ihl * 4;
        },
        eth_p_ipv6 => {
            if (frame.len < l3 + 40) return reject(.too_short);
            if (frame[l3] >> 4 != 6) return reject(.malformed);
            // Extension headers are not walked: handhelds send plain UDP.
            if (frame[l3 + 6] != ip_proto_udp) return reject(.not_udp);
            l4 = l3 + 40;
            ipv6 = true;
        },
        else => return reject(.not_udp),
    }

    if (frame.len < l4 + 8) return reject(.too_short);
    if (cfg.port != 0 and be16(frame, l4 + 2) != cfg.port) return reject(.port);

    const payload = frame[l4 + 8 ..];
    for (signature_text) |s| {
        if (cfg.signatures & s.sig.bit() == 0) continue;
        if (payload.len < @as(usize, s.offset) + signature_len) continue;
        if (sig56(payload[s.offset..][0..signature_len]) == sig56(s.text)) {
            return .{
                .verdict = .reflect,
                .signature = s.sig,
                .l3 = @intCast(l3),
                .l4 = @intCast(l4),
                .ipv6 = ipv6,
            };
        }
    }
    return reject(if (payload.len < vendor_header_len + signature_len) .too_short else .signature);
}

fn swap(frame: []u8, a: usize, b: usize, comptime n: usize) void {
    var tmp: [n]u8 = undefined;
    @memcpy(&tmp, frame[a..][0..n]);
    std.mem.copyForwards(u8, frame[a..][0..n], frame[b..][0..n]);
    @memcpy(frame[b..][0..n], &tmp);
}

/// Adds `new - old` to a one's-complement checksum field (RFC 1624, eqn. 3).
pub fn checksumAdjust(check: u16, old: u16, new: u16) u16 {
    var sum: u32 = @as(u32, ~check) + @as(u32, ~old) + @as(u32, new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return ~@as(u16, @intCast(sum));
}

/// Rewrites an accepted frame in place for its way back. Swapping addresses or ports keeps both
/// checksums valid (one's-complement sums do not depend on order); the TOS toggle adjusts the IPv4
/// header checksum. The UDP checksum does not cover TOS, so it stays valid untouched.
pub fn rewrite(cfg: *const Config, frame: []u8, p: Parsed) void {
    std.debug.assert(p.verdict == .reflect);
    swap(frame, 0, 6, 6);
    const mode: Mode = @enumFromInt(cfg.mode);
    if (mode == .mac) return;
    const l3: usize = p.l3;
    if (p.ipv6) {
        swap(frame, l3 + 8, l3 + 24, 16);
    } else {
        swap(frame, l3 + 12, l3 + 16, 4);
        if (cfg.tos_toggle != 0) {
            const old = be16(frame, l3);
            frame[l3 + 1] ^= 0x01;
            const new = be16(frame, l3);
            const check = be16(frame, l3 + 10);
            std.mem.writeInt(u16, frame[l3 + 10 ..][0..2], checksumAdjust(check, old, new), .big);
        }
    }
    if (mode == .all) swap(frame, p.l4, p.l4 + 2, 2);
}

/// The reflector's default settings for a profile; `our_mac` is filled in by the dataplane.
pub fn profileConfig(profile: abi.Profile) Config {
    var cfg = Config{
        .our_mac = .{0} ** 6,
        .oui = default_oui,
        .oui_filter = 1,
        .tos_toggle = 0,
        .port = default_port,
        .mode = @intFromEnum(Mode.mac_ip),
        .signatures = Signature.ito_bits,
    };
    switch (profile) {
        .netally => cfg.tos_toggle = 1,
        .plain => {},
        .rfc2544 => {
            cfg.signatures = Signature.rfc2544.bit();
            cfg.oui_filter = 0;
        },
        .y1564 => {
            cfg.signatures = Signature.y1564.bit();
            cfg.oui_filter = 0;
        },
    }
    return cfg;
}

// ---------------------------------------------------------------------------------------------
// Tests: every rule on a frame built here.

pub const testing = struct {
    pub const our_mac = [6]u8{ 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
    pub const peer_mac = [6]u8{ 0x00, 0xC0, 0x17, 0x12, 0x34, 0x56 };

    pub const FrameSpec = struct {
        dst: [6]u8 = our_mac,
        src: [6]u8 = peer_mac,
        vlan: ?u16 = null,
        tpid: u16 = eth_p_8021q,
        /// A second, inner tag (QinQ) after `vlan`.
        inner_vlan: ?u16 = null,
        inner_tpid: u16 = eth_p_8021q,
        ipv6: bool = false,
        ihl: u8 = 5,
        proto: u8 = ip_proto_udp,
        tos: u8 = 0,
        src_port: u16 = 50000,
        dst_port: u16 = default_port,
        signature: []const u8 = "DATA:OT",
        signature_offset: usize = vendor_header_len,
        size: usize = 64 - 4,
        udp_checksum: bool = true,
    };

    /// Builds a frame with valid IPv4 header and UDP checksums into `buf`; returns its length.
    pub fn build(buf: []u8, s: FrameSpec) []u8 {
        @memset(buf, 0);
        @memcpy(buf[0..6], &s.dst);
        @memcpy(buf[6..12], &s.src);
        var off: usize = 12;
        if (s.vlan) |tci| {
            std.mem.writeInt(u16, buf[12..14], s.tpid, .big);
            std.mem.writeInt(u16, buf[14..16], tci, .big);
            off = 16;
        }
        if (s.inner_vlan) |tci| {
            std.mem.writeInt(u16, buf[off..][0..2], s.inner_tpid, .big);
            std.mem.writeInt(u16, buf[off + 2 ..][0..2], tci, .big);
            off += 4;
        }
        std.mem.writeInt(u16, buf[off..][0..2], if (s.ipv6) eth_p_ipv6 else eth_p_ipv4, .big);
        const l3 = off + 2;
        const iphl: usize = if (s.ipv6) 40 else @as(usize, s.ihl) * 4;
        const l4 = l3 + iphl;
        const total = @max(s.size, l4 + 8 + s.signature_offset + s.signature.len);
        const udp_len: u16 = @intCast(total - l4);
        if (s.ipv6) {
            buf[l3] = 0x60;
            std.mem.writeInt(u16, buf[l3 + 4 ..][0..2], udp_len, .big);
            buf[l3 + 6] = s.proto;
            buf[l3 + 7] = 64;
            buf[l3 + 8] = 0x20;
            buf[l3 + 9] = 0x01;
            buf[l3 + 10] = 0x02;
            buf[l3 + 23] = 2;
            buf[l3 + 24] = 0x20;
            buf[l3 + 25] = 0x01;
            buf[l3 + 26] = 0x02;
            buf[l3 + 39] = 1;
        } else {
            buf[l3] = 0x40 | s.ihl;
            buf[l3 + 1] = s.tos;
            std.mem.writeInt(u16, buf[l3 + 2 ..][0..2], @intCast(total - l3), .big);
            std.mem.writeInt(u16, buf[l3 + 4 ..][0..2], 0x1234, .big);
            buf[l3 + 8] = 64;
            buf[l3 + 9] = s.proto;
            @memcpy(buf[l3 + 12 ..][0..4], &[4]u8{ 198, 18, 0, 2 });
            @memcpy(buf[l3 + 16 ..][0..4], &[4]u8{ 198, 18, 0, 1 });
            for (l3 + 20..l4) |i| buf[i] = 0x01; // NOP options
            std.mem.writeInt(u16, buf[l3 + 10 ..][0..2], ipChecksum(buf[l3..l4]), .big);
        }
        std.mem.writeInt(u16, buf[l4..][0..2], s.src_port, .big);
        std.mem.writeInt(u16, buf[l4 + 2 ..][0..2], s.dst_port, .big);
        std.mem.writeInt(u16, buf[l4 + 4 ..][0..2], udp_len, .big);
        const payload = l4 + 8;
        @memcpy(buf[payload..][0..5], &[5]u8{ 0x09, 0x10, 0xEA, 0x1D, 0x00 });
        @memcpy(buf[payload + s.signature_offset ..][0..s.signature.len], s.signature);
        for (payload + s.signature_offset + s.signature.len..total) |i| buf[i] = @truncate(i);
        if (s.udp_checksum) {
            std.mem.writeInt(u16, buf[l4 + 6 ..][0..2], udpChecksum(buf[0..total], l3, l4, s.ipv6), .big);
        }
        return buf[0..total];
    }

    const sum16 = checksum.sum16;

    pub fn ipChecksum(hdr: []const u8) u16 {
        return checksum.ipv4Header(hdr);
    }

    /// Computes the UDP checksum over the pseudo-header, header (checksum field as zero) and payload.
    pub fn udpChecksum(frame: []const u8, l3: usize, l4: usize, ipv6: bool) u16 {
        const udp_len = std.mem.readInt(u16, frame[l4 + 4 ..][0..2], .big);
        var sum: u32 = 0;
        if (ipv6) sum = sum16(frame[l3 + 8 .. l3 + 40], 0) else sum = sum16(frame[l3 + 12 .. l3 + 20], 0);
        sum += ip_proto_udp;
        sum += udp_len;
        sum = sum16(frame[l4 .. l4 + 6], sum);
        sum = sum16(frame[l4 + 8 .. l4 + udp_len], sum);
        const c = checksum.finish(sum);
        return if (c == 0) 0xffff else c;
    }

    pub fn config(mode: Mode) Config {
        var cfg = profileConfig(.netally);
        cfg.our_mac = our_mac;
        cfg.mode = @intFromEnum(mode);
        return cfg;
    }
};

const t = std.testing;

fn expectVerdict(cfg: *const Config, spec: testing.FrameSpec, v: Verdict) !void {
    var buf: [9100]u8 = undefined;
    const frame = testing.build(&buf, spec);
    try t.expectEqual(v, classify(cfg, frame).verdict);
}

test "a plain DATA:OT frame addressed to us is reflected" {
    const cfg = testing.config(.mac_ip);
    var buf: [128]u8 = undefined;
    const frame = testing.build(&buf, .{});
    try t.expectEqual(@as(usize, 60), frame.len);
    const p = classify(&cfg, frame);
    try t.expectEqual(Verdict.reflect, p.verdict);
    try t.expectEqual(Signature.dataot, p.signature);
    try t.expectEqual(@as(u16, 14), p.l3);
    try t.expectEqual(@as(u16, 34), p.l4);
    try t.expectEqualStrings("DATA:OT", frame[47..54]);
}

test "each ITO signature is recognised at payload offset 5" {
    const cfg = testing.config(.mac_ip);
    var buf: [128]u8 = undefined;
    for ([_]Signature{ .probeot, .dataot, .latency }) |sig| {
        const frame = testing.build(&buf, .{ .signature = signatureText(sig).text });
        const p = classify(&cfg, frame);
        try t.expectEqual(Verdict.reflect, p.verdict);
        try t.expectEqual(sig, p.signature);
    }
}

test "a wrong or misplaced signature is refused" {
    const cfg = testing.config(.mac_ip);
    try expectVerdict(&cfg, .{ .signature = "DATA:OX" }, .signature);
    try expectVerdict(&cfg, .{ .signature = "DATA:OT", .signature_offset = 6 }, .signature);
    try expectVerdict(&cfg, .{ .signature = "RFC2544", .signature_offset = 0 }, .signature);
}

test "RFC2544 and Y.1564 profiles match at offset 0 and only when enabled" {
    var cfg = profileConfig(.rfc2544);
    cfg.our_mac = testing.our_mac;
    try expectVerdict(&cfg, .{ .signature = "RFC2544", .signature_offset = 0, .src = .{ 2, 9, 9, 9, 9, 9 } }, .reflect);
    try expectVerdict(&cfg, .{ .signature = "DATA:OT" }, .signature);
    cfg = profileConfig(.y1564);
    cfg.our_mac = testing.our_mac;
    try expectVerdict(&cfg, .{ .signature = "Y.1564 ", .signature_offset = 0 }, .reflect);
    try expectVerdict(&cfg, .{ .signature = "Y.1564X", .signature_offset = 0 }, .signature);
    const ito = testing.config(.mac_ip);
    try expectVerdict(&ito, .{ .signature = "RFC2544", .signature_offset = 0 }, .signature);
}

test "IPv4 options move the UDP header and the signature" {
    const cfg = testing.config(.all);
    var buf: [128]u8 = undefined;
    const frame = testing.build(&buf, .{ .ihl = 6 });
    const p = classify(&cfg, frame);
    try t.expectEqual(Verdict.reflect, p.verdict);
    try t.expectEqual(@as(u16, 38), p.l4);
    try t.expectEqualStrings("DATA:OT", frame[51..58]);
    try expectVerdict(&cfg, .{ .ihl = 15, .size = 128 }, .reflect);
}

test "an IHL below 5 or past the end of the frame is malformed" {
    const cfg = testing.config(.mac_ip);
    var buf: [128]u8 = undefined;
    var frame = testing.build(&buf, .{});
    frame[14] = 0x44;
    try t.expectEqual(Verdict.malformed, classify(&cfg, frame).verdict);
    frame[14] = 0x4f; // 60-byte header in a 60-byte frame
    try t.expectEqual(Verdict.malformed, classify(&cfg, frame).verdict);
    frame[14] = 0x55;
    try t.expectEqual(Verdict.malformed, classify(&cfg, frame).verdict);
}

test "one VLAN tag (802.1Q or 802.1ad) is accepted" {
    const cfg = testing.config(.mac_ip);
    var buf: [128]u8 = undefined;
    for ([_]u16{ eth_p_8021q, eth_p_8021ad }) |tpid| {
        const frame = testing.build(&buf, .{ .vlan = 100, .tpid = tpid });
        const p = classify(&cfg, frame);
        try t.expectEqual(Verdict.reflect, p.verdict);
        try t.expectEqual(@as(u16, 18), p.l3);
        try t.expectEqualStrings("DATA:OT", frame[51..58]);
    }
}

test "two VLAN tags (QinQ) are accepted, a third is not, and a tag held as metadata counts" {
    const cfg = testing.config(.mac_ip);
    var buf: [128]u8 = undefined;
    const qinq = testing.build(&buf, .{ .vlan = 20, .tpid = eth_p_8021ad, .inner_vlan = 100 });
    const p = classify(&cfg, qinq);
    try t.expectEqual(Verdict.reflect, p.verdict);
    try t.expectEqual(@as(u16, 22), p.l3);
    // The same frame with its outer tag in metadata: one inline tag left, the same verdict.
    var untagged: [128]u8 = undefined;
    const inner = testing.build(&untagged, .{ .vlan = 100 });
    try t.expectEqual(Verdict.reflect, classifyTagged(&cfg, inner, true).verdict);
    // Three tags in all: refused whether the outer one is inline or metadata.
    try t.expectEqual(Verdict.not_udp, classifyTagged(&cfg, qinq, true).verdict);
    var three: [128]u8 = undefined;
    @memcpy(three[0..16], qinq[0..16]);
    std.mem.writeInt(u16, three[16..18], eth_p_8021q, .big);
    std.mem.writeInt(u16, three[18..20], 7, .big);
    @memcpy(three[20 .. qinq.len + 4], qinq[16..]);
    try t.expectEqual(Verdict.not_udp, classify(&cfg, three[0 .. qinq.len + 4]).verdict);
    // Cut inside the second tag.
    try t.expectEqual(Verdict.too_short, classify(&cfg, qinq[0..21]).verdict);
}

test "IPv6 UDP is accepted and other next headers are not" {
    const cfg = testing.config(.all);
    try expectVerdict(&cfg, .{ .ipv6 = true, .size = 80 }, .reflect);
    try expectVerdict(&cfg, .{ .ipv6 = true, .vlan = 7, .size = 80 }, .reflect);
    try expectVerdict(&cfg, .{ .ipv6 = true, .proto = 6, .size = 80 }, .not_udp);
}

test "broadcast, multicast, foreign, self-sourced and src==dst frames are never reflected" {
    const cfg = testing.config(.mac_ip);
    try expectVerdict(&cfg, .{ .dst = .{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff } }, .not_ours);
    try expectVerdict(&cfg, .{ .dst = .{ 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 } }, .not_ours);
    try expectVerdict(&cfg, .{ .dst = .{ 0x33, 0x33, 0x00, 0x00, 0x00, 0x01 } }, .not_ours);
    try expectVerdict(&cfg, .{ .dst = .{ 0x02, 0x00, 0x00, 0x00, 0x00, 0x02 } }, .not_ours);
    try expectVerdict(&cfg, .{ .src = testing.our_mac }, .not_ours);
    try expectVerdict(&cfg, .{ .src = .{ 0x01, 0xC0, 0x17, 1, 2, 3 } }, .not_ours);
    var no_oui = cfg;
    no_oui.oui_filter = 0;
    try expectVerdict(&no_oui, .{ .src = testing.our_mac }, .not_ours);
}

test "the OUI filter refuses other vendors unless it is switched off or changed" {
    var cfg = testing.config(.mac_ip);
    const other = [6]u8{ 0x02, 0xAA, 0xBB, 1, 2, 3 };
    try expectVerdict(&cfg, .{ .src = other }, .oui);
    cfg.oui_filter = 0;
    try expectVerdict(&cfg, .{ .src = other }, .reflect);
    cfg.oui_filter = 1;
    cfg.oui = .{ 0x02, 0xAA, 0xBB };
    try expectVerdict(&cfg, .{ .src = other }, .reflect);
    try expectVerdict(&cfg, .{}, .oui);
}

test "the port filter refuses other ports unless it is 0 (any)" {
    var cfg = testing.config(.mac_ip);
    try expectVerdict(&cfg, .{ .dst_port = 3843 }, .port);
    cfg.port = 0;
    try expectVerdict(&cfg, .{ .dst_port = 3843 }, .reflect);
}

test "non-UDP and non-IP frames are refused" {
    const cfg = testing.config(.mac_ip);
    try expectVerdict(&cfg, .{ .proto = 6 }, .not_udp);
    var buf: [128]u8 = undefined;
    const frame = testing.build(&buf, .{});
    frame[12] = 0x08;
    frame[13] = 0x06; // ARP
    try t.expectEqual(Verdict.not_udp, classify(&cfg, frame).verdict);
}

test "later IPv4 fragments are refused" {
    const cfg = testing.config(.mac_ip);
    var buf: [128]u8 = undefined;
    const frame = testing.build(&buf, .{});
    frame[20] = 0x00;
    frame[21] = 0x10;
    try t.expectEqual(Verdict.malformed, classify(&cfg, frame).verdict);
}

test "every truncation of a valid frame is refused without reading past its end" {
    const cfg = testing.config(.mac_ip);
    var buf: [128]u8 = undefined;
    for ([_]testing.FrameSpec{ .{}, .{ .vlan = 5 }, .{ .ihl = 7 }, .{ .ipv6 = true, .size = 80 } }) |spec| {
        const frame = testing.build(&buf, spec);
        const sig_end = std.mem.indexOf(u8, frame, "DATA:OT").? + 7;
        for (0..sig_end) |n| {
            // A heap copy of exactly n bytes: the testing allocator would catch an overread.
            const copy = try t.allocator.dupe(u8, frame[0..n]);
            defer t.allocator.free(copy);
            try t.expect(classify(&cfg, copy).verdict != .reflect);
        }
        try t.expectEqual(Verdict.reflect, classify(&cfg, frame[0..sig_end]).verdict);
    }
    try t.expectEqual(@as(usize, min_frame), std.mem.indexOf(u8, testing.build(&buf, .{}), "DATA:OT").? + 7);
}

test "mac mode swaps only the MAC addresses" {
    const cfg = testing.config(.mac);
    var buf: [128]u8 = undefined;
    var orig: [128]u8 = undefined;
    const frame = testing.build(&buf, .{});
    @memcpy(orig[0..frame.len], frame);
    rewrite(&cfg, frame, classify(&cfg, frame));
    try t.expectEqualSlices(u8, orig[6..12], frame[0..6]);
    try t.expectEqualSlices(u8, orig[0..6], frame[6..12]);
    try t.expectEqualSlices(u8, orig[12..frame.len], frame[12..]);
}

test "mac-ip mode swaps MAC and IPv4 addresses, toggles TOS and keeps both checksums valid" {
    const cfg = testing.config(.mac_ip);
    var buf: [128]u8 = undefined;
    var orig: [128]u8 = undefined;
    const frame = testing.build(&buf, .{ .tos = 0x20 });
    @memcpy(orig[0..frame.len], frame);
    rewrite(&cfg, frame, classify(&cfg, frame));
    try t.expectEqualSlices(u8, orig[6..12], frame[0..6]);
    try t.expectEqualSlices(u8, orig[26..30], frame[30..34]);
    try t.expectEqualSlices(u8, orig[30..34], frame[26..30]);
    try t.expectEqual(@as(u8, 0x21), frame[15]);
    try t.expectEqual(testing.ipChecksum(frame[14..34]), be16(frame, 24));
    try t.expectEqual(testing.udpChecksum(frame, 14, 34, false), be16(frame, 40));
    try t.expectEqualSlices(u8, orig[34..frame.len], frame[34..]); // ports, payload untouched
    try t.expectEqualSlices(u8, orig[16..24], frame[16..24]); // length, id, flags, ttl, proto
}

test "without the TOS toggle mac-ip leaves TOS and the IPv4 checksum alone" {
    var cfg = testing.config(.mac_ip);
    cfg.tos_toggle = 0;
    var buf: [128]u8 = undefined;
    var orig: [128]u8 = undefined;
    const frame = testing.build(&buf, .{ .tos = 0x20 });
    @memcpy(orig[0..frame.len], frame);
    rewrite(&cfg, frame, classify(&cfg, frame));
    try t.expectEqual(@as(u8, 0x20), frame[15]);
    try t.expectEqualSlices(u8, orig[24..26], frame[24..26]);
}

test "all mode also swaps UDP ports, with options, VLAN and IPv6" {
    const cfg = testing.config(.all);
    var buf: [160]u8 = undefined;
    var orig: [160]u8 = undefined;
    for ([_]testing.FrameSpec{ .{ .ihl = 6 }, .{ .vlan = 42 }, .{ .ipv6 = true, .size = 90 } }) |spec| {
        const frame = testing.build(&buf, spec);
        @memcpy(orig[0..frame.len], frame);
        const p = classify(&cfg, frame);
        rewrite(&cfg, frame, p);
        const l4 = p.l4;
        try t.expectEqualSlices(u8, orig[l4 .. l4 + 2], frame[l4 + 2 .. l4 + 4]);
        try t.expectEqualSlices(u8, orig[l4 + 2 .. l4 + 4], frame[l4 .. l4 + 4 - 2]);
        try t.expectEqual(testing.udpChecksum(frame, p.l3, l4, p.ipv6), be16(frame, l4 + 6));
        try t.expectEqualSlices(u8, orig[l4 + 4 .. frame.len], frame[l4 + 4 ..]);
        if (p.ipv6) {
            try t.expectEqualSlices(u8, orig[p.l3 + 8 .. p.l3 + 24], frame[p.l3 + 24 .. p.l3 + 40]);
            try t.expectEqualSlices(u8, orig[p.l3 .. p.l3 + 8], frame[p.l3 .. p.l3 + 8]); // no TOS toggle on IPv6
        } else {
            try t.expectEqual(testing.ipChecksum(frame[p.l3..p.l4]), be16(frame, p.l3 + 10));
        }
        if (spec.vlan != null) try t.expectEqualSlices(u8, orig[12..16], frame[12..16]);
    }
}

test "a zero UDP checksum stays zero" {
    const cfg = testing.config(.all);
    var buf: [128]u8 = undefined;
    const frame = testing.build(&buf, .{ .udp_checksum = false });
    rewrite(&cfg, frame, classify(&cfg, frame));
    try t.expectEqual(@as(u16, 0), be16(frame, 40));
}

test "reflecting a reflection back restores the original frame except TOS" {
    var cfg = testing.config(.all);
    cfg.tos_toggle = 0;
    var buf: [128]u8 = undefined;
    var orig: [128]u8 = undefined;
    const frame = testing.build(&buf, .{});
    @memcpy(orig[0..frame.len], frame);
    rewrite(&cfg, frame, classify(&cfg, frame));
    var back = cfg;
    back.our_mac = testing.peer_mac;
    back.oui_filter = 0;
    back.port = 0; // the reflection's destination port is the sender's source port
    rewrite(&back, frame, classify(&back, frame));
    try t.expectEqualSlices(u8, orig[0..frame.len], frame);
}

test "jumbo frames are reflected" {
    const cfg = testing.config(.all);
    try expectVerdict(&cfg, .{ .size = 9014 }, .reflect);
}

test "checksumAdjust matches a full recomputation for every TOS value" {
    var buf: [128]u8 = undefined;
    for (0..256) |tos| {
        const frame = testing.build(&buf, .{ .tos = @intCast(tos), .ihl = 5 + @as(u8, @intCast(tos % 3)) });
        const l3 = 14;
        const old = be16(frame, l3);
        frame[l3 + 1] ^= 1;
        const adj = checksumAdjust(be16(frame, l3 + 10), old, be16(frame, l3));
        const ihl: usize = frame[l3] & 0xf;
        try t.expectEqual(testing.ipChecksum(frame[l3 .. l3 + ihl * 4]), adj);
    }
}

// Fuzzing: random and mutated frames never crash, never read past the frame (heap copies of exact
// length under the testing allocator), and nothing that breaks a rule is ever accepted.

fn checkInvariants(cfg: *const Config, frame: []const u8) !void {
    const p = classify(cfg, frame);
    if (p.verdict != .reflect) return;
    try t.expect(frame.len >= min_frame);
    try t.expect(std.mem.eql(u8, frame[0..6], &cfg.our_mac));
    try t.expect(frame[6] & 1 == 0);
    try t.expect(!std.mem.eql(u8, frame[6..12], &cfg.our_mac));
    if (cfg.oui_filter != 0) try t.expect(std.mem.eql(u8, frame[6..9], &cfg.oui));
    const l4: usize = p.l4;
    try t.expect(l4 + 8 + 12 <= frame.len or p.signature == .rfc2544 or p.signature == .y1564);
    if (cfg.port != 0) try t.expectEqual(cfg.port, be16(frame, l4 + 2));
    try t.expectEqual(@as(u8, ip_proto_udp), if (p.ipv6) frame[p.l3 + 6] else frame[p.l3 + 9]);
    const st = signatureText(p.signature);
    try t.expectEqualSlices(u8, st.text, frame[l4 + 8 + st.offset ..][0..7]);
    // Rewriting must stay inside the frame and keep its length.
    const copy = try t.allocator.dupe(u8, frame);
    defer t.allocator.free(copy);
    rewrite(cfg, copy, p);
}

fn fuzzOne(cfg: *const Config, input: []const u8) !void {
    const copy = try t.allocator.dupe(u8, input);
    defer t.allocator.free(copy);
    try checkInvariants(cfg, copy);
}

test "fuzz: random bytes and mutations of valid frames" {
    var prng = std.Random.DefaultPrng.init(0x17c0_ffee);
    const rnd = prng.random();
    var buf: [2048]u8 = undefined;
    var work: [2048]u8 = undefined;
    var reflected: usize = 0;
    for (0..20_000) |i| {
        var cfg = testing.config(rnd.enumValue(Mode));
        cfg.oui_filter = rnd.uintLessThan(u8, 2);
        cfg.port = if (rnd.boolean()) 0 else default_port;
        cfg.signatures = rnd.int(u8) & 0x1f;
        const spec = testing.FrameSpec{
            .vlan = if (rnd.boolean()) rnd.int(u16) else null,
            .ipv6 = rnd.uintLessThan(u8, 4) == 0,
            .ihl = 5 + rnd.uintLessThan(u8, 11),
            .signature = signature_text[rnd.uintLessThan(usize, signature_text.len)].text,
            .signature_offset = if (rnd.boolean()) 5 else 0,
            .size = 60 + rnd.uintLessThan(usize, 200),
        };
        const base = testing.build(&buf, spec);
        @memcpy(work[0..base.len], base);
        var len = base.len;
        switch (i % 4) {
            0 => rnd.bytes(work[0..len]), // pure noise
            1 => for (0..1 + rnd.uintLessThan(usize, 4)) |_| {
                work[rnd.uintLessThan(usize, len)] = rnd.int(u8);
            },
            2 => len = rnd.uintLessThan(usize, len + 1), // truncation
            else => {},
        }
        if (classify(&cfg, work[0..len]).verdict == .reflect) reflected += 1;
        try fuzzOne(&cfg, work[0..len]);
    }
    try t.expect(reflected > 1000); // the generator really exercises the accepting paths
}

test "fuzz: std.testing.fuzz entry point" {
    const Ctx = struct {
        fn testOne(_: void, input: []const u8) anyerror!void {
            const cfg = testing.config(.all);
            try fuzzOne(&cfg, input);
        }
    };
    try t.fuzz({}, Ctx.testOne, .{});
}
