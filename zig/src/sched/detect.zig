//! The detectors' loader (zig/bpf/detect.bpf.c): attach each detector whose kernel target exists,
//! say why the others are absent, and run one native thread that turns exec/exit events and /proc
//! into roles (the game, the compositor, the audio server and clients: roles.zig) in the map the
//! programs and the scheduler read. Runs alone (`fastpath sched observe`, any kernel with BTF) or
//! inside the scheduler, which reuses its maps.
const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const bpf = @import("../sys/bpf.zig");
const diag = @import("../sys/diag.zig");
const sys = @import("../sys/linux.zig");
const roles = @import("roles.zig");
const c = bpf.c;
const Error = abi.Error;

const detect_obj = @embedFile("detect.bpf.o");

/// An optional detector: its program, the kernel function it needs, the signal it provides (named as
/// in `--signals-off` and the JSON `signals`: an absence names it first, so a script can map it),
/// what it is for people, and what a user misses without it.
const Hook = struct {
    prog: [:0]const u8,
    target: [:0]const u8,
    signal: abi.Signal,
    what: []const u8,
    missing: []const u8,
    kprobe: bool = false,
    /// False for the second program of a signal (IPv6 sends): its absence alone leaves the signal on.
    sole: bool = true,

    /// The signal bit this hook's presence decides (0: none alone).
    fn bit(h: Hook) u32 {
        return if (h.sole) @intFromEnum(h.signal) else 0;
    }
};

// The hooks name their signals by abi.Signal: its values are detect.h's FP_SIGNAL_* bits.
comptime {
    for (std.meta.fields(abi.Signal)) |f| {
        var up: [f.name.len]u8 = undefined;
        _ = std.ascii.upperString(&up, f.name);
        if (f.value != @field(c, "FP_SIGNAL_" ++ up)) @compileError("abi.Signal." ++ f.name ++ " is not detect.h's value");
    }
}

const hooks = [_]Hook{
    .{ .prog = "fp_input_event", .target = "input_event", .signal = .input, .what = "input events", .missing = "no input subsystem in this kernel" },
    .{ .prog = "fp_drm_ioctl", .target = "drm_ioctl", .signal = .gpu, .what = "GPU submit", .missing = "no DRM driver loaded" },
    .{ .prog = "fp_nvidia_ioctl", .target = "nvidia_unlocked_ioctl", .signal = .nvidia, .what = "NVIDIA submit", .missing = "nvidia.ko not loaded", .kprobe = true },
    .{ .prog = "fp_pcm_period", .target = "snd_pcm_period_elapsed", .signal = .pcm, .what = "PCM periods", .missing = "no ALSA PCM driver loaded" },
    .{ .prog = "fp_pcm_write", .target = "__snd_pcm_lib_xfer", .signal = .pcm_write, .what = "PCM writers", .missing = "no ALSA PCM driver loaded" },
    .{ .prog = "fp_inet_sendmsg", .target = "inet_sendmsg", .signal = .net, .what = "INET sends", .missing = "no IPv4 in this kernel" },
    .{ .prog = "fp_inet6_sendmsg", .target = "inet6_sendmsg", .signal = .net, .what = "IPv6 sends", .missing = "no IPv6 in this kernel", .sole = false },
};

/// Why each absent detector is absent, as `status` shows it ("gpu (GPU submit): no DRM driver loaded; ...").
const Absent = struct {
    buf: [512]u8 = .{0} ** 512,
    len: usize = 0,

    /// "gpu (GPU submit): " and the reason.
    fn hook(a: *Absent, h: Hook, comptime fmt: []const u8, args: anytype) void {
        a.add("{s} ({s}): " ++ fmt, .{ @tagName(h.signal), h.what } ++ args);
    }

    fn add(a: *Absent, comptime fmt: []const u8, args: anytype) void {
        const room = a.buf[a.len .. a.buf.len - 1];
        const sep = if (a.len == 0) "" else "; ";
        const out = std.fmt.bufPrint(room, "{s}" ++ fmt, .{sep} ++ args) catch return;
        a.len += out.len;
    }
};

extern fn strerror(errnum: c_int) [*:0]const u8;

