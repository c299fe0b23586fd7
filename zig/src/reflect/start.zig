//! Starting a reflector on any platform: the options are checked and the profile resolved
//! (options.zig), then the dataplane asked for starts — or, for `auto`, the fastest this platform
//! starts, with the reason in `ReflectorInfo.reason`. Problems of the interface or of the caller are
//! the same in every mode, so they end the search at once instead of being tried three times.
const std = @import("std");
const abi = @import("../abi.zig");
const diag = @import("../sys/diag.zig");
const options = @import("options.zig");
const os = @import("../sys/os.zig");
const Error = abi.Error;

/// What `start` checks before it opens anything: the options, and that the mode asked for exists here.
pub fn check(opts: *const abi.ReflectorOptions) Error!abi.ItoConfig {
    const cfg = try options.resolve(opts);
    const asked: abi.Dataplane = @enumFromInt(opts.dataplane); // checked by resolve
    if (asked != .auto and std.mem.indexOfScalar(abi.Dataplane, os.reflector_modes, asked) == null)
        return unavailable(asked, os.reflector_modes);
    return cfg;
}

pub fn start(gpa: std.mem.Allocator, opts: *const abi.ReflectorOptions) Error!*os.Reflector {
    const cfg = try check(opts);
    const modes = os.reflector_modes;
    const asked: abi.Dataplane = @enumFromInt(opts.dataplane);
    if (asked != .auto) {
        const r = try os.Reflector.start(gpa, opts, cfg, asked);
        setReason(r, "{s}: chosen with `mode` {s}", .{ @tagName(asked), @tagName(asked) });
        return r;
    }
    if (modes.len == 0) return diag.fail(error.Unsupported, "no dataplane for this operating system in this build", .{});
    var skipped_buf: [256]u8 = undefined;
    var skipped = std.io.fixedBufferStream(&skipped_buf);
    for (modes, 0..) |mode, i| {
        const r = os.Reflector.start(gpa, opts, cfg, mode) catch |e| switch (e) {
            // Busy goes on to the next mode: another XDP program on the interface stops xdp and
            // afxdp, not packet; a reflector already there stops every mode, so the last says so.
            error.InvalidArgument, error.NoSuchDevice, error.InterfaceDown => return e,
            else => {
                if (i == modes.len - 1) return e;
                skipped.writer().print("{s}{s} not possible ({s})", .{ if (i == 0) "" else "; ", @tagName(mode), std.mem.span(diag.message()) }) catch {};
                continue;
            },
        };
        // xdp has no worker threads: say which options do not apply rather than drop them silently.
        const unused = if (mode == .xdp) options.workerOptions(opts) else "";
        var note_buf: [160]u8 = undefined;
        const note = if (unused.len == 0) "" else std.fmt.bufPrint(&note_buf, "; it has no worker threads, so {s} left unused (`mode` afxdp or packet has them)", .{unused}) catch "";
        if (skipped.pos == 0)
            setReason(r, "auto: {s} is the fastest dataplane{s}", .{ @tagName(mode), note })
        else
            setReason(r, "auto: {s}{s}", .{ skipped.getWritten(), note });
        return r;
    }
    unreachable;
}

fn setReason(r: *os.Reflector, comptime fmt: []const u8, args: anytype) void {
    @memset(&r.reason, 0);
    _ = std.fmt.bufPrint(r.reason[0 .. r.reason.len - 1], fmt, args) catch {
        @memcpy(r.reason[r.reason.len - 4 .. r.reason.len - 1], "...");
    };
}

fn unavailable(asked: abi.Dataplane, modes: []const abi.Dataplane) Error {
    var buf: [128]u8 = undefined;
    var w = std.io.fixedBufferStream(&buf);
    for (modes, 0..) |m, i| w.writer().print("{s}`mode` {s}", .{ if (i == 0) "" else " or ", @tagName(m) }) catch {};
    return diag.fail(error.Unsupported, "mode {s} is not available in this build: use {s} (or auto)", .{ @tagName(asked), w.getWritten() });
}
