//! Run-lock files of network namespaces that are gone. A reflector's lock is
//! /run/fastpath/net<netns inode>.<ifname>.lock (reflector.zig); a reflector that could not clean up
//! (SIGKILL, a crash) leaves its file, and once that namespace is deleted nothing ever takes the file
//! again. A starting reflector removes such files, conservatively:
//!   - only names of that form whose inode no namespace in use has: none of any process's threads
//!     (/proc/PID/task/TID/ns/net), of any open descriptor (/proc/PID/fd), or of any mount (an
//!     `ip netns add` bind mount, in the mountinfo of every mount namespace);
//!   - nothing at all when /proc cannot be read (it cannot tell);
//!   - and each file only while it holds the file's lock, so a file someone holds is never removed
//!     (a process it may not inspect is passed over: see collectPid).
const std = @import("std");
const runlock = @import("../sys/runlock.zig");

const Ids = std.AutoHashMap(u64, void);

/// Removes the lock files of gone namespaces (see above); anything unexpected: nothing is removed.
pub fn remove(gpa: std.mem.Allocator) void {
    var live = Ids.init(gpa);
    defer live.deinit();
    collectLive(gpa, &live) catch return;
    var dir = std.fs.openDirAbsolute(runlock.dir, .{ .iterate = true }) catch return;
    defer dir.close();
    var it = dir.iterate();
    while (it.next() catch null) |e| {
        const id = lockId(e.name) orelse continue;
        if (live.contains(id)) continue;
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

const CannotTell = error{CannotTell};

/// Every network namespace some thread, descriptor or mount holds; CannotTell when /proc is unreadable.
fn collectLive(gpa: std.mem.Allocator, live: *Ids) CannotTell!void {
    var mnts = Ids.init(gpa);
    defer mnts.deinit();
    var proc = std.fs.openDirAbsolute("/proc", .{ .iterate = true }) catch return error.CannotTell;
    defer proc.close();
    var it = proc.iterate();
    while (it.next() catch return error.CannotTell) |e| {
        const pid = std.fmt.parseInt(u32, e.name, 10) catch continue;
        collectPid(gpa, proc, pid, live, &mnts) catch |err| switch (err) {
            error.Gone => continue,
            error.CannotTell => return error.CannotTell,
        };
    }
}

/// One process's namespaces. Gone: it exited meanwhile, or we may not inspect it (it has capabilities
/// we lack); skipping it can at worst leave a namespace only it holds looking gone, and that
/// namespace's lock file is removed only when no one holds its lock: a harmless removal.
fn collectPid(gpa: std.mem.Allocator, proc: std.fs.Dir, pid: u32, live: *Ids, mnts: *Ids) (CannotTell || error{Gone})!void {
    var buf: [64]u8 = undefined;
    // Threads: each may have entered a namespace of its own (setns).
    var tasks = try openOf(proc, pid, "task");
    defer tasks.close();
    var tit = tasks.iterate();
    while (tit.next() catch null) |t| {
        var tbuf: [64]u8 = undefined;
        const p = std.fmt.bufPrint(&tbuf, "{s}/ns/net", .{t.name}) catch continue;
        const st = tasks.statFile(p) catch |err| switch (err) {
            error.FileNotFound => continue, // that thread exited
            else => return goneOr(err),
        };
        try add(live, st.inode);
    }
    // Descriptors: an open /proc/PID/ns/net or /run/netns/NAME keeps a namespace.
    var fds = try openOf(proc, pid, "fd");
    defer fds.close();
    var fit = fds.iterate();
    while (fit.next() catch null) |f| {
        var lbuf: [64]u8 = undefined;
        const target = fds.readLink(f.name, &lbuf) catch continue; // closed meanwhile, or longer than "net:[N]"
        if (nsId(target)) |id| try add(live, id);
    }
    // Mounts (`ip netns add` binds a namespace to /run/netns/NAME): once per mount namespace.
    const mnt = proc.statFile(std.fmt.bufPrint(&buf, "{d}/ns/mnt", .{pid}) catch unreachable) catch |err| return goneOr(err);
    if (mnts.contains(mnt.inode)) return;
    mnts.put(mnt.inode, {}) catch return error.CannotTell;
    const info = proc.readFileAlloc(gpa, std.fmt.bufPrint(&buf, "{d}/mountinfo", .{pid}) catch unreachable, 64 << 20) catch |err|
        return goneOr(err);
    defer gpa.free(info);
    var words = std.mem.tokenizeAny(u8, info, " \n");
    while (words.next()) |w| if (nsId(w)) |id| try add(live, id);
}

/// /proc/PID/`what`, a directory, to list.
fn openOf(proc: std.fs.Dir, pid: u32, comptime what: []const u8) (CannotTell || error{Gone})!std.fs.Dir {
    var buf: [64]u8 = undefined;
    const p = std.fmt.bufPrint(&buf, "{d}/" ++ what, .{pid}) catch unreachable;
    return proc.openDir(p, .{ .iterate = true }) catch |err| goneOr(err);
}

fn goneOr(err: anyerror) (CannotTell || error{Gone}) {
    return switch (err) {
        error.FileNotFound, error.AccessDenied, error.PermissionDenied => error.Gone,
        else => error.CannotTell,
    };
}

fn add(live: *Ids, id: u64) CannotTell!void {
    live.put(id, {}) catch return error.CannotTell;
}

/// "net:[4026531840]" → 4026531840.
fn nsId(s: []const u8) ?u64 {
    if (!std.mem.startsWith(u8, s, "net:[") or !std.mem.endsWith(u8, s, "]")) return null;
    return std.fmt.parseInt(u64, s[5 .. s.len - 1], 10) catch null;
}

test "reflector lock names give their namespace inode; other names are not touched" {
    try std.testing.expectEqual(@as(?u64, 4026531840), lockId("net4026531840.eth0.lock"));
    try std.testing.expectEqual(@as(?u64, 4026531840), lockId("net4026531840.a.b.lock"));
    for ([_][]const u8{ "net.eth0.lock", "net4026531840.lock", "net4026531840..lock", "netx.eth0.lock", "lab-fp.sock", "net12.eth0.sock", "fp.eth0.lock" }) |n|
        try std.testing.expectEqual(@as(?u64, null), lockId(n));
    try std.testing.expectEqual(@as(?u64, 7), nsId("net:[7]"));
    try std.testing.expectEqual(@as(?u64, null), nsId("mnt:[7]"));
}

test "a gone namespace's unheld lock file is removed; a live namespace's, and a held one, stay" {
    const linux = std.os.linux;
    if (linux.geteuid() != 0) return error.SkipZigTest; // /run/fastpath is root's
    const sys = @import("../sys/linux.zig");
    const here = try sys.Netns.current();
    // Namespace inodes are from 0xF0000000 up: 12345 is no namespace's.
    var b1: [128]u8 = undefined;
    var b2: [128]u8 = undefined;
    var b3: [128]u8 = undefined;
    const gone = try runlock.path(&b1, "net12345.zigtest-gone0.lock");
    const held = try runlock.path(&b2, "net12345.zigtest-held0.lock");
    var name_buf: [64]u8 = undefined;
    const live = try runlock.path(&b3, try std.fmt.bufPrint(&name_buf, "net{d}.zigtest-live0.lock", .{here}));
    sys.close((try runlock.tryLock(gone)).?);
    sys.close((try runlock.tryLock(live)).?);
    const held_fd = (try runlock.tryLock(held)).?;
    remove(std.testing.allocator);
    const exists = struct {
        fn f(p: [:0]const u8) bool {
            return linux.E.init(linux.access(p, linux.F_OK)) == .SUCCESS;
        }
    }.f;
    const gone_left = exists(gone);
    const live_left = exists(live);
    const held_left = exists(held);
    runlock.unlock(held_fd, held, true);
    if (live_left) _ = linux.unlink(live);
    if (gone_left) _ = linux.unlink(gone);
    try std.testing.expect(!gone_left);
    try std.testing.expect(live_left);
    try std.testing.expect(held_left);
}
