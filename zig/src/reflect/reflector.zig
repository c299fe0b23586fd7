//! The reflector: per-interface set-up (namespace, MAC, lock, guard sockets) and worker threads that
//! run the dataplane's batch loop. TypeScript starts it, reads the counters, and stops it.
const std = @import("std");
const linux = std.os.linux;
const abi = @import("../abi.zig");
const afpacket = @import("afpacket.zig");
const cbpf = @import("../ito/cbpf.zig");
const diag = @import("../sys/diag.zig");
const runlock = @import("../sys/runlock.zig");
const guard = @import("guard.zig");
const ito = @import("../ito/ito.zig");
const sys = @import("../sys/linux.zig");
const xdp = @import("xdp.zig");
const afxdp = @import("afxdp.zig");
const napi = @import("napi.zig");
const idle = @import("idle.zig");
const options = @import("options.zig");
const stale_locks = @import("stale_locks.zig");
const veth = @import("veth.zig");
const Error = abi.Error;

pub const Reflector = struct {
    gpa: std.mem.Allocator,
    opts: abi.ReflectorOptions,
    cfg: abi.ItoConfig,
    filter: cbpf.Filter = .{},
    iface: sys.IfaceInfo,
    /// The interface's network namespace (sys.Netns.current).
    netns_id: u64,
    counters: []align(64) abi.Counters,
    workers: []Worker,
    stop_signal: sys.StopSignal,
    stopping: std.atomic.Value(bool) = .init(false),
    state: std.atomic.Value(u32) = .init(abi.reflector_state.starting),
    lock: Lock = .{},
    guard: guard.Guard = .{},
    /// xdp mode: the program, and the thread that folds its per-CPU counters into `counters[0]`.
    xdp_prog: ?xdp.Program = null,
    xdp_attach: xdp.AttachMode = .none,
    /// Every mode: a thread that watches the link (and in xdp mode folds the program's counters).
    monitor: ?std.Thread = null,
    /// afxdp mode: one socket and worker per receive queue; the last counter block is the kernel's.
    xsk_workers: []XskWorker = &.{},
    zerocopy: bool = false,
    /// afxdp mode: the device's receive interrupts deferred by up to `coalesce_us` (null where the
    /// kernel cannot: the workers then coalesce their own wake-ups), and its ring's size.
    deferral: ?napi.Deferral = null,
    ring_entries: u32 = 256,
    /// afxdp mode without multi-buffer: the longest frame a UMEM chunk holds (0: no limit).
    max_frame: u32 = 0,
    /// xdp and afxdp modes: the program reads the receive VLAN tag the driver holds as metadata and
    /// puts it back into reflections.
    vlan_meta: bool = false,
    /// xdp mode on a veth: the XDP_TX frames its peer could not take (counted as not reflected).
    tx_errors: ?veth.TxErrors = null,
    /// xdp mode on a veth whose peer could be checked: the monitor watches it (`watchPeer`).
    peer: ?PeerWatch = null,
    /// Said once at start: what this mode will not do right here, and what would.
    warning: [256]u8 = .{0} ** 256,
    stopped: bool = false,
    link: sys.LinkWatch = .{ .fd = -1, .ifr = undefined },
    /// The interface's MAC now (xdp.macWord), the only address answered for: the monitor follows the
    /// interface's changes and every worker reads it once per batch.
    mac_now: std.atomic.Value(u64) = .init(0),
    failure: [256]u8 = .{0} ** 256,
    /// Why this dataplane runs (start.zig writes it).
    reason: [256]u8 = .{0} ** 256,

    /// Starts `dataplane` with the rules `cfg` (options checked and resolved by options.zig).
    pub fn start(gpa: std.mem.Allocator, opts: *const abi.ReflectorOptions, cfg: abi.ItoConfig, dataplane: abi.Dataplane) Error!*Reflector {
        const ifname = std.mem.sliceTo(&opts.ifname, 0);
        const netns = std.mem.sliceTo(&opts.netns, 0);
        const nworkers: usize = opts.workers;

        // Sockets belong to the namespace they are created in; the workers can live anywhere.
        var ns = try sys.Netns.enter(netns);
        defer ns.leave();
        // Where the interface is, however the namespace was entered (`netns`, 'ip netns exec', or
        // started inside it): what the lock and the state files are keyed on.
        const netns_id = try sys.Netns.current();
        var name_buf: [64]u8 = undefined;
        const netns_name = if (netns.len > 0) netns else sys.Netns.nameOf(netns_id, &name_buf);

        const iface = try sys.ifaceInfoIn(ifname, netns_name);
        if (!iface.up) return diag.fail(error.InterfaceDown, "interface {s} is down: bring it up with 'ip link set {s} up'", .{ ifname, ifname });

        const self = gpa.create(Reflector) catch return error.OutOfMemory;
        errdefer gpa.destroy(self);
        self.* = .{
            .gpa = gpa,
            .opts = withCoalesce(opts.*, dataplane),
            .cfg = cfg,
            .iface = iface,
            .netns_id = netns_id,
            .counters = undefined,
            .workers = undefined,
            .stop_signal = undefined,
        };
        self.cfg.our_mac = iface.mac;
        self.mac_now.store(xdp.macWord(iface.mac), .release);
        cbpf.build(&self.filter, &self.cfg);
        // The host stack sees every frame packet mode sees; only a held port keeps it from answering.
        if (dataplane == .packet and self.cfg.port == 0) return options.refuseAnyPort("packet", anyPortModes(ifname, iface.index));

        try self.lock.acquire(netns_id, netns_name, ifname);
        errdefer self.lock.release();
        if (dataplane != .afxdp) {
            var buf: [128]u8 = undefined;
            napi.Deferral.recoverLeft(statePath(&buf, netns_id, ifname, "napi"));
        }
        // Files left by reflectors that could not clean up.
        stale_locks.remove();

        self.guard = try guard.Guard.open(ifname, &.{self.cfg.port});
        errdefer self.guard.close();

        self.stop_signal = try sys.StopSignal.init();
        errdefer self.stop_signal.deinit();

        self.link = try sys.LinkWatch.open(ifname);
        errdefer self.link.close();

        const queues: usize = if (dataplane == .afxdp) afxdp.queueCount(self.link.fd, ifname) else 0;
        // One socket and worker per receive queue: more workers than queues would bind to queues that do not exist.
        if (dataplane == .afxdp and nworkers > queues)
            return diag.fail(error.Unsupported, "afxdp mode runs one worker per receive queue and {s} has {d}: `workers` {d} needs {d} (see 'ethtool -l {s}'), or use `mode` packet", .{ ifname, queues, nworkers, nworkers, ifname });
        const blocks: usize = switch (dataplane) {
            .packet => nworkers,
            .xdp => 1,
            .afxdp => queues + 1,
            .auto, .bpf => unreachable, // start.zig picks one of os_linux.reflector_modes
        };
        self.counters = gpa.alignedAlloc(abi.Counters, 64, blocks) catch return error.OutOfMemory;
        errdefer gpa.free(self.counters);
        @memset(self.counters, .{});
        self.workers = gpa.alloc(Worker, if (dataplane == .packet) nworkers else 0) catch return error.OutOfMemory;
        errdefer gpa.free(self.workers);

        if (dataplane == .afxdp) {
            try self.startAfxdp(iface.index, ifname, queues);
            return self;
        }
        if (dataplane == .xdp) {
            try self.checkVethPeer(ifname);
            try self.loadXdp(.tx, 0);
            errdefer {
                self.xdp_prog.?.close();
                self.xdp_prog = null;
            }
            try self.startMonitor();
            self.state.store(abi.reflector_state.running, .release);
            return self;
        }

        const ring_defaults: afpacket.Options = .{ .ifindex = 0, .filter = &self.filter };
        // A slot per frame (TPACKET_V2: no latency of its own) as long as the MTU, QinQ tags included;
        // by default 16 384 slots (160 ms at 100 kpps while the worker is off the CPU), in at most
        // 128 MiB (14 336 slots at MTU 9000).
        const max_frame = iface.mtu + 14 + 8;
        const block_size = if (opts.ring_block_kib != 0) opts.ring_block_kib * 1024 else ring_defaults.block_size;
        const per_block = @max(1, block_size / afpacket.v2FrameSize(max_frame));
        const block_nr = if (opts.ring_blocks != 0) opts.ring_blocks else @max(1, @min((16384 + per_block - 1) / per_block, (128 << 20) / @max(block_size, 4096)));
        const group: u16 = @truncate(@as(u32, @bitCast(linux.getpid())) ^ @as(u32, @bitCast(iface.index)) << 8);
        var opened: usize = 0;
        errdefer for (self.workers[0..opened]) |*w| w.sock.close();
        for (self.workers, 0..) |*w, i| {
            w.* = .{ .r = self, .index = @intCast(i), .sock = undefined, .thread = null };
            w.sock = try afpacket.Socket.open(.{
                .ifindex = iface.index,
                .filter = &self.filter,
                .version = .v2,
                .max_frame = max_frame,
                .block_size = block_size,
                .block_nr = block_nr,
                .fanout = if (nworkers > 1) .{ .group = group, .mode = @enumFromInt(opts.fanout) } else null,
            });
            opened += 1;
        }
        errdefer self.stopWorkers();
        for (self.workers) |*w| {
            w.thread = std.Thread.spawn(.{ .stack_size = 256 * 1024 }, Worker.run, .{w}) catch
                return diag.fail(error.System, "cannot start worker thread {d}", .{w.index});
        }
        try self.startMonitor();
        self.state.store(abi.reflector_state.running, .release);
        return self;
    }

    pub fn info(self: *const Reflector) abi.ReflectorInfo {
        return .{
            .mac = macOf(self.mac_now.load(.acquire)),
            .guarded = @intFromBool(self.guard.held()),
            .ifindex = self.iface.index,
            .mtu = self.iface.mtu,
            .workers = @intCast(@max(self.workers.len, self.xsk_workers.len)),
            .dataplane = if (self.xsk_workers.len > 0) @intFromEnum(abi.Dataplane.afxdp) else if (self.xdp_prog != null) @intFromEnum(abi.Dataplane.xdp) else @intFromEnum(abi.Dataplane.packet),
            .xdp_attach = @intFromEnum(self.xdp_attach),
            .zerocopy = @intFromBool(self.zerocopy),
            .irq_deferred = @intFromBool(self.deferral != null),
            .max_frame = self.max_frame,
            .profile = self.opts.profile,
            .ito = self.cfg,
            .nice = self.opts.nice,
            .coalesce_us = if (self.xsk_workers.len > 0 or self.workers.len > 0) self.opts.coalesce_us else 0,
            .reason = self.reason,
            .warning = self.warning,
            .vlan_meta = @intFromBool(self.vlan_meta),
        };
    }

    /// The block the XDP program's counters go to: the only one in xdp mode, the last in afxdp mode.
    fn kernelBlock(self: *Reflector) *abi.Counters {
        return &self.counters[self.counters.len - 1];
    }

    pub fn refresh(self: *Reflector) void {
        self.readKernel(self.kernelBlock());
    }

    fn startAfxdp(self: *Reflector, ifindex: i32, ifname: []const u8, queues: usize) Error!void {
        const gpa = self.gpa;
        self.xsk_workers = gpa.alloc(XskWorker, queues) catch return error.OutOfMemory;
        var opened: usize = 0;
        errdefer {
            for (self.xsk_workers[0..opened]) |*w| w.sock.close(gpa);
            gpa.free(self.xsk_workers);
            self.xsk_workers = &.{};
        }
        for (self.xsk_workers, 0..) |*w, q| {
            w.* = .{ .r = self, .index = @intCast(q), .sock = try afxdp.Socket.open(gpa, ifindex, @intCast(q), self.opts.busy_poll_us), .thread = null };
            opened += 1;
        }
        // The sockets say whether packets may span several chunks; the program is told before load.
        self.max_frame = if (self.xsk_workers[0].sock.multi_buffer) 0 else afxdp.max_frame;
        self.zerocopy = self.xsk_workers[0].sock.zerocopy;
        try self.loadXdp(.redirect, self.max_frame);
        errdefer {
            self.xdp_prog.?.close();
            self.xdp_prog = null;
        }
        // After the attach: a veth has its NAPI only while an XDP program runs on it. Opening also
        // puts back what a killed reflector left deferred, so it runs with --coalesce-us 0 too.
        {
            var buf: [128]u8 = undefined;
            const path = statePath(&buf, self.netns_id, ifname, "napi");
            self.deferral = napi.Deferral.open(ifindex, path);
            // Kept ready, off: the monitor defers the interrupts once the rate is a load (idle.zig).
            if (self.deferral) |*d| if (self.opts.coalesce_us == 0) {
                d.close();
                self.deferral = null;
            };
            self.ring_entries = napi.rxRingEntries(self.link.fd, ifname);
        }
        errdefer if (self.deferral) |*d| {
            d.close();
            self.deferral = null;
        };
        errdefer self.stopWorkers();
        for (self.xsk_workers) |*w| {
            w.thread = std.Thread.spawn(.{ .stack_size = 256 * 1024 }, XskWorker.run, .{w}) catch
                return diag.fail(error.System, "cannot start AF_XDP worker {d}", .{w.index});
        }
        try self.startMonitor();
        self.state.store(abi.reflector_state.running, .release);
    }

    /// Loads the XDP program and attaches it: bound to the device where its driver gives the receive
    /// VLAN tag as metadata (so reflections keep their tag), else unbound, with a warning at start
    /// when the driver takes tags out of frames (rx-vlan offload) that XDP then cannot see.
    fn loadXdp(self: *Reflector, action: xdp.Action, max_frame: u32) Error!void {
        const ifindex = self.iface.index;
        const ifname = std.mem.sliceTo(&self.opts.ifname, 0);
        if (napi.xdpRxVlanTag(ifindex)) {
            // A device-bound program attaches in driver mode only: anything else, try unbound.
            if (self.loadAttach(action, max_frame, ifindex)) {
                self.vlan_meta = true;
                return;
            } else |_| {}
        }
        try self.loadAttach(action, max_frame, 0);
        if (rxVlanOffload(self.link.fd, ifname)) {
            const mode = if (action == .tx) "xdp" else "afxdp";
            _ = std.fmt.bufPrintZ(&self.warning, "VLAN-tagged test frames go back untagged in {s} mode: {s} takes receive VLAN tags out of frames (rx-vlan-offload) and XDP cannot read them here (kernel 6.8+ and driver support needed); --mode packet reflects them tagged, or run 'ethtool -K {s} rxvlan off'", .{ mode, ifname, ifname }) catch {};
        }
    }

    fn loadAttach(self: *Reflector, action: xdp.Action, max_frame: u32, bind_ifindex: i32) Error!void {
        const ifname = std.mem.sliceTo(&self.opts.ifname, 0);
        var prog = try xdp.Program.load(self.gpa, &self.cfg, action, max_frame, bind_ifindex);
        errdefer prog.close();
        for (self.xsk_workers, 0..) |*w, q| {
            const key: u32 = @intCast(q);
            const fd: u32 = @intCast(w.sock.fd);
            if (xdp.c.bpf_map_update_elem(prog.xsks_fd, &key, &fd, 0) != 0)
                return diag.fail(error.System, "registering the AF_XDP socket of queue {d}", .{q});
        }
        self.xdp_attach = try prog.attach(self.iface.index, ifname, std.mem.sliceTo(&self.opts.netns, 0));
        self.xdp_prog = prog;
    }

    /// xdp mode on a veth: refuses a peer without an XDP program (XDP_TX frames would be dropped or
    /// stuck there: veth.zig), naming the fix, and counts what the veth drops anyway (the peer may
    /// lose its program while we run). A peer that cannot be checked (its namespace cannot be entered
    /// without CAP_SYS_ADMIN) is not taken as fine: auto passes on to afxdp, `mode` xdp warns, saying
    /// how to check it.
    fn checkVethPeer(self: *Reflector, ifname: []const u8) Error!void {
        var errors: veth.TxErrors = undefined;
        if (!veth.TxErrors.open(self.link.fd, ifname, &errors)) return;
        self.tx_errors = errors;
        const peer = veth.peerCheck(self.link.fd, ifname, self.iface.index) orelse return;
        const name = std.mem.sliceTo(&peer.name, 0);
        const ns = std.mem.sliceTo(&peer.netns, 0);
        var where_buf: [64]u8 = undefined;
        const run_in = if (ns.len > 0)
            std.fmt.bufPrint(&where_buf, "ip netns exec {s} ", .{ns}) catch ""
        else if (peer.pid != 0)
            std.fmt.bufPrint(&where_buf, "nsenter -t {d} -n ", .{peer.pid}) catch ""
        else
            "";
        const xdp_on = peer.xdp orelse {
            const check = if (run_in.len > 0) run_in else "ip -d link show ";
            const what = if (run_in.len > 0) "ip link show" else ifname;
            const auto = @as(abi.Dataplane, @enumFromInt(self.opts.dataplane)) == .auto;
            const fmt = "cannot check that the veth peer of {s} runs an XDP program (entering its network namespace needs CAP_SYS_ADMIN); without one it drops XDP_TX frames: check with '{s}{s}' (an 'xdp' on the peer's line){s}";
            if (auto) return diag.fail(error.Unsupported, fmt, .{ ifname, check, what, "" });
            if (self.warning[0] == 0)
                _ = std.fmt.bufPrintZ(&self.warning, fmt, .{ ifname, check, what, ", or use --mode afxdp" }) catch {};
            return;
        };
        if (xdp_on) {
            self.peer = .{ .peer = peer, .handed = errors.handed(), .taken = peer.taken };
            return;
        }
        return diag.fail(error.Unsupported, "{s}, the veth peer of {s}, runs no XDP program, so it cannot take XDP_TX frames (GRO on is not enough: it holds them until other traffic comes): give it one (any, e.g. '{s}ip link set {s} xdp obj PROG'), or use --mode afxdp or packet", .{ name, ifname, run_in, name });
    }

    /// xdp mode on a veth: a peer that loses its XDP program while we run cannot take reflections
    /// any more. Without NAPI it drops them (the veth counts those); with GRO on it keeps them in its
    /// ring, unsent, until other traffic flushes it. So while it has none the program holds
    /// reflections back (dropped, counted), and the ones the veth handed it since it was last seen
    /// with a program, less what its NAPI has taken since, count as not reflected (`waiting`).
    const PeerWatch = struct {
        peer: veth.Peer,
        hold: bool = false,
        /// The veth's handed and the peer's taken counts when the peer last had a program.
        handed: u64,
        taken: u64,
        /// Reflections waiting in the peer's ring (counted as tx_error, not reflected).
        waiting: std.atomic.Value(u64) = .init(0),
    };

    /// Called by the monitor: looks at the veth peer again and holds reflections back while it has no
    /// XDP program (`PeerWatch`). A peer that cannot be looked at now is left as last seen.
    fn watchPeer(self: *Reflector) void {
        const w = if (self.peer) |*p| p else return;
        const prog = if (self.xdp_prog) |*p| p else return;
        var t = self.tx_errors orelse return; // a copy: readKernel reads into its own
        const now = w.peer.recheck(self.iface.index) orelse return;
        _ = t.since(self.link.fd, std.mem.sliceTo(&self.opts.ifname, 0));
        const handed = t.handed();
        const xdp_on = now.xdp orelse return;
        if (xdp_on) {
            w.handed = handed;
            w.taken = now.taken;
            w.waiting.store(0, .release);
        } else {
            w.waiting.store((handed -| w.handed) -| (now.taken -| w.taken), .release);
        }
        if (xdp_on == w.hold) {
            prog.holdTx(!xdp_on) catch return;
            w.hold = !xdp_on;
        }
    }

    /// The XDP program's counters, less the reflections a veth could not hand to its peer.
    fn readKernel(self: *Reflector, c: *abi.Counters) void {
        const p = &(self.xdp_prog orelse return);
        p.read(c);
        const t = &(self.tx_errors orelse return);
        const waiting = if (self.peer) |*w| w.waiting.load(.acquire) else 0;
        const lost = t.since(self.link.fd, std.mem.sliceTo(&self.opts.ifname, 0)) + waiting;
        if (lost == 0) return;
        const tx = @atomicLoad(u64, &c.tx_packets, .monotonic);
        const bytes = @atomicLoad(u64, &c.tx_bytes, .monotonic);
        const n = @min(lost, tx);
        // The veth counts frames, not bytes: take off the average reflection's size.
        const lost_bytes = if (tx == 0) 0 else bytes / tx * n;
        @atomicStore(u64, &c.tx_packets, tx - n, .monotonic);
        @atomicStore(u64, &c.tx_bytes, bytes -| lost_bytes, .monotonic);
        @atomicStore(u64, &c.drop_tx_error, @atomicLoad(u64, &c.drop_tx_error, .monotonic) + n, .monotonic);
    }

    fn startMonitor(self: *Reflector) Error!void {
        self.monitor = std.Thread.spawn(.{ .stack_size = 128 * 1024 }, monitorMain, .{self}) catch
            return diag.fail(error.System, "cannot start the monitor thread", .{});
    }

    /// Every 100 ms, and at once when the kernel announces a link change: follows the interface's MAC,
    /// fails the reflector when the interface disappears or its name now stands for another interface
    /// (a new ifindex: our sockets and program stay on the old one), counts the link going down and
    /// coming back (workers and the XDP program resume by themselves), and in xdp mode folds the
    /// program's per-CPU counters into the shared block.
    fn monitorMain(self: *Reflector) void {
        var was_up = true;
        const c = self.kernelBlock();
        var rx_last: u64 = 0;
        var ns_last = sys.monotonicNs();
        var deleted = false;
        while (!self.stopping.load(.acquire)) {
            self.watchPeer();
            self.readKernel(c);
            if (self.deferral) |*d| self.adaptDeferral(d, c, &rx_last, &ns_last);
            if (!self.checkIdentity(deleted)) break;
            switch (self.link.state()) {
                .gone => {
                    self.failGone();
                    break;
                },
                .down => if (was_up) {
                    @atomicStore(u64, &c.link_down, c.link_down + 1, .release);
                    was_up = false;
                },
                .up => if (!was_up) {
                    @atomicStore(u64, &c.link_up, c.link_up + 1, .release);
                    was_up = true;
                    if (self.deferral) |*d| d.rediscover(self.iface.index);
                },
            }
            var fds = [2]linux.pollfd{
                .{ .fd = self.stop_signal.fd, .events = linux.POLL.IN, .revents = 0 },
                .{ .fd = self.link.events, .events = linux.POLL.IN, .revents = 0 },
            };
            _ = linux.poll(&fds, 2, 100);
            if (fds[1].revents != 0) deleted = self.link.drain(self.iface.index) or deleted;
        }
        self.readKernel(c);
    }

    /// Fails the reflector because its interface is gone, saying how to see when it is back.
    fn failGone(self: *Reflector) void {
        const ifname = std.mem.sliceTo(&self.opts.ifname, 0);
        var ip_buf: [80]u8 = undefined;
        const ip = sys.ipIn(&ip_buf, std.mem.sliceTo(&self.opts.netns, 0));
        self.fail("interface {s} disappeared: start the reflector again once it is back ('{s} link show {s}')", .{ ifname, ip, ifname });
    }

    /// False (and the reflector failed, with the reason) when the interface is gone or replaced;
    /// follows a new MAC. `deleted`: the kernel announced that our ifindex was deleted.
    fn checkIdentity(self: *Reflector, deleted: bool) bool {
        const ifname = std.mem.sliceTo(&self.opts.ifname, 0);
        var found = self.link.identity();
        if (found == null or deleted) {
            // Deleted: a new interface of the same name often follows within milliseconds (a container
            // restarted, a script recreating a veth pair); wait a moment to name it.
            var waited: u32 = 0;
            while (waited < replace_grace_ms and (found == null or found.?.index == self.iface.index)) : (waited += 10) {
                sys.sleepNs(10 * std.time.ns_per_ms);
                found = self.link.identity();
            }
        }
        const id = found orelse {
            self.failGone();
            return false;
        };
        if (id.index != self.iface.index) {
            self.fail("interface {s} was replaced (ifindex {d}, was {d}): restart the reflector on the new one", .{ ifname, id.index, self.iface.index });
            return false;
        }
        if (xdp.macWord(id.mac) != self.mac_now.load(.acquire)) {
            self.follow(id.mac) catch {
                self.fail("interface {s} changed its MAC to {x:0>2}: {s}", .{ ifname, id.mac, std.mem.span(diag.message()) });
                return false;
            };
            const c = self.kernelBlock();
            @atomicStore(u64, &c.mac_changes, c.mac_changes + 1, .release);
        }
        return true;
    }

    /// Answers for `mac` instead of the old MAC: first nothing answers the old one (the program's map,
    /// the workers' next batch), then the socket filters let frames to the new one through.
    fn follow(self: *Reflector, mac: [6]u8) Error!void {
        self.mac_now.store(xdp.macWord(mac), .release);
        if (self.xdp_prog) |*p| try p.setMac(mac);
        if (self.workers.len == 0) return;
        var cfg = self.cfg;
        cfg.our_mac = mac;
        cbpf.build(&self.filter, &cfg);
        const prog = self.filter.program();
        for (self.workers) |*w| {
            _ = try sys.check(linux.setsockopt(w.sock.fd, linux.SOL.SOCKET, linux.SO.ATTACH_FILTER, std.mem.asBytes(&prog), @sizeOf(cbpf.Program)), "replacing the socket filter", .{});
        }
    }

    /// Defers the interrupts only under load (idle.zig), and then short enough that the device's ring
    /// never fills beyond a quarter while it waits, at the rate of the last interval (spread over its
    /// NAPI instances).
    fn adaptDeferral(self: *Reflector, d: *napi.Deferral, c: *const abi.Counters, rx_last: *u64, ns_last: *u64) void {
        const rx = @atomicLoad(u64, &c.rx_packets, .monotonic);
        const now = sys.monotonicNs();
        const dt = now - ns_last.*;
        if (dt == 0) return;
        const pps = (rx -% rx_last.*) * std.time.ns_per_s / dt / @max(1, d.n);
        rx_last.* = rx;
        ns_last.* = now;
        const want = napi.timeoutFor(@as(u64, self.opts.coalesce_us) * std.time.ns_per_us, self.ring_entries, pps, d.timeout_ns != 0);
        // Only changes worth a system call per NAPI: a fifth either way, or on/off.
        const diff = if (want > d.timeout_ns) want - d.timeout_ns else d.timeout_ns - want;
        if ((want == 0) != (d.timeout_ns == 0) or diff * 5 > d.timeout_ns) d.set(want);
    }

    fn stopWorkers(self: *Reflector) void {
        self.stopping.store(true, .release);
        self.stop_signal.raise();
        for (self.workers) |*w| {
            if (w.thread) |t| t.join();
            w.thread = null;
        }
        for (self.xsk_workers) |*w| {
            if (w.thread) |t| t.join();
            w.thread = null;
        }
        if (self.monitor) |t| t.join();
        self.monitor = null;
    }

    /// Stops reflecting and takes the program off the interface; counters stay readable until
    /// `destroy`. Idempotent.
    pub fn stop(self: *Reflector) void {
        if (self.stopped) return;
        self.stopped = true;
        self.stopWorkers();
        // The interrupts as they were, while the NAPI instances still exist (before the detach).
        if (self.deferral) |*d| d.close();
        self.deferral = null;
        self.readKernel(self.kernelBlock());
        if (self.xdp_prog) |*p| p.close();
        self.xdp_prog = null;
        if (self.state.load(.acquire) != abi.reflector_state.failed) self.state.store(abi.reflector_state.stopped, .release);
    }

    /// Stops the workers, closes every socket, releases the lock, frees everything.
    pub fn destroy(self: *Reflector) void {
        self.stop();
        for (self.workers) |*w| w.sock.close();
        for (self.xsk_workers) |*w| w.sock.close(self.gpa);
        if (self.xsk_workers.len > 0) self.gpa.free(self.xsk_workers);
        self.guard.close();
        self.link.close();
        self.stop_signal.deinit();
        self.lock.release();
        const gpa = self.gpa;
        gpa.free(self.workers);
        gpa.free(self.counters);
        gpa.destroy(self);
    }

    /// Names worker `index` ("fp-packet/N", "fp-afxdp/N"), gives it its nice value and, when asked,
    /// pins it to first_cpu + index; false (and the reflector failed) if that is not possible.
    fn placeWorker(self: *Reflector, index: u16) bool {
        var buf: [16]u8 = undefined;
        const kind = if (self.xsk_workers.len > 0) "afxdp" else "packet";
        const name = std.fmt.bufPrint(&buf, "fp-{s}/{d}", .{ kind, index }) catch "fp-worker";
        const cpu: i32 = if (self.opts.first_cpu < 0) -1 else @as(i32, self.opts.first_cpu) + index;
        sys.placeThread(name, cpu, self.opts.nice) catch {
            self.fail("worker {d}: {s}", .{ index, std.mem.span(diag.message()) });
            return false;
        };
        return true;
    }

    /// A worker's copy of the rules, with the interface's MAC now (once per batch: one atomic load).
    fn refreshMac(self: *Reflector, cfg: *abi.ItoConfig) void {
        const now = self.mac_now.load(.acquire);
        if (now != xdp.macWord(cfg.our_mac)) cfg.our_mac = macOf(now);
    }

    fn fail(self: *Reflector, comptime fmt: []const u8, args: anytype) void {
        _ = std.fmt.bufPrintZ(&self.failure, fmt, args) catch {};
        self.state.store(abi.reflector_state.failed, .release);
        self.stopping.store(true, .release);
        self.stop_signal.raise();
    }
};

