//! zig build bench — what full validation costs per frame, against the least a reflector can do,
//! measured in the same process, rounds interleaved, medians printed with their ratio:
//!
//! - the XDP program (zig/bpf/reflect.bpf.c, netally profile: OUI filter, TOS toggle, per-CPU
//!   counters) against the bare XDP_TX swap of the lab benchmark (bench/bare_xdp_tx.c), both run
//!   by the kernel on the same 64-byte DATA:OT frame through BPF_PROG_TEST_RUN, one run per call:
//!   the median of the kernel's times per run, which include reading its clock, so an XDP_PASS-only
//!   program's median is subtracted.
//! - the Zig core (classify + rewrite, which packet, afxdp and the macOS modes run) against a swap
//!   with the same signature check in Zig, each after copying the frame in.
//!
//!   sudo zig build bench                 (without root only the Zig core is measured)
const std = @import("std");
// The library's sources come through the "fastpath" module (src/dev.zig, see build.zig).
const fastpath = @import("fastpath");
const bpf = fastpath.bpf;
const diag = fastpath.diag;
const ito = fastpath.ito;
const xdp = fastpath.xdp;

const rounds = 7;
const bpf_calls = 200_000;
const zig_frames = 5_000_000;

const bare_object = @embedFile("bare_xdp_tx.bpf.o");
const pass_object = @embedFile("pass.bpf.o");

/// The C fixture's rules in Zig: untagged IPv4, 20-byte header, UDP, "DATA:OT" at payload offset 5.
fn bareSwap(f: []u8) bool {
    if (f.len < 14 + 20 + 8 + 5 + 7) return false;
    if (f[12] != 0x08 or f[13] != 0x00 or f[14] != 0x45 or f[23] != 17) return false;
    if (!std.mem.eql(u8, f[47..54], "DATA:OT")) return false;
    var mac: [6]u8 = undefined;
    @memcpy(&mac, f[0..6]);
    @memcpy(f[0..6], f[6..12]);
    @memcpy(f[6..12], &mac);
    var ip: [4]u8 = undefined;
    @memcpy(&ip, f[26..30]);
    @memcpy(f[26..30], f[30..34]);
    @memcpy(f[30..34], &ip);
    var port: [2]u8 = undefined;
    @memcpy(&port, f[34..36]);
    @memcpy(f[34..36], f[36..38]);
    @memcpy(f[36..38], &port);
    return true;
}

fn zigCore(cfg: *const ito.Config, f: []u8) bool {
    const p = ito.classify(cfg, f);
    if (p.verdict != .reflect) return false;
    ito.rewrite(cfg, f, p);
    return true;
}

/// Mean ns per frame of copying `frame` in and running the core (or the bare swap) on it.
fn timeZig(frame: []const u8, cfg: *const ito.Config, comptime core: bool) !f64 {
    var buf: [128]u8 align(8) = undefined;
    var reflected: u64 = 0;
    var timer = try std.time.Timer.start();
    for (0..zig_frames) |_| {
        @memcpy(buf[0..frame.len], frame);
        std.mem.doNotOptimizeAway(&buf);
        const ok = if (core) zigCore(cfg, buf[0..frame.len]) else bareSwap(buf[0..frame.len]);
        reflected += @intFromBool(ok);
        std.mem.doNotOptimizeAway(&buf);
    }
    const ns = timer.read();
    if (reflected != zig_frames) return error.NotReflected;
    return @as(f64, @floatFromInt(ns)) / zig_frames;
}

fn median(xs: *[rounds]f64) f64 {
    std.mem.sort(f64, xs, {}, std.sort.asc(f64));
    return xs[rounds / 2];
}

const Loaded = struct {
    obj: bpf.Object,
    prog: *bpf.c.bpf_program,

    fn open(bytes: []const u8, name: [:0]const u8, prog: [:0]const u8) !Loaded {
        var obj = try bpf.Object.open(bytes, name);
        errdefer obj.close();
        try obj.load();
        return .{ .obj = obj, .prog = try obj.program(prog) };
    }
};

/// The median of the kernel's per-run times: a run the hypervisor or an interrupt stretched is an
/// outlier, not a cost of the program.
fn timeBpf(prog: *bpf.c.bpf_program, frame: []const u8, durations: []u32) !f64 {
    try bpf.timeXdp(prog, frame, durations);
    std.mem.sort(u32, durations, {}, std.sort.asc(u32));
    return @floatFromInt(durations[durations.len / 2]);
}

