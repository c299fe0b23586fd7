//! BPF objects through libbpf (linked in statically, see deps.zig): open from memory, write
//! configuration into .rodata, load with the verifier log kept for the error message, attach.
const std = @import("std");
const abi = @import("../abi.zig");
const diag = @import("diag.zig");
const sys = @import("linux.zig");
const Error = abi.Error;

pub const c = @cImport({
    @cInclude("bpf/libbpf.h");
    @cInclude("bpf/bpf.h");
    @cInclude("bpf/btf.h");
    @cInclude("fastpath.h");
    @cInclude("sched.h");
    @cInclude("detect.h");
});

// bpf_shim.c: calls that need LIBBPF_OPTS.
extern fn fp_bpf_open_mem(buf: [*]const u8, len: usize, name: [*:0]const u8) ?*c.bpf_object;
extern fn fp_bpf_run_syscall(prog_fd: c_int) c_int;
extern fn fp_bpf_test_run(prog_fd: c_int, in: [*]const u8, in_len: u32, out: [*]u8, out_len: *u32, repeat: u32, retval: *u32, duration: *u32) c_int;
pub extern fn fp_bpf_xdp_attach_mode(ifindex: c_int) c_int;
pub extern fn fp_bpf_xdp_features(ifindex: c_int, features: *u64, zc_max_segs: *u32) c_int;
pub extern fn fp_bpf_prog_maps(prog_fd: c_int, name: *[16]u8, prog_type: *u32, map_ids: [*]u32, nr_maps: *u32) c_int;
pub extern fn fp_bpf_map_about(map_fd: c_int, name: *[16]u8, map_type: *u32, value_size: *u32, btf_id: *u32) c_int;

/// libbpf's version as major << 16 | minor.
pub fn version() u32 {
    return @as(u32, c.libbpf_major_version()) << 16 | c.libbpf_minor_version();
}

// --- libbpf's messages ---------------------------------------------------------------------------
// libbpf reports through one global print callback. We keep the tail of what it said while loading
// (the verifier log is printed there) so a failure can carry it.

var log_lock: std.Thread.Mutex = .{};
var log_buf: [16 * 1024]u8 = undefined;
var log_len: usize = 0;
var print_installed = std.atomic.Value(bool).init(false);

extern fn vsnprintf(buf: [*]u8, size: usize, fmt: [*c]const u8, ap: ?*anyopaque) c_int;

/// Where printFn formats one message: libbpf prints a whole verifier log in one call, and its verdict
/// is at the bottom, so the message must fit whole to keep its end.
var print_scratch: [256 * 1024]u8 = undefined;

fn printFn(level: c.enum_libbpf_print_level, fmt: [*c]const u8, ap: ?*anyopaque) callconv(.C) c_int {
    if (level == c.LIBBPF_DEBUG) return 0;
    log_lock.lock();
    defer log_lock.unlock();
    const n = vsnprintf(&print_scratch, print_scratch.len, fmt, ap);
    if (n <= 0) return 0;
    const len = @min(@as(usize, @intCast(n)), print_scratch.len - 1);
    // At most half the log from one message (its end), so the lines before it keep some room.
    const keep_msg = @min(len, log_buf.len / 2);
    const msg = print_scratch[len - keep_msg .. len];
    if (log_len + msg.len > log_buf.len) {
        // Keep the end: the verifier's verdict is at the bottom.
        const keep = @min(log_len, log_buf.len - msg.len);
        std.mem.copyForwards(u8, log_buf[0..keep], log_buf[log_len - keep .. log_len]);
        log_len = keep;
    }
    @memcpy(log_buf[log_len..][0..msg.len], msg);
    log_len += msg.len;
    return 0;
}

fn installPrint() void {
    if (print_installed.swap(true, .acq_rel)) return;
    _ = c.libbpf_set_print(@ptrCast(&printFn));
}

fn clearLog() void {
    log_lock.lock();
    defer log_lock.unlock();
    log_len = 0;
}

/// The last lines libbpf printed (the verifier's conclusion), one line per ` | `.
fn logTail(out: []u8) []const u8 {
    log_lock.lock();
    defer log_lock.unlock();
    const text = std.mem.trimRight(u8, log_buf[0..log_len], "\n ");
    var start = text.len;
    var lines: usize = 0;
    while (start > 0 and lines < 6) {
        start -= 1;
        if (text[start] == '\n') lines += 1;
    }
    const tail = text[start..];
    var n: usize = 0;
    for (tail) |ch| {
        if (n >= out.len) break;
        out[n] = if (ch == '\n') ' ' else ch;
        n += 1;
    }
    return out[0..n];
}

