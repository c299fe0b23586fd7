//! The C ABI of libfastpath: the export list, nothing else. Every function returns an `abi.Status`
//! (0 = ok) or a plain value; after a non-zero status `fp_last_error()` has the message on that thread.
//! Handles are opaque pointers; every `*_close(null)` is a no-op.
const std = @import("std");
const builtin = @import("builtin");
const abi = @import("abi.zig");
const diag = @import("sys/diag.zig");
const os = @import("sys/os.zig");
const clock = @import("sys/clock.zig");
const reflect = @import("reflect/start.zig");
const probe_core = @import("probe/probe.zig");

const gpa = std.heap.c_allocator;

fn status(result: abi.Error!void) abi.Status {
    result catch |err| return abi.statusOf(err);
    diag.clear();
    return .ok;
}

export fn fp_abi_version() u32 {
    return abi.abi_version;
}

/// Offsets and sizes of every struct and enum crossing the boundary, as JSON.
export fn fp_layout_json() [*:0]const u8 {
    return abi.layout_json.ptr;
}

export fn fp_last_error() [*:0]const u8 {
    return diag.message();
}

/// The libbpf linked into this library, as major << 16 | minor; 0 when it has none (macOS).
export fn fp_libbpf_version() u32 {
    return os.libbpfVersion();
}

// --- Reflector --------------------------------------------------------------------------------

const Reflector = os.Reflector;

export fn fp_reflector_start(opts: *const abi.ReflectorOptions, out: *?*Reflector) abi.Status {
    out.* = null;
    return status(blk: {
        out.* = reflect.start(gpa, opts) catch |e| break :blk e;
    });
}

/// Checks reflector options without opening anything (what `fp_reflector_start` checks first), so a
/// caller can refuse bad options before it builds a lab.
export fn fp_reflector_check(opts: *const abi.ReflectorOptions) abi.Status {
    return status(if (reflect.check(opts)) |_| {} else |e| e);
}

/// The per-worker counter blocks (live, updated once per batch); returns how many.
export fn fp_reflector_counters(r: *Reflector, out: *[*]abi.Counters) u32 {
    out.* = r.counters.ptr;
    return @intCast(r.counters.len);
}

export fn fp_reflector_info(r: *Reflector, out: *abi.ReflectorInfo) void {
    out.* = r.info();
}

/// Brings the counter block up to date now (xdp mode reads the program's per-CPU map; a background
/// thread otherwise does so every 100 ms). Other modes' counters are always current.
export fn fp_reflector_refresh(r: *Reflector) void {
    r.refresh();
}

/// Stops reflecting (and takes any XDP program off the interface) but keeps the counters readable,
/// including the final UMEM audit of afxdp mode. `fp_reflector_close` still has to follow.
export fn fp_reflector_stop(r: *Reflector) void {
    r.stop();
}

/// An `abi.reflector_state` value.
export fn fp_reflector_state(r: *Reflector) u32 {
    return r.state.load(.acquire);
}

/// Why the reflector failed, when its state is `failed`.
export fn fp_reflector_failure(r: *Reflector) [*:0]const u8 {
    return @ptrCast(&r.failure);
}

export fn fp_reflector_close(r: ?*Reflector) void {
    if (r) |h| h.destroy();
}

// --- Probe ------------------------------------------------------------------------------------

const Probe = os.Probe;

export fn fp_probe_start(opts: *const abi.ProbeOptions, out: *?*Probe) abi.Status {
    out.* = null;
    return status(blk: {
        out.* = Probe.start(gpa, opts) catch |e| break :blk e;
    });
}

/// Checks probe options without opening anything (what `fp_probe_start` checks first), so a caller
/// can refuse bad options before resolving addresses or building a lab.
export fn fp_probe_check(opts: *const abi.ProbeOptions) abi.Status {
    return status(probe_core.checkOptions(opts));
}

/// The smallest frame size (bytes, FCS included) that carries the probe's headers for these options
/// (VLAN tag, IPv4 or IPv6): what `size` "min", the default, becomes.
export fn fp_probe_min_frame_size(opts: *const abi.ProbeOptions) u32 {
    return probe_core.minFrameSize(opts);
}

/// Live statistics of the run.
export fn fp_probe_stats(p: *Probe) *abi.ProbeStats {
    return p.stats;
}

/// Stops sending; the probe drains and finishes.
export fn fp_probe_stop(p: *Probe) void {
    p.stop();
}

/// Blocks up to `timeout_ms` for the run to finish; 1 when it has. Meant for a non-blocking FFI call.
export fn fp_probe_wait(p: *Probe, timeout_ms: u32) i32 {
    return @intFromBool(p.wait(@as(u64, timeout_ms) * std.time.ns_per_ms));
}

export fn fp_probe_failure(p: *Probe) [*:0]const u8 {
    return @ptrCast(p.failure);
}

