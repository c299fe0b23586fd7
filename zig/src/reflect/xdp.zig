//! The in-kernel reflector: zig/bpf/reflect.bpf.c, embedded, configured through .rodata, attached to
//! an interface through a BPF link (so it leaves the interface when the process exits, however it
//! exits). Its per-CPU counters are folded into the same `abi.Counters` block the other dataplanes
//! fill.
const std = @import("std");
const abi = @import("../abi.zig");
const bpf = @import("../sys/bpf.zig");
const diag = @import("../sys/diag.zig");
const sys = @import("../sys/linux.zig");
pub const c = bpf.c;
const Error = abi.Error;

pub const object = @embedFile("reflect.bpf.o");
const pass_object = @embedFile("pass.bpf.o");

const xdp_flags_update_if_noexist = 1;

/// Takes a link-less XDP program (such as the one `attachPass` leaves) off `ifindex`. No-op without one.
pub fn detachPass(ifindex: i32, ifname: []const u8) Error!void {
    if (c.bpf_xdp_detach(ifindex, 0, null) != 0) {
        const e: std.os.linux.E = @enumFromInt(std.c._errno().*);
        return diag.fail(sys.errorOf(e), "removing XDP from {s}: {s}", .{ ifname, sys.describe(e) });
    }
}

/// Attaches the XDP_PASS program to `ifindex` without a link, so it stays when this process exits
/// (for the namespace lab, whose veth pair outlives `lab up`; deleting the namespace removes it).
pub fn attachPass(ifindex: i32, ifname: []const u8) Error!void {
    var obj = try bpf.Object.open(pass_object, "fastpath_pass");
    defer obj.close(); // an attached program keeps itself alive
    try obj.load();
    const prog = try obj.program("fp_pass");
    if (c.bpf_xdp_attach(ifindex, c.bpf_program__fd(prog), xdp_flags_update_if_noexist, null) != 0) {
        const e: std.os.linux.E = @enumFromInt(std.c._errno().*);
        if (e == .BUSY or e == .EXIST) return; // already runs XDP: XDP_TX frames arrive either way
        return diag.fail(sys.errorOf(e), "attaching XDP_PASS to {s}: {s}", .{ ifname, sys.describe(e) });
    }
}

/// A MAC as the program's `ours` map holds it: its six bytes in memory order, then two zero bytes.
pub fn macWord(mac: [6]u8) u64 {
    var w: [8]u8 = .{0} ** 8;
    @memcpy(w[0..6], &mac);
    return @bitCast(w);
}

pub const Action = enum(u8) { tx = c.FP_ACTION_TX, redirect = c.FP_ACTION_REDIRECT };

pub const AttachMode = abi.XdpAttach;