/// The program libbpf last said it failed to load ("prog 'NAME': failed to load"), copied to `out`.
pub fn failedProgram(out: []u8) ?[]const u8 {
    log_lock.lock();
    defer log_lock.unlock();
    const text = log_buf[0..log_len];
    const end = std.mem.lastIndexOf(u8, text, "': failed to load") orelse return null;
    const start = (std.mem.lastIndexOf(u8, text[0..end], "prog '") orelse return null) + "prog '".len;
    const name = text[start..end];
    if (name.len > out.len) return null;
    @memcpy(out[0..name.len], name);
    return out[0..name.len];
}

pub fn errnoError(what: []const u8) Error {
    const errno = std.c._errno().*;
    var tail_buf: [700]u8 = undefined;
    const tail = logTail(&tail_buf);
    const sep = if (tail.len > 0) " — libbpf: " else "";
    // libbpf's own codes (LIBBPF_ERRNO__*, 4000 and up) mean the object itself is bad.
    if (errno >= 4000) {
        var msg: [128]u8 = undefined;
        _ = c.libbpf_strerror(errno, &msg, msg.len);
        diag.set("{s}: {s}{s}{s}", .{ what, std.mem.sliceTo(&msg, 0), sep, tail });
        return error.InvalidArgument;
    }
    const e: std.os.linux.E = @enumFromInt(errno);
    diag.set("{s}: {s}{s}{s}", .{ what, sys.describe(e), sep, tail });
    return sys.errorOf(e);
}

/// `errnoError` for a failed `bpf_object__load`. The verifier's refusal of a program comes back as
/// EACCES, EINVAL or E2BIG; with every BPF privilege held that is no missing privilege ("run as root"
/// named the wrong fix): this kernel does not take this build.
fn loadError(what: []const u8) Error {
    const errno = std.c._errno().*;
    const e: std.os.linux.E = @enumFromInt(errno);
    if ((e != .ACCES and e != .INVAL and e != .@"2BIG") or !verifierRefused() or !bpfPrivileged())
        return errnoError(what);
    var name_buf: [64]u8 = undefined;
    const prog = failedProgram(&name_buf) orelse "?";
    var tail_buf: [700]u8 = undefined;
    const tail = logTail(&tail_buf);
    diag.set("{s}: the kernel's verifier rejected program '{s}' (errno {d}): this kernel does not accept this build; report it with `uname -r` — libbpf: {s}", .{ what, prog, errno, tail });
    return error.Unsupported;
}

/// Whether the kernel's verifier refused a program, not for want of privilege (see isVerifierVerdict).
fn verifierRefused() bool {
    log_lock.lock();
    defer log_lock.unlock();
    return isVerifierVerdict(log_buf[0..log_len]);
}

/// libbpf prints the verifier's log between "-- BEGIN PROG LOAD LOG --" and "-- END PROG LOAD LOG --"
/// only when there is one (libbpf.c, bpf_object_load_prog); a refusal inside the verifier for want of
/// privilege says "!root" or "unprivileged" (kernel/bpf/verifier.c).
fn isVerifierVerdict(log: []const u8) bool {
    return std.mem.indexOf(u8, log, "PROG LOAD LOG --") != null and
        std.mem.indexOf(u8, log, "!root") == null and std.mem.indexOf(u8, log, "unprivileged") == null;
}

/// Whether this process holds what loading any BPF program takes: CAP_SYS_ADMIN, or CAP_BPF with
/// CAP_PERFMON (capabilities(7)), in its effective set.
fn bpfPrivileged() bool {
    // The kernel's struct __user_cap_header_struct (std's declares pid as usize).
    const Header = extern struct { version: u32, pid: i32 };
    var hdr: Header = .{ .version = 0x20080522, .pid = 0 }; // _LINUX_CAPABILITY_VERSION_3
    var data: [2]std.os.linux.cap_user_data_t = undefined;
    const rc = std.os.linux.syscall2(.capget, @intFromPtr(&hdr), @intFromPtr(&data));
    if (std.os.linux.E.init(rc) != .SUCCESS) return false;
    const eff = @as(u64, data[1].effective) << 32 | data[0].effective;
    const sys_admin: u64 = 1 << 21;
    const bpf_perfmon: u64 = 1 << 39 | 1 << 38; // CAP_BPF, CAP_PERFMON
    return eff & sys_admin != 0 or eff & bpf_perfmon == bpf_perfmon;
}