pub fn main() !void {
    const out = std.io.getStdOut().writer();
    var cfg = ito.profileConfig(.netally);
    cfg.our_mac = ito.testing.our_mac;
    var frame_buf: [128]u8 = undefined;
    const frame = ito.testing.build(&frame_buf, .{}); // 60 bytes: 64 on the wire with the FCS
    // Both sides must take the reflect path on this frame, or the bench would time a rejection.
    var check: [128]u8 = undefined;
    @memcpy(check[0..frame.len], frame);
    if (!bareSwap(check[0..frame.len])) return error.FrameNotReflected;
    @memcpy(check[0..frame.len], frame);
    if (!zigCore(&cfg, check[0..frame.len])) return error.FrameNotReflected;

    // The XDP programs, when this process may load them.
    var progs: ?struct { pass: Loaded, bare: Loaded, reflect: xdp.Program } = null;
    if (Loaded.open(pass_object, "fastpath_pass", "fp_pass")) |pass| {
        var p = pass;
        errdefer p.obj.close();
        var bare = try Loaded.open(bare_object, "bare_xdp_tx", "bare_xdp_tx");
        errdefer bare.obj.close();
        var reflect = try xdp.Program.load(std.heap.page_allocator, &cfg, .tx, 0, 0);
        errdefer reflect.close();
        var scratch: [4096]u8 = undefined;
        for ([_]*bpf.c.bpf_program{ bare.prog, reflect.prog }) |prog| {
            const r = try bpf.testRunXdp(prog, frame, &scratch);
            if (r.action != bpf.c.XDP_TX) {
                std.debug.print("error: bench: {s} returned XDP action {d} on the test frame, not XDP_TX\n", .{ bpf.c.bpf_program__name(prog), r.action });
                return error.FrameNotReflected;
            }
        }
        progs = .{ .pass = p, .bare = bare, .reflect = reflect };
    } else |e| switch (e) {
        error.PermissionDenied => try out.print("XDP programs skipped: loading BPF needs root or CAP_BPF (run 'sudo zig build bench')\n", .{}),
        else => {
            std.debug.print("error: bench: {s}\n", .{std.mem.span(diag.message())});
            return e;
        },
    }
    defer if (progs) |*p| {
        p.pass.obj.close();
        p.bare.obj.close();
        p.reflect.close();
    };

    var pass: [rounds]f64 = undefined;
    var bare: [rounds]f64 = undefined;
    var reflect: [rounds]f64 = undefined;
    var zig_bare: [rounds]f64 = undefined;
    var zig_core: [rounds]f64 = undefined;
    const durations = try std.heap.page_allocator.alloc(u32, bpf_calls);
    defer std.heap.page_allocator.free(durations);
    for (0..rounds) |r| {
        std.debug.print("bench: round {d} of {d} …\n", .{ r + 1, rounds });
        if (progs) |*p| {
            pass[r] = try timeBpf(p.pass.prog, frame, durations);
            bare[r] = try timeBpf(p.bare.prog, frame, durations);
            reflect[r] = try timeBpf(p.reflect.prog, frame, durations);
        }
        zig_bare[r] = try timeZig(frame, &cfg, false);
        zig_core[r] = try timeZig(frame, &cfg, true);
    }

    try out.print("fastpath zig build bench — {d} CPUs, {d} rounds, medians; 64-byte DATA:OT frame, netally rules\n", .{ std.Thread.getCpuCount() catch 0, rounds });
    if (progs != null) {
        const clock = median(&pass);
        const b = median(&bare) - clock;
        const f = median(&reflect) - clock;
        try out.print("XDP program per frame (BPF_PROG_TEST_RUN, median run of {d} a round, minus {d:.1} ns of an XDP_PASS-only run):\n", .{ bpf_calls, clock });
        try out.print("  bare XDP_TX swap (bench/bare_xdp_tx.c)  {d:>7.1} ns\n", .{b});
        try out.print("  fastpath reflect.bpf.c                  {d:>7.1} ns  (+{d:.1} ns; {d:.2}x with the clock read)\n", .{ f, f - b, median(&reflect) / median(&bare) });
    }
    const zb = median(&zig_bare);
    const zc = median(&zig_core);
    try out.print("Zig core per frame (copy in, then validate and rewrite; {d} frames a round):\n", .{zig_frames});
    try out.print("  bare swap with the fixture's check      {d:>7.1} ns  1.00\n", .{zb});
    try out.print("  ito.classify + ito.rewrite              {d:>7.1} ns  {d:.2}\n", .{ zc, zc / zb });
}
