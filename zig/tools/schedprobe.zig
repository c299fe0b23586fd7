//! fp-schedprobe: what a game feels of the CPU scheduler, without a GPU. SCHED_OTHER threads:
//!  - a frame loop: every `frame_period_us` it wakes (recording how late, as `frame_wake_*`), does
//!    `frame_work_us` of CPU work (measured on the thread's own CPU clock, so time spent preempted
//!    counts against it) and misses its deadline when the work ends after the frame's period. Its
//!    first frame starts on the first period boundary after the thread first ran, as a game draws
//!    once its threads are up; how long after the probe's start that was is `thread_start_us` (from
//!    when main() took its start time, just before it created the thread: the process's own start
//!    before main() is not in it). `frame_worst_at_ms` counts from the first frame,
//!    `wake_max_at_ms` from the probe's start.
//!    (Started at once, the first frame also timed the thread's creation and ran before the thread
//!    ever slept, as a new CPU-bound task: in the VM beside eight CPU hogs or a fork storm it took
//!    17-41 ms under fastpath and, in the fork storm, 28-44 ms under scx_bpfland - most of the misses
//!    left in those rows. docs/sched-measurements.md.);
//!  - a waker (unless `--wake-period-us 0`): sleeps to absolute times every `wake_period_us` and
//!    records how late it woke (`wake_*`), like an input or audio thread.
//! Prints one JSON object (type "schedprobe_result"). Used by the sched_ext tests and `deno task
//! bench:sched`. Flags: `usage_text` (--help); flags.zig checks them.
const std = @import("std");
const linux = std.os.linux;
const timing = @import("timing.zig");
const frames = @import("frames.zig");
const flags = @import("flags.zig");
const now = timing.now;
const sleepUntil = timing.sleepUntil;
const percentile = timing.percentile;
const us = timing.us;

const Config = struct {
    frame: frames.Config = .{},
    wake_period_ns: u64 = std.time.ns_per_ms,
};

const Wakes = struct {
    lat: std.ArrayList(u64),
    max_ns: u64 = 0,
    max_at_ns: u64 = 0,
};

fn wakeLoop(cfg: Config, start: u64, w: *Wakes) void {
    var target = start + cfg.wake_period_ns;
    while (target < start + cfg.frame.duration_ns) : (target += cfg.wake_period_ns) {
        sleepUntil(target);
        const late = now(.MONOTONIC) -| target;
        w.lat.append(late) catch return;
        if (late > w.max_ns) {
            w.max_ns = late;
            w.max_at_ns = target - start;
        }
        // Woke past later targets: skip them rather than record a burst of zero-latency wakeups.
        while (target + cfg.wake_period_ns < now(.MONOTONIC)) target += cfg.wake_period_ns;
    }
}

/// The frame thread: notes when it first ran (ns since `start`, into `started`), then runs the frame
/// loop from the next period boundary.
fn frameThread(cfg: frames.Config, start: u64, fr: *frames.Frames, started: *u64) void {
    const t = now(.MONOTONIC);
    started.* = t -| start;
    var from = start + cfg.period_ns;
    while (from <= t) from += cfg.period_ns;
    sleepUntil(from);
    frames.loop(cfg, from, fr);
}

const usage_text =
    \\usage: fp-schedprobe [--duration-s S] [--frame-period-us N] [--frame-work-us N] [--wake-period-us N|0]
    \\                     [--work-clock cpu|wall]
    \\  --duration-s S        how long the frame loop runs, 0.01 to 86400 s (default 10), at least one frame
    \\  --frame-period-us N   the frame period, 100 µs to 10 s (default 16666.667, 60 Hz)
    \\  --frame-work-us N     CPU work per frame, 1 µs to less than the period (default 4000)
    \\  --wake-period-us N|0  the waker's period, 10 µs to 10 s (default 1000), 0: no waker
    \\  --work-clock cpu|wall what the work is measured on: the thread's CPU time (default) or wall time
    \\Prints one JSON object (type "schedprobe_result"); exit 0, or 2 on a bad flag.
;