test "a verifier's verdict in libbpf's output is told apart from a refusal for privilege" {
    try std.testing.expect(isVerifierVerdict("libbpf: prog 'fastpath_enqueue': BPF program load failed: Permission denied\n" ++
        "libbpf: prog 'fastpath_enqueue': -- BEGIN PROG LOAD LOG --\nR1 invalid mem access 'scalar'\n-- END PROG LOAD LOG --\n"));
    try std.testing.expect(!isVerifierVerdict("libbpf: prog 'fastpath_enqueue': BPF program load failed: Operation not permitted\n"));
    try std.testing.expect(!isVerifierVerdict("libbpf: prog 'fp_reflect': -- BEGIN PROG LOAD LOG --\n" ++
        "R2 pointer arithmetic on pkt_end prohibited for !root\n-- END PROG LOAD LOG --\n"));
}

// --- An opened object ----------------------------------------------------------------------------

pub const Object = struct {
    obj: *c.bpf_object,

    /// Opens an ELF object held in memory (embedded in this library).
    pub fn open(bytes: []const u8, name: [:0]const u8) Error!Object {
        installPrint();
        clearLog();
        const obj = fp_bpf_open_mem(bytes.ptr, bytes.len, name.ptr) orelse return errnoError("opening the BPF object");
        return .{ .obj = obj };
    }

    pub fn close(o: *Object) void {
        c.bpf_object__close(o.obj);
    }

    /// Where the global `name` lives in the data section `section` (.rodata, .bss), found through BTF.
    pub fn findGlobal(o: *Object, section: [:0]const u8, name: []const u8) Error!Global {
        const btf = c.bpf_object__btf(o.obj) orelse return diag.fail(error.System, "the BPF object has no BTF", .{});
        return globalIn(btf, section, name);
    }

    pub const Global = struct { offset: usize, size: usize };

    /// Where the global `name` lives in data section `section` according to `btf`.
    pub fn globalIn(btf: *const c.struct_btf, section: [:0]const u8, name: []const u8) Error!Global {
        const sec_id = c.btf__find_by_name_kind(btf, section.ptr, c.BTF_KIND_DATASEC);
        if (sec_id < 0) return diag.fail(error.System, "no {s} section in the object's BTF", .{section});
        const sec: *const c.struct_btf_type = c.btf__type_by_id(btf, @intCast(sec_id));
        const vlen = sec.info & 0xffff;
        const infos: [*]const c.struct_btf_var_secinfo = @ptrCast(@as([*]const c.struct_btf_type, @ptrCast(sec)) + 1);
        for (infos[0..vlen]) |vs| {
            const v: *const c.struct_btf_type = c.btf__type_by_id(btf, vs.type);
            if (std.mem.eql(u8, std.mem.span(c.btf__name_by_offset(btf, v.name_off)), name))
                return .{ .offset = vs.offset, .size = vs.size };
        }
        return diag.fail(error.System, "BPF global {s} not found in {s}", .{ name, section });
    }

    /// Writes `value` into the `const volatile` global `name` before load.
    pub fn setRodata(o: *Object, name: []const u8, value: []const u8) Error!void {
        const map = c.bpf_object__find_map_by_name(o.obj, ".rodata") orelse
            return diag.fail(error.System, "the BPF object has no .rodata", .{});
        var size: usize = 0;
        const data: [*]u8 = @ptrCast(c.bpf_map__initial_value(map, &size) orelse
            return diag.fail(error.System, ".rodata has no initial value", .{}));
        const v = try o.findGlobal(".rodata", name);
        if (v.size != value.len or v.offset + v.size > size)
            return diag.fail(error.System, "BPF global {s} is {d} bytes, the library expects {d}", .{ name, v.size, value.len });
        @memcpy(data[v.offset..][0..value.len], value);
    }

    /// Loads every program; on failure the error carries the end of the verifier log.
    pub fn load(o: *Object) Error!void {
        clearLog();
        if (c.bpf_object__load(o.obj) != 0) return loadError("loading the BPF program");
    }

    pub fn program(o: *Object, name: [:0]const u8) Error!*c.bpf_program {
        return c.bpf_object__find_program_by_name(o.obj, name.ptr) orelse
            diag.fail(error.System, "BPF program {s} not found", .{name});
    }

    /// Maps the loaded object's .bss into our memory (libbpf only does this for skeletons), so its
    /// globals are plain loads and stores shared with the kernel.
    pub fn mapBss(o: *Object) Error!Bss {
        const map = c.bpf_object__find_map_by_name(o.obj, ".bss") orelse
            return diag.fail(error.System, "the BPF object has no .bss", .{});
        const size: usize = c.bpf_map__value_size(map);
        const len = std.mem.alignForward(usize, size, std.heap.pageSize());
        const rc = std.os.linux.mmap(null, len, std.os.linux.PROT.READ | std.os.linux.PROT.WRITE, .{ .TYPE = .SHARED }, c.bpf_map__fd(map), 0);
        const base: [*]align(std.heap.page_size_min) u8 = @ptrFromInt(try sys.check(rc, "mapping a BPF object's .bss", .{}));
        return .{ .mem = base[0..len], .size = size };
    }

    pub fn mapFd(o: *Object, name: [:0]const u8) Error!i32 {
        const m = c.bpf_object__find_map_by_name(o.obj, name.ptr) orelse
            return diag.fail(error.System, "BPF map {s} not found", .{name});
        return c.bpf_map__fd(m);
    }
};

