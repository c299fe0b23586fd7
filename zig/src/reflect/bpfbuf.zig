//! The buffer formats of macOS /dev/bpf (XNU), which are plain bytes and so are tested here on Linux.
//!
//! A read() returns records: a `struct bpf_hdr` (timestamp as two 32-bit words in 64-bit userland,
//! caplen, datalen, hdrlen), then the frame at `hdrlen`; the next record starts at
//! BPF_WORDALIGN(hdrlen + caplen), 4-byte words on Darwin. With the private BIOCSBATCHWRITE (macOS 14+)
//! one write() carries records in the same format, one per frame.
const std = @import("std");

/// BPF_ALIGNMENT on Darwin is sizeof(int32_t).
pub fn wordAlign(n: usize) usize {
    return (n + 3) & ~@as(usize, 3);
}

/// The bytes of struct bpf_hdr that carry information: 8 (timeval32) + 4 + 4 + 2.
pub const hdr_size = 18;
/// The header length the kernel uses for Ethernet records (BPF_WORDALIGN(18 + 14) - 14), so that the
/// IP header after the 14-byte Ethernet header is word-aligned. Batch writes use the same.
pub const eth_hdrlen: u16 = 18;

pub const Record = struct {
    frame: []u8,
    /// Length on the wire (may exceed frame.len when the capture was cut).
    wire_len: u32,
    ts_ns: u64,
};

/// Walks the records of one read() buffer, with bounds checks: a record that claims more bytes than
/// the buffer holds, or a header length below the header's own size, ends the walk (`malformed`).
pub const Walker = struct {
    buf: []u8,
    off: usize = 0,
    malformed: bool = false,

    pub fn next(w: *Walker) ?Record {
        if (w.off + hdr_size > w.buf.len) {
            if (w.off < w.buf.len) w.malformed = true; // a partial header at the end
            return null;
        }
        const h = w.buf[w.off..];
        const sec: u32 = std.mem.readInt(u32, h[0..4], .little);
        const usec: u32 = std.mem.readInt(u32, h[4..8], .little);
        const caplen = std.mem.readInt(u32, h[8..12], .little);
        const datalen = std.mem.readInt(u32, h[12..16], .little);
        const hdrlen = std.mem.readInt(u16, h[16..18], .little);
        if (hdrlen < hdr_size or w.off + hdrlen + @as(usize, caplen) > w.buf.len) {
            w.malformed = true;
            return null;
        }
        const start = w.off + hdrlen;
        const rec = Record{
            .frame = w.buf[start .. start + caplen],
            .wire_len = datalen,
            .ts_ns = @as(u64, sec) * std.time.ns_per_s + @as(u64, usec) * std.time.ns_per_us,
        };
        w.off += wordAlign(@as(usize, hdrlen) + caplen);
        return rec;
    }
};

/// Builds one BIOCSBATCHWRITE buffer: each frame behind a bpf_hdr, word-aligned. Preallocated; `add`
/// says false when the frame does not fit (flush, then add again).
pub const BatchWriter = struct {
    buf: []u8,
    len: usize = 0,
    frames: u32 = 0,

    pub fn add(b: *BatchWriter, frame: []const u8) bool {
        return b.addPieces(frame, &.{});
    }

    /// One frame given as two pieces (the probe's stamped head and its template's tail).
    pub fn addPieces(b: *BatchWriter, head: []const u8, tail: []const u8) bool {
        const len = head.len + tail.len;
        const need = wordAlign(eth_hdrlen + len);
        if (b.len + need > b.buf.len) return false;
        const h = b.buf[b.len..];
        @memset(h[0..8], 0); // timestamp: ignored on write
        std.mem.writeInt(u32, h[8..12], @intCast(len), .little);
        std.mem.writeInt(u32, h[12..16], @intCast(len), .little);
        std.mem.writeInt(u16, h[16..18], eth_hdrlen, .little);
        @memcpy(h[eth_hdrlen..][0..head.len], head);
        @memcpy(h[eth_hdrlen + head.len ..][0..tail.len], tail);
        @memset(h[eth_hdrlen + len .. need], 0);
        b.len += need;
        b.frames += 1;
        return true;
    }

    pub fn bytes(b: *const BatchWriter) []const u8 {
        return b.buf[0..b.len];
    }

    pub fn reset(b: *BatchWriter) void {
        b.len = 0;
        b.frames = 0;
    }
};

// ---------------------------------------------------------------------------------------------

const t = std.testing;

/// Appends a record the way XNU's read side lays it out.
fn putRecord(buf: []u8, off: usize, frame: []const u8, hdrlen: u16, caplen_override: ?u32) usize {
    const caplen: u32 = caplen_override orelse @intCast(frame.len);
    std.mem.writeInt(u32, buf[off..][0..4], 1700000000, .little);
    std.mem.writeInt(u32, buf[off + 4 ..][0..4], 250000, .little);
    std.mem.writeInt(u32, buf[off + 8 ..][0..4], caplen, .little);
    std.mem.writeInt(u32, buf[off + 12 ..][0..4], @intCast(frame.len), .little);
    std.mem.writeInt(u16, buf[off + 16 ..][0..2], hdrlen, .little);
    @memcpy(buf[off + hdrlen ..][0..frame.len], frame);
    return off + wordAlign(hdrlen + @as(usize, caplen));
}

