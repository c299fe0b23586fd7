//! The probes' command lines (fp-schedprobe, fp-inputprobe): `--flag value` pairs, `-h`/`--help`.
//! A bad value is refused with one line naming the flag, what it takes and the fix, exit 2; help goes
//! to stdout, exit 0. Numbers are finite decimals converted to whole nanoseconds (or counts) within a
//! range the flag states, so that no value reaches a loop as 0 ns or wraps a u64.
const std = @import("std");

pub const exit_usage: u8 = 2;

/// A number flag: its text is multiplied by `scale` (ns per unit, 1 for a count) and must then lie in
/// `min`..`max`, or be 0 when `zero_ok` (the flag's "off").
pub const Number = struct {
    scale: f64,
    min: u64,
    max: u64,
    zero_ok: bool = false,
    /// The unit as the user writes it, for messages ("s", "µs", "Hz").
    unit: []const u8,
};

pub const ParseError = error{ NotANumber, OutOfRange };

/// `text` - a plain decimal, as in 16666.5, 1e3 or -1 - as a whole number of `n.scale` units (rounded
/// to the nearest; a count, scale 1, must be whole), within `n`'s range (whose bounds f64 holds exactly).
pub fn number(text: []const u8, n: Number) ParseError!u64 {
    std.debug.assert(n.max <= 1 << 53);
    for (text) |ch| switch (ch) {
        '0'...'9', '.', 'e', 'E', '-', '+' => {},
        else => return error.NotANumber, // 0x10, 1_0, nan, inf: parseFloat takes them
    };
    const v = std.fmt.parseFloat(f64, text) catch return error.NotANumber;
    if (n.scale == 1 and @round(v) != v) return error.NotANumber;
    if (!std.math.isFinite(v)) return error.NotANumber;
    if (v == 0 and n.zero_ok) return 0;
    const scaled = @round(v * n.scale);
    if (!(scaled >= @as(f64, @floatFromInt(n.min)) and scaled <= @as(f64, @floatFromInt(n.max)))) return error.OutOfRange;
    return @intFromFloat(scaled);
}

/// The argument list of one probe: yields each `--flag value` pair once.
pub const Args = struct {
    prog: []const u8,
    usage: []const u8,
    it: std.process.ArgIterator,
    seen: [16][]const u8 = undefined,
    n_seen: usize = 0,

    pub const Pair = struct { flag: []const u8, value: []const u8 };

    pub fn init(prog: []const u8, usage: []const u8, gpa: std.mem.Allocator) !Args {
        var it = try std.process.argsWithAllocator(gpa);
        _ = it.next();
        return .{ .prog = prog, .usage = usage, .it = it };
    }

    /// The next pair; prints help and exits 0 on -h/--help; refuses a flag without a value or given twice.
    pub fn next(self: *Args) ?Pair {
        const arg = self.it.next() orelse return null;
        if (std.mem.eql(u8, arg, "-h") or std.mem.eql(u8, arg, "--help")) {
            std.io.getStdOut().writer().print("{s}\n", .{self.usage}) catch {};
            std.process.exit(0);
        }
        if (!std.mem.startsWith(u8, arg, "--")) self.fail("'{s}' is not a flag: give --flag value pairs", .{arg});
        // --flag=value as well as --flag value.
        const eq = std.mem.indexOfScalar(u8, arg, '=');
        const flag = if (eq) |i| arg[0..i] else arg;
        const value = if (eq) |i| arg[i + 1 ..] else self.it.next() orelse self.fail("{s} needs a value", .{flag});
        for (self.seen[0..self.n_seen]) |s| {
            if (std.mem.eql(u8, s, flag)) self.fail("{s} is given twice: give it once", .{flag});
        }
        // An unknown flag ends the run before the next one is read: more than the known flags never get here.
        if (self.n_seen == self.seen.len) self.fail("more than {d} flags: see --help", .{self.seen.len});
        self.seen[self.n_seen] = flag;
        self.n_seen += 1;
        return .{ .flag = flag, .value = value };
    }

    /// `p`'s value as a number of `n` (see `number`), or a one-line refusal.
    pub fn num(self: *Args, p: Pair, n: Number) u64 {
        return number(p.value, n) catch {
            const lo = @as(f64, @floatFromInt(n.min)) / n.scale;
            const hi = @as(f64, @floatFromInt(n.max)) / n.scale;
            if (n.zero_ok) self.fail("{s} takes 0 (off) or {d} to {d} {s}, not '{s}'", .{ p.flag, lo, hi, n.unit, p.value });
            self.fail("{s} takes {d} to {d} {s}, not '{s}'", .{ p.flag, lo, hi, n.unit, p.value });
        };
    }

    pub fn unknown(self: *Args, p: Pair) noreturn {
        self.fail("unknown flag {s}: see --help", .{p.flag});
    }

    /// One line to stderr, `prog: message`, and exit 2.
    pub fn fail(self: *const Args, comptime fmt: []const u8, args: anytype) noreturn {
        std.debug.print("{s}: " ++ fmt ++ "\n", .{self.prog} ++ args);
        std.process.exit(exit_usage);
    }
};

test "a number is scaled, rounded and held to its range; 0 only where it means off" {
    const period = Number{ .scale = std.time.ns_per_us, .min = 100 * std.time.ns_per_us, .max = 10 * std.time.ns_per_s, .unit = "µs" };
    try std.testing.expectEqual(@as(u64, 16_666_000), try number("16666", period));
    try std.testing.expectEqual(@as(u64, 16_666_500), try number("16666.5", period));
    try std.testing.expectError(error.OutOfRange, number("0.0001", period)); // 0 ns: a loop that never ends
    try std.testing.expectError(error.OutOfRange, number("0", period));
    try std.testing.expectError(error.OutOfRange, number("-5", period));
    try std.testing.expectError(error.OutOfRange, number("1e30", period)); // would wrap a u64
    try std.testing.expectError(error.OutOfRange, number("99999999999999999999", period));
    try std.testing.expectError(error.NotANumber, number("nan", period));
    try std.testing.expectError(error.NotANumber, number("inf", period));
    try std.testing.expectError(error.NotANumber, number("abc", period));
    try std.testing.expectError(error.NotANumber, number("", period));
    try std.testing.expectError(error.NotANumber, number("0x4000", period));
    try std.testing.expectError(error.NotANumber, number("1_0000", period));
    const hz = Number{ .scale = 1, .min = 1, .max = 100_000, .unit = "Hz" };
    try std.testing.expectEqual(@as(u64, 1000), try number("1e3", hz));
    try std.testing.expectError(error.NotANumber, number("0.5", hz)); // a count is whole
    const wake = Number{ .scale = std.time.ns_per_us, .min = 10 * std.time.ns_per_us, .max = 10 * std.time.ns_per_s, .zero_ok = true, .unit = "µs" };
    try std.testing.expectEqual(@as(u64, 0), try number("0", wake));
    try std.testing.expectError(error.OutOfRange, number("0.5", wake));
}
