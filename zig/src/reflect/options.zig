//! What a caller may ask of a reflector: every check of `abi.ReflectorOptions` (once, for every
//! caller; messages name each option as the scripting API spells it, marked `likeThis`), and the
//! profile table — the one place a tester's OUI, TOS toggle and signatures are written.
const std = @import("std");
const abi = @import("../abi.zig");
const diag = @import("../sys/diag.zig");
const cpus = @import("../sys/cpus.zig");
const Error = abi.Error;

pub const max_workers = 64;
/// afxdp's coalescing: 4 096 receive descriptors last 1 ms at 4 Mpps, so no longer wait than that
/// (the interrupt deferral is held to a quarter of the device's ring besides).
pub const max_coalesce_us = 1000;

/// The coalescing period `o` asks for in `mode`: each mode's own unless the caller chose one
/// (`coalesce_default` 0). Each keeps what it had under load before low rates stopped
/// coalescing (e4e4c91): afxdp 500 µs of interrupt deferral; packet mode 1 ms, what its TPACKET_V3
/// block timer held frames for. Its TPACKET_V2 worker sleeping 500 µs instead woke twice as often:
/// 12-18 % more CPU per frame at 100 kpps (`deno task bench`, README); 1 ms: +6 %.
pub fn coalesceUs(o: *const abi.ReflectorOptions, mode: abi.Dataplane) u32 {
    if (o.coalesce_default == 0) return o.coalesce_us;
    return switch (mode) {
        .packet => 1000,
        else => 500,
    };
}

/// What a profile brings unless the caller says otherwise.
pub const ProfileRules = struct {
    /// The source-MAC OUI required; null = any sender.
    oui: ?[3]u8,
    tos_toggle: bool,
    signatures: u8,
};

/// The testers fastpath reflects for. NetAlly's LinkRunner, OneTouch and EtherScope send from MACs
/// with NetAlly's OUI (00:c0:17) and expect TOS bit 0 toggled on the way back (`plain` leaves it);
/// RFC 2544 and Y.1564 generators come from any vendor.
pub const profiles = std.EnumArray(abi.Profile, ProfileRules).init(.{
    .netally = .{ .oui = .{ 0x00, 0xc0, 0x17 }, .tos_toggle = true, .signatures = abi.Signature.ito_bits },
    .plain = .{ .oui = .{ 0x00, 0xc0, 0x17 }, .tos_toggle = false, .signatures = abi.Signature.ito_bits },
    .rfc2544 = .{ .oui = null, .tos_toggle = false, .signatures = abi.Signature.rfc2544.bit() },
    .y1564 = .{ .oui = null, .tos_toggle = false, .signatures = abi.Signature.y1564.bit() },
});

fn enumOf(comptime E: type, value: anytype, comptime option: []const u8) Error!E {
    return std.meta.intToEnum(E, value) catch
        diag.fail(error.InvalidArgument, "`" ++ option ++ "` {d} is not a known value", .{value});
}

fn range(value: anytype, min: anytype, max: anytype, comptime option: []const u8, comptime why: []const u8) Error!void {
    if (value < min or value > max)
        return diag.fail(error.InvalidArgument, "`" ++ option ++ "` {d} must be a whole number from {d} to {d}" ++ why, .{ value, min, max });
}

