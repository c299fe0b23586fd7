//! Who is who on this machine, for the detectors: the game, the compositor that forwards input to
//! it, the audio server and its clients. Read from /proc when a process execs (the detectors send
//! every exec and exit) and every few seconds; no polling of /proc for new processes.
//!
//! The game, by this rule (shown with its reason in `fastpath sched status`):
//!  1. `--game NAME|PID` wins;
//!  2. otherwise a process whose environment has Steam's `SteamGameId=` (not 0) or `STEAM_GAME=`
//!     (score 100), or whose command line runs a Windows `.exe` under Proton/Wine other than Wine's
//!     own infrastructure (`wineserver`, `services.exe`, `explorer.exe`, ...) (score 80);
//!  3. among those, the highest score, then the busiest thread group (CPU time in the last second);
//!  4. an incumbent stays until a challenger has won for `switch_ms` in a row.
const std = @import("std");
const linux = std.os.linux;

pub const Reason = enum(u8) { none = 0, named = 1, steam = 2, wine_exe = 3 };

/// Wine's own processes: a `.exe` command line that is not the game.
const wine_infrastructure = [_][]const u8{
    "wineserver",         "wine-preloader", "wine64-preloader", "services.exe",        "explorer.exe",
    "winedevice.exe",     "plugplay.exe",   "svchost.exe",      "rpcss.exe",           "tabtip.exe",
    "conhost.exe",        "start.exe",      "rundll32.exe",     "winemenubuilder.exe", "steam.exe",
    "steamwebhelper.exe", "wineboot.exe",   "cmd.exe",          "regsvr32.exe",        "iexplore.exe",
};

/// Compositors and X servers: they read evdev and forward input to the game.
pub const compositor_names = [_][]const u8{
    "Xorg",     "Xwayland",  "gnome-shell",  "kwin_wayland", "kwin_x11", "sway",    "weston",
    "Hyprland", "gamescope", "gamescope-wl", "mutter",       "labwc",    "wayfire", "river",
    "niri",     "cage",      "X",
};

/// Audio servers: their real-time threads wake the clients that feed them.
pub const audio_server_names = [_][]const u8{ "pipewire", "pipewire-pulse", "pulseaudio", "jackd", "jackdbus" };

/// Whether a NUL-separated environment names a Steam game (SteamGameId other than 0, or STEAM_GAME).
pub fn steamGame(environ: []const u8) bool {
    var it = std.mem.splitScalar(u8, environ, 0);
    while (it.next()) |kv| {
        if (std.mem.startsWith(u8, kv, "SteamGameId=")) {
            const v = kv["SteamGameId=".len..];
            if (v.len > 0 and !std.mem.eql(u8, v, "0")) return true;
        }
        if (std.mem.startsWith(u8, kv, "STEAM_GAME=") and kv.len > "STEAM_GAME=".len) return true;
    }
    return false;
}

/// The base name of a Windows or Unix path (`C:\Games\Foo\foo.exe`, `/usr/bin/wine`).
fn baseName(path: []const u8) []const u8 {
    const cut = std.mem.lastIndexOfAny(u8, path, "/\\") orelse return path;
    return path[cut + 1 ..];
}

/// Whether a command line's first argument runs a Windows program that is not Wine's own.
pub fn wineGame(argv0: []const u8) bool {
    const base = baseName(argv0);
    if (!std.ascii.endsWithIgnoreCase(base, ".exe")) return false;
    for (wine_infrastructure) |w| if (std.ascii.eqlIgnoreCase(base, w)) return false;
    return true;
}

pub fn nameIn(name: []const u8, names: []const []const u8) bool {
    for (names) |n| if (std.mem.eql(u8, name, n)) return true;
    return false;
}

/// Score and reason of a process as a game candidate, from its environment and first argument.
pub fn score(environ: []const u8, argv0: []const u8) struct { score: u8, reason: Reason } {
    if (steamGame(environ)) return .{ .score = 100, .reason = .steam };
    if (wineGame(argv0)) return .{ .score = 80, .reason = .wine_exe };
    return .{ .score = 0, .reason = .none };
}

