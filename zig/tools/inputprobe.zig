//! fp-inputprobe: how long an input event takes to reach a game, hop by hop, the way desktop input
//! travels. Three processes:
//!  - the injector (this one): a uinput device that moves its X axis `rate_hz` times a second;
//!  - a "compositor" (comm fp-compositor): reads the device's evdev node with CLOCK_MONOTONIC
//!    timestamps (EVIOCSCLOCKID) and forwards each event over a UNIX socket, as X, Wayland
//!    compositors and gamescope do;
//!  - a "game" (fp-inputprobe re-executed with SteamGameId in its environment, so fastpath's
//!    detectors find it as a Steam game would be found): its input thread receives the event and
//!    wakes a worker thread (futex), which does `work_us` of CPU work with it; with
//!    `--frame-work-us N` a render thread runs 16.6 ms frames of N µs of CPU work (frames.zig), so
//!    the game's own frame pacing is measured beside its input.
//! For each event after `warmup_s`: event → compositor read, event → game input thread, event →
//! game worker, from the kernel's own timestamp of the event. Prints one JSON object.
//!
//! uinput runs input_event in the injector's process context; real USB input arrives from an
//! interrupt, where fastpath's IRQ signal fires as well. Needs /dev/uinput (root).
//! Flags: `usage_text` (--help); flags.zig checks them.
const std = @import("std");
const linux = std.os.linux;
const timing = @import("timing.zig");
const frames = @import("frames.zig");
const flags = @import("flags.zig");
const now = timing.now;
const us = timing.us;
const percentile = timing.percentile;

const Config = struct {
    duration_ns: u64 = 10 * std.time.ns_per_s,
    warmup_ns: u64 = 6 * std.time.ns_per_s,
    rate_hz: u64 = 1000,
    work_ns: u64 = 100 * std.time.ns_per_us,
    /// CPU work per 16.6 ms frame of the game's render thread; 0: the game has none.
    frame_work_ns: u64 = 0,
};

// <linux/uinput.h>, <linux/input.h>
const UI_DEV_CREATE: u32 = 0x5501;
const UI_DEV_DESTROY: u32 = 0x5502;
const UI_DEV_SETUP: u32 = 0x405c5503; // _IOW('U', 3, struct uinput_setup): 92 bytes
const UI_SET_EVBIT: u32 = 0x40045564;
const UI_SET_KEYBIT: u32 = 0x40045565;
const UI_SET_RELBIT: u32 = 0x40045566;
const EVIOCSCLOCKID: u32 = 0x400445a0;
fn uiGetSysname(len: u32) u32 {
    return (2 << 30) | (len << 16) | (0x55 << 8) | 44;
}
const EV_SYN = 0;
const EV_KEY = 1;
const EV_REL = 2;
const REL_X = 0;
const BTN_LEFT = 0x110;

const InputEvent = extern struct { sec: i64, usec: i64, type: u16, code: u16, value: i32 };
const UinputSetup = extern struct { bustype: u16, vendor: u16, product: u16, version: u16, name: [80]u8, ff_effects_max: u32 };

/// What the compositor forwards: the event's kernel timestamp and when it read it (ns, MONOTONIC).
const Forwarded = extern struct { event_ns: u64, read_ns: u64 };

/// The compositor and the game end with the probe (`parent`), even when it is killed (SIGKILL
/// leaves no orphan holding the caller's pipe open). PR_SET_PDEATHSIG survives the game's execve.
fn dieWithParent(parent: linux.pid_t) void {
    _ = linux.prctl(@intFromEnum(linux.PR.SET_PDEATHSIG), linux.SIG.KILL, 0, 0, 0);
    if (linux.getppid() != parent) linux.exit(1); // the probe ended before the prctl
}

fn die(comptime fmt: []const u8, args: anytype) noreturn {
    std.debug.print("fp-inputprobe: " ++ fmt ++ "\n", args);
    std.process.exit(1);
}

