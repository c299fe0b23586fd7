//! A veth hands the frames an XDP program sends back (XDP_TX) straight to its peer's receive queue.
//! Without NAPI there (no XDP program, GRO off) the kernel drops them after the program counted them
//! as sent, and says so only in the veth's `rx_queue_N_xdp_tx_errors` statistics (ethtool -S). With
//! GRO on but no XDP program the peer takes them into its ring but nothing wakes its NAPI for them
//! (veth_xdp_flush wakes a peer only if it runs XDP): they wait there for the peer's next ordinary
//! frame (seen on 6.18: 20 reflections, 0 arrived, 0 errors). So the peer needs an XDP program.
//! A container's veth on a bridge has none.
//!
//! `peerCheck` finds the peer (in whichever network namespace it lives) and asks whether it runs an
//! XDP program; `Peer.recheck` asks again while running (the reflector then holds reflections back
//! while it has none, and counts the ones its ring kept: reflector.PeerWatch); `TxErrors` reads the
//! drops.
const std = @import("std");
const linux = std.os.linux;
const sys = @import("../sys/linux.zig");

const ethtool_gdrvinfo = 0x03;
const ethtool_gstrings = 0x1b;
const ethtool_gstats = 0x1d;
const eth_ss_stats = 1;
const gstring_len = 32;
const max_stats = 256;

const DrvInfo = extern struct {
    cmd: u32 = ethtool_gdrvinfo,
    driver: [32]u8 = .{0} ** 32,
    version: [32]u8 = .{0} ** 32,
    fw_version: [32]u8 = .{0} ** 32,
    bus_info: [32]u8 = .{0} ** 32,
    erom_version: [32]u8 = .{0} ** 32,
    reserved2: [12]u8 = .{0} ** 12,
    n_priv_flags: u32 = 0,
    n_stats: u32 = 0,
    testinfo_len: u32 = 0,
    eedump_len: u32 = 0,
    regdump_len: u32 = 0,
};

/// The veth's ethtool statistics, by name.
const Stats = struct {
    n: u32 = 0,
    names: [max_stats][gstring_len]u8 = undefined,
    values: [max_stats]u64 = undefined,

    /// Reads the names and values of `ifname`'s statistics if it is a veth; null otherwise.
    fn ofVeth(fd: i32, ifname: []const u8, s: *Stats) bool {
        var info = DrvInfo{};
        if (!sys.ethtool(fd, ifname, &info)) return false;
        if (!std.mem.eql(u8, std.mem.sliceTo(&info.driver, 0), "veth")) return false;
        s.n = @min(info.n_stats, max_stats);
        var req: extern struct { cmd: u32, string_set: u32, len: u32, data: [max_stats * gstring_len]u8 } = undefined;
        req.cmd = ethtool_gstrings;
        req.string_set = eth_ss_stats;
        req.len = s.n;
        if (!sys.ethtool(fd, ifname, &req)) return false;
        s.n = @min(req.len, s.n);
        for (0..s.n) |i| @memcpy(&s.names[i], req.data[i * gstring_len ..][0..gstring_len]);
        return s.read(fd, ifname);
    }

    fn read(s: *Stats, fd: i32, ifname: []const u8) bool {
        var req: extern struct { cmd: u32, n_stats: u32, data: [max_stats]u64 } = undefined;
        req.cmd = ethtool_gstats;
        req.n_stats = s.n;
        if (!sys.ethtool(fd, ifname, &req)) return false;
        @memcpy(s.values[0..s.n], req.data[0..s.n]);
        return true;
    }

    fn name(s: *const Stats, i: usize) []const u8 {
        return std.mem.sliceTo(&s.names[i], 0);
    }

    fn value(s: *const Stats, wanted: []const u8) ?u64 {
        for (0..s.n) |i| if (std.mem.eql(u8, s.name(i), wanted)) return s.values[i];
        return null;
    }

    /// The sum of every receive queue's statistic `rx_queue_N_{what}`.
    fn queues(s: *const Stats, comptime what: []const u8) u64 {
        var sum: u64 = 0;
        for (0..s.n) |i| {
            const n = s.name(i);
            if (std.mem.startsWith(u8, n, "rx_queue_") and std.mem.endsWith(u8, n[9..], "_" ++ what) and
                std.mem.indexOfScalar(u8, n[9 .. n.len - what.len - 1], '_') == null) sum += s.values[i];
        }
        return sum;
    }

    /// XDP_TX frames the veth could not hand to its peer (dropped).
    fn xdpTxErrors(s: *const Stats) u64 {
        return s.queues("xdp_tx_errors");
    }

    /// XDP_TX frames the veth handed to its peer's ring.
    fn xdpTx(s: *const Stats) u64 {
        return s.queues("xdp_tx");
    }

    /// Frames this veth's NAPI took from its ring (the peer's XDP_TX frames and, while it has NAPI,
    /// its ordinary ones).
    fn xdpTaken(s: *const Stats) u64 {
        return s.queues("xdp_packets");
    }
};