/// "operation not permitted": the C library's words for an errno, in lower case as in our messages.
fn errnoText(errno: c_int) []const u8 {
    const S = struct {
        threadlocal var buf: [64]u8 = undefined;
    };
    const text = std.mem.span(strerror(errno));
    const n = @min(text.len, S.buf.len);
    for (text[0..n], 0..) |ch, i| S.buf[i] = if (i == 0) std.ascii.toLower(ch) else ch;
    return S.buf[0..n];
}

fn hookIndex(prog: []const u8) ?usize {
    for (hooks, 0..) |h, i| if (std.mem.eql(u8, h.prog, prog)) return i;
    return null;
}

comptime {
    std.debug.assert(@sizeOf(c.struct_fp_detect_knobs) == @sizeOf(abi.DetectKnobs));
    std.debug.assert(@sizeOf(c.struct_fp_detect_counters) == @sizeOf(abi.DetectCounters));
    std.debug.assert(@sizeOf(c.struct_fp_thread) == @sizeOf(abi.DetectThread));
    for (std.meta.fields(c.struct_fp_detect_counters), std.meta.fields(abi.DetectCounters)) |a, b|
        std.debug.assert(std.mem.eql(u8, a.name, b.name));
}

/// Whether the running kernel (or a loaded module) has function `name`: BTF for fentry, kallsyms
/// for a kprobe on a module without BTF.
fn haveFunction(kbtf: *const c.struct_btf, name: [:0]const u8, kprobe: bool) bool {
    if (c.btf__find_by_name_kind(kbtf, name.ptr, c.BTF_KIND_FUNC) > 0) return true;
    if (!kprobe) return moduleHasFunction(name);
    const f = std.fs.cwd().openFile("/proc/kallsyms", .{}) catch return false;
    defer f.close();
    var br = std.io.bufferedReader(f.reader());
    var line: [512]u8 = undefined;
    while (br.reader().readUntilDelimiterOrEof(&line, '\n') catch null) |l| {
        var it = std.mem.tokenizeScalar(u8, l, ' ');
        _ = it.next();
        _ = it.next();
        const sym = it.next() orelse continue;
        if (std.mem.eql(u8, sym, name)) return true;
    }
    return false;
}

/// Module BTF under /sys/kernel/btf (snd_pcm, drm and the like are often modules).
fn moduleHasFunction(name: [:0]const u8) bool {
    var dir = std.fs.cwd().openDir("/sys/kernel/btf", .{ .iterate = true }) catch return false;
    defer dir.close();
    const vmlinux = c.btf__load_vmlinux_btf() orelse return false;
    defer c.btf__free(vmlinux);
    var it = dir.iterate();
    while (it.next() catch null) |e| {
        if (std.mem.eql(u8, e.name, "vmlinux")) continue;
        var path_buf: [128]u8 = undefined;
        const path = std.fmt.bufPrintZ(&path_buf, "/sys/kernel/btf/{s}", .{e.name}) catch continue;
        const mb = c.btf__parse_split(path.ptr, vmlinux) orelse continue;
        defer c.btf__free(mb);
        if (c.btf__find_by_name_kind(mb, name.ptr, c.BTF_KIND_FUNC) > 0) return true;
    }
    return false;
}

/// What Detector.exec_hook calls: `f(ctx, tgid)` on the detectors' thread.
pub const ExecHook = struct { ctx: *anyopaque, f: *const fn (*anyopaque, u32) void };

