//! One table of test frames — valid ones in every shape, and one of each way to be refused — shared
//! by every implementation of the rulebook: the Zig core, the XDP program (BPF_PROG_TEST_RUN) and the
//! classic BPF filter. Each implementation's test runs the whole table under every configuration.
const std = @import("std");
const abi = @import("../abi.zig");
const ito = @import("ito.zig");

const FrameSpec = ito.testing.FrameSpec;

pub const Edit = union(enum) {
    none,
    /// Keep only the first n bytes.
    truncate: usize,
    /// Set one byte.
    poke: struct { at: usize, value: u8 },
};

pub const Case = struct {
    name: []const u8,
    spec: FrameSpec = .{},
    edit: Edit = .none,
};

const other_vendor = [6]u8{ 0x02, 0xAA, 0xBB, 0x01, 0x02, 0x03 };

pub const cases = [_]Case{
    .{ .name = "DATA:OT, 64 bytes" },
    .{ .name = "PROBEOT", .spec = .{ .signature = "PROBEOT" } },
    .{ .name = "LATENCY", .spec = .{ .signature = "LATENCY" } },
    .{ .name = "RFC2544 at offset 0", .spec = .{ .signature = "RFC2544", .signature_offset = 0, .src = other_vendor } },
    .{ .name = "Y.1564 at offset 0", .spec = .{ .signature = "Y.1564 ", .signature_offset = 0, .src = other_vendor } },
    .{ .name = "1518 bytes", .spec = .{ .size = 1514 } },
    .{ .name = "IPv4 options (IHL 6)", .spec = .{ .ihl = 6 } },
    .{ .name = "IPv4 options (IHL 15)", .spec = .{ .ihl = 15, .size = 120 } },
    .{ .name = "802.1Q tag", .spec = .{ .vlan = 100 } },
    .{ .name = "802.1ad tag", .spec = .{ .vlan = 7, .tpid = 0x88A8 } },
    .{ .name = "QinQ (802.1ad outside 802.1Q)", .spec = .{ .vlan = 20, .tpid = 0x88A8, .inner_vlan = 100 } },
    .{ .name = "802.1Q in 802.1Q", .spec = .{ .vlan = 20, .inner_vlan = 100, .ipv6 = true, .size = 88 } },
    .{ .name = "three VLAN tags", .spec = .{ .vlan = 20, .tpid = 0x88A8, .inner_vlan = 100, .inner_tpid = 0x88A8, .size = 68 }, .edit = .{ .poke = .{ .at = 20, .value = 0x81 } } },
    .{ .name = "IPv6", .spec = .{ .ipv6 = true, .size = 80 } },
    .{ .name = "IPv6 with a VLAN tag", .spec = .{ .ipv6 = true, .vlan = 9, .size = 84 } },
    .{ .name = "TOS set", .spec = .{ .tos = 0xb8 } },
    .{ .name = "zero UDP checksum", .spec = .{ .udp_checksum = false } },
    .{ .name = "another vendor's OUI", .spec = .{ .src = other_vendor } },
    .{ .name = "another port", .spec = .{ .dst_port = 3843 } },
    .{ .name = "broadcast", .spec = .{ .dst = .{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff } } },
    .{ .name = "IPv4 multicast", .spec = .{ .dst = .{ 0x01, 0x00, 0x5e, 0, 0, 1 } } },
    .{ .name = "addressed to another MAC", .spec = .{ .dst = .{ 0x02, 0, 0, 0, 0, 0x99 } } },
    .{ .name = "from our own MAC", .spec = .{ .src = ito.testing.our_mac } },
    .{ .name = "multicast source", .spec = .{ .src = .{ 0x01, 0xC0, 0x17, 1, 2, 3 } } },
    .{ .name = "TCP", .spec = .{ .proto = 6 } },
    .{ .name = "IPv6 TCP", .spec = .{ .ipv6 = true, .proto = 6, .size = 80 } },
    .{ .name = "ARP", .edit = .{ .poke = .{ .at = 13, .value = 0x06 } } },
    .{ .name = "no signature", .spec = .{ .signature = "NOTITO!" } },
    .{ .name = "signature one byte late", .spec = .{ .signature_offset = 6 } },
    .{ .name = "IPv4 version 5", .edit = .{ .poke = .{ .at = 14, .value = 0x55 } } },
    .{ .name = "IHL 4", .edit = .{ .poke = .{ .at = 14, .value = 0x44 } } },
    .{ .name = "IHL past the end", .edit = .{ .poke = .{ .at = 14, .value = 0x4f } } },
    .{ .name = "later fragment", .edit = .{ .poke = .{ .at = 21, .value = 0x10 } } },
    .{ .name = "cut inside the Ethernet header", .edit = .{ .truncate = 13 } },
    .{ .name = "cut inside the VLAN tag", .spec = .{ .vlan = 1 }, .edit = .{ .truncate = 17 } },
    .{ .name = "cut inside the IPv4 header", .edit = .{ .truncate = 30 } },
    .{ .name = "cut inside the UDP header", .edit = .{ .truncate = 40 } },
    .{ .name = "cut inside the signature", .edit = .{ .truncate = 50 } },
    .{ .name = "cut right after the signature", .edit = .{ .truncate = 54 } },
    .{ .name = "cut inside the IPv6 header", .spec = .{ .ipv6 = true, .size = 80 }, .edit = .{ .truncate = 50 } },
};

pub const Config = struct { name: []const u8, cfg: abi.ItoConfig };

pub fn configs() [7]Config {
    var out: [7]Config = undefined;
    out[0] = .{ .name = "mac", .cfg = ito.testing.config(.mac) };
    out[1] = .{ .name = "mac-ip (netally, TOS toggle)", .cfg = ito.testing.config(.mac_ip) };
    out[2] = .{ .name = "all", .cfg = ito.testing.config(.all) };
    var plain = ito.testing.config(.all);
    plain.tos_toggle = 0;
    plain.oui_filter = 0;
    plain.port = 0;
    out[3] = .{ .name = "all, any OUI, any port, no TOS toggle", .cfg = plain };
    var rfc = ito.profileConfig(.rfc2544);
    rfc.our_mac = ito.testing.our_mac;
    out[4] = .{ .name = "rfc2544", .cfg = rfc };
    var y = ito.profileConfig(.y1564);
    y.our_mac = ito.testing.our_mac;
    out[5] = .{ .name = "y1564", .cfg = y };
    var oui = ito.testing.config(.mac_ip);
    oui.oui = .{ 0x02, 0xAA, 0xBB };
    out[6] = .{ .name = "OUI 02:aa:bb", .cfg = oui };
    return out;
}

/// Builds case `c` into `buf`.
pub fn build(buf: []u8, c: Case) []u8 {
    var frame = ito.testing.build(buf, c.spec);
    switch (c.edit) {
        .none => {},
        .truncate => |n| frame = frame[0..@min(n, frame.len)],
        .poke => |p| frame[p.at] = p.value,
    }
    return frame;
}

test "the table covers every verdict under the default configuration" {
    var seen = [_]bool{false} ** std.meta.fields(abi.Verdict).len;
    const cfgs = configs();
    var buf: [2048]u8 = undefined;
    for (cases) |c| seen[@intFromEnum(ito.classify(&cfgs[1].cfg, build(&buf, c)).verdict)] = true;
    for (seen, 0..) |s, i| {
        if (!s) std.debug.print("no case ends as {s}\n", .{@tagName(@as(abi.Verdict, @enumFromInt(i)))});
        try std.testing.expect(s);
    }
}
