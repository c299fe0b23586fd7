const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});

    const lib_mod = b.createModule(.{
        .root_source_file = b.path("src/root.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    const lib = b.addLibrary(.{ .name = "fastpath", .linkage = .dynamic, .root_module = lib_mod });
    b.installArtifact(lib);

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
    const tests = b.addTest(.{ .root_module = test_mod });
    const run_tests = b.addRunArtifact(tests);
    b.step("test", "Run the library's unit and fuzz tests").dependOn(&run_tests.step);
}