fn check(rc: usize, what: []const u8) usize {
    const e = linux.E.init(rc);
    if (e != .SUCCESS) die("{s}: {s}", .{ what, @tagName(e) });
    return rc;
}

fn ioctl(fd: i32, req: u32, arg: usize, what: []const u8) void {
    _ = check(linux.ioctl(fd, req, arg), what);
}

fn setName(name: [:0]const u8) void {
    _ = linux.prctl(@intFromEnum(linux.PR.SET_NAME), @intFromPtr(name.ptr), 0, 0, 0);
}

/// Creates the uinput device; returns its fd and the path of its evdev node.
fn createDevice(path_buf: *[64]u8) struct { fd: i32, node: [:0]const u8 } {
    const fd: i32 = @intCast(check(linux.open("/dev/uinput", .{ .ACCMODE = .WRONLY, .NONBLOCK = true, .CLOEXEC = true }, 0), "opening /dev/uinput (root and CONFIG_INPUT_UINPUT needed)"));
    ioctl(fd, UI_SET_EVBIT, EV_KEY, "UI_SET_EVBIT");
    ioctl(fd, UI_SET_KEYBIT, BTN_LEFT, "UI_SET_KEYBIT");
    ioctl(fd, UI_SET_EVBIT, EV_REL, "UI_SET_EVBIT");
    ioctl(fd, UI_SET_RELBIT, REL_X, "UI_SET_RELBIT");
    var setup = std.mem.zeroes(UinputSetup);
    setup.bustype = 0x06; // BUS_VIRTUAL
    setup.vendor = 0xfa57;
    setup.product = 0x0001;
    @memcpy(setup.name[0..14], "fp-inputprobe\x00");
    ioctl(fd, UI_DEV_SETUP, @intFromPtr(&setup), "UI_DEV_SETUP");
    ioctl(fd, UI_DEV_CREATE, 0, "UI_DEV_CREATE");
    var sys_buf: [32]u8 = undefined;
    ioctl(fd, uiGetSysname(sys_buf.len), @intFromPtr(&sys_buf), "UI_GET_SYSNAME");
    const sysname = std.mem.sliceTo(&sys_buf, 0);
    // devtmpfs creates /dev/input/eventN as the kernel registers it: wait for sysfs to name it.
    var dir_buf: [96]u8 = undefined;
    const dir_path = std.fmt.bufPrint(&dir_buf, "/sys/devices/virtual/input/{s}", .{sysname}) catch unreachable;
    for (0..200) |_| {
        var dir = std.fs.cwd().openDir(dir_path, .{ .iterate = true }) catch {
            std.time.sleep(10 * std.time.ns_per_ms);
            continue;
        };
        defer dir.close();
        var it = dir.iterate();
        while (it.next() catch null) |e| if (std.mem.startsWith(u8, e.name, "event")) {
            const node = std.fmt.bufPrintZ(path_buf, "/dev/input/{s}", .{e.name}) catch unreachable;
            for (0..200) |_| {
                if (std.fs.cwd().access(node, .{})) |_| return .{ .fd = fd, .node = node } else |_| std.time.sleep(10 * std.time.ns_per_ms);
            }
        };
        std.time.sleep(10 * std.time.ns_per_ms);
    }
    die("the evdev node of {s} did not appear", .{sysname});
}

fn emit(fd: i32, type_: u16, code: u16, value: i32) void {
    const ev = InputEvent{ .sec = 0, .usec = 0, .type = type_, .code = code, .value = value };
    _ = linux.write(fd, std.mem.asBytes(&ev), @sizeOf(InputEvent));
}