pub const Candidate = struct {
    tgid: u32,
    score: u8,
    reason: Reason,
    /// CPU time of the thread group at the last look, and in the second before it.
    cpu_ns: u64 = 0,
    cpu_delta_ns: u64 = 0,
    /// Its exec, ns since boot (the exec event's time; 0 when a scan found it).
    exec_at: u64 = 0,
};

/// The game among candidates, keeping the incumbent until a challenger has won `switch_ns` in a row.
pub const Picker = struct {
    switch_ns: u64,
    incumbent: ?u32 = null,
    challenger: ?u32 = null,
    challenger_since: u64 = 0,

    fn better(a: Candidate, b: Candidate) bool {
        if (a.score != b.score) return a.score > b.score;
        return a.cpu_delta_ns > b.cpu_delta_ns;
    }

    /// The game now, given every live candidate at `now` (ns).
    pub fn pick(p: *Picker, cands: []const Candidate, now: u64) ?u32 {
        var best: ?Candidate = null;
        for (cands) |cand| {
            if (best == null or better(cand, best.?)) best = cand;
        }
        const b = best orelse {
            p.* = .{ .switch_ns = p.switch_ns };
            return null;
        };
        const inc = p.incumbent orelse {
            p.incumbent = b.tgid;
            return b.tgid;
        };
        var inc_alive: ?Candidate = null;
        for (cands) |cand| if (cand.tgid == inc) {
            inc_alive = cand;
        };
        const still = inc_alive orelse {
            p.incumbent = b.tgid;
            p.challenger = null;
            return b.tgid;
        };
        if (b.tgid == inc or !better(b, still)) {
            p.challenger = null;
            return inc;
        }
        if (p.challenger != b.tgid) {
            p.challenger = b.tgid;
            p.challenger_since = now;
        }
        if (now - p.challenger_since >= p.switch_ns) {
            p.incumbent = b.tgid;
            p.challenger = null;
        }
        return p.incumbent;
    }
};

// --- Reading /proc ---------------------------------------------------------------------------------

// Raw system calls: a process may exit between two reads, and /proc then answers ESRCH or ENOENT,
// which are expected here, not errors worth a trace.

fn openProc(pid: u32, what: []const u8, flags: linux.O) ?i32 {
    var path_buf: [64]u8 = undefined;
    const path = std.fmt.bufPrintZ(&path_buf, "/proc/{d}/{s}", .{ pid, what }) catch return null;
    const rc = linux.open(path, flags, 0);
    if (linux.E.init(rc) != .SUCCESS) return null;
    return @intCast(rc);
}

/// Reads /proc/<pid>/<what> into `buf` (truncated to it); null when the process is gone or hidden.
pub fn readProc(pid: u32, what: []const u8, buf: []u8) ?[]const u8 {
    const fd = openProc(pid, what, .{ .CLOEXEC = true }) orelse return null;
    defer _ = linux.close(fd);
    var n: usize = 0;
    while (n < buf.len) {
        const rc = linux.read(fd, buf[n..].ptr, buf.len - n);
        if (linux.E.init(rc) != .SUCCESS) return if (n > 0) buf[0..n] else null;
        if (rc == 0) break;
        n += rc;
    }
    return buf[0..n];
}

/// Whether a process whose command name is `comm` (the kernel keeps its first 15 bytes) or whose
/// executable's base name is `exe` is the one `name` names, as `--foreground NAME` means it.
pub fn nameMatches(comm_: []const u8, exe: []const u8, name: []const u8) bool {
    if (name.len == 0) return false;
    return std.mem.eql(u8, comm_, name) or std.mem.eql(u8, exe, name) or
        (name.len > 15 and std.mem.eql(u8, comm_, name[0..15]));
}