pub const Detector = struct {
    gpa: std.mem.Allocator,
    opts: abi.DetectOptions,
    obj: bpf.Object,
    bss: bpf.Bss,
    knobs: *volatile c.struct_fp_detect_knobs,
    state: *volatile c.struct_fp_detect_state,
    links: std.ArrayListUnmanaged(*c.bpf_link) = .empty,
    ring: ?*c.struct_ring_buffer = null,
    /// Told of each exec (the new program's thread group) before the detectors look at it: the
    /// scheduler matches its `--foreground` names there (Scheduler.onExec). Set under `lock`.
    exec_hook: ?ExecHook = null,
    counters_fd: i32,
    threads_fd: i32,
    roles_fd: i32,
    signals: u32 = 0,
    absent: Absent = .{},
    /// The scheduler's copy of the knobs (its .bss), kept equal to ours; null when running alone.
    sched_knobs: ?*volatile c.struct_fp_detect_knobs = null,
    lock: std.Thread.Mutex = .{},
    thread: ?std.Thread = null,
    stop_signal: sys.StopSignal,
    // What the native thread found (under `lock`).
    candidates: std.ArrayListUnmanaged(roles.Candidate) = .empty,
    picker: roles.Picker,
    game: u32 = 0,
    game_reason: roles.Reason = .none,
    role_of: std.AutoHashMapUnmanaged(u32, u32) = .empty,
    /// When each process was last looked at (its fds, maps, environment): a scan looks again only
    /// after `recheck_ns`, so a desktop's hundreds of processes cost little every five seconds.
    checked: std.AutoHashMapUnmanaged(u32, u64) = .empty,
    percpu: []c.struct_fp_detect_counters = &.{},

    pub fn start(gpa: std.mem.Allocator, opts: *const abi.DetectOptions) Error!*Detector {
        try validate(opts);
        if (std.os.linux.geteuid() != 0)
            return diag.fail(error.PermissionDenied, "the detectors are BPF programs: run as root (sudo)", .{});
        const kbtf = c.btf__load_vmlinux_btf() orelse
            return diag.fail(error.Unsupported, "the kernel exposes no BTF (/sys/kernel/btf/vmlinux): the detectors need CONFIG_DEBUG_INFO_BTF=y", .{});
        defer c.btf__free(kbtf);

        // Every hook whose target exists, then again without each one the kernel refuses to load
        // (a kernel may forbid fentry, or a function may not be traceable): present or absent, each
        // says so, and the rest still run.
        var present: [hooks.len]bool = undefined;
        for (hooks, 0..) |h, i| present[i] = haveFunction(kbtf, h.target, h.kprobe);
        var absent = Absent{};
        for (hooks, present) |h, have| if (!have and h.sole) absent.hook(h, "{s}", .{h.missing});
        var obj = while (true) {
            var o = try bpf.Object.open(detect_obj, "fastpath_detect");
            for (hooks, present) |h, have| _ = c.bpf_program__set_autoload(try o.program(h.prog), have);
            if (o.load()) |_| break o else |err| {
                const errno = std.c._errno().*;
                var name_buf: [64]u8 = undefined;
                const failed = if (bpf.failedProgram(&name_buf)) |n| hookIndex(n) else null;
                o.close();
                const i = failed orelse return err;
                if (!present[i]) return err;
                present[i] = false;
                const kind = if (hooks[i].kprobe) "kprobe" else "fentry";
                absent.hook(hooks[i], "this kernel refuses {s} programs on {s} ({s})", .{ kind, hooks[i].target, errnoText(errno) });
            }
        };
        errdefer obj.close();
        var signals: u32 = c.FP_SIGNAL_WAKE | c.FP_SIGNAL_IRQ | c.FP_SIGNAL_EXEC;
        for (hooks, present) |h, have| if (have) {
            signals |= h.bit();
        };

        const d = gpa.create(Detector) catch return error.OutOfMemory;
        errdefer gpa.destroy(d);
        d.* = .{
            .gpa = gpa,
            .opts = opts.*,
            .obj = obj,
            .bss = try obj.mapBss(),
            .knobs = undefined,
            .state = undefined,
            .counters_fd = try obj.mapFd("dcounters"),
            .threads_fd = try obj.mapFd("threads"),
            .roles_fd = try obj.mapFd("roles"),
            .signals = signals,
            .stop_signal = try sys.StopSignal.init(),
            .picker = .{ .switch_ns = @as(u64, opts.knobs.game_switch_ms) * std.time.ns_per_ms },
        };
        errdefer d.stop_signal.deinit();
        errdefer d.bss.unmap();
        d.knobs = try d.bss.global(c.struct_fp_detect_knobs, &d.obj, "dknobs");
        d.state = try d.bss.global(c.struct_fp_detect_state, &d.obj, "dstate");
        d.writeKnobs(&opts.knobs);
        d.state.signals = signals;
        d.absent = absent;
        d.publishAbsent();
        d.percpu = gpa.alloc(c.struct_fp_detect_counters, @intCast(@max(1, c.libbpf_num_possible_cpus()))) catch return error.OutOfMemory;
        errdefer gpa.free(d.percpu);

        // Roles first (the game, the compositor), then the programs that act on them.
        d.scanAll();
        errdefer d.detachAll();
        var it = c.bpf_object__next_program(d.obj.obj, null);
        while (it) |prog| : (it = c.bpf_object__next_program(d.obj.obj, prog)) {
            if (!c.bpf_program__autoload(prog)) continue;
            const link = c.bpf_program__attach(prog) orelse {
                // An optional hook that loads but cannot attach (no kprobe PMU, no trampoline): absent.
                const i = hookIndex(std.mem.span(c.bpf_program__name(prog))) orelse return bpf.errnoError("attaching a detector");
                const kind = if (hooks[i].kprobe) "kprobe" else "fentry";
                d.absent.hook(hooks[i], "{s} on {s} does not attach here ({s})", .{ kind, hooks[i].target, errnoText(std.c._errno().*) });
                d.signals &= ~hooks[i].bit();
                d.state.signals = d.signals;
                d.publishAbsent();
                continue;
            };
            d.links.append(gpa, link) catch return error.OutOfMemory;
        }
        d.ring = c.ring_buffer__new(try d.obj.mapFd("proc_events"), onEvent, d, null) orelse
            return bpf.errnoError("opening the detectors' event ring");
        d.thread = std.Thread.spawn(.{}, run, .{d}) catch return diag.fail(error.System, "cannot start the detectors' thread", .{});
        d.thread.?.setName(thread_name) catch {}; // a name `top -H` and a test can tell apart
        return d;
    }

    /// Copies the absent reasons into .bss, where `status` of any process reads them.
    fn publishAbsent(d: *Detector) void {
        const dst: [*]volatile u8 = @ptrCast(&d.state.absent);
        for (d.absent.buf, 0..) |ch, i| dst[i] = ch;
    }

    /// The options' knobs in their ranges (abi.detect_limits); checked before anything is loaded.
    pub fn validate(o: *const abi.DetectOptions) Error!void {
        inline for (std.meta.fields(@TypeOf(abi.detect_limits))) |f| {
            const v = @field(o.knobs, f.name);
            const lim = @field(abi.detect_limits, f.name);
            if (v < lim[0] or v > lim[1])
                return diag.fail(error.InvalidArgument, "`" ++ comptime abi.apiName(f.name) ++ "` must be {d} to {d}, not {d}", .{ lim[0], lim[1], v });
        }
    }

    fn writeKnobs(d: *Detector, k: *const abi.DetectKnobs) void {
        const v: c.struct_fp_detect_knobs = @bitCast(k.*);
        d.knobs.* = v;
        if (d.sched_knobs) |s| s.* = v;
    }

    /// Changes the knobs while the detectors run (checked like the options).
    pub fn setKnobs(d: *Detector, k: *const abi.DetectKnobs) Error!void {
        var o = d.opts;
        o.knobs = k.*;
        try validate(&o);
        d.lock.lock();
        defer d.lock.unlock();
        d.opts.knobs = k.*;
        d.picker.switch_ns = @as(u64, k.game_switch_ms) * std.time.ns_per_ms;
        d.writeKnobs(k);
    }

    /// Also keep `knobs` (the scheduler's copy) equal to ours.
    pub fn mirrorKnobs(d: *Detector, knobs: *volatile c.struct_fp_detect_knobs) void {
        d.lock.lock();
        defer d.lock.unlock();
        d.sched_knobs = knobs;
        d.writeKnobs(&d.opts.knobs);
    }

    pub fn mapFd(d: *Detector, name: [:0]const u8) Error!i32 {
        return d.obj.mapFd(name);
    }

    fn onEvent(ctx: ?*anyopaque, data: ?*anyopaque, size: usize) callconv(.C) c_int {
        const d: *Detector = @ptrCast(@alignCast(ctx.?));
        if (size < @sizeOf(c.struct_fp_proc_event)) return 0;
        const e: *const c.struct_fp_proc_event = @ptrCast(@alignCast(data.?));
        if (e.kind == c.FP_EVENT_EXEC) {
            // First, and outside the lock (the hook takes the scheduler's): reading a process's
            // environment below takes longer than its two names.
            d.lock.lock();
            const hook = d.exec_hook;
            d.lock.unlock();
            if (hook) |h| h.f(h.ctx, e.tgid);
        }
        d.lock.lock();
        defer d.lock.unlock();
        switch (e.kind) {
            c.FP_EVENT_EXEC => {
                // A new candidate is picked now, not at the next second: a game is found as it starts.
                const before = d.candidates.items.len;
                d.consider(e.tgid, e.at);
                if (d.candidates.items.len != before) d.pickGame(sys.monotonicNs());
            },
            c.FP_EVENT_EXIT => d.forget(e.tgid),
            else => {},
        }
        return 0;
    }

    /// The detectors' thread, as `top -H` shows it.
    pub const thread_name = "fp-detect";

    /// The native thread: events as they come (the ring wakes it: every submit asks for a wakeup),
    /// the game every second, compositors and audio every five - and no other wakeup. It once
    /// looked every 100 ms as well: ten wakeups a second on an idle machine, each a scheduling
    /// event and, in the emulated VM, time the other vCPU's wake-ups waited for
    /// (docs/sched-measurements.md, "The quiet row in a trace").
    fn run(d: *Detector) void {
        var last_pick: u64 = 0;
        var last_scan = sys.monotonicNs();
        while (true) {
            var fds = [_]linux.pollfd{
                .{ .fd = d.stop_signal.fd, .events = linux.POLL.IN, .revents = 0 },
                .{ .fd = c.ring_buffer__epoll_fd(d.ring), .events = linux.POLL.IN, .revents = 0 },
            };
            _ = linux.poll(&fds, 2, untilNextPick(last_pick, sys.monotonicNs()));
            if (fds[0].revents != 0) return;
            _ = c.ring_buffer__consume(d.ring);
            const now = sys.monotonicNs();
            if (now - last_pick >= std.time.ns_per_s) {
                last_pick = now;
                d.lock.lock();
                d.pickGame(now);
                d.lock.unlock();
            }
            if (now - last_scan >= 5 * std.time.ns_per_s) {
                last_scan = now;
                d.scanAll();
            }
        }
    }

    /// The poll's timeout: milliseconds until a second has passed since `last_pick` (0 if it has),
    /// rounded up so the look after it finds the second passed.
    fn untilNextPick(last_pick: u64, now: u64) i32 {
        const due = last_pick +| std.time.ns_per_s;
        if (now >= due) return 0;
        return @intCast(std.math.divCeil(u64, due - now, std.time.ns_per_ms) catch unreachable);
    }

    const recheck_ns = 30 * std.time.ns_per_s;

    /// Processes not looked at yet (or not for `recheck_ns`): game candidates, compositors (a
    /// process may open evdev after it starts), audio servers and clients.
    fn scanAll(d: *Detector) void {
        var dir = std.fs.cwd().openDir("/proc", .{ .iterate = true }) catch return;
        defer dir.close();
        var it = dir.iterate();
        const t = sys.monotonicNs();
        while (it.next() catch null) |e| {
            const pid = std.fmt.parseInt(u32, e.name, 10) catch continue;
            // Exec and exit events are handled between processes: a scan (100 ms and more in a
            // slow VM) never delays finding a game that starts meanwhile.
            if (d.ring) |r| _ = c.ring_buffer__consume(r); // null during the first scan, at start
            d.lock.lock();
            defer d.lock.unlock();
            const last = d.checked.get(pid);
            if (last != null and t - last.? < recheck_ns) continue;
            d.checked.put(d.gpa, pid, t) catch {};
            d.consider(pid, 0);
        }
        d.lock.lock();
        defer d.lock.unlock();
        d.pickGame(t);
    }

    /// A process that execed at `exec_at` (ns since boot), or was found by a scan (0): its roles
    /// and its score as a game.
    fn consider(d: *Detector, pid: u32, exec_at: u64) void {
        var comm_buf: [32]u8 = undefined;
        const name = roles.comm(pid, &comm_buf) orelse return;
        var r: u32 = 0;
        if (roles.nameIn(name, &roles.compositor_names) or d.namedCompositor(pid, name) or roles.holdsEvdev(pid))
            r |= c.FP_ROLE_COMPOSITOR;
        if (roles.nameIn(name, &roles.audio_server_names)) r |= c.FP_ROLE_AUDIO_SERVER else if (roles.audioClient(pid)) r |= c.FP_ROLE_AUDIO_CLIENT;
        d.setRoles(pid, r, ~@as(u32, c.FP_ROLE_GAME));

        var env_buf: [32 * 1024]u8 = undefined;
        var cmd_buf: [512]u8 = undefined;
        const env = roles.readProc(pid, "environ", &env_buf) orelse "";
        const cmdline = roles.readProc(pid, "cmdline", &cmd_buf) orelse "";
        const argv0 = cmdline[0 .. std.mem.indexOfScalar(u8, cmdline, 0) orelse cmdline.len];
        var s = roles.score(env, argv0);
        if (d.named(pid, name)) s = .{ .score = 255, .reason = .named };
        if (s.score == 0) return;
        for (d.candidates.items) |*cand| if (cand.tgid == pid) {
            cand.score = s.score;
            cand.reason = s.reason;
            return;
        };
        d.candidates.append(d.gpa, .{ .tgid = pid, .score = s.score, .reason = s.reason, .cpu_ns = roles.cpuNs(pid) orelse 0, .exec_at = exec_at }) catch {};
    }

    /// `--game NAME|PID`.
    fn named(d: *Detector, pid: u32, name: []const u8) bool {
        if (d.opts.game_pid != 0) return pid == d.opts.game_pid;
        const want = std.mem.sliceTo(&d.opts.game_name, 0);
        return want.len > 0 and std.mem.eql(u8, want, name[0..@min(name.len, want.len)]) and name.len == want.len;
    }

    /// `--compositor NAME|PID`.
    fn namedCompositor(d: *Detector, pid: u32, name: []const u8) bool {
        const want = std.mem.sliceTo(&d.opts.compositor, 0);
        if (want.len == 0) return false;
        if (std.fmt.parseInt(u32, want, 10)) |p| return p == pid else |_| return std.mem.eql(u8, want, name);
    }

    fn forget(d: *Detector, tgid: u32) void {
        var i: usize = 0;
        while (i < d.candidates.items.len) {
            if (d.candidates.items[i].tgid == tgid) _ = d.candidates.swapRemove(i) else i += 1;
        }
        if (d.game == tgid) {
            d.game = 0;
            d.game_reason = .none;
            d.state.game_tgid = 0;
            d.state.game_reason = 0;
            d.pickGame(sys.monotonicNs());
        }
        d.setRoles(tgid, 0, 0xffff_ffff);
        _ = d.role_of.remove(tgid);
        _ = d.checked.remove(tgid);
    }

    /// Sets the bits `mask` of tgid's roles to `bits`, in the map the programs read.
    fn setRoles(d: *Detector, tgid: u32, bits: u32, mask: u32) void {
        const old = d.role_of.get(tgid) orelse 0;
        const new = (old & ~mask) | (bits & mask);
        if (new == old) return;
        if (new == 0) {
            _ = d.role_of.remove(tgid);
            _ = c.bpf_map_delete_elem(d.roles_fd, &tgid);
        } else {
            d.role_of.put(d.gpa, tgid, new) catch return;
            _ = c.bpf_map_update_elem(d.roles_fd, &tgid, &new, c.BPF_ANY);
        }
    }

    fn pickGame(d: *Detector, now: u64) void {
        var i: usize = 0;
        while (i < d.candidates.items.len) {
            const cand = &d.candidates.items[i];
            const cpu = roles.cpuNs(cand.tgid) orelse {
                _ = d.candidates.swapRemove(i);
                continue;
            };
            cand.cpu_delta_ns = cpu -| cand.cpu_ns;
            cand.cpu_ns = cpu;
            i += 1;
        }
        const game = d.picker.pick(d.candidates.items, now) orelse 0;
        if (game == d.game) return;
        if (d.game != 0) d.setRoles(d.game, 0, c.FP_ROLE_GAME);
        d.game = game;
        d.game_reason = .none;
        var exec_at: u64 = 0;
        for (d.candidates.items) |cand| if (cand.tgid == game) {
            d.game_reason = cand.reason;
            exec_at = cand.exec_at;
        };
        if (game != 0) d.setRoles(game, c.FP_ROLE_GAME, c.FP_ROLE_GAME);
        d.state.game_reason = @intFromEnum(d.game_reason);
        d.state.game_exec_at = exec_at;
        d.state.game_found_at = now;
        d.state.game_tgid = game;
    }

    /// The game's thread group now (0: none).
    pub fn currentGame(d: *Detector) u32 {
        d.lock.lock();
        defer d.lock.unlock();
        return d.game;
    }

    /// What the detectors know now.
    pub fn status(d: *Detector, out: *abi.DetectStatus) void {
        statusFrom(@volatileCast(d.state), d.opts.knobs.signals_off, d.roles_fd, d.counters_fd, d.percpu, out);
    }

    /// Copies up to `out.len` threads with a role or in an input chain; returns how many.
    pub fn threads(d: *Detector, out: []abi.DetectThread) u32 {
        return dumpThreads(d.threads_fd, out);
    }

    fn detachAll(d: *Detector) void {
        for (d.links.items) |l| _ = c.bpf_link__destroy(l);
        d.links.clearRetainingCapacity();
    }

    pub fn destroy(d: *Detector) void {
        d.stop_signal.raise();
        if (d.thread) |t| t.join();
        if (d.ring) |r| c.ring_buffer__free(r);
        d.detachAll();
        d.links.deinit(d.gpa);
        d.bss.unmap();
        d.obj.close();
        d.stop_signal.deinit();
        d.candidates.deinit(d.gpa);
        d.role_of.deinit(d.gpa);
        d.checked.deinit(d.gpa);
        d.gpa.free(d.percpu);
        d.gpa.destroy(d);
    }
};

