const std = @import("std");
const deps = @import("deps.zig");

pub fn build(b: *std.Build) void {
    // A library that ships runs on any CPU of its architecture (the sched_ext test VM's emulated CPU
    // lacks the build machine's extensions): baseline unless -Dcpu= says otherwise.
    const target = b.standardTargetOptions(.{ .default_target = .{ .cpu_model = .baseline } });
    const optimize = b.standardOptimizeOption(.{});

    const lib_mod = b.createModule(.{
        .root_source_file = b.path("src/root.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    const versions = readVersions(b);
    const vendor = b.option([]const u8, "vendor-src", "where scripts/setup unpacked the libbpf, elfutils and zlib sources") orelse
        b.pathFromRoot("../.tools/src");
    const linux = target.result.os.tag == .linux;
    if (linux and deps.add(b, lib_mod, vendor, versions) == null) b.getInstallStep().dependOn(&b.addFail("libbpf sources missing: run scripts/setup").step);
    if (linux) addBpfObjects(b, lib_mod, vendor, versions);
    const lib = b.addLibrary(.{ .name = "fastpath", .linkage = .dynamic, .root_module = lib_mod });
    // Every symbol must resolve at link time: a missing one would otherwise surface at dlopen.
    lib.linker_allow_shlib_undefined = false;
    b.installArtifact(lib);

    // What a game feels of the scheduler (frames; input through a compositor), for the sched_ext
    // tests and `deno task bench:sched`.
    const probes = [_][2][]const u8{ .{ "fp-schedprobe", "tools/schedprobe.zig" }, .{ "fp-inputprobe", "tools/inputprobe.zig" } };
    if (linux) for (probes) |p| {
        const probe = b.addExecutable(.{ .name = p[0], .root_module = b.createModule(.{
            .root_source_file = b.path(p[1]),
            .target = target,
            .optimize = optimize,
        }) });
        b.installArtifact(probe);
    };

    // The same library for Macs, built here (Linux-only parts are left out at compile time).
    const cross = b.step("cross", "Cross-compile libfastpath for aarch64-macos and x86_64-macos");
    for ([_][]const u8{ "aarch64-macos", "x86_64-macos" }) |triple| {
        const query = std.Target.Query.parse(.{ .arch_os_abi = triple }) catch unreachable;
        const mod = b.createModule(.{
            .root_source_file = b.path("src/root.zig"),
            .target = b.resolveTargetQuery(query),
            .optimize = optimize,
            .link_libc = true,
        });
        const mac_lib = b.addLibrary(.{ .name = "fastpath", .linkage = .dynamic, .root_module = mod });
        const install = b.addInstallArtifact(mac_lib, .{ .dest_dir = .{ .override = .{ .custom = b.fmt("lib/{s}", .{triple}) } } });
        cross.dependOn(&install.step);
    }

    const test_mod = b.createModule(.{
        .root_source_file = b.path("src/tests.zig"),
        .target = target,
        .optimize = .Debug,
        .link_libc = true,
    });
    if (linux) {
        _ = deps.add(b, test_mod, vendor, versions);
        addBpfObjects(b, test_mod, vendor, versions);
    }
    const tests = b.addTest(.{ .root_module = test_mod });
    const run_tests = b.addRunArtifact(tests);
    const test_step = b.step("test", "Run the library's unit and fuzz tests (and the tools')");
    test_step.dependOn(&run_tests.step);
    // A tool is a module of its own (src/tests.zig cannot import zig/tools/): its tests run here too.
    if (linux) for (probes) |p| {
        const probe_tests = b.addTest(.{ .root_module = b.createModule(.{
            .root_source_file = b.path(p[1]),
            .target = target,
            .optimize = .Debug,
        }) });
        test_step.dependOn(&b.addRunArtifact(probe_tests).step);
    };

    // What full validation costs per frame against a bare swap, in the XDP program and the Zig core.
    if (linux) {
        // A tool cannot @import files outside zig/tools/ (Zig 0.14 keeps a module's files under its
        // root's directory), so the library's sources reach it as the module "fastpath": src/dev.zig
        // re-exports the namespaces the bench uses, and this module carries what they need (libbpf,
        // the embedded BPF objects), as the library's own module does.
        const dev_mod = b.createModule(.{
            .root_source_file = b.path("src/dev.zig"),
            .target = target,
            .optimize = .ReleaseFast,
            .link_libc = true,
        });
        _ = deps.add(b, dev_mod, vendor, versions);
        addBpfObjects(b, dev_mod, vendor, versions);
        const bench_mod = b.createModule(.{
            .root_source_file = b.path("tools/bench.zig"),
            .target = target,
            .optimize = .ReleaseFast,
            .link_libc = true,
            .imports = &.{.{ .name = "fastpath", .module = dev_mod }},
        });
        // The objects the bench embeds itself: XDP_PASS only, and the lab benchmark's reference
        // program, the same object bench/reflector.ts attaches.
        addBpfObject(b, bench_mod, vendor, versions, .{ .name = "pass" });
        addBpfObject(b, bench_mod, vendor, versions, .{ .name = "bare_xdp_tx", .path = "../bench/bare_xdp_tx.c" });
        const bench = b.addExecutable(.{ .name = "fp-bench", .root_module = bench_mod });
        b.step("bench", "Time the XDP program and the Zig core per frame against a bare swap (root for the XDP part)")
            .dependOn(&b.addRunArtifact(bench).step);
    }
}

/// The source versions pinned in scripts/versions.env (the one place versions live).
fn readVersions(b: *std.Build) deps.Versions {
    var v = deps.Versions{};
    const text = std.fs.cwd().readFileAlloc(b.allocator, b.pathFromRoot("../scripts/versions.env"), 1 << 16) catch return v;
    var lines = std.mem.tokenizeScalar(u8, text, '\n');
    while (lines.next()) |line| {
        const eq = std.mem.indexOfScalar(u8, line, '=') orelse continue;
        const key = std.mem.trim(u8, line[0..eq], " ");
        var value = line[eq + 1 ..];
        if (std.mem.indexOfScalar(u8, value, '#')) |hash| value = value[0..hash];
        value = std.mem.trim(u8, value, " \t");
        if (std.mem.eql(u8, key, "LIBBPF_SRC_VERSION")) v.libbpf = value;
        if (std.mem.eql(u8, key, "ELFUTILS_SRC_VERSION")) v.elfutils = value;
        if (std.mem.eql(u8, key, "ZLIB_SRC_VERSION")) v.zlib = value;
    }
    return v;
}

const BpfObject = struct {
    name: []const u8,
    /// Source relative to zig/: bpf/<name>.bpf.c unless given.
    path: ?[]const u8 = null,
    define: ?[]const u8 = null,
    /// Built against the kept 6.12 vmlinux.h (CO-RE programs).
    vmlinux: bool = false,
};

/// Compiles the BPF programs in bpf/ with clang-19 for the bpf target and makes each object available
/// to Zig as @embedFile("<name>.bpf.o"). Helpers come from the pinned libbpf source, not the system.
fn addBpfObjects(b: *std.Build, mod: *std.Build.Module, vendor: []const u8, v: deps.Versions) void {
    const objects = [_]BpfObject{
        .{ .name = "reflect" },
        .{ .name = "pass" },
        .{ .name = "sched", .vmlinux = true },
        // The detectors: the game's input, GPU, audio and network threads (`sched observe` too).
        .{ .name = "detect", .vmlinux = true },
        // The deliberately stalling build the ejection test loads (`sched run --test-stall-pid`).
        .{ .name = "sched_stall", .path = "bpf/sched.bpf.c", .define = "-DFP_TEST_STALL", .vmlinux = true },
        // A minimal tcp_congestion_ops: proves the struct_ops loader on kernels without sched_ext.
        .{ .name = "test_cc", .vmlinux = true },
    };
    for (objects) |o| addBpfObject(b, mod, vendor, v, o);
    mod.addIncludePath(b.path("bpf"));
}

fn addBpfObject(b: *std.Build, mod: *std.Build.Module, vendor: []const u8, v: deps.Versions, o: BpfObject) void {
    const arch = @tagName(b.graph.host.result.cpu.arch);
    const libbpf_src = b.fmt("{s}/libbpf-{s}", .{ vendor, v.libbpf });
    // <bpf/bpf_helpers.h> as installed headers lay them out.
    const helpers = b.addWriteFiles();
    for ([_][]const u8{ "bpf_helpers.h", "bpf_helper_defs.h", "bpf_endian.h", "bpf_tracing.h", "bpf_core_read.h" }) |h| {
        _ = helpers.addCopyFile(.{ .cwd_relative = b.fmt("{s}/src/{s}", .{ libbpf_src, h }) }, b.fmt("bpf/{s}", .{h}));
    }
    const cc = b.addSystemCommand(&.{ "clang-19", "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror", "-Wno-unused-function" });
    if (o.define) |d| cc.addArg(d);
    // bpf_tracing.h's PT_REGS for kprobes: the registers of the architecture the kernel runs on.
    cc.addArg(switch (b.graph.host.result.cpu.arch) {
        .aarch64 => "-D__TARGET_ARCH_arm64",
        .riscv64 => "-D__TARGET_ARCH_riscv",
        .powerpc64le => "-D__TARGET_ARCH_powerpc",
        .s390x => "-D__TARGET_ARCH_s390",
        else => "-D__TARGET_ARCH_x86",
    });
    cc.addPrefixedDirectoryArg("-I", b.path("bpf"));
    // The kernel types (sched_ext included) for CO-RE: a 6.12 vmlinux.h kept in the project.
    if (o.vmlinux) cc.addPrefixedDirectoryArg("-I", b.path("bpf/vmlinux"));
    cc.addPrefixedDirectoryArg("-I", helpers.getDirectory());
    cc.addArg(b.fmt("-I{s}/include/uapi", .{libbpf_src}));
    cc.addArg(b.fmt("-I/usr/include/{s}-linux-gnu", .{arch})); // <asm/types.h>
    cc.addArg("-c");
    cc.addFileArg(b.path(o.path orelse b.fmt("bpf/{s}.bpf.c", .{o.name})));
    cc.addFileInput(b.path("bpf/fastpath.h"));
    cc.addFileInput(b.path("bpf/sched.h"));
    cc.addFileInput(b.path("bpf/detect.h"));
    cc.addFileInput(b.path("bpf/detect_maps.h"));
    cc.addArg("-o");
    const obj = cc.addOutputFileArg(b.fmt("{s}.bpf.o", .{o.name}));
    mod.addAnonymousImport(b.fmt("{s}.bpf.o", .{o.name}), .{ .root_source_file = obj });
}