/// The XDP_TX frames a veth dropped since `open` (its peer had no NAPI to take them).
pub const TxErrors = struct {
    stats: Stats = .{},
    base: u64 = 0,

    /// Null when `ifname` is not a veth (or its driver keeps no such counter).
    pub fn open(fd: i32, ifname: []const u8, out: *TxErrors) bool {
        out.* = .{};
        if (!Stats.ofVeth(fd, ifname, &out.stats)) return false;
        out.base = out.stats.xdpTxErrors();
        return true;
    }

    pub fn since(t: *TxErrors, fd: i32, ifname: []const u8) u64 {
        if (!t.stats.read(fd, ifname)) return 0;
        return t.stats.xdpTxErrors() -| t.base;
    }

    /// XDP_TX frames handed to the peer's ring in all, as of the last `since`.
    pub fn handed(t: *const TxErrors) u64 {
        return t.stats.xdpTx();
    }
};

pub const Peer = struct {
    name: [16]u8 = .{0} ** 16,
    /// The peer's interface number (in its own namespace).
    index: i32 = 0,
    /// `ip netns` name of the peer's namespace; empty when it is ours or has no name.
    netns: [64]u8 = .{0} ** 64,
    /// The pid whose namespace it is, when it has no `ip netns` name (a container).
    pid: u32 = 0,
    /// Whether the peer runs an XDP program; null when that cannot be told (its namespace cannot be
    /// entered without CAP_SYS_ADMIN, as under the service unit, or was not found). "Cannot tell" is
    /// not "fine": the callers treat it as a peer that may drop XDP_TX frames.
    xdp: ?bool,
    /// The id our namespace gives the peer's; -1 when the peer is in ours.
    nsid: i32 = -1,
    /// Frames the peer's NAPI has taken from its ring, in all (`Stats.xdpTaken`).
    taken: u64 = 0,

    /// The peer as it is now (`xdp`, `taken`), looked up where it was found; null when it is not there
    /// any more or cannot be entered.
    pub fn recheck(p: *const Peer, ifindex: i32) ?Peer {
        if (p.nsid < 0) return checkHere(p.index, ifindex);
        var buf: [96]u8 = undefined;
        const ns = std.mem.sliceTo(&p.netns, 0);
        const path = if (ns.len > 0)
            std.fmt.bufPrintZ(&buf, "/run/netns/{s}", .{ns}) catch return null
        else if (p.pid != 0)
            std.fmt.bufPrintZ(&buf, "/proc/{d}/ns/net", .{p.pid}) catch return null
        else
            return null;
        const now = checkIn(path, p.nsid, p.index, ifindex) orelse return null;
        return if (now.xdp == null) null else now;
    }
};