pub const Program = struct {
    obj: bpf.Object,
    prog: *c.bpf_program,
    counters_fd: i32,
    xsks_fd: i32,
    /// The map with the interface's MAC now (see `setMac`).
    ours_fd: i32,
    /// The map that holds reflections back (see `holdTx`).
    hold_fd: i32,
    link: ?*c.bpf_link = null,
    ncpus: usize,
    values: []c.struct_fp_xdp_counters,
    gpa: std.mem.Allocator,

    /// Opens and loads the program with `cfg` baked in.
    /// `xsk_max_frame`: afxdp mode's longest frame (longer ones are passed to the stack); 0 = no limit.
    /// `vlan_meta_ifindex`: bind the program to this device (BPF_F_XDP_DEV_BOUND_ONLY) and read
    /// the receive VLAN tag its driver holds as metadata; 0: not bound, the tag is not read.
    pub fn load(gpa: std.mem.Allocator, cfg: *const abi.ItoConfig, action: Action, xsk_max_frame: u32, vlan_meta_ifindex: i32) Error!Program {
        var obj = try bpf.Object.open(object, "fastpath_reflect");
        errdefer obj.close();
        try obj.setRodata("cfg", std.mem.asBytes(cfg));
        try obj.setRodata("action", &.{@intFromEnum(action)});
        try obj.setRodata("xsk_max_frame", std.mem.asBytes(&xsk_max_frame));
        const name: [:0]const u8 = if (vlan_meta_ifindex != 0) "fp_reflect_vlan" else "fp_reflect";
        const other: [:0]const u8 = if (vlan_meta_ifindex != 0) "fp_reflect" else "fp_reflect_vlan";
        _ = c.bpf_program__set_autoload(try obj.program(other), false);
        if (vlan_meta_ifindex != 0) {
            const prog = try obj.program(name);
            c.bpf_program__set_ifindex(prog, @intCast(vlan_meta_ifindex));
            _ = c.bpf_program__set_flags(prog, c.bpf_program__flags(prog) | c.BPF_F_XDP_DEV_BOUND_ONLY);
        }
        try obj.load();
        const ncpus_rc = c.libbpf_num_possible_cpus();
        if (ncpus_rc <= 0) return diag.fail(error.System, "cannot count possible CPUs", .{});
        const ncpus: usize = @intCast(ncpus_rc);
        const values = gpa.alloc(c.struct_fp_xdp_counters, ncpus) catch return error.OutOfMemory;
        errdefer gpa.free(values);
        var p = Program{
            .obj = obj,
            .prog = try obj.program(name),
            .counters_fd = try obj.mapFd("counters"),
            .xsks_fd = try obj.mapFd("xsks"),
            .ours_fd = try obj.mapFd("ours"),
            .hold_fd = try obj.mapFd("hold_tx"),
            .ncpus = ncpus,
            .values = values,
            .gpa = gpa,
        };
        try p.setMac(cfg.our_mac);
        return p;
    }

    /// Makes `mac` the only address the program answers for, from the next frame on (one map write:
    /// a frame is checked against the old MAC or the new, never a mix).
    pub fn setMac(p: *Program, mac: [6]u8) Error!void {
        const key: u32 = 0;
        const value = macWord(mac);
        if (c.bpf_map_update_elem(p.ours_fd, &key, &value, 0) != 0)
            return bpf.errnoError("writing the interface's MAC into the XDP program's map");
    }

    /// xdp mode: `on` drops reflections from the next frame (counted as `drop_tx_error`) instead of
    /// sending them back, for a veth peer that cannot take them now; `off` sends them again.
    pub fn holdTx(p: *Program, on: bool) Error!void {
        const key: u32 = 0;
        const value: u32 = @intFromBool(on);
        if (c.bpf_map_update_elem(p.hold_fd, &key, &value, 0) != 0)
            return bpf.errnoError("writing the XDP program's hold_tx map");
    }

    /// Attaches to `ifindex` through a BPF link (driver mode when the driver has it, else generic).
    /// `netns`: the `ip netns` name the interface is in ("" for ours), for the commands a message names.
    pub fn attach(p: *Program, ifindex: i32, ifname: []const u8, netns: []const u8) Error!AttachMode {
        const link = c.bpf_program__attach_xdp(p.prog, ifindex) orelse {
            const e: std.os.linux.E = @enumFromInt(std.c._errno().*);
            var ip_buf: [80]u8 = undefined;
            const ip = sys.ipIn(&ip_buf, netns);
            return switch (e) {
                .BUSY, .EXIST => diag.fail(error.Busy, "another XDP program is attached to {s}: see '{s} link show {s}', remove it with '{s} link set {s} xdp off', or use `mode` packet, which works beside it", .{ ifname, ip, ifname, ip, ifname }),
                .OPNOTSUPP, .INVAL => diag.fail(error.Unsupported, "{s} does not accept this XDP program ({s})", .{ ifname, sys.describe(e) }),
                .PERM, .ACCES => diag.fail(error.PermissionDenied, "attaching XDP to {s}: {s}", .{ ifname, sys.describe(e) }),
                else => diag.fail(sys.errorOf(e), "attaching XDP to {s}: {s}", .{ ifname, sys.describe(e) }),
            };
        };
        p.link = link;
        const mode = bpf.fp_bpf_xdp_attach_mode(ifindex);
        if (mode < 0) return .none;
        return std.meta.intToEnum(AttachMode, mode) catch .none;
    }

    /// Sums the per-CPU counters into `out` (absolute totals since load).
    pub fn read(p: *Program, out: *abi.Counters) void {
        const key: u32 = 0;
        if (c.bpf_map_lookup_elem(p.counters_fd, &key, p.values.ptr) != 0) return;
        var t = std.mem.zeroes(c.struct_fp_xdp_counters);
        for (p.values) |v| {
            t.rx_packets += v.rx_packets;
            t.rx_bytes += v.rx_bytes;
            t.tx_packets += v.tx_packets;
            t.tx_bytes += v.tx_bytes;
            t.too_long += v.too_long;
            t.tx_held += v.tx_held;
            for (0..t.sig.len) |i| t.sig[i] += v.sig[i];
            for (0..t.drop.len) |i| t.drop[i] += v.drop[i];
        }
        const Set = struct {
            fn set(ptr: *u64, value: u64) void {
                @atomicStore(u64, ptr, value, .monotonic);
            }
        };
        Set.set(&out.rx_packets, t.rx_packets);
        Set.set(&out.rx_bytes, t.rx_bytes);
        Set.set(&out.sig_probeot, t.sig[c.FP_SIG_PROBEOT]);
        Set.set(&out.sig_dataot, t.sig[c.FP_SIG_DATAOT]);
        Set.set(&out.sig_latency, t.sig[c.FP_SIG_LATENCY]);
        Set.set(&out.sig_rfc2544, t.sig[c.FP_SIG_RFC2544]);
        Set.set(&out.sig_y1564, t.sig[c.FP_SIG_Y1564]);
        Set.set(&out.drop_too_short, t.drop[c.FP_TOO_SHORT]);
        Set.set(&out.drop_not_ours, t.drop[c.FP_NOT_OURS]);
        Set.set(&out.drop_oui, t.drop[c.FP_OUI]);
        Set.set(&out.drop_not_udp, t.drop[c.FP_NOT_UDP]);
        Set.set(&out.drop_malformed, t.drop[c.FP_MALFORMED]);
        Set.set(&out.drop_port, t.drop[c.FP_PORT]);
        Set.set(&out.drop_signature, t.drop[c.FP_SIGNATURE]);
        Set.set(&out.drop_too_long, t.too_long);
        // The caller adds what the veth could not hand to its peer (reflector.readKernel).
        Set.set(&out.drop_tx_error, t.tx_held);
        // In xdp mode the kernel transmits; in afxdp mode the workers add their own tx counts.
        if (t.tx_packets != 0) {
            Set.set(&out.tx_packets, t.tx_packets);
            Set.set(&out.tx_bytes, t.tx_bytes);
        }
    }

    pub fn close(p: *Program) void {
        if (p.link) |l| _ = c.bpf_link__destroy(l);
        p.link = null;
        p.obj.close();
        p.gpa.free(p.values);
    }
};