/// The compositor: evdev in, one datagram per motion event out.
fn compositor(node: [:0]const u8, sock: i32) noreturn {
    setName("fp-compositor");
    const fd: i32 = @intCast(check(linux.open(node, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0), "opening the evdev node"));
    var clock: i32 = @intFromEnum(linux.CLOCK.MONOTONIC);
    ioctl(fd, EVIOCSCLOCKID, @intFromPtr(&clock), "EVIOCSCLOCKID");
    var evs: [64]InputEvent = undefined;
    while (true) {
        const rc = linux.read(fd, @ptrCast(&evs), @sizeOf(@TypeOf(evs)));
        if (linux.E.init(rc) == .INTR) continue;
        if (linux.E.init(rc) != .SUCCESS or rc == 0) linux.exit_group(0);
        const read_ns = now(.MONOTONIC);
        for (evs[0 .. rc / @sizeOf(InputEvent)]) |ev| {
            if (ev.type != EV_REL) continue;
            const f = Forwarded{ .event_ns = @as(u64, @intCast(ev.sec)) * std.time.ns_per_s + @as(u64, @intCast(ev.usec)) * std.time.ns_per_us, .read_ns = read_ns };
            const w = linux.write(sock, std.mem.asBytes(&f), @sizeOf(Forwarded));
            if (linux.E.init(w) != .SUCCESS) linux.exit_group(0); // the game is gone
        }
    }
}

// --- The game -------------------------------------------------------------------------------------

/// One event at each hop, and the CPUs the input thread handed it over on and the worker took it on.
const Sample = struct { event_ns: u64, read_ns: u64, input_ns: u64, worker_ns: u64 = 0, input_cpu: u32 = 0, worker_cpu: u32 = 0 };

/// The CPU this thread runs on now (getcpu(2)).
fn currentCpu() u32 {
    var cpu: u32 = 0;
    _ = linux.syscall3(.getcpu, @intFromPtr(&cpu), 0, 0);
    return cpu;
}

const Game = struct {
    cfg: Config,
    start_ns: u64,
    samples: std.ArrayList(Sample),
    /// The input thread's hand-off: the sample index the worker is to take (futex word).
    posted: std.atomic.Value(u32) = std.atomic.Value(u32).init(0),
    done: std.atomic.Value(bool) = std.atomic.Value(bool).init(false),
    handoff: Sample = undefined,
    lock: std.Thread.Mutex = .{},
};

fn gameInput(g: *Game, sock: i32) void {
    setName("input");
    var f: Forwarded = undefined;
    while (true) {
        const rc = linux.read(sock, std.mem.asBytes(&f), @sizeOf(Forwarded));
        if (linux.E.init(rc) == .INTR) continue;
        if (linux.E.init(rc) != .SUCCESS or rc == 0) break;
        const t = now(.MONOTONIC);
        g.lock.lock();
        g.handoff = .{ .event_ns = f.event_ns, .read_ns = f.read_ns, .input_ns = t, .input_cpu = currentCpu() };
        g.lock.unlock();
        _ = g.posted.fetchAdd(1, .release);
        std.Thread.Futex.wake(&g.posted, 1);
    }
    g.done.store(true, .release);
    _ = g.posted.fetchAdd(1, .release);
    std.Thread.Futex.wake(&g.posted, 1);
}

fn gameWorker(g: *Game) void {
    setName("worker");
    var seen: u32 = 0;
    var sink: u64 = 0;
    while (true) {
        while (g.posted.load(.acquire) == seen) std.Thread.Futex.wait(&g.posted, seen);
        const t = now(.MONOTONIC);
        seen = g.posted.load(.acquire);
        if (g.done.load(.acquire)) break;
        g.lock.lock();
        var s = g.handoff;
        g.lock.unlock();
        s.worker_ns = t;
        s.worker_cpu = currentCpu();
        if (s.event_ns >= g.start_ns + g.cfg.warmup_ns) g.samples.append(s) catch {};
        const c0 = now(.THREAD_CPUTIME_ID);
        while (now(.THREAD_CPUTIME_ID) - c0 < g.cfg.work_ns) {
            for (0..64) |i| sink +%= i *% 2654435761;
        }
    }
    std.mem.doNotOptimizeAway(sink);
}

/// The game's render thread: the frame loop of fp-schedprobe over the measured time, in the game.
fn gameRender(g: *Game, fr: *frames.Frames) void {
    setName("render");
    const from = g.start_ns + g.cfg.warmup_ns;
    timing.sleepUntil(from);
    frames.loop(.{ .duration_ns = g.cfg.duration_ns, .work_ns = g.cfg.frame_work_ns }, from, fr);
}