/// The status as the maps show it: the state in .bss, the roles map, the counters.
fn statusFrom(st: *const c.struct_fp_detect_state, signals_off: u32, roles_fd: i32, counters_fd: i32, percpu: []c.struct_fp_detect_counters, out: *abi.DetectStatus) void {
    out.* = .{ .signals = st.signals & ~signals_off, .game_tgid = st.game_tgid, .game_reason = @intCast(st.game_reason) };
    if (st.game_exec_at != 0 and st.game_found_at >= st.game_exec_at)
        out.game_found_after_exec_us = @intCast(@min((st.game_found_at - st.game_exec_at) / std.time.ns_per_us, std.math.maxInt(u32)));
    @memcpy(&out.absent, @as([*]const u8, @ptrCast(&st.absent))[0..out.absent.len]);
    out.absent[out.absent.len - 1] = 0;
    var key: u32 = 0;
    var prev: ?*const u32 = null;
    var next: u32 = 0;
    while (c.bpf_map_get_next_key(roles_fd, prev, &next) == 0) : (prev = &key) {
        key = next;
        var r: u32 = 0;
        if (c.bpf_map_lookup_elem(roles_fd, &key, &r) != 0) continue;
        if (r & c.FP_ROLE_COMPOSITOR != 0) out.compositors += 1;
        if (r & c.FP_ROLE_AUDIO_SERVER != 0) out.audio_servers += 1;
        if (r & c.FP_ROLE_AUDIO_CLIENT != 0) out.audio_clients += 1;
    }
    if (out.game_tgid != 0) {
        var buf: [32]u8 = undefined;
        if (roles.comm(out.game_tgid, &buf)) |name| @memcpy(out.game_comm[0..@min(name.len, 15)], name[0..@min(name.len, 15)]);
    }
    readCounters(counters_fd, percpu, &out.counters);
}