/// For a veth: its peer, and whether the peer runs an XDP program now (takes XDP_TX frames at once).
/// Null when `ifname` is not a veth; a peer with `xdp` null when it is one but its peer cannot be checked.
pub fn peerCheck(fd: i32, ifname: []const u8, ifindex: i32) ?Peer {
    var stats: Stats = .{};
    if (!Stats.ofVeth(fd, ifname, &stats)) return null;
    const unknown = Peer{ .xdp = null };
    const peer_index: i32 = @intCast(stats.value("peer_ifindex") orelse return unknown);
    // Interface numbers repeat across namespaces: the peer's is told by its id as our namespace
    // knows it (IFLA_LINK_NETNSID; none when the peer is here).
    const nsid = linkNetnsid(ifindex) orelse return unknown;
    if (nsid < 0) return checkHere(peer_index, ifindex) orelse Peer{ .index = peer_index, .xdp = null };
    var dir = std.fs.openDirAbsolute("/run/netns", .{ .iterate = true }) catch null;
    if (dir) |*d| {
        defer d.close();
        var it = d.iterate();
        while (it.next() catch null) |e| {
            var buf: [128]u8 = undefined;
            const path = std.fmt.bufPrintZ(&buf, "/run/netns/{s}", .{e.name}) catch continue;
            if (checkIn(path, nsid, peer_index, ifindex)) |found| {
                var peer = found;
                peer.nsid = nsid;
                const n = @min(e.name.len, peer.netns.len - 1);
                @memcpy(peer.netns[0..n], e.name[0..n]);
                return peer;
            }
        }
    }
    var proc = std.fs.openDirAbsolute("/proc", .{ .iterate = true }) catch return Peer{ .index = peer_index, .xdp = null };
    defer proc.close();
    var it = proc.iterate();
    var seen: [64]u64 = undefined;
    var nseen: usize = 0;
    while (it.next() catch null) |e| {
        const pid = std.fmt.parseInt(u32, e.name, 10) catch continue;
        var buf: [64]u8 = undefined;
        const path = std.fmt.bufPrintZ(&buf, "/proc/{d}/ns/net", .{pid}) catch continue;
        const st = std.fs.cwd().statFile(path) catch continue;
        if (std.mem.indexOfScalar(u64, seen[0..nseen], st.inode) != null) continue;
        if (nseen < seen.len) {
            seen[nseen] = st.inode;
            nseen += 1;
        }
        if (checkIn(path, nsid, peer_index, ifindex)) |found| {
            var peer = found;
            peer.pid = pid;
            peer.nsid = nsid;
            return peer;
        }
    }
    return Peer{ .index = peer_index, .xdp = null };
}

/// In the namespace at `path`, if our namespace knows it as `nsid`: the veth numbered `peer_index`
/// (with `xdp` null when the namespace is the one but cannot be entered). Null when it is another.
fn checkIn(path: [:0]const u8, nsid: i32, peer_index: i32, ifindex: i32) ?Peer {
    const unknown = Peer{ .index = peer_index, .xdp = null };
    const target_rc = linux.open(path, .{ .CLOEXEC = true }, 0);
    if (linux.E.init(target_rc) != .SUCCESS) return null;
    const target: i32 = @intCast(target_rc);
    defer _ = linux.close(target);
    if (netnsidOf(target) != nsid) return null;
    const saved_rc = linux.open("/proc/thread-self/ns/net", .{ .CLOEXEC = true }, 0);
    if (linux.E.init(saved_rc) != .SUCCESS) return unknown;
    const saved: i32 = @intCast(saved_rc);
    defer _ = linux.close(saved);
    // Entering a namespace needs CAP_SYS_ADMIN, which the service unit does not give.
    if (linux.E.init(linux.syscall2(.setns, @intCast(target), linux.CLONE.NEWNET)) != .SUCCESS) return unknown;
    defer _ = linux.syscall2(.setns, @intCast(saved), linux.CLONE.NEWNET);
    return checkHere(peer_index, ifindex) orelse unknown;
}

/// In the calling thread's namespace: the veth numbered `peer_index` whose own peer is `ifindex`.
fn checkHere(peer_index: i32, ifindex: i32) ?Peer {
    const rc = linux.socket(linux.AF.INET, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0);
    if (linux.E.init(rc) != .SUCCESS) return null;
    const fd: i32 = @intCast(rc);
    defer _ = linux.close(fd);
    var ifr = std.mem.zeroes(linux.ifreq);
    ifr.ifru.ivalue = peer_index;
    if (linux.E.init(linux.ioctl(fd, linux.SIOCGIFNAME, @intFromPtr(&ifr))) != .SUCCESS) return null;
    const name = std.mem.sliceTo(&ifr.ifrn.name, 0);
    var stats: Stats = .{};
    if (!Stats.ofVeth(fd, name, &stats)) return null;
    if ((stats.value("peer_ifindex") orelse return null) != @as(u64, @intCast(ifindex))) return null;
    var p = Peer{ .index = peer_index, .xdp = xdpAttached(peer_index) orelse return null, .taken = stats.xdpTaken() };
    @memcpy(p.name[0..name.len], name);
    return p;
}

// rtnetlink: which namespace a link's peer is in (uapi/linux/rtnetlink.h, if_link.h, net_namespace.h).
const rtm_getlink = 18;
const rtm_getnsid = 90;
const ifla_link_netnsid = 37;
const ifla_xdp = 43;
const ifla_xdp_attached = 2;
const netnsa_nsid = 1;
const netnsa_fd = 3;