const Worker = struct {
    r: *Reflector,
    index: u16,
    sock: afpacket.Socket,
    thread: ?std.Thread,

    const batch_max = 64;

    fn run(w: *Worker) void {
        const r = w.r;
        if (!r.placeWorker(w.index)) return;
        const shared: *align(64) abi.Counters = &r.counters[w.index];
        var local: abi.Counters = .{};
        var tx: afpacket.TxBatch(batch_max) = .{};
        var cpu_last = sys.threadCpuNs();
        var cfg = r.cfg;
        const batch = @min(@max(r.opts.batch, 1), batch_max);
        var gather = idle.Idle{ .period_ns = @as(u64, r.opts.coalesce_us) * std.time.ns_per_us };

        while (!r.stopping.load(.acquire)) {
            // Take: the frames handed over (up to a batch). With none: spin for the next at low rates,
            // let them gather under load, else sleep in poll; time out to fold ring drops.
            const blk = w.sock.next() orelse {
                switch (gather.next(sys.monotonicNs())) {
                    .spin => if (idle.spin(&w.sock)) continue,
                    .sleep => {
                        sys.sleepNs(gather.period_ns);
                        if (w.sock.ready()) continue;
                    },
                    .wait => {},
                }
                switch (w.sock.wait(r.stop_signal, 250)) {
                    .stop => break,
                    .link_error => {}, // counted by the monitor; the ring resumes when the link is back
                    .timeout, .ready => {},
                }
                countRingDrops(w, &local);
                finishBatch(shared, &local, &cpu_last);
                continue;
            };
            // Process: classify (against the MAC the interface has now) and rewrite in place; submit
            // in sendmmsg batches.
            r.refreshMac(&cfg);
            var it = blk.iterator();
            while (it.next()) |f| {
                local.rx_packets += 1;
                local.rx_bytes += f.data.len + @as(u64, if (f.vlan != null) 4 else 0);
                const p = ito.classifyTagged(&cfg, f.data, f.vlan != null);
                if (p.verdict != .reflect) {
                    local.countVerdict(p.verdict);
                    continue;
                }
                local.countSignature(p.signature);
                ito.rewrite(&cfg, f.data, p);
                tx.add(f.data, f.vlan);
                if (tx.n >= batch) submit(&tx, w.sock.fd, &local);
            }
            submit(&tx, w.sock.fd, &local);
            // Release: the frames go back to the kernel only after they were sent.
            w.sock.release();
            gather.took(blk.count, sys.monotonicNs());
            local.batches += 1;
            finishBatch(shared, &local, &cpu_last);
        }
        countRingDrops(w, &local);
        finishBatch(shared, &local, &cpu_last);
    }

    /// Frames the kernel dropped for want of room in the ring: they reached the reflector, so they
    /// count as received (as afxdp mode's program counts them) and as not reflected (ring_full).
    fn countRingDrops(w: *Worker, local: *abi.Counters) void {
        const n = w.sock.takeDrops();
        local.drop_ring_full += n;
        local.rx_packets += n;
    }

    fn submit(tx: *afpacket.TxBatch(batch_max), fd: i32, local: *abi.Counters) void {
        if (tx.n == 0) return;
        const res = tx.flush(fd);
        local.tx_packets += res.sent;
        local.tx_bytes += res.bytes;
        local.drop_tx_error += res.failed;
    }

    fn finishBatch(shared: *align(64) abi.Counters, local: *abi.Counters, cpu_last: *u64) void {
        readCpu(local, cpu_last);
        foldOnly(shared, local);
    }

    /// Adds the thread's CPU time since the last call (a system call: not on every small batch).
    fn readCpu(local: *abi.Counters, cpu_last: *u64) void {
        const now = sys.threadCpuNs();
        local.cpu_ns += now - cpu_last.*;
        cpu_last.* = now;
    }

    fn foldOnly(shared: *align(64) abi.Counters, local: *abi.Counters) void {
        abi.Counters.fold(shared, local);
        local.* = .{};
    }
};