// ---------------------------------------------------------------------------------------------
// One rulebook, two implementations: the shared frame table through ito/ito.zig and through the loaded
// XDP program (BPF_PROG_TEST_RUN) gives the same verdicts and the same bytes.

const ito = @import("../ito/ito.zig");
const frames = @import("../ito/frames.zig");

fn loadForTest(cfg: *const abi.ItoConfig) !?Program {
    return Program.load(std.testing.allocator, cfg, .tx, 0, 0) catch |e| switch (e) {
        error.PermissionDenied => {
            std.debug.print("SKIPPED: loading BPF needs root or CAP_BPF\n", .{});
            return null;
        },
        else => {
            std.debug.print("load failed: {s}\n", .{std.mem.span(diag.message())});
            return e;
        },
    };
}

fn verdictOfCounters(before: *const abi.Counters, after: *const abi.Counters) ?abi.Verdict {
    inline for (.{
        .{ "drop_too_short", abi.Verdict.too_short },
        .{ "drop_not_ours", abi.Verdict.not_ours },
        .{ "drop_oui", abi.Verdict.oui },
        .{ "drop_not_udp", abi.Verdict.not_udp },
        .{ "drop_malformed", abi.Verdict.malformed },
        .{ "drop_port", abi.Verdict.port },
        .{ "drop_signature", abi.Verdict.signature },
    }) |e| {
        if (@field(after, e[0]) != @field(before, e[0])) return e[1];
    }
    if (after.tx_packets != before.tx_packets) return .reflect;
    return null;
}