/// The detectors some process runs now (`sched run`, `sched observe`): their status and up to
/// `threads.len` threads; returns how many. The programs are found by name among the kernel's.
pub fn readAttached(out: *abi.DetectStatus, threads: []abi.DetectThread) Error!u32 {
    var maps: [16]bpf.LoadedMap = undefined;
    const n = bpf.loadedProgramMaps(c.BPF_PROG_TYPE_TRACING, "fp_sched_waking", &maps);
    defer bpf.closeMaps(maps[0..n]);
    var threads_fd: i32 = -1;
    var counters_fd: i32 = -1;
    var roles_fd: i32 = -1;
    var state: ?c.struct_fp_detect_state = null;
    for (maps[0..n]) |*m| {
        if (m.nameIs("threads")) threads_fd = m.fd else if (m.nameIs("dcounters")) counters_fd = m.fd else if (m.nameIs("roles")) roles_fd = m.fd else if (state == null) state = m.global(c.struct_fp_detect_state, "dstate");
    }
    const st = state orelse
        return diag.fail(error.NoSuchDevice, "no fastpath detectors are running: start them with 'sudo fastpath sched observe' or 'sudo fastpath sched run'", .{});
    if (threads_fd < 0 or counters_fd < 0 or roles_fd < 0)
        return diag.fail(error.NoSuchDevice, "the running detectors' maps were not found among the kernel's BPF programs", .{});
    var percpu: [c.FP_MAX_CPUS]c.struct_fp_detect_counters = undefined;
    const ncpu: usize = @intCast(@max(1, @min(c.libbpf_num_possible_cpus(), c.FP_MAX_CPUS)));
    statusFrom(&st, 0, roles_fd, counters_fd, percpu[0..ncpu], out);
    return dumpThreads(threads_fd, threads);
}