/// Checks every option and returns the rules they ask for: the profile's, with the caller's
/// overrides. `our_mac` is left zero (the interface's, filled in at start).
pub fn resolve(o: *const abi.ReflectorOptions) Error!abi.ItoConfig {
    if (std.mem.indexOfScalar(u8, &o.ifname, 0) == null or o.ifname[0] == 0)
        return diag.fail(error.InvalidArgument, "`iface` must name an interface of at most 15 bytes", .{});
    if (std.mem.indexOfScalar(u8, &o.netns, 0) == null)
        return diag.fail(error.InvalidArgument, "`netns` must be at most 63 bytes", .{});
    _ = try enumOf(abi.Dataplane, o.dataplane, "mode");
    const profile = try enumOf(abi.Profile, o.profile, "profile");
    const swap = try enumOf(abi.SwapMode, o.swap, "swap");
    _ = try enumOf(abi.Fanout, o.fanout, "fanout");
    try range(o.workers, 1, max_workers, "workers", "");
    try range(o.nice, -20, 19, "nice", "");
    try range(o.coalesce_us, 0, max_coalesce_us, "coalesceUs", " (longer waits can overflow the receive ring)");
    try range(o.coalesce_default, 0, 1, "coalesceDefault", "");
    try range(o.batch, 1, 1024, "batch", "");
    try range(o.oui_mode, 0, 2, "oui", "");
    try range(o.tos_toggle, -1, 1, "tosToggle", "");
    if (o.signatures & ~@as(u8, (1 << @typeInfo(abi.Signature).@"enum".fields.len) - 1) != 0)
        return diag.fail(error.InvalidArgument, "`signatures` has unknown bits 0x{x}", .{o.signatures});
    if (o.first_cpu < -1) return diag.fail(error.InvalidArgument, "`cpu` must be a CPU number, not {d}", .{o.first_cpu});
    try cpus.check(o.first_cpu, o.workers, "cpu");
    const unused = workerOptions(o);
    if (o.dataplane == @intFromEnum(abi.Dataplane.xdp) and unused.len > 0)
        return diag.fail(error.InvalidArgument, "{s} {s} for worker threads and xdp mode has none (the kernel reflects each frame on the CPU that received it, as it arrives): drop {s}, or use `mode` afxdp or packet", .{ unused, if (std.mem.indexOf(u8, unused, " and ") != null) "are" else "is", if (std.mem.indexOf(u8, unused, " and ") != null) "them" else "it" });

    const rules = profiles.get(profile);
    const oui: ?[3]u8 = switch (o.oui_mode) {
        0 => rules.oui,
        1 => null,
        else => o.oui,
    };
    const tos = if (o.tos_toggle < 0) rules.tos_toggle else o.tos_toggle == 1;
    return .{
        .our_mac = .{0} ** 6,
        .oui = oui orelse .{ 0, 0, 0 },
        .oui_filter = @intFromBool(oui != null),
        .port = o.port,
        .mode = @intFromEnum(swap),
        // The TOS byte is an IP field: with only MACs swapped, IP headers go back untouched.
        .tos_toggle = @intFromBool(tos and swap != .mac),
        .signatures = if (o.signatures != 0) o.signatures else rules.signatures,
    };
}

/// The options, by name, that xdp mode cannot honour because it has no worker threads: where they
/// run or how many (`cpu`, `workers`), how long they let frames gather (`coalesceUs`; 0 = off is
/// what xdp does anyway). Empty when the caller asked for none of them.
pub fn workerOptions(o: *const abi.ReflectorOptions) []const u8 {
    const places = o.first_cpu >= 0 or o.workers > 1;
    const paces = o.coalesce_default == 0 and o.coalesce_us > 0;
    if (places and paces) return "`cpu`, `workers` and `coalesceUs`";
    if (places) return "`cpu` and `workers`";
    if (paces) return "`coalesceUs`";
    return "";
}

/// The refusal of `port` 0 in a mode where the host stack sees every frame the reflector sees: no
/// socket can hold every port, so the host would answer test frames with ICMP port-unreachable.
/// `alternative`: a mode where the stack does not see them (" or use `mode` xdp"), or "".
pub fn refuseAnyPort(mode: []const u8, alternative: []const u8) abi.Error {
    return diag.fail(error.InvalidArgument, "`port` 0 (any) cannot be guarded in {s} mode: the host would answer test frames with ICMP port-unreachable; name the tester's port (`port` 3842){s}", .{ mode, alternative });
}

pub fn testOptions() abi.ReflectorOptions {
    var o = std.mem.zeroes(abi.ReflectorOptions);
    @memcpy(o.ifname[0..3], "lo0");
    o.workers = 1;
    o.batch = 64;
    o.port = 3842;
    o.swap = @intFromEnum(abi.SwapMode.mac_ip);
    o.tos_toggle = -1;
    return o;
}