/// Sends `req` on a NETLINK_ROUTE socket and returns the i32 attribute `attr` of the answer, whose
/// attributes start `skip` bytes into its body (`inner`: the u8 attribute `inner` nested in `attr`);
/// -1 when the answer has none, null on error.
fn rtQuery(req: []const u8, skip: usize, attr: u16, inner: ?u16) ?i32 {
    const rc = linux.socket(linux.AF.NETLINK, linux.SOCK.RAW | linux.SOCK.CLOEXEC, linux.NETLINK.ROUTE);
    if (linux.E.init(rc) != .SUCCESS) return null;
    const fd: i32 = @intCast(rc);
    defer _ = linux.close(fd);
    var sa = std.mem.zeroes(linux.sockaddr.nl);
    sa.family = linux.AF.NETLINK;
    if (linux.E.init(linux.sendto(fd, req.ptr, req.len, 0, @ptrCast(&sa), @sizeOf(linux.sockaddr.nl))) != .SUCCESS) return null;
    var buf: [8192]u8 align(4) = undefined;
    const n = linux.recvfrom(fd, &buf, buf.len, 0, null, null);
    if (linux.E.init(n) != .SUCCESS or n < 16 + skip) return null;
    const len = std.mem.readInt(u32, buf[0..4], .little);
    const kind = std.mem.readInt(u16, buf[4..6], .little);
    if (kind == 2 or len > n) return null; // NLMSG_ERROR
    var off: usize = 16 + std.mem.alignForward(usize, skip, 4);
    while (off + 4 <= len) {
        const alen = std.mem.readInt(u16, buf[off..][0..2], .little);
        const atype = std.mem.readInt(u16, buf[off + 2 ..][0..2], .little) & 0x3fff;
        if (alen < 4 or off + alen > len) break;
        if (atype == attr and inner == null and alen >= 8) return std.mem.readInt(i32, buf[off + 4 ..][0..4], .little);
        if (atype == attr and inner != null) {
            var in_off = off + 4;
            while (in_off + 4 <= off + alen) {
                const ilen = std.mem.readInt(u16, buf[in_off..][0..2], .little);
                const itype = std.mem.readInt(u16, buf[in_off + 2 ..][0..2], .little) & 0x3fff;
                if (ilen < 4 or in_off + ilen > off + alen) break;
                if (itype == inner.? and ilen >= 5) return buf[in_off + 4];
                in_off += std.mem.alignForward(usize, ilen, 4);
            }
        }
        off += std.mem.alignForward(usize, alen, 4);
    }
    return -1;
}

/// Whether `ifindex` (in the calling thread's namespace) runs an XDP program, in any mode.
fn xdpAttached(ifindex: i32) ?bool {
    const attached = rtQuery(&getLink(ifindex), 16, ifla_xdp, ifla_xdp_attached) orelse return null;
    return attached > 0;
}

fn getLink(ifindex: i32) [32]u8 {
    var req: [32]u8 align(4) = .{0} ** 32;
    std.mem.writeInt(u32, req[0..4], 32, .little);
    std.mem.writeInt(u16, req[4..6], rtm_getlink, .little);
    std.mem.writeInt(u16, req[6..8], linux.NLM_F_REQUEST, .little);
    std.mem.writeInt(i32, req[20..24], ifindex, .little); // ifinfomsg.ifi_index
    return req;
}

/// The id our namespace gives the namespace of `ifindex`'s peer; -1 when the peer is here.
fn linkNetnsid(ifindex: i32) ?i32 {
    return rtQuery(&getLink(ifindex), 16, ifla_link_netnsid, null);
}

/// The id our namespace gives the namespace open as `fd`; -1 when it has none.
fn netnsidOf(fd: i32) i32 {
    var req: [28]u8 align(4) = .{0} ** 28;
    std.mem.writeInt(u32, req[0..4], 28, .little);
    std.mem.writeInt(u16, req[4..6], rtm_getnsid, .little);
    std.mem.writeInt(u16, req[6..8], linux.NLM_F_REQUEST, .little);
    // rtgenmsg (4 bytes with padding), then NETNSA_FD.
    std.mem.writeInt(u16, req[20..22], 8, .little);
    std.mem.writeInt(u16, req[22..24], netnsa_fd, .little);
    std.mem.writeInt(u32, req[24..28], @bitCast(fd), .little);
    return rtQuery(&req, 4, netnsa_nsid, null) orelse -1;
}