/// Sums the per-CPU counters into `out`.
pub fn readCounters(fd: i32, percpu: []c.struct_fp_detect_counters, out: *abi.DetectCounters) void {
    const zero: u32 = 0;
    if (c.bpf_map_lookup_elem(fd, &zero, percpu.ptr) != 0) return;
    inline for (std.meta.fields(c.struct_fp_detect_counters)) |f| {
        var sum: u64 = 0;
        for (percpu) |pc| sum += @field(pc, f.name);
        @field(out, f.name) = sum;
    }
}

/// Copies the threads map (at most `out.len` rows); returns how many.
pub fn dumpThreads(fd: i32, out: []abi.DetectThread) u32 {
    var n: u32 = 0;
    var key: u32 = 0;
    var next: u32 = 0;
    var prev: ?*const u32 = null;
    while (n < out.len and c.bpf_map_get_next_key(fd, prev, &next) == 0) : (prev = &key) {
        key = next;
        var t: c.struct_fp_thread = undefined;
        if (c.bpf_map_lookup_elem(fd, &key, &t) != 0) continue;
        out[n] = @bitCast(t);
        n += 1;
    }
    return n;
}

test "the detectors' thread sleeps until the next look at the game, a second after the last one" {
    const s = std.time.ns_per_s;
    try std.testing.expectEqual(@as(i32, 0), Detector.untilNextPick(0, 5 * s)); // never looked: now
    try std.testing.expectEqual(@as(i32, 1000), Detector.untilNextPick(5 * s, 5 * s));
    try std.testing.expectEqual(@as(i32, 1000), Detector.untilNextPick(5 * s, 5 * s + 1)); // rounded up
    try std.testing.expectEqual(@as(i32, 1), Detector.untilNextPick(5 * s, 6 * s - 1));
    try std.testing.expectEqual(@as(i32, 0), Detector.untilNextPick(5 * s, 6 * s));
}