fn game(cfg: Config, sock: i32, out_fd: i32, start_ns: u64) !void {
    const gpa = std.heap.page_allocator;
    var g = Game{ .cfg = cfg, .start_ns = start_ns, .samples = std.ArrayList(Sample).init(gpa) };
    var fr = frames.Frames{ .wake = std.ArrayList(u64).init(gpa) };
    const r = if (cfg.frame_work_ns > 0) try std.Thread.spawn(.{}, gameRender, .{ &g, &fr }) else null;
    const w = try std.Thread.spawn(.{}, gameWorker, .{&g});
    const i = try std.Thread.spawn(.{}, gameInput, .{ &g, sock });
    i.join();
    w.join();
    if (r) |t| t.join();
    const n = g.samples.items.len;
    var hops: [3][]u64 = undefined;
    for (&hops) |*h| h.* = try gpa.alloc(u64, n);
    for (g.samples.items, 0..) |s, k| {
        hops[0][k] = s.read_ns -| s.event_ns;
        hops[1][k] = s.input_ns -| s.event_ns;
        hops[2][k] = s.worker_ns -| s.event_ns;
    }
    var buf: [2048]u8 = undefined;
    var fbs = std.io.fixedBufferStream(&buf);
    const wr = fbs.writer();
    var same: usize = 0;
    for (g.samples.items) |s| same += @intFromBool(s.worker_cpu == s.input_cpu);
    // Where the worker ran: on the CPU its input thread handed the event over on, or another.
    try wr.print("\"events_seen\":{d},\"worker_same_cpu_pct\":{d:.1}", .{ n, if (n > 0) 100.0 * @as(f64, @floatFromInt(same)) / @as(f64, @floatFromInt(n)) else 0.0 });
    // The render thread's frames (with --frame-work-us): misses, and how late it woke for a frame.
    if (cfg.frame_work_ns > 0) {
        const fw = fr.wake.items;
        std.mem.sort(u64, fw, {}, std.sort.asc(u64));
        try wr.print(",\"game_frames\":{d},\"game_misses\":{d},\"game_frame_wake_p99_us\":{d:.1}", .{ fr.frames, fr.misses, us(percentile(fw, 0.99)) });
    }
    for (hops, [_][]const u8{ "compositor", "input", "worker" }) |h, name| {
        std.mem.sort(u64, h, {}, std.sort.asc(u64));
        try wr.print(",\"{s}_p50_us\":{d:.1},\"{s}_p99_us\":{d:.1},\"{s}_p999_us\":{d:.1},\"{s}_max_us\":{d:.1}", .{
            name, us(percentile(h, 0.50)), name, us(percentile(h, 0.99)), name, us(percentile(h, 0.999)), name, us(if (h.len > 0) h[h.len - 1] else 0),
        });
    }
    _ = linux.write(out_fd, fbs.getWritten().ptr, fbs.getWritten().len);
}

const usage_text =
    \\usage: fp-inputprobe [--duration-s S] [--warmup-s S] [--rate-hz N] [--work-us N] [--frame-work-us N]
    \\  --duration-s S     how long events are measured after the warm-up, 0.1 to 86400 s (default 10)
    \\  --warmup-s S       events not counted first, 0 to 3600 s (default 6)
    \\  --rate-hz N        events a second, 1 to 100000 (default 1000)
    \\  --work-us N        the game worker's CPU work per event, 0 to 100000 µs (default 100)
    \\  --frame-work-us N  CPU work per 16.6 ms frame of the game's render thread, 0 (none, the default) to 16000 µs
    \\Needs /dev/uinput (root). Prints one JSON object; exit 0, or 2 on a bad flag.
;

