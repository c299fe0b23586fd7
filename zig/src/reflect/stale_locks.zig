//! Run-lock files no reflector holds. A reflector's lock is /run/fastpath/net<netns inode>.<ifname>.lock
//! (reflector.zig); one that could not clean up (SIGKILL, a crash, a script interrupted before it
//! closed its Reflector) leaves its file. Such a file blocks nothing (the kernel dropped its flock),
//! but once its namespace is deleted nothing takes it again, and a later namespace may get the same
//! inode. A starting reflector removes every reflector lock file no one holds, each only while it
//! holds the file's lock itself (runlock.tryLock/unlock: a file someone holds, or takes meanwhile, is
//! never removed). Other files in /run/fastpath (lab owner records, stats sockets) are not touched.
const std = @import("std");
const runlock = @import("../sys/runlock.zig");

/// Removes the reflector lock files no one holds (see above).
pub fn remove() void {
    var dir = std.fs.openDirAbsolute(runlock.dir, .{ .iterate = true }) catch return;
    defer dir.close();
    var it = dir.iterate();
    while (it.next() catch null) |e| {
        _ = lockId(e.name) orelse continue;
        var buf: [128]u8 = undefined;
        const p = runlock.path(&buf, e.name) catch continue;
        const fd = (runlock.tryLock(p) catch continue) orelse continue;
        runlock.unlock(fd, p, true);
    }
}

/// The namespace inode of a reflector's lock file name "net<INODE>.<ifname>.lock", else null.
pub fn lockId(name: []const u8) ?u64 {
    if (!std.mem.startsWith(u8, name, "net") or !std.mem.endsWith(u8, name, ".lock")) return null;
    const rest = name[3 .. name.len - ".lock".len];
    const dot = std.mem.indexOfScalar(u8, rest, '.') orelse return null;
    if (dot == 0 or dot + 1 >= rest.len) return null;
    return std.fmt.parseInt(u64, rest[0..dot], 10) catch null;
}

test "reflector lock names give their namespace inode; other names are not touched" {
    try std.testing.expectEqual(@as(?u64, 4026531840), lockId("net4026531840.eth0.lock"));
    try std.testing.expectEqual(@as(?u64, 4026531840), lockId("net4026531840.a.b.lock"));
    for ([_][]const u8{ "net.eth0.lock", "net4026531840.lock", "net4026531840..lock", "netx.eth0.lock", "lab-fp.sock", "net12.eth0.sock", "fp.eth0.lock" }) |n|
        try std.testing.expectEqual(@as(?u64, null), lockId(n));
}

test "an unheld lock file is removed, whether its namespace is gone or lives; a held one and other files stay" {
    const linux = std.os.linux;
    if (linux.geteuid() != 0) return error.SkipZigTest; // /run/fastpath is root's
    const sys = @import("../sys/linux.zig");
    const here = try sys.Netns.current();
    // Namespace inodes are from 0xF0000000 up: 12345 is no namespace's.
    var b1: [128]u8 = undefined;
    var b2: [128]u8 = undefined;
    var b3: [128]u8 = undefined;
    var b4: [128]u8 = undefined;
    const gone = try runlock.path(&b1, "net12345.zigtest-gone0.lock");
    const held = try runlock.path(&b2, "net12345.zigtest-held0.lock");
    var name_buf: [64]u8 = undefined;
    const live = try runlock.path(&b3, try std.fmt.bufPrint(&name_buf, "net{d}.zigtest-live0.lock", .{here}));
    const other = try runlock.path(&b4, "lab.zigtest.owner");
    sys.close((try runlock.tryLock(gone)).?);
    sys.close((try runlock.tryLock(live)).?);
    sys.close((try runlock.tryLock(other)).?);
    const held_fd = (try runlock.tryLock(held)).?;
    remove();
    const exists = struct {
        fn f(p: [:0]const u8) bool {
            return linux.E.init(linux.access(p, linux.F_OK)) == .SUCCESS;
        }
    }.f;
    const gone_left = exists(gone);
    const live_left = exists(live);
    const held_left = exists(held);
    const other_left = exists(other);
    runlock.unlock(held_fd, held, true);
    for ([_][:0]const u8{ live, gone, other }) |p| _ = linux.unlink(p);
    try std.testing.expect(!gone_left);
    try std.testing.expect(!live_left);
    try std.testing.expect(held_left);
    try std.testing.expect(other_left);
}
