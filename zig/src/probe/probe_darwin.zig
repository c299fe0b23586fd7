//! The probe's I/O on macOS: two /dev/bpf devices on the interface, one that only writes (its filter
//! drops everything; BIOCSBATCHWRITE batches where the system has it, one write() per frame
//! otherwise) and one that reads the reflections (the kernel filter passes frames addressed to our
//! source MAC). Pacing, the window and every check are the shared core's (probe.zig), so a Mac
//! measures a reflector exactly as Linux does. RTT comes from bh_tstamp: microsecond resolution.
const std = @import("std");
const abi = @import("../abi.zig");
const backoff = @import("../sys/backoff.zig");
const bpfbuf = @import("../reflect/bpfbuf.zig");
const cbpf = @import("../ito/cbpf.zig");
const darwin = @import("../sys/darwin.zig");
const diag = @import("../sys/diag.zig");
const core = @import("probe.zig");
const Error = abi.Error;

pub const Probe = struct {
    core: core.Core,
    stats: *abi.ProbeStats,
    failure: *[256]u8,
    filter: cbpf.Filter = .{},
    rx: darwin.Device = .{ .fd = -1, .blen = 0, .batch_write = false },
    tx: darwin.Device = .{ .fd = -1, .blen = 0, .batch_write = false },
    waiter: darwin.Waiter = .{ .kq = -1 },
    guard: darwin.Guard = .{},
    read_buf: []u8 = &.{},
    /// Batch records, or one contiguous frame when each frame is its own write().
    write_buf: []u8 = &.{},

    pub fn start(gpa: std.mem.Allocator, opts: *const abi.ProbeOptions) Error!*Probe {
        try core.checkOptions(opts); // before anything is opened
        if (opts.netns[0] != 0) return diag.fail(error.Unsupported, "network namespaces are a Linux feature: leave out `netns` on macOS", .{});
        const name = std.mem.sliceTo(&opts.ifname, 0);
        const iface = try darwin.ifaceInfo(name);
        if (!iface.up) return diag.fail(error.InterfaceDown, "interface {s} is down: bring it up with 'sudo ifconfig {s} up'", .{ name, name });

        const self = gpa.create(Probe) catch return error.OutOfMemory;
        errdefer gpa.destroy(self);
        self.* = .{ .core = try core.Core.init(gpa, opts, iface.mac, iface.mtu), .stats = undefined, .failure = undefined };
        errdefer self.core.deinit();
        self.stats = self.core.stats;
        self.failure = &self.core.failure;
        errdefer self.closeAll();

        const rx_cfg = self.core.rxConfig();
        cbpf.build(&self.filter, &rx_cfg);
        self.rx = try darwin.Device.open(name, .{ .filter = self.filter.insns, .promisc = self.core.foreignSource(iface.mac) });
        self.tx = try darwin.Device.open(name, .{ .filter = &cbpf.drop_all, .want_blen = 1024 * 1024 });
        self.read_buf = gpa.alloc(u8, self.rx.blen) catch return error.OutOfMemory;
        // Room for a full batch of the largest frames behind their headers.
        const room = core.tx_batch_max * bpfbuf.wordAlign(bpfbuf.eth_hdrlen + 9018);
        self.write_buf = gpa.alloc(u8, room) catch return error.OutOfMemory;
        // Reflections reach this host's stack too; hold the ports they arrive on (no ICMP back).
        self.guard = try darwin.Guard.open(iface.index, &.{ opts.src_port, opts.dst_port });
        self.waiter = try darwin.Waiter.open(self.rx.fd);

        try self.core.spawn(self);
        return self;
    }

    pub fn stop(self: *Probe) void {
        self.core.stop();
    }

    pub fn wait(self: *Probe, timeout_ns: u64) bool {
        return self.core.wait(timeout_ns);
    }

    pub fn destroy(self: *Probe) void {
        self.core.join(self);
        self.closeAll();
        const gpa = self.core.gpa;
        self.core.deinit();
        gpa.destroy(self);
    }

    fn closeAll(self: *Probe) void {
        self.rx.close();
        self.tx.close();
        self.waiter.close();
        self.guard.close();
        const gpa = self.core.gpa;
        if (self.read_buf.len > 0) gpa.free(self.read_buf);
        if (self.write_buf.len > 0) gpa.free(self.write_buf);
        self.read_buf = &.{};
        self.write_buf = &.{};
    }

    /// Frames of one paced batch: records in one BIOCSBATCHWRITE buffer, or one write() each.
    const Sender = struct {
        dev: *const darwin.Device,
        batch: bpfbuf.BatchWriter,
        r: core.Sent = .{},

        pub fn add(s: *Sender, head: []const u8, tail: []const u8) void {
            if (s.dev.batch_write) {
                _ = s.batch.addPieces(head, tail); // the buffer holds a full batch of jumbo frames
                return;
            }
            const frame = s.batch.buf[0 .. head.len + tail.len];
            @memcpy(frame[0..head.len], head);
            @memcpy(frame[head.len..], tail);
            s.account(s.dev.write(frame, backoff.probe_limit_ns), 1, frame.len);
        }

        pub fn flush(s: *Sender) core.Sent {
            if (s.batch.frames > 0) {
                const bytes = s.batch.bytes();
                s.account(s.dev.write(bytes, backoff.probe_limit_ns), s.batch.frames, bytes.len - @as(u64, s.batch.frames) * bpfbuf.eth_hdrlen);
                s.batch.reset();
            }
            defer s.r = .{};
            return s.r;
        }

        fn account(s: *Sender, result: darwin.Device.WriteResult, frames: u64, bytes: u64) void {
            switch (result) {
                .ok => {
                    s.r.frames += frames;
                    s.r.bytes += bytes;
                },
                .down => s.r.down = true,
                .full, .failed => {}, // never received: counted as transmit errors and lost
            }
        }
    };

    /// Interrupts the receive thread's wait.
    pub fn wake(self: *Probe) void {
        self.waiter.stop();
    }

    pub fn txMain(self: *Probe) void {
        darwin.interactiveThread();
        var sender = Sender{ .dev = &self.tx, .batch = .{ .buf = self.write_buf } };
        self.core.transmit(&sender);
    }

    pub fn rxMain(self: *Probe) void {
        darwin.interactiveThread();
        var rx = self.core.receiver();
        while (!rx.done()) {
            switch (self.waiter.wait(20)) {
                .stop => if (self.core.quitting.load(.acquire)) break else continue,
                .timeout => {
                    rx.publish(self.rx.takeDrops());
                    continue;
                },
                .readable => {},
            }
            const got = std.c.read(self.rx.fd, self.read_buf.ptr, self.rx.blen);
            if (got <= 0) continue;
            var walker = bpfbuf.Walker{ .buf = self.read_buf[0..@intCast(got)] };
            while (walker.next()) |rec| {
                // /dev/bpf delivers VLAN tags inline; the checks expect them taken off.
                const u = core.untag(rec.frame);
                rx.frame(u.data, u.vlan, rec.ts_ns);
            }
            rx.publish(0);
        }
        rx.finish(self.rx.takeDrops());
    }
};
