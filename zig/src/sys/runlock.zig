//! /run/fastpath: a file per thing one process at a time may hold (a reflector's interface, a lab),
//! flocked while its holder lives. The kernel drops the flock when the holder dies, however it dies,
//! so a file left by a dead process never blocks: the next taker locks it and writes its own record.
//! A holder that exits cleanly removes its file.
const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const diag = @import("diag.zig");
const sys = @import("linux.zig");
const Error = abi.Error;

pub const dir = "/run/fastpath";

/// `dir`/`name`; `name` is one path component.
pub fn path(buf: *[128]u8, name: []const u8) Error![:0]const u8 {
    if (name.len == 0 or std.mem.indexOfScalar(u8, name, '/') != null or std.mem.eql(u8, name, ".") or std.mem.eql(u8, name, ".."))
        return diag.fail(error.InvalidArgument, "'{s}' is not a file name for {s}", .{ name, dir });
    return std.fmt.bufPrintZ(buf, dir ++ "/{s}", .{name}) catch
        diag.fail(error.InvalidArgument, "'{s}' is too long a file name for {s}", .{ name, dir });
}

/// Locks the file at `p` (creating it) without waiting: its descriptor, or null when another
/// process holds it.
pub fn tryLock(p: [:0]const u8) Error!?i32 {
    _ = linux.mkdir(dir, 0o755);
    while (true) {
        const fd: i32 = @intCast(try sys.check(linux.open(p, .{ .ACCMODE = .RDWR, .CREAT = true, .CLOEXEC = true }, 0o644), "opening {s}", .{p}));
        const rc = linux.flock(fd, std.posix.LOCK.EX | std.posix.LOCK.NB);
        if (linux.E.init(rc) == .AGAIN) {
            sys.close(fd);
            return null;
        }
        _ = sys.check(rc, "locking {s}", .{p}) catch |e| {
            sys.close(fd);
            return e;
        };
        // The holder may have removed the file between our open and our flock: a lock on a file no
        // one else finds holds nothing, so lock whatever is at `p` now.
        if (sameFile(fd, p)) return fd;
        sys.close(fd);
    }
}

/// Gives up a lock `tryLock` took; `remove` deletes its file first (while still holding it, so no
/// one else's file is removed).
pub fn unlock(fd: i32, p: [:0]const u8, remove: bool) void {
    if (fd < 0) return;
    if (remove and sameFile(fd, p)) _ = linux.unlink(p);
    sys.close(fd);
}

fn sameFile(fd: i32, p: [:0]const u8) bool {
    var a: linux.Stat = undefined;
    var b: linux.Stat = undefined;
    if (linux.E.init(linux.fstat(fd, &a)) != .SUCCESS) return false;
    if (linux.E.init(linux.fstatat(linux.AT.FDCWD, p, &b, 0)) != .SUCCESS) return false;
    return a.dev == b.dev and a.ino == b.ino;
}

test "a run lock is held by one taker at a time, never blocked by a dead holder's file, and gone after unlock" {
    if (linux.geteuid() != 0) return error.SkipZigTest; // /run/fastpath is root's
    var buf: [128]u8 = undefined;
    const p = try path(&buf, "zig-test.runlock");
    const fd = (try tryLock(p)).?;
    // Another open file description (another process, as flock sees it) is refused.
    try std.testing.expectEqual(@as(?i32, null), try tryLock(p));
    unlock(fd, p, true);
    try std.testing.expect(linux.E.init(linux.access(p, linux.F_OK)) == .NOENT);
    // A file left behind (its holder gone without removing it) is taken over.
    const left = try tryLock(p);
    sys.close(left.?);
    const again = (try tryLock(p)).?;
    unlock(again, p, true);
    try std.testing.expectError(error.InvalidArgument, path(&buf, "../etc"));
}