/// `o` with its coalescing period resolved for `mode` (options.coalesceUs): what the workers use and
/// `ReflectorInfo.coalesce_us` reports.
fn withCoalesce(o: abi.ReflectorOptions, mode: abi.Dataplane) abi.ReflectorOptions {
    var r = o;
    r.coalesce_us = options.coalesceUs(&o, mode);
    return r;
}

/// afxdp mode: one receive queue's socket and its batch loop.
const XskWorker = struct {
    r: *Reflector,
    index: u16,
    sock: afxdp.Socket,
    thread: ?std.Thread,

    const batch_max = 64;

    fn run(w: *XskWorker) void {
        const r = w.r;
        if (!r.placeWorker(w.index)) return;
        const shared: *align(64) abi.Counters = &r.counters[w.index];
        var local: abi.Counters = .{};
        var cpu_last = sys.threadCpuNs();
        const batch: u32 = @min(@max(r.opts.batch, 1), batch_max);
        // Busy stretches read the thread's CPU time every this many batches, idle ones before sleeping.
        const cpu_every = 256;
        var since_cpu: u32 = 0;
        // With the device's interrupts deferred (under load), frames already come a period at a time:
        // the worker sleeps in poll until they do. At low rates it spins for the next frame first.
        var gather = idle.Idle{ .period_ns = if (r.deferral != null) 0 else @as(u64, r.opts.coalesce_us) * std.time.ns_per_us };
        // Frames taken since the worker last slept: a coalescing period that found none ends in poll.
        var taken: u32 = 0;
        var cfg = r.cfg;
        while (!r.stopping.load(.acquire)) {
            // Take, process (against the MAC the interface has now: frames the XDP program redirected
            // before a change are checked again), submit, release: one call; then fold the counters
            // once per batch.
            r.refreshMac(&cfg);
            const n = w.sock.batch(&cfg, batch, &local);
            if (n == 0) {
                // Nothing taken: finish pending sends; sleep only when nothing is waiting either (with
                // a full tx ring, frames wait in the rx ring and poll would return at once).
                if (w.sock.tx_outstanding > 0) {
                    _ = w.sock.kickTx();
                    w.sock.reclaim();
                }
                // Wake-up coalescing under load: frames came since the last sleep, so more are on their way; let
                // them gather for one period rather than waking for each (in a VM every wake-up is an
                // IPI and a timer write). Not while the kernel holds unsent frames of ours (they need
                // another kick), nor when a period brings a quarter of the rx ring (the worker is then
                // never idle for long, and a longer wait could overflow the ring).
                const now = sys.monotonicNs();
                gather.took(taken, now);
                const action = gather.next(now);
                if (action == .sleep and taken > 0 and taken < afxdp.ring_size / 4 and !w.sock.txUnsent()) {
                    taken = 0;
                    sys.sleepNs(gather.period_ns);
                    continue;
                }
                taken = 0;
                // Low rate: the next frame is more likely than not to come before a wake-up would.
                if (action == .spin and !w.sock.txUnsent() and idle.spin(&w.sock)) continue;
                local.drop_ring_full += w.sock.takeDrops();
                Worker.finishBatch(shared, &local, &cpu_last);
                since_cpu = 0;
                const timeout: i32 = if (w.sock.txUnsent()) 1 else 100;
                if (w.sock.wait(r.stop_signal, timeout) == .stop) break;
                continue;
            }
            taken += n;
            local.batches += 1;
            since_cpu += 1;
            if (since_cpu >= cpu_every) {
                Worker.readCpu(&local, &cpu_last);
                local.drop_ring_full += w.sock.takeDrops();
                since_cpu = 0;
            }
            Worker.foldOnly(shared, &local);
        }
        local.drop_ring_full += w.sock.takeDrops();
        // Every frame must be accounted for: in our free list or the fill ring, exactly once.
        const a = w.sock.audit(r.gpa, 500 * std.time.ns_per_ms);
        local.umem_missing += a.missing;
        local.umem_duplicated += a.duplicated;
        Worker.finishBatch(shared, &local, &cpu_last);
    }
};