export fn fp_probe_close(p: ?*Probe) void {
    if (p) |h| h.destroy();
}

/// Puts (on = 1) or takes off (0) an XDP_PASS program that outlives this process: the lab's
/// probe-side veth accepts XDP_TX frames from its peer only while it runs XDP itself, and slows
/// every other kind of traffic down while it does.
export fn fp_xdp_pass(netns: [*:0]const u8, ifname: [*:0]const u8, on: u8) abi.Status {
    return status(os.xdpPass(std.mem.span(netns), std.mem.span(ifname), on != 0));
}

/// What the driver of `ifname` (in `netns`, "" = this one) offers XDP: NETDEV_XDP_ACT_* bits in
/// `features` (0 when the kernel cannot say, before Linux 6.3) and the most fragments its AF_XDP
/// zero-copy takes in `zc_max_segs`; `vlan_tag` 1 when it hands XDP the receive VLAN tag as metadata
/// (Linux 6.8+), so the reflector keeps tags under rx-vlan offload.
export fn fp_xdp_features(netns: [*:0]const u8, ifname: [*:0]const u8, features: *u64, zc_max_segs: *u32, vlan_tag: *u8) abi.Status {
    features.* = 0;
    zc_max_segs.* = 0;
    var tag = false;
    defer vlan_tag.* = @intFromBool(tag);
    return status(os.xdpFeatures(std.mem.span(netns), std.mem.span(ifname), features, zc_max_segs, &tag));
}

/// Sends one UDP datagram to `ip` (port 9, discard) from `ifname` so the kernel resolves its MAC.
export fn fp_neigh_solicit(netns: [*:0]const u8, ifname: [*:0]const u8, ip: *const [16]u8, ipv6: u8) abi.Status {
    return status(os.neighSolicit(std.mem.span(netns), std.mem.span(ifname), ip, ipv6 != 0));
}

/// Takes the run lock /run/fastpath/NAME without waiting (the lab's ownership record): `out` gets its
/// descriptor; `busy` while another process holds it. The kernel drops it when this process dies.
export fn fp_run_lock(name: [*:0]const u8, out: *i32) abi.Status {
    out.* = -1;
    return status(blk: {
        out.* = os.runLock(std.mem.span(name)) catch |e| break :blk e;
    });
}

/// Gives up a run lock; `remove` = 1 deletes its file first (the record goes with its holder).
export fn fp_run_unlock(fd: i32, name: [*:0]const u8, remove: u8) void {
    os.runUnlock(fd, std.mem.span(name), remove != 0);
}

// --- sched_ext scheduler ----------------------------------------------------------------------

const Scheduler = os.Scheduler;

/// Whether a scheduler could attach now: sched_ext present, root, nothing else attached.
export fn fp_sched_preflight() abi.Status {
    return status(os.schedPreflight());
}

/// Counters of the fastpath scheduler attached now, by whichever process attached it.
export fn fp_sched_read_attached(out: *abi.SchedCounters) abi.Status {
    out.* = .{};
    return status(os.schedReadAttached(out));
}

/// What start checks first (every knob's range and the relations between them, the detectors'
/// knobs with the signals on), opening nothing: for a unit's command line (`service print`).
export fn fp_sched_check(opts: *const abi.SchedOptions) abi.Status {
    return status(Scheduler.validate(opts));
}

/// `n` thread groups at `tgids` (null only when `n` is 0: an empty buffer crosses the FFI as null).
fn tgidSlice(tgids: ?[*]const u32, n: u32) abi.Error![]const u32 {
    if (tgids) |p| return p[0..n];
    if (n == 0) return &.{};
    return diag.fail(error.InvalidArgument, "{d} foreground thread groups at a null pointer", .{n});
}

/// What setForeground checks of `n` thread groups (none init or a kernel thread), with no scheduler:
/// run before a start, so a bad PID is refused before anything attaches.
export fn fp_sched_check_foreground(tgids: ?[*]const u32, n: u32) abi.Status {
    const t = tgidSlice(tgids, n) catch |e| return status(e);
    return status(Scheduler.checkTgids(t));
}

export fn fp_sched_start(opts: *const abi.SchedOptions, out: *?*Scheduler) abi.Status {
    out.* = null;
    return status(blk: {
        out.* = Scheduler.start(gpa, opts) catch |e| break :blk e;
    });
}

/// The live counter block (folded from per-CPU counters every 100 ms).
export fn fp_sched_counters(s: *Scheduler) *abi.SchedCounters {
    return s.counters;
}

/// Folds the per-CPU counters now.
export fn fp_sched_refresh(s: *Scheduler) void {
    s.refresh();
}

/// An `abi.sched_state` value.
export fn fp_sched_state(s: *Scheduler) u32 {
    return s.state.load(.acquire);
}