pub fn main() !void {
    const gpa = std.heap.page_allocator;
    const us_ = std.time.ns_per_us;
    const s_ = std.time.ns_per_s;
    var cfg = Config{};
    var role_game = false;
    var sock_fd: i32 = -1;
    var out_fd: i32 = -1;
    var start_ns: u64 = 0;
    var args = try flags.Args.init("fp-inputprobe", usage_text, gpa);
    while (args.next()) |p| {
        if (std.mem.eql(u8, p.flag, "--game-fds")) { // internal: the re-executed game
            var it = std.mem.splitScalar(u8, p.value, ',');
            const bad = "--game-fds is internal (SOCK,OUT,START): run fp-inputprobe without it";
            sock_fd = std.fmt.parseInt(i32, it.next() orelse args.fail(bad, .{}), 10) catch args.fail(bad, .{});
            out_fd = std.fmt.parseInt(i32, it.next() orelse args.fail(bad, .{}), 10) catch args.fail(bad, .{});
            start_ns = std.fmt.parseInt(u64, it.next() orelse args.fail(bad, .{}), 10) catch args.fail(bad, .{});
            role_game = true;
        } else if (std.mem.eql(u8, p.flag, "--duration-s")) {
            cfg.duration_ns = args.num(p, .{ .scale = s_, .min = s_ / 10, .max = 86_400 * s_, .unit = "s" });
        } else if (std.mem.eql(u8, p.flag, "--warmup-s")) {
            cfg.warmup_ns = args.num(p, .{ .scale = s_, .min = 0, .max = 3_600 * s_, .unit = "s" });
        } else if (std.mem.eql(u8, p.flag, "--rate-hz")) {
            cfg.rate_hz = args.num(p, .{ .scale = 1, .min = 1, .max = 100_000, .unit = "Hz" });
        } else if (std.mem.eql(u8, p.flag, "--work-us")) {
            cfg.work_ns = args.num(p, .{ .scale = us_, .min = 0, .max = 100_000 * us_, .unit = "µs" });
        } else if (std.mem.eql(u8, p.flag, "--frame-work-us")) {
            cfg.frame_work_ns = args.num(p, .{ .scale = us_, .min = 0, .max = 16_000 * us_, .unit = "µs" });
        } else args.unknown(p);
    }
    if (role_game) return game(cfg, sock_fd, out_fd, start_ns);

    const probe_pid = linux.getpid();
    var node_buf: [64]u8 = undefined;
    const dev = createDevice(&node_buf);
    defer {
        _ = linux.ioctl(dev.fd, UI_DEV_DESTROY, 0);
        _ = linux.close(dev.fd);
    }
    var pair: [2]i32 = undefined;
    _ = check(linux.socketpair(linux.AF.UNIX, linux.SOCK.SEQPACKET, 0, &pair), "socketpair");
    var pipe: [2]i32 = undefined;
    _ = check(linux.pipe2(&pipe, .{}), "pipe");
    const start = now(.MONOTONIC);

    const comp = check(linux.fork(), "fork");
    if (comp == 0) {
        dieWithParent(probe_pid);
        _ = linux.close(pair[1]);
        _ = linux.close(pipe[0]);
        _ = linux.close(pipe[1]);
        compositor(dev.node, pair[0]);
    }
    _ = linux.close(pair[0]);

    const gm = check(linux.fork(), "fork");
    if (gm == 0) {
        dieWithParent(probe_pid);
        _ = linux.close(pipe[0]);
        var a_buf: [8][64:0]u8 = undefined;
        const argv = [_:null]?[*:0]const u8{
            "fp-inputprobe",
            (std.fmt.bufPrintZ(&a_buf[0], "--game-fds", .{}) catch unreachable).ptr,
            (std.fmt.bufPrintZ(&a_buf[1], "{d},{d},{d}", .{ pair[1], pipe[1], start }) catch unreachable).ptr,
            "--warmup-s",
            (std.fmt.bufPrintZ(&a_buf[2], "{d}", .{@as(f64, @floatFromInt(cfg.warmup_ns)) / 1e9}) catch unreachable).ptr,
            "--work-us",
            (std.fmt.bufPrintZ(&a_buf[3], "{d}", .{@as(f64, @floatFromInt(cfg.work_ns)) / 1e3}) catch unreachable).ptr,
            "--frame-work-us",
            (std.fmt.bufPrintZ(&a_buf[4], "{d}", .{@as(f64, @floatFromInt(cfg.frame_work_ns)) / 1e3}) catch unreachable).ptr,
            "--duration-s",
            (std.fmt.bufPrintZ(&a_buf[5], "{d}", .{@as(f64, @floatFromInt(cfg.duration_ns)) / 1e9}) catch unreachable).ptr,
        };
        // Found by the detectors as a Steam game is: SteamGameId in its environment.
        var envp_buf: [256:null]?[*:0]const u8 = undefined;
        var n: usize = 0;
        envp_buf[n] = "SteamGameId=480";
        n += 1;
        for (std.os.environ) |e| {
            if (n >= envp_buf.len - 1) break;
            envp_buf[n] = e;
            n += 1;
        }
        envp_buf[n] = null;
        // By its own path, not /proc/self/exe: the kernel names the process after the file
        // (comm "exe" otherwise), and a user sees the game as fp-inputprobe.
        var path_buf: [std.fs.max_path_bytes:0]u8 = undefined;
        const n_path = linux.readlink("/proc/self/exe", &path_buf, path_buf.len);
        if (linux.E.init(n_path) != .SUCCESS) die("reading /proc/self/exe: {s}", .{@tagName(linux.E.init(n_path))});
        path_buf[n_path] = 0;
        const rc = linux.execve(path_buf[0..n_path :0], &argv, &envp_buf);
        die("re-executing the game: {s}", .{@tagName(linux.E.init(rc))});
    }
    _ = linux.close(pair[1]);
    _ = linux.close(pipe[1]);

    // Inject: absolute times at rate_hz, through warm-up and the measured time.
    const period = std.time.ns_per_s / cfg.rate_hz;
    const end = start + cfg.warmup_ns + cfg.duration_ns;
    var next = start + 200 * std.time.ns_per_ms; // the compositor has opened the node by then
    var sent: u64 = 0;
    var late: u64 = 0;
    while (next < end) : (next += period) {
        timing.sleepUntil(next);
        const t = now(.MONOTONIC);
        if (t - next > period) late += 1;
        emit(dev.fd, EV_REL, REL_X, 1);
        emit(dev.fd, EV_SYN, 0, 0);
        // Counted by when it went out, as the game counts what it saw (by the kernel's timestamp, taken
        // in the write): by when it was due, an injector running late across the end of the warm-up
        // sent events the game counted and this did not (8121 "seen" of 8000 "sent" in one bench run).
        if (t >= start + cfg.warmup_ns) sent += 1;
    }
    timing.sleepUntil(now(.MONOTONIC) + 100 * std.time.ns_per_ms); // the last events arrive
    _ = linux.kill(@intCast(comp), linux.SIG.TERM);
    var status: u32 = 0;
    _ = linux.waitpid(@intCast(comp), &status, 0);
    var result: [2048]u8 = undefined;
    var got: usize = 0;
    while (got < result.len) {
        const rc = linux.read(pipe[0], result[got..].ptr, result.len - got);
        if (linux.E.init(rc) == .INTR) continue;
        if (linux.E.init(rc) != .SUCCESS or rc == 0) break;
        got += rc;
    }
    _ = linux.waitpid(@intCast(gm), &status, 0);
    if (got == 0) die("the game process reported nothing (exit status {d})", .{status});
    const out = std.io.getStdOut().writer();
    try out.print("{{\"type\":\"inputprobe_result\",\"rate_hz\":{d},\"events_sent\":{d},\"events_late\":{d},\"game_pid\":{d},\"compositor_pid\":{d},{s}}}\n", .{ cfg.rate_hz, sent, late, gm, comp, result[0..got] });
}

test {
    _ = timing;
    _ = frames;
    _ = flags;
}