// --- Another process's loaded object ---------------------------------------------------------------

/// One map of a loaded program, opened by id (close `fd`).
pub const LoadedMap = struct {
    fd: i32,
    name: [16]u8,
    type: u32,
    value_size: u32,
    btf_id: u32,

    pub fn nameIs(m: *const LoadedMap, name: []const u8) bool {
        return std.mem.eql(u8, std.mem.sliceTo(&m.name, 0), name);
    }

    /// Global `name` of type T from this map (a `.bss`), placed by the BTF the kernel keeps for it.
    pub fn global(m: *const LoadedMap, comptime T: type, name: []const u8) ?T {
        if (m.btf_id == 0 or !std.mem.endsWith(u8, std.mem.sliceTo(&m.name, 0), ".bss")) return null;
        const btf = c.btf__load_from_kernel_by_id(m.btf_id) orelse return null;
        defer c.btf__free(btf);
        const g = Object.globalIn(btf, ".bss", name) catch return null;
        if (g.size != @sizeOf(T) or g.offset + g.size > m.value_size) return null;
        const bss = std.heap.page_allocator.alloc(u8, m.value_size) catch return null;
        defer std.heap.page_allocator.free(bss);
        const zero: u32 = 0;
        if (c.bpf_map_lookup_elem(m.fd, &zero, bss.ptr) != 0) return null;
        var v: T = undefined;
        @memcpy(std.mem.asBytes(&v), bss[g.offset..][0..g.size]);
        return v;
    }
};

/// The maps (at most 16, opened: close each) of the first loaded program of type `prog_type` whose
/// name is `name` (the kernel keeps 15 bytes of it), whichever process loaded it; 0 when none is.
pub fn loadedProgramMaps(prog_type: u32, name: []const u8, out: *[16]LoadedMap) usize {
    var id: u32 = 0;
    while (c.bpf_prog_get_next_id(id, &id) == 0) {
        const fd = c.bpf_prog_get_fd_by_id(id);
        if (fd < 0) continue;
        defer sys.close(fd);
        var ids: [16]u32 = undefined;
        var nr: u32 = ids.len;
        var pname: [16]u8 = undefined;
        var ptype: u32 = 0;
        if (fp_bpf_prog_maps(fd, &pname, &ptype, &ids, &nr) != 0) continue;
        if (ptype != prog_type or !std.mem.eql(u8, std.mem.sliceTo(&pname, 0), name)) continue;
        var n: usize = 0;
        for (ids[0..nr]) |mid| {
            const mfd = c.bpf_map_get_fd_by_id(mid);
            if (mfd < 0) continue;
            out[n] = .{ .fd = mfd, .name = undefined, .type = 0, .value_size = 0, .btf_id = 0 };
            if (fp_bpf_map_about(mfd, &out[n].name, &out[n].type, &out[n].value_size, &out[n].btf_id) != 0) {
                sys.close(mfd);
                continue;
            }
            n += 1;
        }
        return n;
    }
    return 0;
}

