//! The message behind the last failed call on this thread, for `fp_last_error()`.
const std = @import("std");
const abi = @import("../abi.zig");

threadlocal var buf: [512:0]u8 = .{0} ** 512;

/// Records a one-line message and returns `err`, so call sites read `return diag.fail(...)`.
pub fn fail(err: abi.Error, comptime fmt: []const u8, args: anytype) abi.Error {
    set(fmt, args);
    return err;
}

pub fn set(comptime fmt: []const u8, args: anytype) void {
    const msg = std.fmt.bufPrint(buf[0 .. buf.len - 1], fmt, args) catch blk: {
        const ell = "...";
        @memcpy(buf[buf.len - 1 - ell.len .. buf.len - 1], ell);
        break :blk buf[0 .. buf.len - 1];
    };
    buf[msg.len] = 0;
}

pub fn clear() void {
    buf[0] = 0;
}

pub fn message() [*:0]const u8 {
    return &buf;
}

/// Copies the current message into a caller-owned buffer (for errors that outlive the thread).
pub fn copyTo(dst: []u8) void {
    const msg = std.mem.sliceTo(&buf, 0);
    const n = @min(msg.len, dst.len - 1);
    @memcpy(dst[0..n], msg[0..n]);
    dst[n] = 0;
}

test "fail keeps the message and truncates what does not fit" {
    const e = fail(error.InvalidArgument, "bad {s}", .{"thing"});
    try std.testing.expectEqual(error.InvalidArgument, e);
    try std.testing.expectEqualStrings("bad thing", std.mem.span(message()));
    set("{s}", .{"x" ** 600});
    try std.testing.expect(std.mem.endsWith(u8, std.mem.span(message()), "..."));
}
