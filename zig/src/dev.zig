//! The library's namespaces for the development tools in zig/tools/, which cannot `@import` a file
//! outside their own directory (Zig 0.14: a module's files live under its root file's directory).
//! build.zig makes this file the root of a module that the tools import as "fastpath", with the
//! same libbpf sources and embedded BPF objects as the library's module:
//!
//!     const fastpath = @import("fastpath");
//!     const xdp = fastpath.xdp;
//!
//! Not part of libfastpath: root.zig, not this file, is the library's root.
pub const bpf = @import("sys/bpf.zig");
pub const diag = @import("sys/diag.zig");
pub const ito = @import("ito/ito.zig");
pub const xdp = @import("reflect/xdp.zig");