pub fn closeMaps(maps: []const LoadedMap) void {
    for (maps) |m| sys.close(m.fd);
}

/// A loaded object's .bss, mapped (Object.mapBss).
pub const Bss = struct {
    mem: []align(std.heap.page_size_min) u8,
    size: usize,

    /// The global `name` of type T (its size checked against the object's BTF).
    pub fn global(b: Bss, comptime T: type, o: *Object, name: []const u8) Error!*volatile T {
        const v = try o.findGlobal(".bss", name);
        if (v.size != @sizeOf(T) or v.offset + v.size > b.size)
            return diag.fail(error.System, "BPF global {s} is {d} bytes, the library expects {d}", .{ name, v.size, @sizeOf(T) });
        return @ptrCast(@alignCast(b.mem.ptr + v.offset));
    }

    pub fn unmap(b: *Bss) void {
        if (b.mem.len > 0) _ = std.os.linux.munmap(b.mem.ptr, b.mem.len);
        b.mem = &.{};
    }
};

/// Runs a loaded SEC("syscall") program once (BPF_PROG_TEST_RUN, no context); returns what it
/// returned. Errors: System (the kernel refused the run; the message names BPF_PROG_TEST_RUN).
pub fn runSyscall(prog: *c.bpf_program) Error!u32 {
    const rc = fp_bpf_run_syscall(c.bpf_program__fd(prog));
    if (rc < 0) return errnoError("BPF_PROG_TEST_RUN");
    return @intCast(rc);
}

/// Runs a loaded XDP program once on `frame` (BPF_PROG_TEST_RUN); returns the XDP action and the
/// bytes the program left in `out`.
pub fn testRunXdp(prog: *c.bpf_program, frame: []const u8, out: []u8) Error!struct { action: u32, out: []u8 } {
    var out_len: u32 = @intCast(out.len);
    var retval: u32 = 0;
    var duration: u32 = 0;
    if (fp_bpf_test_run(c.bpf_program__fd(prog), frame.ptr, @intCast(frame.len), out.ptr, &out_len, 1, &retval, &duration) != 0)
        return errnoError("BPF_PROG_TEST_RUN");
    return .{ .action = retval, .out = out[0..out_len] };
}

/// Runs a loaded XDP program on a fresh copy of `frame` once per call, `durations.len` calls (a
/// program that rewrites the frame sees the original every time); fills in the kernel's time of
/// each run in ns (its clock read included).
pub fn timeXdp(prog: *c.bpf_program, frame: []const u8, durations: []u32) Error!void {
    var out: [4096]u8 = undefined;
    for (durations) |*d| {
        var out_len: u32 = out.len;
        var retval: u32 = 0;
        if (fp_bpf_test_run(c.bpf_program__fd(prog), frame.ptr, @intCast(frame.len), &out, &out_len, 1, &retval, d) != 0)
            return errnoError("BPF_PROG_TEST_RUN");
    }
}

comptime {
    // The header shared with the BPF programs describes the same bytes as abi.zig.
    std.debug.assert(@sizeOf(c.struct_fp_ito_config) == @sizeOf(abi.ItoConfig));
    for (.{ "our_mac", "oui", "oui_filter", "port", "mode", "tos_toggle", "signatures" }) |f| {
        std.debug.assert(@offsetOf(c.struct_fp_ito_config, f) == @offsetOf(abi.ItoConfig, f));
    }
    std.debug.assert(c.FP_VERDICTS == std.meta.fields(abi.Verdict).len);
    std.debug.assert(c.FP_SIGNATURES == std.meta.fields(abi.Signature).len);
    std.debug.assert(c.FP_SIGNATURE == @intFromEnum(abi.Verdict.signature));
    std.debug.assert(c.FP_SIG_Y1564 == @intFromEnum(abi.Signature.y1564));
    std.debug.assert(c.FP_SWAP_ALL == @intFromEnum(abi.SwapMode.all));
}

test "the linked libbpf is the pinned 1.4 or newer" {
    const v = version();
    try std.testing.expect(v >> 16 == 1 and (v & 0xffff) >= 4);
}