fn macOf(word: u64) [6]u8 {
    const bytes: [8]u8 = @bitCast(word);
    return bytes[0..6].*;
}

/// How long a reflector whose interface was deleted waits for a new one of the same name, to say which.
const replace_grace_ms = 300;

/// Whether `ifname` takes receive VLAN tags out of frames into metadata (ethtool's rxvlan).
fn rxVlanOffload(fd: i32, ifname: []const u8) bool {
    var v: extern struct { cmd: u32, data: u32 } = .{ .cmd = 0x25, .data = 0 }; // ETHTOOL_GFLAGS
    return sys.ethtool(fd, ifname, &v) and v.data & (1 << 8) != 0; // ETH_FLAG_RXVLAN
}

/// The modes that reflect with `port` 0 (any) on `ifname`, for packet mode's refusal: xdp only where
/// it can run (a veth's peer needs an XDP program to take XDP_TX frames), afxdp everywhere.
fn anyPortModes(ifname: []const u8, ifindex: i32) []const u8 {
    const both = " or use `mode` xdp or afxdp";
    const rc = linux.socket(linux.AF.INET, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0);
    if (linux.E.init(rc) != .SUCCESS) return both;
    const fd: i32 = @intCast(rc);
    defer sys.close(fd);
    const peer = veth.peerCheck(fd, ifname, ifindex) orelse return both;
    return if (peer.xdp orelse false) both else " or use `mode` afxdp (xdp would need an XDP program on the veth peer)";
}

