//! Internet checksum pieces (RFC 1071) shared by the probe's frame builder and the rulebook's tests.
const std = @import("std");

/// Adds `data` as big-endian 16-bit words to `initial` (an odd last byte is padded with zero).
pub fn sum16(data: []const u8, initial: u32) u32 {
    var sum = initial;
    var i: usize = 0;
    while (i + 1 < data.len) : (i += 2) sum += std.mem.readInt(u16, data[i..][0..2], .big);
    if (i < data.len) sum += @as(u32, data[i]) << 8;
    return sum;
}

/// Folds the carries and complements: the value to store in a checksum field.
pub fn finish(sum_in: u32) u16 {
    var sum = sum_in;
    while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
    return ~@as(u16, @truncate(sum));
}

/// The IPv4 header checksum of `hdr`, computed as if its checksum field were zero.
pub fn ipv4Header(hdr: []const u8) u16 {
    return finish(sum16(hdr[12..], sum16(hdr[0..10], 0)));
}

test "the checksum of a header with its checksum filled in verifies to zero" {
    var hdr = [_]u8{ 0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1 };
    std.mem.writeInt(u16, hdr[10..12], ipv4Header(&hdr), .big);
    try std.testing.expectEqual(@as(u16, 0), finish(sum16(&hdr, 0)));
    try std.testing.expectEqual(std.mem.readInt(u16, hdr[10..12], .big), ipv4Header(&hdr));
}
