//! The macOS reflector (the probe is probe/probe_darwin.zig), both on /dev/bpf + kqueue
//! set up the way XNU works (sys/darwin.zig: buffer length read back, immediate mode, header complete,
//! no sent frames, the same classic BPF filter the Linux packet path attaches).
//!   - records walked by BPF_WORDALIGN(bh_hdrlen + bh_caplen) (bpfbuf.zig), rewritten in place;
//!   - sent with BIOCSBATCHWRITE (macOS 14+: records behind a bpf_hdr, many frames per write()), or one
//!     write() per frame where the ioctl is refused — never raw frames concatenated;
//!   - a worker thread at QOS_CLASS_USER_INTERACTIVE (Darwin has no CPU affinity), a kqueue with an
//!     EVFILT_USER stop event, preallocated buffers, the guard UDP sockets against ICMP unreachable.
//! Built and cross-compiled here; only a Mac runs it (docs/macos.md).
const std = @import("std");
const abi = @import("../abi.zig");
const backoff = @import("../sys/backoff.zig");
const bpfbuf = @import("bpfbuf.zig");
const cbpf = @import("../ito/cbpf.zig");
const darwin = @import("../sys/darwin.zig");
const diag = @import("../sys/diag.zig");
const ito = @import("../ito/ito.zig");
const options = @import("options.zig");
const Error = abi.Error;