test "the XDP program and the Zig core agree on every frame of the table, byte for byte" {
    var buf: [2048]u8 = undefined;
    var zig_out: [2048]u8 = undefined;
    var bpf_out: [4096]u8 = undefined;
    var checked: usize = 0;
    for (frames.configs()) |conf| {
        var prog = (try loadForTest(&conf.cfg)) orelse return error.SkipZigTest;
        defer prog.close();
        for (frames.cases) |case| {
            const frame = frames.build(&buf, case);
            const p = ito.classify(&conf.cfg, frame);
            @memcpy(zig_out[0..frame.len], frame);
            if (p.verdict == .reflect) ito.rewrite(&conf.cfg, zig_out[0..frame.len], p);

            var before: abi.Counters = .{};
            prog.read(&before);
            // The kernel refuses test runs on frames shorter than an Ethernet header.
            if (frame.len < 14) {
                try std.testing.expect(p.verdict == .too_short);
                continue;
            }
            const r = try bpf.testRunXdp(prog.prog, frame, &bpf_out);
            var after: abi.Counters = .{};
            prog.read(&after);
            const bpf_verdict = verdictOfCounters(&before, &after);
            const want_action: u32 = if (p.verdict == .reflect) c.XDP_TX else c.XDP_PASS;
            if (r.action != want_action or bpf_verdict != p.verdict or !std.mem.eql(u8, r.out, zig_out[0..frame.len])) {
                std.debug.print("config '{s}', frame '{s}': zig {s}, xdp action {d} verdict {?s}\n", .{
                    conf.name, case.name, @tagName(p.verdict), r.action, if (bpf_verdict) |v| @tagName(v) else null,
                });
                return error.TestUnexpectedResult;
            }
            checked += 1;
        }
    }
    try std.testing.expect(checked > 200);
}

test "after setMac the program answers the new MAC only, and with none it answers nothing" {
    var buf: [2048]u8 = undefined;
    var out: [4096]u8 = undefined;
    const cfg = frames.configs()[0].cfg;
    var prog = (try loadForTest(&cfg)) orelse return error.SkipZigTest;
    defer prog.close();
    const to_old = frames.build(&buf, .{ .name = "ito", .spec = .{} });
    try std.testing.expectEqual(@as(u32, c.XDP_TX), (try bpf.testRunXdp(prog.prog, to_old, &out)).action);

    const new_mac = [6]u8{ 0x02, 0, 0, 0, 0, 0x0b };
    try prog.setMac(new_mac);
    try std.testing.expectEqual(@as(u32, c.XDP_PASS), (try bpf.testRunXdp(prog.prog, to_old, &out)).action);
    var to_new = frames.build(&buf, .{ .name = "ito", .spec = .{ .dst = new_mac } });
    try std.testing.expectEqual(@as(u32, c.XDP_TX), (try bpf.testRunXdp(prog.prog, to_new, &out)).action);

    try prog.setMac(.{0} ** 6);
    to_new = frames.build(&buf, .{ .name = "ito", .spec = .{ .dst = .{0} ** 6 } });
    try std.testing.expectEqual(@as(u32, c.XDP_PASS), (try bpf.testRunXdp(prog.prog, to_new, &out)).action);
}

test "a program that fails the verifier reports the verifier's words" {
    // Loading the real object with a garbage section name is not possible; instead prove the log
    // path on a program the kernel refuses: an empty object is rejected by libbpf with a message.
    const bad = [_]u8{0} ** 64;
    try std.testing.expectError(error.InvalidArgument, bpf.Object.open(&bad, "garbage"));
    try std.testing.expect(std.mem.indexOf(u8, std.mem.span(diag.message()), "opening the BPF object") != null);
}
