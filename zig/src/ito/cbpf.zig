//! The classic BPF socket filter that lets only ITO candidates reach userspace: our destination MAC,
//! the OUI (when filtered), IPv4 (any IHL) or IPv6, with up to two VLAN tags, UDP, the test port.
//! Signatures are checked in userspace so they are counted. The same program serves Linux
//! (SO_ATTACH_FILTER) and macOS (BIOCSETF); Linux tests run it in the kernel on an AF_UNIX socket.
const std = @import("std");
const abi = @import("../abi.zig");

pub const Insn = extern struct {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
};

pub const Program = extern struct {
    len: u16,
    filter: [*]const Insn,
};

// Opcodes (linux/filter.h, net/bpf.h: identical).
const ld_w_abs = 0x20;
const ld_h_abs = 0x28;
const ld_b_abs = 0x30;
const ld_h_ind = 0x48;
const ldx_b_msh = 0xb1;
const alu_and_k = 0x54;
const jeq_k = 0x15;
const ja = 0x05;
const ret_k = 0x06;

pub const max_insns = 64;
pub const accept_len: u32 = 0x40000;

/// A tiny assembler: jumps name labels and are resolved to relative offsets by `finish`.
const Asm = struct {
    insns: [max_insns]Insn = undefined,
    // For each instruction, the labels its jt/jf refer to (0xff: none, fall through).
    targets: [max_insns][2]u8 = undefined,
    labels: [32]u8 = .{0xff} ** 32,
    n: u8 = 0,

    const none: u8 = 0xff;

    fn op(a: *Asm, code: u16, k: u32) void {
        a.insns[a.n] = .{ .code = code, .jt = 0, .jf = 0, .k = k };
        a.targets[a.n] = .{ none, none };
        a.n += 1;
    }
    fn jump(a: *Asm, code: u16, k: u32, jt: u8, jf: u8) void {
        a.op(code, k);
        a.targets[a.n - 1] = .{ jt, jf };
    }
    fn label(a: *Asm, l: u8) void {
        a.labels[l] = a.n;
    }
    fn finish(a: *Asm) []const Insn {
        for (0..a.n) |i| {
            for (0..2) |side| {
                const l = a.targets[i][side];
                if (l == none) continue;
                const at = a.labels[l];
                std.debug.assert(at != none and at > i);
                const rel: u8 = @intCast(at - i - 1);
                if (a.insns[i].code == ja) a.insns[i].k = rel else if (side == 0) a.insns[i].jt = rel else a.insns[i].jf = rel;
            }
        }
        return a.insns[0..a.n];
    }
};

// Labels.
const L_accept = 0;
const L_drop = 1;
const L_tag = 2; // + n: n tags read, the next ethertype at 12 + 4n
const L_v4 = 5; // + n: IPv4 after n tags
const L_v6 = 8; // + n: IPv6 after n tags

pub const Filter = struct {
    asm_: Asm = .{},
    insns: []const Insn = &.{},

    pub fn program(f: *const Filter) Program {
        return .{ .len = @intCast(f.insns.len), .filter = f.insns.ptr };
    }
};