test "the walker visits every record at BPF_WORDALIGN(hdrlen + caplen), aligned or not" {
    var buf = [_]u8{0xAA} ** 4096;
    var frames: [5][]const u8 = undefined;
    var storage: [5][200]u8 = undefined;
    const lens = [_]usize{ 60, 61, 62, 63, 64 }; // every remainder mod 4
    var off: usize = 0;
    for (lens, 0..) |n, i| {
        for (0..n) |j| storage[i][j] = @truncate(i * 31 + j);
        frames[i] = storage[i][0..n];
        off = putRecord(&buf, off, frames[i], eth_hdrlen, null);
    }
    var w = Walker{ .buf = buf[0..off] };
    var i: usize = 0;
    while (w.next()) |r| : (i += 1) {
        try t.expectEqualSlices(u8, frames[i], r.frame);
        try t.expectEqual(@as(u32, @intCast(lens[i])), r.wire_len);
        try t.expectEqual(@as(u64, 1700000000 * std.time.ns_per_s + 250 * std.time.ns_per_ms), r.ts_ns);
    }
    try t.expectEqual(lens.len, i);
    try t.expect(!w.malformed);
}

test "a truncated last record ends the walk without reading past the buffer" {
    var buf: [512]u8 = undefined;
    const frame = [_]u8{7} ** 100;
    var off = putRecord(&buf, 0, &frame, eth_hdrlen, null);
    off = putRecord(&buf, off, &frame, eth_hdrlen, null);
    // The buffer ends 10 bytes into the second record's frame; a heap copy of exactly that length
    // makes any overread visible to the testing allocator.
    const cut = off - 100 + 10 - 2;
    const copy = try t.allocator.dupe(u8, buf[0..cut]);
    defer t.allocator.free(copy);
    var w = Walker{ .buf = copy };
    try t.expect(w.next() != null);
    try t.expect(w.next() == null);
    try t.expect(w.malformed);
    // And a buffer that ends inside a header.
    var w2 = Walker{ .buf = copy[0 .. wordAlign(eth_hdrlen + 100) + 7] };
    try t.expect(w2.next() != null);
    try t.expect(w2.next() == null);
    try t.expect(w2.malformed);
}

test "a zero-length capture is a record with an empty frame" {
    var buf: [256]u8 = undefined;
    var off = putRecord(&buf, 0, &.{}, eth_hdrlen, null);
    off = putRecord(&buf, off, "abcd", eth_hdrlen, null);
    var w = Walker{ .buf = buf[0..off] };
    try t.expectEqual(@as(usize, 0), w.next().?.frame.len);
    try t.expectEqualStrings("abcd", w.next().?.frame);
    try t.expect(w.next() == null and !w.malformed);
}

test "a garbage bh_hdrlen ends the walk" {
    var buf: [256]u8 = undefined;
    for ([_]u16{ 0, 5, 17, 60000 }) |bad| {
        const off = putRecord(&buf, 0, "frame", eth_hdrlen, null);
        std.mem.writeInt(u16, buf[16..18], bad, .little);
        var w = Walker{ .buf = buf[0..off] };
        try t.expect(w.next() == null);
        try t.expect(w.malformed);
    }
}

test "a caplen past the buffer ends the walk" {
    var buf: [256]u8 = undefined;
    const off = putRecord(&buf, 0, "frame", eth_hdrlen, 5000);
    var w = Walker{ .buf = buf[0..@min(off, buf.len)] };
    try t.expect(w.next() == null);
    try t.expect(w.malformed);
}

test "the batch encoder writes records the walker reads back, word-aligned, and refuses overflow" {
    var out: [340]u8 = undefined; // records of 80 + 80 + 84 + 84 = 328 bytes
    var b = BatchWriter{ .buf = &out };
    const frames = [_][]const u8{ "a" ** 60, "b" ** 61, "c" ** 63, "d" ** 64 };
    for (frames) |f| try t.expect(b.add(f));
    try t.expectEqual(@as(u32, 4), b.frames);
    try t.expectEqual(@as(usize, 0), b.len % 4);
    try t.expect(!b.add("e" ** 64)); // a fifth would need 84 more
    var w = Walker{ .buf = @constCast(b.bytes()) };
    for (frames) |f| try t.expectEqualSlices(u8, f, w.next().?.frame);
    try t.expect(w.next() == null and !w.malformed);
    b.reset();
    try t.expectEqual(@as(usize, 0), b.len);
}

test "a frame given in two pieces is encoded as one record" {
    var out: [256]u8 = undefined;
    var b = BatchWriter{ .buf = &out };
    try t.expect(b.addPieces("head-", "and-tail" ** 8));
    try t.expect(b.addPieces("x" ** 61, &.{}));
    var w = Walker{ .buf = @constCast(b.bytes()) };
    try t.expectEqualSlices(u8, "head-" ++ "and-tail" ** 8, w.next().?.frame);
    try t.expectEqualSlices(u8, "x" ** 61, w.next().?.frame);
    try t.expect(w.next() == null and !w.malformed);
}
