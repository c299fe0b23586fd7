//! libbpf, elfutils' libelf and zlib compiled from Debian's source tarballs with zig cc, as
//! position-independent static code linked into libfastpath.so: users need none of them installed.
//! The tarballs are fetched and unpacked by scripts/setup into .tools/src/ (pinned in versions.env).
const std = @import("std");

pub const Versions = struct {
    libbpf: []const u8 = "1.4.6",
    elfutils: []const u8 = "0.188",
    zlib: []const u8 = "1.2.13.dfsg",
};

// gz*.c too: libbpf reads /proc/config.gz to resolve Kconfig externs.
const zlib_sources = [_][]const u8{ "adler32.c", "compress.c", "crc32.c", "deflate.c", "gzclose.c", "gzlib.c", "gzread.c", "gzwrite.c", "infback.c", "inffast.c", "inflate.c", "inftrees.c", "trees.c", "uncompr.c", "zutil.c" };

const libelf_sources = [_][]const u8{
    "elf_version.c",           "elf_hash.c",              "elf_error.c",            "elf_fill.c",
    "elf_begin.c",             "elf_next.c",              "elf_rand.c",             "elf_end.c",
    "elf_kind.c",              "gelf_getclass.c",         "elf_getbase.c",          "elf_getident.c",
    "elf32_fsize.c",           "elf64_fsize.c",           "gelf_fsize.c",           "elf32_xlatetof.c",
    "elf32_xlatetom.c",        "elf64_xlatetof.c",        "elf64_xlatetom.c",       "gelf_xlate.c",
    "elf32_getehdr.c",         "elf64_getehdr.c",         "gelf_getehdr.c",         "elf32_newehdr.c",
    "elf64_newehdr.c",         "gelf_newehdr.c",          "gelf_update_ehdr.c",     "elf32_getphdr.c",
    "elf64_getphdr.c",         "gelf_getphdr.c",          "elf32_newphdr.c",        "elf64_newphdr.c",
    "gelf_newphdr.c",          "gelf_update_phdr.c",      "elf_getarhdr.c",         "elf_getarsym.c",
    "elf_rawfile.c",           "elf_readall.c",           "elf_cntl.c",             "elf_getscn.c",
    "elf_nextscn.c",           "elf_ndxscn.c",            "elf_newscn.c",           "elf32_getshdr.c",
    "elf64_getshdr.c",         "gelf_getshdr.c",          "gelf_update_shdr.c",     "elf_strptr.c",
    "elf_rawdata.c",           "elf_getdata.c",           "elf_newdata.c",          "elf_getdata_rawchunk.c",
    "elf_flagelf.c",           "elf_flagehdr.c",          "elf_flagphdr.c",         "elf_flagscn.c",
    "elf_flagshdr.c",          "elf_flagdata.c",          "elf_memory.c",           "elf_update.c",
    "elf32_updatenull.c",      "elf64_updatenull.c",      "elf32_updatefile.c",     "elf64_updatefile.c",
    "gelf_getsym.c",           "gelf_update_sym.c",       "gelf_getversym.c",       "gelf_getverneed.c",
    "gelf_getvernaux.c",       "gelf_getverdef.c",        "gelf_getverdaux.c",      "gelf_getrel.c",
    "gelf_getrela.c",          "gelf_update_rel.c",       "gelf_update_rela.c",     "gelf_getdyn.c",
    "gelf_update_dyn.c",       "gelf_getmove.c",          "gelf_update_move.c",     "gelf_getsyminfo.c",
    "gelf_update_syminfo.c",   "gelf_getauxv.c",          "gelf_update_auxv.c",     "gelf_getnote.c",
    "gelf_xlatetof.c",         "gelf_xlatetom.c",         "nlist.c",                "gelf_getsymshndx.c",
    "gelf_update_symshndx.c",  "gelf_update_versym.c",    "gelf_update_verneed.c",  "gelf_update_vernaux.c",
    "gelf_update_verdef.c",    "gelf_update_verdaux.c",   "elf_getphdrnum.c",       "elf_getshdrnum.c",
    "elf_getshdrstrndx.c",     "gelf_checksum.c",         "elf32_checksum.c",       "elf64_checksum.c",
    "libelf_crc32.c",          "libelf_next_prime.c",     "elf_clone.c",            "gelf_getlib.c",
    "gelf_update_lib.c",       "elf32_offscn.c",          "elf64_offscn.c",         "gelf_offscn.c",
    "elf_getaroff.c",          "elf_gnu_hash.c",          "elf_scnshndx.c",         "elf32_getchdr.c",
    "elf64_getchdr.c",         "gelf_getchdr.c",          "elf_compress.c",         "elf_compress_gnu.c",
};