/// The base name of a process's executable (readlink /proc/<pid>/exe); null for kernel threads and
/// processes gone meanwhile.
pub fn exeBase(pid: u32, buf: []u8) ?[]const u8 {
    var path_buf: [48]u8 = undefined;
    const path = std.fmt.bufPrintZ(&path_buf, "/proc/{d}/exe", .{pid}) catch return null;
    const rc = linux.readlink(path, buf.ptr, buf.len);
    if (linux.E.init(rc) != .SUCCESS) return null;
    const target = buf[0..rc];
    return target[(std.mem.lastIndexOfScalar(u8, target, '/') orelse return target) + 1 ..];
}

/// Whether process `pid` is named by one of `names` (NUL-separated; see nameMatches): reads its
/// command name and its executable's link. False for a process gone meanwhile.
pub fn processNamed(pid: u32, names: []const u8) bool {
    var comm_buf: [32]u8 = undefined;
    const cm = comm(pid, &comm_buf) orelse return false;
    var exe_buf: [std.fs.max_path_bytes]u8 = undefined;
    // No link for a kernel thread, or once a process's main thread has exited (its others run on).
    const exe = exeBase(pid, &exe_buf) orelse "";
    var it = std.mem.tokenizeScalar(u8, names, 0);
    while (it.next()) |name| if (nameMatches(cm, exe, name)) {
        // Never init (`--foreground systemd`: in partial mode every service it starts would
        // inherit SCHED_EXT), nor a kernel thread.
        return pid > 1 and !isKernelThread(pid);
    };
    return false;
}

/// Fills `out` with the thread groups whose name is one of `names` (processNamed) and returns how
/// many there are: more than out.len when some did not fit (those are counted, not kept). Reads /proc.
pub fn pidsNamed(names: []const u8, out: []u32) usize {
    var n: usize = 0;
    var proc = std.fs.openDirAbsolute("/proc", .{ .iterate = true }) catch return 0;
    defer proc.close();
    var it = proc.iterate();
    while (it.next() catch null) |e| {
        const pid = std.fmt.parseInt(u32, e.name, 10) catch continue;
        if (!processNamed(pid, names)) continue;
        if (n < out.len) out[n] = pid;
        n += 1;
    }
    return n;
}

/// Whether `pid` is a kernel thread: PF_KTHREAD (include/linux/sched.h) in its flags, field 9 of
/// /proc/PID/stat. False when it is gone.
pub fn isKernelThread(pid: u32) bool {
    var buf: [1024]u8 = undefined;
    const stat = readProc(pid, "stat", &buf) orelse return false;
    const flags = std.fmt.parseInt(u32, statField(stat, 9) orelse return false, 10) catch return false;
    return flags & 0x00200000 != 0;
}

/// The command name of a process (comm, without the newline).
pub fn comm(pid: u32, buf: *[32]u8) ?[]const u8 {
    const text = readProc(pid, "comm", buf) orelse return null;
    return std.mem.trimRight(u8, text, "\n");
}

/// Field `n` of a /proc/<pid>/stat line, numbered as in proc(5) (3 state, 14 utime, 39 processor,
/// 41 policy; n >= 3); null when the line is shorter. The command name (field 2) may hold spaces and
/// parentheses: fields are counted after its last ')'.
pub fn statField(stat: []const u8, n: usize) ?[]const u8 {
    const close = std.mem.lastIndexOfScalar(u8, stat, ')') orelse return null;
    var fields = std.mem.tokenizeScalar(u8, stat[close + 1 ..], ' ');
    var i: usize = 3;
    while (fields.next()) |f| : (i += 1) {
        if (i == n) return f;
    }
    return null;
}

/// utime + stime of a thread group in ns (clock ticks at 100 Hz, as /proc reports them).
pub fn cpuNs(pid: u32) ?u64 {
    var buf: [1024]u8 = undefined;
    const text = readProc(pid, "stat", &buf) orelse return null;
    var total: u64 = 0;
    for ([_]usize{ 14, 15 }) |n| total += std.fmt.parseInt(u64, statField(text, n) orelse return null, 10) catch 0;
    return total * (std.time.ns_per_s / 100);
}

