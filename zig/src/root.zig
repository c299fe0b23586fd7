//! The C ABI of libfastpath: the export list, nothing else.
const std = @import("std");
const abi = @import("abi.zig");
const diag = @import("diag.zig");

export fn fp_abi_version() u32 {
    return abi.abi_version;
}
export fn fp_layout_json() [*:0]const u8 {
    return abi.layout_json.ptr;
}
export fn fp_last_error() [*:0]const u8 {
    return diag.message();
}