/// /run/fastpath/net<netns inode>.<ifname>.<what>: the reflector's files for one interface.
fn statePath(buf: *[128]u8, netns_id: u64, ifname: []const u8, what: []const u8) [:0]const u8 {
    return std.fmt.bufPrintZ(buf, runlock.dir ++ "/net{d}.{s}.{s}", .{ netns_id, ifname, what }) catch unreachable;
}

/// One reflector per interface: a run lock (sys/runlock.zig) on /run/fastpath/net<netns inode>.<ifname>.lock
/// holding the reflector's pid, removed when it stops.
const Lock = struct {
    fd: i32 = -1,
    path_buf: [128]u8 = undefined,
    path: [:0]const u8 = "",

    fn acquire(l: *Lock, netns_id: u64, netns_name: []const u8, ifname: []const u8) Error!void {
        l.path = statePath(&l.path_buf, netns_id, ifname, "lock");
        // A holder that has just taken the lock may not have written its pid yet.
        var tries: u32 = 0;
        const fd = while (true) : (tries += 1) {
            if (try runlock.tryLock(l.path)) |fd| break fd;
            var pid_buf: [16]u8 = undefined;
            const pid = readPid(l.path, &pid_buf);
            if (pid.len == 0 and tries < 20) {
                sys.sleepNs(5 * std.time.ns_per_ms);
                continue;
            }
            const in = if (netns_name.len > 0) " in network namespace " else "";
            return diag.fail(error.Busy, "another fastpath reflector (pid {s}) is running on {s}{s}{s}; stop it first", .{ if (pid.len > 0) pid else "?", ifname, in, netns_name });
        };
        var pid_buf: [16]u8 = undefined;
        const pid = std.fmt.bufPrint(&pid_buf, "{d}\n", .{linux.getpid()}) catch unreachable;
        _ = linux.ftruncate(fd, 0);
        _ = linux.pwrite(fd, pid.ptr, pid.len, 0);
        l.fd = fd;
    }

    fn readPid(path: [:0]const u8, buf: *[16]u8) []const u8 {
        const rc = linux.open(path, .{ .CLOEXEC = true }, 0);
        if (linux.E.init(rc) != .SUCCESS) return "";
        const fd: i32 = @intCast(rc);
        defer sys.close(fd);
        const n = linux.pread(fd, buf, buf.len, 0);
        if (linux.E.init(n) != .SUCCESS) return "";
        return std.mem.trim(u8, buf[0..n], " \n");
    }

    /// Gives the interface up and removes the lock file.
    fn release(l: *Lock) void {
        runlock.unlock(l.fd, l.path, true);
        l.fd = -1;
    }
};