pub const Reflector = struct {
    gpa: std.mem.Allocator,
    opts: abi.ReflectorOptions,
    cfg: abi.ItoConfig,
    filter: cbpf.Filter = .{},
    iface: darwin.IfaceInfo,
    counters: []align(64) abi.Counters,
    state: std.atomic.Value(u32) = .init(abi.reflector_state.starting),
    failure: [256]u8 = .{0} ** 256,
    /// Why this dataplane runs (start.zig writes it).
    reason: [256]u8 = .{0} ** 256,
    dev: darwin.Device = .{ .fd = -1, .blen = 0, .batch_write = false },
    waiter: darwin.Waiter = .{ .kq = -1 },
    guard: darwin.Guard = .{},
    read_buf: []u8 = &.{},
    write_buf: []u8 = &.{},
    thread: ?std.Thread = null,
    stopped: bool = false,

    /// Starts the /dev/bpf dataplane (the only one, os_darwin.reflector_modes) with the rules `cfg`.
    pub fn start(gpa: std.mem.Allocator, opts: *const abi.ReflectorOptions, cfg: abi.ItoConfig, dataplane: abi.Dataplane) Error!*Reflector {
        std.debug.assert(dataplane == .bpf);
        if (opts.netns[0] != 0) return diag.fail(error.Unsupported, "network namespaces are a Linux feature: leave out `netns` on macOS", .{});
        const name = std.mem.sliceTo(&opts.ifname, 0);
        const iface = try darwin.ifaceInfo(name);
        if (!iface.up) return diag.fail(error.InterfaceDown, "interface {s} is down: bring it up with 'sudo ifconfig {s} up'", .{ name, name });
        // The host stack sees every frame /dev/bpf sees; only a held port keeps it from answering.
        if (cfg.port == 0) return options.refuseAnyPort("bpf", "");

        const self = gpa.create(Reflector) catch return error.OutOfMemory;
        errdefer gpa.destroy(self);
        self.* = .{ .gpa = gpa, .opts = opts.*, .cfg = cfg, .iface = iface, .counters = undefined };
        self.cfg.our_mac = iface.mac;
        cbpf.build(&self.filter, &self.cfg);
        self.counters = gpa.alignedAlloc(abi.Counters, 64, 1) catch return error.OutOfMemory;
        errdefer gpa.free(self.counters);
        self.counters[0] = .{};
        errdefer self.closeAll();

        self.dev = try darwin.Device.open(name, .{ .filter = self.filter.insns });
        self.read_buf = gpa.alloc(u8, self.dev.blen) catch return error.OutOfMemory;
        self.write_buf = gpa.alloc(u8, self.dev.blen) catch return error.OutOfMemory;
        // The stack sees test frames too; IPv4 and IPv6 on the test port, bound to this interface.
        self.guard = try darwin.Guard.open(iface.index, &.{self.cfg.port});
        self.waiter = try darwin.Waiter.open(self.dev.fd);

        self.thread = std.Thread.spawn(.{}, run, .{self}) catch return diag.fail(error.System, "cannot start the worker thread", .{});
        self.state.store(abi.reflector_state.running, .release);
        return self;
    }

    fn run(self: *Reflector) void {
        darwin.interactiveThread();
        const shared: *align(64) abi.Counters = &self.counters[0];
        var local: abi.Counters = .{};
        var batch = bpfbuf.BatchWriter{ .buf = self.write_buf };
        while (true) {
            switch (self.waiter.wait(250)) {
                .stop => return,
                .timeout => continue,
                .readable => {},
            }
            // Take: one read of exactly the buffer length.
            const got = std.c.read(self.dev.fd, self.read_buf.ptr, self.dev.blen);
            if (got <= 0) continue;
            // Process: walk the records, rewrite in place; submit in batches.
            var walker = bpfbuf.Walker{ .buf = self.read_buf[0..@intCast(got)] };
            while (walker.next()) |rec| {
                local.rx_packets += 1;
                local.rx_bytes += rec.frame.len;
                const p = ito.classify(&self.cfg, rec.frame);
                if (p.verdict != .reflect) {
                    local.countVerdict(p.verdict);
                    continue;
                }
                local.countSignature(p.signature);
                ito.rewrite(&self.cfg, rec.frame, p);
                if (self.dev.batch_write) {
                    if (!batch.add(rec.frame)) {
                        self.flush(&batch, &local);
                        _ = batch.add(rec.frame);
                    }
                } else self.writeOne(rec.frame, &local);
            }
            if (walker.malformed) local.drop_malformed += 1;
            self.flush(&batch, &local);
            // Release: the read buffer is ours again; fold counters once per batch.
            local.batches += 1;
            abi.Counters.fold(shared, &local);
            local = .{};
        }
    }

    fn writeOne(self: *Reflector, frame: []const u8, local: *abi.Counters) void {
        if (self.dev.write(frame, backoff.dataplane_limit_ns) == .ok) {
            local.tx_packets += 1;
            local.tx_bytes += frame.len;
        } else local.drop_tx_error += 1;
    }

    fn flush(self: *Reflector, batch: *bpfbuf.BatchWriter, local: *abi.Counters) void {
        if (batch.frames == 0) return;
        const bytes = batch.bytes();
        if (self.dev.write(bytes, backoff.dataplane_limit_ns) == .ok) {
            local.tx_packets += batch.frames;
            local.tx_bytes += bytes.len - @as(u64, batch.frames) * bpfbuf.eth_hdrlen;
        } else local.drop_tx_error += batch.frames;
        batch.reset();
    }

    pub fn info(self: *const Reflector) abi.ReflectorInfo {
        return .{
            .mac = self.iface.mac,
            .guarded = @intFromBool(self.guard.held()),
            .ifindex = @intCast(self.iface.index),
            .mtu = self.iface.mtu,
            .workers = 1,
            .dataplane = @intFromEnum(abi.Dataplane.bpf),
            .xdp_attach = 0,
            .zerocopy = 0,
            .batch_write = @intFromBool(self.dev.batch_write),
            .profile = self.opts.profile,
            .ito = self.cfg,
            .nice = self.opts.nice,
            .reason = self.reason,
        };
    }

    pub fn refresh(_: *Reflector) void {}

    pub fn stop(self: *Reflector) void {
        if (self.stopped) return;
        self.stopped = true;
        if (self.waiter.kq >= 0) self.waiter.stop();
        if (self.thread) |t| t.join();
        self.thread = null;
        if (self.state.load(.acquire) != abi.reflector_state.failed) self.state.store(abi.reflector_state.stopped, .release);
    }

    fn closeAll(self: *Reflector) void {
        self.dev.close();
        self.waiter.close();
        self.guard.close();
        if (self.read_buf.len > 0) self.gpa.free(self.read_buf);
        if (self.write_buf.len > 0) self.gpa.free(self.write_buf);
        self.read_buf = &.{};
        self.write_buf = &.{};
    }

    pub fn destroy(self: *Reflector) void {
        self.stop();
        self.closeAll();
        const gpa = self.gpa;
        gpa.free(self.counters);
        gpa.destroy(self);
    }
};