/// Whether a process holds an evdev node (/dev/input/event*) open: the compositor's mark.
pub fn holdsEvdev(pid: u32) bool {
    const fd = openProc(pid, "fd", .{ .DIRECTORY = true, .CLOEXEC = true }) orelse return false;
    var dir = std.fs.Dir{ .fd = fd };
    defer dir.close();
    var it = dir.iterate();
    var name_buf: [32]u8 = undefined;
    var link_buf: [64]u8 = undefined;
    while (it.next() catch null) |e| {
        const name = std.fmt.bufPrintZ(&name_buf, "{s}", .{e.name}) catch continue;
        const rc = linux.readlinkat(fd, name, &link_buf, link_buf.len);
        if (linux.E.init(rc) != .SUCCESS) continue;
        if (std.mem.startsWith(u8, link_buf[0..rc], "/dev/input/event")) return true;
    }
    return false;
}

/// Whether a process maps the PipeWire or PulseAudio client library: an audio client.
pub fn audioClient(pid: u32) bool {
    const fd = openProc(pid, "maps", .{ .CLOEXEC = true }) orelse return false;
    defer _ = linux.close(fd);
    var buf: [16 * 1024]u8 = undefined;
    var carry: usize = 0;
    while (true) {
        const rc = linux.read(fd, buf[carry..].ptr, buf.len - carry);
        if (linux.E.init(rc) != .SUCCESS or rc == 0) return false;
        const n = rc;
        const text = buf[0 .. carry + n];
        if (std.mem.indexOf(u8, text, "libpipewire-") != null or std.mem.indexOf(u8, text, "libpulse.so") != null) return true;
        // Keep the tail, so a name split across reads is still found.
        carry = @min(text.len, 32);
        std.mem.copyForwards(u8, buf[0..carry], text[text.len - carry ..]);
    }
}

test "Steam's environment marks a game; SteamGameId=0 (Steam itself) does not" {
    try std.testing.expect(steamGame("HOME=/home/a\x00SteamGameId=1091500\x00LANG=C"));
    try std.testing.expect(steamGame("STEAM_GAME=1\x00"));
    try std.testing.expect(!steamGame("SteamGameId=0\x00HOME=/"));
    try std.testing.expect(!steamGame("PATH=/bin\x00STEAM_COMPAT_DATA_PATH=/x"));
}

test "a Windows program under Wine is a candidate, Wine's own infrastructure is not" {
    try std.testing.expect(wineGame("C:\\Games\\Cyberpunk 2077\\bin\\x64\\Cyberpunk2077.exe"));
    try std.testing.expect(wineGame("/home/a/.wine/drive_c/game/GAME.EXE"));
    try std.testing.expect(!wineGame("C:\\windows\\system32\\services.exe"));
    try std.testing.expect(!wineGame("C:\\windows\\explorer.exe"));
    try std.testing.expect(!wineGame("/usr/bin/wineserver"));
    try std.testing.expect(!wineGame("/usr/bin/python3"));
    try std.testing.expectEqual(Reason.steam, score("SteamGameId=5\x00", "game.exe").reason);
    try std.testing.expectEqual(@as(u8, 80), score("", "game.exe").score);
}