/// Builds the filter for `cfg` into `out` (which must stay put while the program is in use).
pub fn build(out: *Filter, cfg: *const abi.ItoConfig) void {
    var a = &out.asm_;
    a.* = .{};
    const mac = cfg.our_mac;
    const next = Asm.none;
    a.op(ld_w_abs, 0);
    a.jump(jeq_k, std.mem.readInt(u32, mac[0..4], .big), next, L_drop);
    a.op(ld_h_abs, 4);
    a.jump(jeq_k, std.mem.readInt(u16, mac[4..6], .big), next, L_drop);
    if (cfg.oui_filter != 0) {
        a.op(ld_w_abs, 6);
        a.op(alu_and_k, 0xffffff00);
        a.jump(jeq_k, @as(u32, cfg.oui[0]) << 24 | @as(u32, cfg.oui[1]) << 16 | @as(u32, cfg.oui[2]) << 8, next, L_drop);
    }
    // Up to ito.max_tags inline VLAN tags: on Linux the kernel has taken the outermost one out
    // already (userspace counts it), on macOS every tag is still in the frame.
    for (0..ito.max_tags + 1) |n| {
        const tags: u8 = @intCast(n);
        a.label(L_tag + tags);
        a.op(ld_h_abs, 12 + 4 * @as(u32, tags));
        if (n < ito.max_tags) {
            a.jump(jeq_k, 0x8100, L_tag + tags + 1, next);
            a.jump(jeq_k, 0x88a8, L_tag + tags + 1, next);
        }
        a.jump(jeq_k, 0x0800, L_v4 + tags, next);
        a.jump(jeq_k, 0x86dd, L_v6 + tags, L_drop);
    }
    for (0..ito.max_tags + 1) |n| {
        const l3: u32 = 14 + 4 * @as(u32, @intCast(n));
        a.label(L_v4 + @as(u8, @intCast(n)));
        a.op(ld_b_abs, l3 + 9);
        a.jump(jeq_k, 17, next, L_drop);
        a.op(ldx_b_msh, l3);
        portCheck(a, ld_h_ind, l3 + 2, cfg.port);
    }
    for (0..ito.max_tags + 1) |n| {
        const l3: u32 = 14 + 4 * @as(u32, @intCast(n));
        a.label(L_v6 + @as(u8, @intCast(n)));
        a.op(ld_b_abs, l3 + 6);
        a.jump(jeq_k, 17, next, L_drop);
        portCheck(a, ld_h_abs, l3 + 40 + 2, cfg.port);
    }
    a.label(L_accept);
    a.op(ret_k, accept_len);
    a.label(L_drop);
    a.op(ret_k, 0);
    out.insns = a.finish();
}

fn portCheck(a: *Asm, load: u16, off: u32, port: u16) void {
    if (port == 0) {
        a.jump(ja, 0, L_accept, Asm.none);
        return;
    }
    a.op(load, off);
    a.jump(jeq_k, port, L_accept, L_drop);
}

/// A filter that drops everything: for the guard UDP socket, whose only job is to exist.
pub const drop_all = [_]Insn{.{ .code = ret_k, .jt = 0, .jf = 0, .k = 0 }};

// ---------------------------------------------------------------------------------------------
// Tests: the real kernel runs the program (SO_ATTACH_FILTER on an AF_UNIX datagram socket, where the
// "packet" is the datagram: a dropped datagram simply never arrives).

const builtin = @import("builtin");
const ito = @import("ito.zig");

const KernelFilter = struct {
    fds: [2]i32,

    fn init(f: *const Filter) !KernelFilter {
        const linux = std.os.linux;
        var fds: [2]i32 = undefined;
        if (linux.E.init(linux.socketpair(linux.AF.UNIX, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0, &fds)) != .SUCCESS) return error.SocketPair;
        const prog = f.program();
        const rc = linux.setsockopt(fds[1], linux.SOL.SOCKET, linux.SO.ATTACH_FILTER, std.mem.asBytes(&prog), @sizeOf(Program));
        if (linux.E.init(rc) != .SUCCESS) return error.KernelRefusedFilter;
        return .{ .fds = fds };
    }
    fn deinit(k: KernelFilter) void {
        _ = std.os.linux.close(k.fds[0]);
        _ = std.os.linux.close(k.fds[1]);
    }
    /// Sends `frame` through the filter; returns whether it came out the other side.
    fn passes(k: KernelFilter, frame: []const u8) !bool {
        const linux = std.os.linux;
        if (linux.E.init(linux.write(k.fds[0], frame.ptr, frame.len)) != .SUCCESS) return error.Write;
        var buf: [9100]u8 = undefined;
        const rc = linux.recvfrom(k.fds[1], &buf, buf.len, linux.MSG.DONTWAIT, null, null);
        return linux.E.init(rc) == .SUCCESS;
    }
};