/// Why the scheduler went away; valid once the state is not `running`.
export fn fp_sched_exit_info(s: *Scheduler) *const abi.SchedExit {
    return &s.exit;
}

/// Replaces the foreground - `n` thread groups and `names_len` bytes of NUL-separated process
/// names (command or executable names, looked up again at each exec) - and its weight (% of their own).
/// Either pointer may be null when its length is 0 (an empty buffer crosses the FFI as null).
export fn fp_sched_set_foreground(s: *Scheduler, tgids: ?[*]const u32, n: u32, names: ?[*]const u8, names_len: u32, weight_pct: u32) abi.Status {
    const t = tgidSlice(tgids, n) catch |e| return status(e);
    const m: []const u8 = if (names) |p| p[0..names_len] else if (names_len == 0) "" else return status(diag.fail(error.InvalidArgument, "{d} bytes of foreground names at a null pointer", .{names_len}));
    return status(s.setForeground(t, m, weight_pct));
}

/// Copies up to `cap` foreground thread groups (given and found by name) into `out`; returns how
/// many there are.
export fn fp_sched_foreground(s: *Scheduler, out: ?[*]u32, cap: u32) u32 {
    var none: [0]u32 = .{};
    return @intCast(s.foreground(if (out) |p| p[0..cap] else &none));
}

/// How many processes the foreground names match that are not foreground because the set holds
/// FP_MAX_FOREGROUND already (as of the last look, every second, and the execs since).
export fn fp_sched_foreground_left_out(s: *Scheduler) u32 {
    return @intCast(@min(s.foregroundLeftOut(), std.math.maxInt(u32)));
}

/// Changes the knobs of `opts` (every `sched_limits` field) while the scheduler runs; the modes
/// (`partial`, `signals`, `stall_tgid`) stay as started.
export fn fp_sched_set_knobs(s: *Scheduler, opts: *const abi.SchedOptions) abi.Status {
    return status(s.setKnobs(opts));
}

/// The scheduler's detectors (started with `signals` = 1), or null. Owned by the scheduler: use
/// the fp_detect_* calls on it, never fp_detect_close.
export fn fp_sched_detector(s: *Scheduler) ?*Detector {
    return s.detector;
}

/// Blocks up to `timeout_ms` for the kernel to eject the scheduler; 1 when it has (or it stopped).
/// Meant for a non-blocking FFI call.
export fn fp_sched_wait(s: *Scheduler, timeout_ms: u32) i32 {
    return @intFromBool(s.wait(@as(u64, timeout_ms) * std.time.ns_per_ms));
}

/// Detaches: the kernel runs ops.exit and every task returns to the fair class.
export fn fp_sched_stop(s: *Scheduler) void {
    s.stop();
}

export fn fp_sched_close(s: ?*Scheduler) void {
    if (s) |h| h.destroy();
}

// --- Detectors (the game's input, GPU, audio and network threads) -------------------------------

const Detector = os.Detector;

/// Attaches the detectors alone (no scheduler needed: `fastpath sched observe`).
export fn fp_detect_start(opts: *const abi.DetectOptions, out: *?*Detector) abi.Status {
    out.* = null;
    return status(blk: {
        out.* = Detector.start(gpa, opts) catch |e| break :blk e;
    });
}

/// What the detectors know now: signals attached and why others are absent, the game, counters.
export fn fp_detect_status(d: *Detector, out: *abi.DetectStatus) void {
    d.status(out);
}

/// Copies up to `cap` threads (those with a role, or in an input chain) into `out`; returns how many.
export fn fp_detect_threads(d: *Detector, out: [*]abi.DetectThread, cap: u32) u32 {
    return d.threads(out[0..cap]);
}

/// Changes the detectors' knobs while they run (checked like the options).
export fn fp_detect_set_knobs(d: *Detector, knobs: *const abi.DetectKnobs) abi.Status {
    return status(d.setKnobs(knobs));
}

/// The detectors some process runs now (`sched run` or `sched observe`), read from the kernel:
/// their status, and up to `cap` threads into `out` (`n` says how many).
export fn fp_detect_read_attached(out: *abi.DetectStatus, threads: [*]abi.DetectThread, cap: u32, n: *u32) abi.Status {
    n.* = 0;
    out.* = .{};
    return status(blk: {
        n.* = os.detectReadAttached(out, threads[0..cap]) catch |e| break :blk e;
    });
}

/// CLOCK_MONOTONIC in ns: the clock of the detectors' times (bpf_ktime_get_ns).
export fn fp_monotonic_ns() u64 {
    return clock.monotonicNs();
}

/// Detaches the detectors started by fp_detect_start. NULL is a no-op.
export fn fp_detect_close(d: ?*Detector) void {
    if (d) |h| h.destroy();
}

comptime {
    _ = builtin;
}