test "the detectors' pure rules: rates decay, and classes hold only while their evidence is fresh" {
    const ms = std.time.ns_per_ms;
    var hz: u32 = 0;
    for (0..40) |_| hz = c.fp_rate_hz(hz, 16_666_666);
    try std.testing.expectEqual(@as(u32, 60), hz);
    try std.testing.expectEqual(@as(u32, 1), c.fp_rate_now(60, std.time.ns_per_s));
    const k = c.struct_fp_detect_knobs{ .input_window_us = 5000, .urgent_window_us = 2000, .chain_hops = 2, .gpu_min_hz = 20, .net_min_hz = 10, .evidence_ms = 1000, .signals_off = 0, .game_switch_ms = 0 };
    var s = std.mem.zeroes(c.struct_fp_task_sig);
    const now: u64 = 10_000 * ms;
    s.gpu_last = now - 5 * ms;
    s.gpu_hz = 60;
    // A submit thread outside the game is not the game's GPU thread.
    try std.testing.expectEqual(@as(u32, 0), c.fp_classes(&s, 0, now, &k));
    try std.testing.expectEqual(@as(u32, c.FP_CLASS_GPU), c.fp_classes(&s, c.FP_ROLE_GAME, now, &k));
    // Stale evidence (2 s old) holds no class.
    try std.testing.expectEqual(@as(u32, 0), c.fp_classes(&s, c.FP_ROLE_GAME, now + 2000 * ms, &k));
    s = std.mem.zeroes(c.struct_fp_task_sig);
    s.input_until = now + ms;
    s.net_last = now - ms;
    s.net_hz = 100;
    try std.testing.expectEqual(@as(u32, c.FP_CLASS_INPUT), c.fp_classes(&s, 0, now, &k));
    try std.testing.expectEqual(@as(u32, c.FP_CLASS_INPUT | c.FP_CLASS_NET), c.fp_classes(&s, c.FP_ROLE_GAME, now, &k));
}