test "the kernel accepts the filter and it passes exactly the ITO candidates" {
    if (builtin.os.tag != .linux) return error.SkipZigTest;
    var cfg = ito.testing.config(.mac_ip);
    var filter: Filter = .{};
    build(&filter, &cfg);
    const k = try KernelFilter.init(&filter);
    defer k.deinit();
    var buf: [9100]u8 = undefined;
    const Case = struct { spec: ito.testing.FrameSpec, pass: bool };
    const cases = [_]Case{
        .{ .spec = .{}, .pass = true },
        .{ .spec = .{ .ihl = 9 }, .pass = true },
        .{ .spec = .{ .ihl = 15, .size = 120 }, .pass = true },
        .{ .spec = .{ .vlan = 10 }, .pass = true },
        .{ .spec = .{ .vlan = 10, .tpid = 0x88a8, .ihl = 6 }, .pass = true },
        .{ .spec = .{ .ipv6 = true, .size = 80 }, .pass = true },
        .{ .spec = .{ .ipv6 = true, .vlan = 3, .size = 80 }, .pass = true },
        .{ .spec = .{ .vlan = 20, .tpid = 0x88a8, .inner_vlan = 100 }, .pass = true },
        .{ .spec = .{ .vlan = 20, .tpid = 0x88a8, .inner_vlan = 100, .ipv6 = true, .size = 88 }, .pass = true },
        .{ .spec = .{ .vlan = 20, .tpid = 0x88a8, .inner_vlan = 100, .dst_port = 80 }, .pass = false },
        .{ .spec = .{ .size = 9014 }, .pass = true },
        .{ .spec = .{ .signature = "NOTITO!" }, .pass = true }, // counted as a signature drop in userspace
        .{ .spec = .{ .dst = .{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff } }, .pass = false },
        .{ .spec = .{ .dst = .{ 2, 0, 0, 0, 0, 9 } }, .pass = false },
        .{ .spec = .{ .src = .{ 2, 0xaa, 0xbb, 1, 2, 3 } }, .pass = false },
        .{ .spec = .{ .dst_port = 80 }, .pass = false },
        .{ .spec = .{ .ihl = 6, .dst_port = 80 }, .pass = false },
        .{ .spec = .{ .vlan = 10, .dst_port = 80 }, .pass = false },
        .{ .spec = .{ .ipv6 = true, .size = 80, .dst_port = 80 }, .pass = false },
        .{ .spec = .{ .proto = 6 }, .pass = false },
        .{ .spec = .{ .ipv6 = true, .proto = 6, .size = 80 }, .pass = false },
    };
    for (cases, 0..) |c, i| {
        const frame = ito.testing.build(&buf, c.spec);
        const got = try k.passes(frame);
        if (got != c.pass) {
            std.debug.print("case {d}: expected pass={}\n", .{ i, c.pass });
            return error.TestUnexpectedResult;
        }
    }
    // Truncated headers make the kernel's bounds-checked loads fail: dropped.
    const frame = ito.testing.build(&buf, .{});
    try std.testing.expect(!try k.passes(frame[0..20]));
    try std.testing.expect(!try k.passes(frame[0..35]));
}

test "without OUI and port filters the filter passes other vendors and ports" {
    if (builtin.os.tag != .linux) return error.SkipZigTest;
    var cfg = ito.testing.config(.mac_ip);
    cfg.oui_filter = 0;
    cfg.port = 0;
    var filter: Filter = .{};
    build(&filter, &cfg);
    try std.testing.expect(filter.insns.len < max_insns);
    const k = try KernelFilter.init(&filter);
    defer k.deinit();
    var buf: [256]u8 = undefined;
    try std.testing.expect(try k.passes(ito.testing.build(&buf, .{ .src = .{ 2, 0xaa, 0xbb, 1, 2, 3 }, .dst_port = 9 })));
    try std.testing.expect(try k.passes(ito.testing.build(&buf, .{ .ipv6 = true, .size = 80, .dst_port = 7 })));
    try std.testing.expect(!try k.passes(ito.testing.build(&buf, .{ .dst = .{ 2, 0, 0, 0, 0, 9 } })));
}

test "the drop-all guard filter is accepted by the kernel and drops" {
    if (builtin.os.tag != .linux) return error.SkipZigTest;
    var f: Filter = .{};
    f.insns = &drop_all;
    const k = try KernelFilter.init(&f);
    defer k.deinit();
    try std.testing.expect(!try k.passes("anything"));
}