test "the busiest best-scored candidate wins, and an incumbent stays until a challenger has won for switch_ms" {
    const s = std.time.ns_per_s;
    var p = Picker{ .switch_ns = 3 * s };
    var cands = [_]Candidate{
        .{ .tgid = 10, .score = 100, .reason = .steam, .cpu_delta_ns = 100 },
        .{ .tgid = 11, .score = 100, .reason = .steam, .cpu_delta_ns = 900 }, // the game, not its launcher
        .{ .tgid = 12, .score = 80, .reason = .wine_exe, .cpu_delta_ns = 5000 },
    };
    try std.testing.expectEqual(@as(?u32, 11), p.pick(&cands, 0));
    // Its launcher gets busier for a moment: not long enough to take over.
    cands[0].cpu_delta_ns = 2000;
    try std.testing.expectEqual(@as(?u32, 11), p.pick(&cands, 1 * s));
    try std.testing.expectEqual(@as(?u32, 11), p.pick(&cands, 3 * s));
    try std.testing.expectEqual(@as(?u32, 10), p.pick(&cands, 4 * s));
    // The incumbent exits: the next best at once.
    try std.testing.expectEqual(@as(?u32, 11), p.pick(cands[1..], 5 * s));
    try std.testing.expectEqual(@as(?u32, null), p.pick(&.{}, 6 * s));
}

test "statField counts proc(5) fields after a command name with spaces and parentheses" {
    const line = "4119 (fp sched) (probe)) R 4117 4117 1 0 -1 4194368 12 0 0 0 5 7 0 0 20 0 3 0 900 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    try std.testing.expectEqualStrings("R", statField(line, 3).?);
    try std.testing.expectEqualStrings("5", statField(line, 14).?);
    try std.testing.expectEqualStrings("1", statField(line, 39).?);
    try std.testing.expectEqualStrings("0", statField(line, 41).?);
    try std.testing.expect(statField("12 (short) S 1 2", 39) == null);
    try std.testing.expect(statField("no parenthesis", 3) == null);
}

test "a process's CPU time and command name come from /proc" {
    const self: u32 = @intCast(std.os.linux.getpid());
    var buf: [32]u8 = undefined;
    try std.testing.expect(comm(self, &buf) != null);
    try std.testing.expect(cpuNs(self) != null);
    try std.testing.expect(!holdsEvdev(self));
}

test "--foreground NAME matches the command name, its first 15 bytes, or the executable's base name" {
    try std.testing.expect(nameMatches("game.exe", "wine64-preloader", "game.exe"));
    try std.testing.expect(nameMatches("VeryLongGameNam", "", "VeryLongGameName.exe"));
    try std.testing.expect(nameMatches("Main", "eldenring.exe", "eldenring.exe"));
    try std.testing.expect(!nameMatches("game", "game2", "game.exe"));
    try std.testing.expect(!nameMatches("VeryLongGameNam", "", "VeryLongGameNam"[0..14]));
    try std.testing.expect(!nameMatches("", "", ""));
}

test "a kernel thread is told from a process, and PID 1 and kernel threads are never named" {
    try std.testing.expect(isKernelThread(2)); // kthreadd
    try std.testing.expect(!isKernelThread(@intCast(std.os.linux.getpid())));
    var comm_buf: [32]u8 = undefined;
    const kthreadd = comm(2, &comm_buf).?;
    try std.testing.expect(!processNamed(2, kthreadd));
    var one_buf: [32]u8 = undefined;
    if (comm(1, &one_buf)) |init| try std.testing.expect(!processNamed(1, init));
}

test "pidsNamed finds this process by its executable's base name, and nothing by a name no process has" {
    const self: u32 = @intCast(std.os.linux.getpid());
    var exe_buf: [std.fs.max_path_bytes]u8 = undefined;
    const exe = exeBase(self, &exe_buf).?;
    var names_buf: [300]u8 = undefined;
    const names = try std.fmt.bufPrint(&names_buf, "no-such-process-fp\x00{s}", .{exe});
    var out: [64]u32 = undefined;
    const n = pidsNamed(names, &out);
    try std.testing.expect(std.mem.indexOfScalar(u32, out[0..n], self) != null);
    try std.testing.expectEqual(@as(usize, 0), pidsNamed("no-such-process-fp", &out));
    // Counted past a full buffer: the set's owner tells how many were left out.
    var none: [0]u32 = .{};
    try std.testing.expectEqual(n, pidsNamed(names, &none));
}