test "each profile brings its OUI, TOS toggle and signatures, and the caller's overrides win" {
    var o = testOptions();
    var c = try resolve(&o);
    try std.testing.expectEqual(@as(u8, 1), c.oui_filter);
    try std.testing.expectEqualSlices(u8, &.{ 0x00, 0xc0, 0x17 }, &c.oui);
    try std.testing.expectEqual(@as(u8, 1), c.tos_toggle);
    try std.testing.expectEqual(abi.Signature.ito_bits, c.signatures);

    o.profile = @intFromEnum(abi.Profile.rfc2544);
    c = try resolve(&o);
    try std.testing.expectEqual(@as(u8, 0), c.oui_filter);
    try std.testing.expectEqual(@as(u8, 0), c.tos_toggle);
    try std.testing.expectEqual(abi.Signature.rfc2544.bit(), c.signatures);

    o.oui_mode = 2;
    o.oui = .{ 1, 2, 3 };
    o.tos_toggle = 1;
    o.signatures = abi.Signature.latency.bit();
    c = try resolve(&o);
    try std.testing.expectEqual(@as(u8, 1), c.oui_filter);
    try std.testing.expectEqualSlices(u8, &.{ 1, 2, 3 }, &c.oui);
    try std.testing.expectEqual(@as(u8, 1), c.tos_toggle);
    try std.testing.expectEqual(abi.Signature.latency.bit(), c.signatures);

    // Swapping only MACs leaves every IP field alone, the TOS byte too.
    o.swap = @intFromEnum(abi.SwapMode.mac);
    try std.testing.expectEqual(@as(u8, 0), (try resolve(&o)).tos_toggle);
}

test "a bad option is refused naming it as scripts spell it" {
    var o = testOptions();
    o.nice = -21;
    try std.testing.expectError(error.InvalidArgument, resolve(&o));
    try std.testing.expectEqualStrings("`nice` -21 must be a whole number from -20 to 19", std.mem.span(diag.message()));
    o = testOptions();
    o.coalesce_us = 5000;
    try std.testing.expectError(error.InvalidArgument, resolve(&o));
    try std.testing.expect(std.mem.startsWith(u8, std.mem.span(diag.message()), "`coalesceUs` 5000 must be a whole number from 0 to 1000"));
    o = testOptions();
    o.swap = 9;
    try std.testing.expectError(error.InvalidArgument, resolve(&o));
    o = testOptions();
    o.workers = 0;
    try std.testing.expectError(error.InvalidArgument, resolve(&o));
}

test "xdp mode refuses cpu, workers and a coalescing period, which it cannot honour, instead of ignoring them" {
    var o = testOptions();
    o.dataplane = @intFromEnum(abi.Dataplane.xdp);
    o.first_cpu = -1;
    _ = try resolve(&o);
    o.workers = 2;
    try std.testing.expectError(error.InvalidArgument, resolve(&o));
    try std.testing.expect(std.mem.startsWith(u8, std.mem.span(diag.message()), "`cpu` and `workers` are for worker threads and xdp mode has none"));
    o.workers = 1;
    o.first_cpu = 0;
    try std.testing.expectError(error.InvalidArgument, resolve(&o));
    o.first_cpu = -1;
    o.coalesce_default = 0;
    o.coalesce_us = 0; // off: what xdp does anyway
    _ = try resolve(&o);
    o.coalesce_us = 200;
    try std.testing.expectError(error.InvalidArgument, resolve(&o));
    try std.testing.expect(std.mem.startsWith(u8, std.mem.span(diag.message()), "`coalesceUs` is for worker threads"));
    o.coalesce_default = 1; // the mode's own: nothing asked
    _ = try resolve(&o);
    o.dataplane = @intFromEnum(abi.Dataplane.packet);
    _ = try resolve(&o);
}

test "each mode has its own coalescing period unless the caller chose one" {
    var o = std.mem.zeroes(abi.ReflectorOptions);
    o.coalesce_default = 1;
    try std.testing.expectEqual(@as(u32, 1000), coalesceUs(&o, .packet));
    try std.testing.expectEqual(@as(u32, 500), coalesceUs(&o, .afxdp));
    o.coalesce_default = 0;
    o.coalesce_us = 200;
    try std.testing.expectEqual(@as(u32, 200), coalesceUs(&o, .packet));
    o.coalesce_us = 0;
    try std.testing.expectEqual(@as(u32, 0), coalesceUs(&o, .afxdp));
}