/// The command line as a Config, or a one-line refusal (exit 2).
fn parseArgs(gpa: std.mem.Allocator) !Config {
    const us_ = std.time.ns_per_us;
    const s_ = std.time.ns_per_s;
    var cfg = Config{};
    var args = try flags.Args.init("fp-schedprobe", usage_text, gpa);
    while (args.next()) |p| {
        if (std.mem.eql(u8, p.flag, "--work-clock")) {
            cfg.frame.work_clock = if (std.mem.eql(u8, p.value, "wall")) .MONOTONIC //
                else if (std.mem.eql(u8, p.value, "cpu")) .THREAD_CPUTIME_ID //
                else args.fail("--work-clock takes cpu or wall, not '{s}'", .{p.value});
        } else if (std.mem.eql(u8, p.flag, "--duration-s")) {
            cfg.frame.duration_ns = args.num(p, .{ .scale = s_, .min = 10 * std.time.ns_per_ms, .max = 86_400 * s_, .unit = "s" });
        } else if (std.mem.eql(u8, p.flag, "--frame-period-us")) {
            cfg.frame.period_ns = args.num(p, .{ .scale = us_, .min = 100 * us_, .max = 10 * s_, .unit = "µs" });
        } else if (std.mem.eql(u8, p.flag, "--frame-work-us")) {
            cfg.frame.work_ns = args.num(p, .{ .scale = us_, .min = us_, .max = 10 * s_, .unit = "µs" });
        } else if (std.mem.eql(u8, p.flag, "--wake-period-us")) {
            cfg.wake_period_ns = args.num(p, .{ .scale = us_, .min = 10 * us_, .max = 10 * s_, .zero_ok = true, .unit = "µs" });
        } else args.unknown(p);
    }
    // Every frame would miss, or none would run: no measurement, so no run.
    if (cfg.frame.work_ns >= cfg.frame.period_ns)
        args.fail("--frame-work-us {d} is not less than the frame period ({d} µs): every frame would miss; give less work or a longer period", .{ us(cfg.frame.work_ns), us(cfg.frame.period_ns) });
    if (cfg.frame.duration_ns < cfg.frame.period_ns)
        args.fail("--duration-s {d} is shorter than one frame ({d} µs): give a longer duration", .{ @as(f64, @floatFromInt(cfg.frame.duration_ns)) / std.time.ns_per_s, us(cfg.frame.period_ns) });
    if (cfg.wake_period_ns > cfg.frame.duration_ns)
        args.fail("--wake-period-us {d} is longer than the run ({d} s): the waker would never wake; give a shorter period, or 0 for none", .{ us(cfg.wake_period_ns), @as(f64, @floatFromInt(cfg.frame.duration_ns)) / std.time.ns_per_s });
    return cfg;
}

pub fn main() !void {
    const gpa = std.heap.page_allocator;
    const cfg = try parseArgs(gpa);
    var fr = frames.Frames{ .wake = std.ArrayList(u64).init(gpa) };
    var wakes = Wakes{ .lat = std.ArrayList(u64).init(gpa) };
    const lat = &wakes.lat;
    const start = now(.MONOTONIC);
    var thread_start_ns: u64 = 0;
    const ft = try std.Thread.spawn(.{}, frameThread, .{ cfg.frame, start, &fr, &thread_start_ns });
    const wt = if (cfg.wake_period_ns > 0) try std.Thread.spawn(.{}, wakeLoop, .{ cfg, start, &wakes }) else null;
    ft.join();
    if (wt) |t| t.join();
    std.mem.sort(u64, lat.items, {}, std.sort.asc(u64));
    const fw = fr.wake.items;
    std.mem.sort(u64, fw, {}, std.sort.asc(u64));
    const miss_ratio = if (fr.frames == 0) 0 else @as(f64, @floatFromInt(fr.misses)) / @as(f64, @floatFromInt(fr.frames));
    const out = std.io.getStdOut().writer();
    try out.print(
        "{{\"type\":\"schedprobe_result\",\"pid\":{d},\"frames\":{d},\"misses\":{d},\"miss_ratio\":{d:.5},\"frame_worst_us\":{d:.1},\"frame_worst_at_ms\":{d}," ++
            "\"frame_wake_p50_us\":{d:.1},\"frame_wake_p99_us\":{d:.1},\"frame_wake_p999_us\":{d:.1},\"frame_wake_max_us\":{d:.1}," ++
            "\"wakeups\":{d},\"wake_p50_us\":{d:.1},\"wake_p99_us\":{d:.1},\"wake_p999_us\":{d:.1},\"wake_max_us\":{d:.1},\"wake_max_at_ms\":{d},\"thread_start_us\":{d:.1}}}\n",
        .{
            linux.getpid(),                  fr.frames,                                 fr.misses,                miss_ratio,
            us(fr.worst_ns),                 fr.worst_at_ns / std.time.ns_per_ms,       us(percentile(fw, 0.50)), us(percentile(fw, 0.99)),
            us(percentile(fw, 0.999)),       us(if (fw.len > 0) fw[fw.len - 1] else 0), lat.items.len,            us(percentile(lat.items, 0.50)),
            us(percentile(lat.items, 0.99)), us(percentile(lat.items, 0.999)),          us(wakes.max_ns),         wakes.max_at_ns / std.time.ns_per_ms,
            us(thread_start_ns),
        },
    );
}

test {
    _ = timing;
    _ = frames;
    _ = flags;
}