const libbpf_sources = [_][]const u8{
    "bpf.c",     "btf.c",        "libbpf.c",   "libbpf_errno.c", "netlink.c",    "nlattr.c",
    "str_error.c", "libbpf_probes.c", "bpf_prog_linfo.c", "btf_dump.c", "hashmap.c", "ringbuf.c",
    "strset.c",  "linker.c",     "gen_loader.c", "relo_core.c", "usdt.c",      "zip.c",
    "elf.c",     "features.c",
};

pub const Deps = struct {
    /// Headers for code that calls libbpf: `#include <bpf/libbpf.h>`.
    include: std.Build.LazyPath,
    libbpf_version: []const u8,
};

/// Adds zlib, libelf and libbpf to `mod` (which must be PIC: a shared library) from `src_root`.
/// Returns null, with a message naming the fix, when the sources are not there.
pub fn add(b: *std.Build, mod: *std.Build.Module, src_root: []const u8, v: Versions) ?Deps {
    const zlib_dir = b.fmt("{s}/zlib-{s}", .{ src_root, v.zlib });
    const elf_dir = b.fmt("{s}/elfutils-{s}", .{ src_root, v.elfutils });
    const bpf_dir = b.fmt("{s}/libbpf-{s}", .{ src_root, v.libbpf });
    for ([_][]const u8{ zlib_dir, elf_dir, bpf_dir }) |dir| {
        std.fs.cwd().access(dir, .{}) catch {
            std.log.err("missing {s}: run scripts/setup (it fetches Debian's source tarballs)", .{dir});
            return null;
        };
    }
    // Hidden visibility (and an empty LIBBPF_API) keeps these symbols out of libfastpath's exports, so a
    // process that also loads a system libbpf or libelf never mixes the two.
    // No UBSan (Zig turns it on for C in Debug): libbpf's offsetofend() idiom is a false positive.
    const common = [_][]const u8{ "-fPIC", "-fvisibility=hidden", "-DLIBBPF_API=", "-w", "-O2", "-fno-sanitize=undefined", "-D_GNU_SOURCE", "-D_FILE_OFFSET_BITS=64" };

    mod.addCSourceFiles(.{ .root = .{ .cwd_relative = zlib_dir }, .files = &zlib_sources, .flags = &(common ++ [_][]const u8{"-DHAVE_UNISTD_H"}) });

    // An include dir with only <config.h>, so elfutils' own headers win over the system's.
    const cfg = b.addWriteFiles();
    _ = cfg.addCopyFile(b.path("deps/elfutils-config.h"), "config.h");
    mod.addCSourceFiles(.{
        .root = .{ .cwd_relative = b.fmt("{s}/libelf", .{elf_dir}) },
        .files = &libelf_sources,
        .flags = &(common ++ [_][]const u8{
            "-DHAVE_CONFIG_H",
            b.fmt("-I{s}/libelf", .{elf_dir}),
            b.fmt("-I{s}/lib", .{elf_dir}),
            b.fmt("-I{s}", .{zlib_dir}),
        }),
    });
    mod.addIncludePath(cfg.getDirectory());

    mod.addCSourceFiles(.{
        .root = .{ .cwd_relative = b.fmt("{s}/src", .{bpf_dir}) },
        .files = &libbpf_sources,
        .flags = &(common ++ [_][]const u8{
            b.fmt("-I{s}/include", .{bpf_dir}),
            b.fmt("-I{s}/include/uapi", .{bpf_dir}),
            b.fmt("-I{s}/libelf", .{elf_dir}),
            b.fmt("-I{s}", .{zlib_dir}),
        }),
    });

    // Our own C next to libbpf: the calls that need LIBBPF_OPTS.
    mod.addCSourceFile(.{ .file = b.path("src/sys/bpf_shim.c"), .flags = &.{ "-fPIC", "-fvisibility=hidden", "-O2", "-Wall", "-Werror" } });

    // <bpf/libbpf.h> for our own code: libbpf installs its headers under bpf/.
    const hdrs = b.addWriteFiles();
    for ([_][]const u8{ "libbpf.h", "bpf.h", "btf.h", "libbpf_common.h", "libbpf_legacy.h", "libbpf_version.h", "bpf_helpers.h", "bpf_helper_defs.h", "bpf_tracing.h", "bpf_core_read.h", "bpf_endian.h" }) |h| {
        _ = hdrs.addCopyFile(.{ .cwd_relative = b.fmt("{s}/src/{s}", .{ bpf_dir, h }) }, b.fmt("bpf/{s}", .{h}));
    }
    mod.addIncludePath(hdrs.getDirectory());
    mod.addIncludePath(.{ .cwd_relative = b.fmt("{s}/include/uapi", .{bpf_dir}) });
    return .{ .include = hdrs.getDirectory(), .libbpf_version = v.libbpf };
}
