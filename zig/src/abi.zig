//! Every type that crosses the C ABI. TypeScript reads the offsets of these structs from
//! `fp_layout_json()`, generated here at compile time, so the two sides cannot drift apart.
const std = @import("std");

/// Bumped whenever a struct below or an exported signature changes; ffi/load.ts refuses a mismatch.
pub const abi_version: u32 = 12;

pub const Status = enum(c_int) {
    ok = 0,
    invalid_argument = 1,
    no_such_device = 2,
    permission_denied = 3,
    interface_down = 4,
    unsupported = 5,
    busy = 6,
    out_of_memory = 7,
    system = 8,
    timeout = 9,
};

/// Every failure inside the library is one of these; `statusOf` maps them, exhaustively.
pub const Error = error{
    InvalidArgument,
    NoSuchDevice,
    PermissionDenied,
    InterfaceDown,
    Unsupported,
    Busy,
    OutOfMemory,
    System,
    Timeout,
};

pub fn statusOf(err: Error) Status {
    return switch (err) {
        error.InvalidArgument => .invalid_argument,
        error.NoSuchDevice => .no_such_device,
        error.PermissionDenied => .permission_denied,
        error.InterfaceDown => .interface_down,
        error.Unsupported => .unsupported,
        error.Busy => .busy,
        error.OutOfMemory => .out_of_memory,
        error.System => .system,
        error.Timeout => .timeout,
    };
}

pub const SwapMode = enum(u8) { mac = 0, mac_ip = 1, all = 2 };

pub const Profile = enum(u8) { netally = 0, plain = 1, rfc2544 = 2, y1564 = 3 };

pub const Signature = enum(u8) {
    probeot = 0,
    dataot = 1,
    latency = 2,
    rfc2544 = 3,
    y1564 = 4,

    pub fn bit(s: Signature) u8 {
        return @as(u8, 1) << @as(u3, @intCast(@intFromEnum(s)));
    }
    pub const ito_bits: u8 = 0b111;
};

/// Why a frame was not reflected; `reflect` means it was.
pub const Verdict = enum(u8) {
    reflect = 0,
    too_short = 1,
    not_ours = 2,
    oui = 3,
    not_udp = 4,
    malformed = 5,
    port = 6,
    signature = 7,
};

/// The rulebook's settings. Shared with the XDP program's rodata.
pub const ItoConfig = extern struct {
    our_mac: [6]u8,
    oui: [3]u8,
    /// 1: only frames whose source MAC starts with `oui` are reflected.
    oui_filter: u8,
    /// UDP destination port to accept; 0 = any.
    port: u16,
    /// A `SwapMode`.
    mode: u8,
    /// 1: XOR 0x01 into the IPv4 TOS byte (NetAlly profile), checksum fixed up; not in `mac` mode.
    tos_toggle: u8,
    /// Bit set of accepted `Signature`s.
    signatures: u8,
    _pad: u8 = 0,
};

/// Counters of one worker. One writer (the worker, once per batch), any number of readers through a
/// live typed array; 64-byte aligned so workers never share a cache line.
pub const Counters = extern struct {
    rx_packets: u64 = 0,
    rx_bytes: u64 = 0,
    tx_packets: u64 = 0,
    tx_bytes: u64 = 0,
    sig_probeot: u64 = 0,
    sig_dataot: u64 = 0,
    sig_latency: u64 = 0,
    sig_rfc2544: u64 = 0,
    sig_y1564: u64 = 0,
    drop_too_short: u64 = 0,
    drop_not_ours: u64 = 0,
    drop_oui: u64 = 0,
    drop_not_udp: u64 = 0,
    drop_malformed: u64 = 0,
    drop_port: u64 = 0,
    drop_signature: u64 = 0,
    drop_tx_error: u64 = 0,
    /// Frames the kernel dropped because the receive ring was full.
    drop_ring_full: u64 = 0,
    /// Receive batches processed (ring blocks, XDP polls).
    batches: u64 = 0,
    /// CPU time the worker thread itself used (user + system), nanoseconds.
    cpu_ns: u64 = 0,
    /// Times the interface went down, and came back up, during the run (worker 0's block only).
    link_down: u64 = 0,
    link_up: u64 = 0,
    /// afxdp mode, after stop: UMEM frames found nowhere, and found twice (both must be 0).
    umem_missing: u64 = 0,
    umem_duplicated: u64 = 0,
    /// afxdp mode: ITO frames longer than a UMEM chunk (passed to the stack, not reflected).
    drop_too_long: u64 = 0,
    /// Times the interface's MAC changed during the run (followed: only the new one is answered for).
    mac_changes: u64 = 0,
    _pad: [6]u64 = .{0} ** 6,

    pub fn countVerdict(c: *Counters, v: Verdict) void {
        switch (v) {
            .reflect => {},
            .too_short => c.drop_too_short += 1,
            .not_ours => c.drop_not_ours += 1,
            .oui => c.drop_oui += 1,
            .not_udp => c.drop_not_udp += 1,
            .malformed => c.drop_malformed += 1,
            .port => c.drop_port += 1,
            .signature => c.drop_signature += 1,
        }
    }

    pub fn countSignature(c: *Counters, s: Signature) void {
        switch (s) {
            .probeot => c.sig_probeot += 1,
            .dataot => c.sig_dataot += 1,
            .latency => c.sig_latency += 1,
            .rfc2544 => c.sig_rfc2544 += 1,
            .y1564 => c.sig_y1564 += 1,
        }
    }

    /// Adds a worker's per-batch tally into the shared block, each field with one relaxed atomic
    /// store so a reader never sees a torn value.
    pub fn fold(shared: *align(64) Counters, local: *const Counters) void {
        inline for (std.meta.fields(Counters)) |f| {
            if (comptime std.mem.startsWith(u8, f.name, "_")) continue;
            const add = @field(local, f.name);
            if (add != 0) {
                const p = &@field(shared, f.name);
                @atomicStore(u64, p, @atomicLoad(u64, p, .monotonic) + add, .monotonic);
            }
        }
    }
};

/// The reflector's dataplanes. `auto` takes the fastest this platform starts; `bpf` is macOS's /dev/bpf.
pub const Dataplane = enum(u8) { auto = 0, packet = 1, xdp = 2, afxdp = 3, bpf = 4 };
pub const Fanout = enum(u8) { hash = 0, cpu = 1, lb = 2 };

/// What a caller asks of a reflector. Every field is checked by the library (reflect/options.zig),
/// whose messages name it as the scripting API spells it (`ring_block_kib` → `ringBlockKib`).
pub const ReflectorOptions = extern struct {
    ifname: [16]u8,
    /// Network namespace name under /run/netns, or empty for the caller's.
    netns: [64]u8,
    /// A `Dataplane`: `auto` takes the fastest this platform starts and says why it skipped any.
    dataplane: u8,
    /// A `Profile`: the kind of tester, whose OUI filter, TOS toggle and signatures apply unless
    /// given below (the table is reflect/options.zig's).
    profile: u8,
    /// A `SwapMode`.
    swap: u8,
    /// 0: the profile's OUI filter; 1: any sender; 2: only senders whose MAC starts with `oui`.
    oui_mode: u8,
    oui: [3]u8,
    /// -1: the profile's; 0: off; 1: XOR 0x01 into the IPv4 TOS byte on the way back.
    tos_toggle: i8,
    /// Bit set of `Signature`s to reflect; 0: the profile's.
    signatures: u8,
    /// A `Fanout` (packet mode, more than one worker).
    fanout: u8,
    /// The workers' nice value (Linux; -20 … 19, 0 leaves them at the caller's). A reflector is a test
    /// instrument: raised, a busy machine's other work does not show up as loss on the handheld (its
    /// worker gets most of a contended core; at nice 0 four CPU hogs leave it a fifth). macOS workers
    /// run at QOS_CLASS_USER_INTERACTIVE instead.
    nice: i8,
    _pad: u8 = 0,
    /// UDP destination port to accept; 0 = any.
    port: u16,
    workers: u16,
    /// First CPU to pin worker 0 to (worker i gets first_cpu + i); -1 = no pinning.
    first_cpu: i16,
    _pad1: u16 = 0,
    /// packet mode's receive ring (TPACKET_V2 frame slots as long as the MTU): blocks of
    /// `ring_block_kib` KiB, `ring_blocks` of them (0: the library's default, reflector.zig).
    ring_block_kib: u32,
    ring_blocks: u32,
    /// Frames per transmit call.
    batch: u32,
    /// afxdp mode: busy-poll the socket for this many microseconds (0 = interrupts only).
    busy_poll_us: u32,
    /// afxdp and packet modes: coalescing, like a NIC's rx-usecs: under load (idle.zig: from 50 kpps
    /// per worker, none below 30 kpps) frames gather this long, so a loaded socket costs one wake-up per
    /// period instead of one per frame; a frame waits at most this long more. afxdp defers the
    /// device's receive interrupts where the kernel can (napi.zig); otherwise the worker sleeps
    /// between batches. 0 = off.
    coalesce_us: u32,
    /// 1: the mode's own period instead of `coalesce_us` (options.coalesceUs), reported back in
    /// `ReflectorInfo.coalesce_us`.
    coalesce_default: u32 = 0,
};

/// What the reflector found out and chose at start.
pub const ReflectorInfo = extern struct {
    mac: [6]u8,
    /// 1 when guard UDP sockets hold the test port (no ICMP port-unreachable leaves the host).
    guarded: u8,
    /// The `Profile` applied.
    profile: u8,
    ifindex: i32,
    mtu: u32,
    workers: u32,
    /// The `Dataplane` running (never `auto`).
    dataplane: u8,
    /// An `XdpAttach`: how the XDP program is attached.
    xdp_attach: u8,
    /// afxdp mode: 1 when the sockets run zero-copy, 0 in copy mode.
    zerocopy: u8,
    /// afxdp mode: 1 when the device's receive interrupts are deferred by up to `coalesce_us`
    /// (kernel 6.13+), 0 when the workers coalesce their own wake-ups instead.
    irq_deferred: u8 = 0,
    /// The longest frame (without FCS) this dataplane reflects; 0 = whatever the MTU allows.
    max_frame: u32 = 0,
    /// The rules in force: the profile with the caller's overrides (port, swap, OUI, TOS, signatures).
    ito: ItoConfig,
    /// bpf mode (macOS): 1 when frames go out many per write() (BIOCSBATCHWRITE, macOS 14+).
    batch_write: u8 = 0,
    /// The workers' nice value (Linux packet and afxdp modes).
    nice: i8 = 0,
    _pad: u16 = 0,
    /// afxdp mode: the coalescing period in microseconds (0 = off).
    coalesce_us: u32 = 0,
    /// Why this dataplane runs: asked for, or what `auto` skipped and why. Option names marked `likeThis`.
    reason: [256]u8 = .{0} ** 256,
    /// What this dataplane will not do right on this interface, and what would (empty: nothing).
    warning: [256]u8 = .{0} ** 256,
    /// xdp and afxdp modes: 1 when the receive VLAN tag the driver holds as metadata is put back into
    /// reflections (a device-bound program, kernel 6.8+).
    vlan_meta: u8 = 0,
    _pad2: [7]u8 = .{0} ** 7,
};

/// How an XDP program is attached (the kernel's XDP_FLAGS_*_MODE, as reported).
pub const XdpAttach = enum(u8) { none = 0, driver = 1, generic = 2, offload = 3 };

pub const reflector_state = struct {
    pub const starting: u32 = 0;
    pub const running: u32 = 1;
    pub const stopped: u32 = 2;
    /// A worker hit an error it cannot recover from; `fp_reflector_error` has the message.
    pub const failed: u32 = 3;
};

/// RTT histogram: 16 linear sub-buckets per power of two of nanoseconds (at most 6.25 % wide).
pub const hist_sub_bits = 4;
pub const hist_buckets = 48 * (1 << hist_sub_bits);

pub fn histBucket(ns: u64) usize {
    const sub = @as(u64, 1) << hist_sub_bits;
    if (ns < sub) return @intCast(ns);
    const e: u6 = @intCast(63 - @clz(ns));
    const idx = (@as(usize, e) - hist_sub_bits + 1) * sub + ((ns >> (e - hist_sub_bits)) & (sub - 1));
    return @min(idx, hist_buckets - 1);
}

/// Lower bound in ns of bucket `i` (the inverse of histBucket, mirrored in ffi/layout.ts).
pub fn histLower(i: usize) u64 {
    const sub: usize = @as(usize, 1) << hist_sub_bits;
    if (i < sub) return i;
    const e = i / sub - 1 + hist_sub_bits;
    return @as(u64, sub + i % sub) << @intCast(e - hist_sub_bits);
}

pub const ProbeOptions = extern struct {
    ifname: [16]u8,
    netns: [64]u8,
    dst_mac: [6]u8,
    /// All-zero: the interface's own MAC. Anything else is sent as given and received in promiscuous mode.
    src_mac: [6]u8,
    /// IPv4 in the first 4 bytes, or IPv6 when `ipv6` is 1.
    dst_ip: [16]u8,
    src_ip: [16]u8,
    ipv6: u8,
    signature: u8,
    /// What the reflector is expected to swap (a `SwapMode`) and whether it toggles TOS.
    expect_mode: u8,
    expect_tos_toggle: u8,
    src_port: u16,
    dst_port: u16,
    /// 802.1Q tag to send with; 0 = untagged.
    vlan: u16,
    tos: u8,
    /// The sending and receiving threads' nice value (Linux; -20 … 19, 0 = the caller's): raised, the probe
    /// keeps its schedule and its timestamps on a busy machine, as a handheld's hardware does.
    nice: i8,
    /// Frame size on the wire including the 4-byte FCS (64..9018); 0 = IMIX (64:7, 594:4, 1518:1).
    frame_size: u32,
    tx_cpu: i16,
    rx_cpu: i16,
    /// Frames per second; 0 = as fast as possible.
    rate_pps: u64,
    /// Stop after this many frames (0 = no limit) or this long (0 = no limit); one must be set.
    count: u64,
    duration_ns: u64,
    /// How long to keep receiving after the last frame was sent.
    drain_ns: u64,
    session: u32,
    batch: u32,
};

pub const probe_state = struct {
    pub const starting: u32 = 0;
    pub const sending: u32 = 1;
    pub const draining: u32 = 2;
    pub const done: u32 = 3;
    pub const failed: u32 = 4;
};

pub const ProbeStats = extern struct {
    state: u32 = 0,
    _pad: u32 = 0,
    sent: u64 = 0,
    sent_bytes: u64 = 0,
    received: u64 = 0,
    received_bytes: u64 = 0,
    /// Distinct sequence numbers received.
    unique: u64 = 0,
    duplicates: u64 = 0,
    /// Received with a lower sequence number than one received before it.
    reordered: u64 = 0,
    /// Reflections whose bytes differ from the frame sent with exactly the expected fields swapped.
    bad_rewrite: u64 = 0,
    /// Frames of another sender or session seen on the receive side (not counted as received).
    foreign: u64 = 0,
    tx_errors: u64 = 0,
    rx_ring_drops: u64 = 0,
    /// Paced runs: frames dropped from the schedule because the sender was kept off the CPU for
    /// more than 1 ms (they are not sent, so they are not lost either).
    tx_slipped: u64 = 0,
    /// Paced runs: the furthest the sender fell behind its schedule (ns): about a millisecond when
    /// the machine cannot keep the rate (it makes up 1 ms, then drops the rest), the length of the
    /// stall when it was kept off the CPU.
    tx_late_max_ns: u64 = 0,
    rtt_min_ns: u64 = 0,
    rtt_max_ns: u64 = 0,
    rtt_sum_ns: u64 = 0,
    first_tx_ns: u64 = 0,
    /// When sending ended: the last frame, or the end of `duration` when the schedule ran past it.
    last_tx_ns: u64 = 0,
    rtt_hist: [hist_buckets]u64 = .{0} ** hist_buckets,
};

// --- sched_ext scheduler ---------------------------------------------------------------------

/// The scheduler's knobs, each with its unit in its name. TypeScript (src/sched.ts SCHED_KNOBS) holds
/// their defaults and help; `sched_limits` below their ranges; sched/sched.zig copies each into the
/// BPF tunable of the same name (`_us` becoming `_ns`), so a new knob is a field here, a limit, a
/// tunable in sched.h and its use in sched.bpf.c (zig/src/CHECKLIST.md).
pub const SchedOptions = extern struct {
    /// Slice of a task that rarely wakes, and the floor frequent wakers shrink to (microseconds).
    slice_us: u32,
    slice_min_us: u32,
    /// Sleep credit of a rarely-waking task and its ceiling for frequent wakers (microseconds).
    lag_us: u32,
    lag_max_us: u32,
    /// Wake frequency where slices start to shrink, and from which a task may preempt (Hz).
    wake_ref_hz: u32,
    latency_hz: u32,
    /// Busy/idle hysteresis watermarks, % of all CPUs.
    busy_high_pct: u32,
    busy_low_pct: u32,
    /// Weight of foreground tasks in % of their own (100 = no boost).
    foreground_weight_pct: u32,
    /// sched_ext watchdog: a runnable task waiting this long ejects the scheduler (0 = kernel default).
    watchdog_ms: u32,
    /// Test only: load the deliberately stalling build and starve this thread group.
    stall_tgid: u32,
    /// 1: partial mode (SCX_OPS_SWITCH_PARTIAL): only the foreground's threads, moved to SCHED_EXT,
    /// are scheduled by fastpath; the rest stay on the kernel's default scheduler.
    partial: u32,
    /// 1: run the detectors (the game, input, GPU, audio and network threads, and the generic wake
    /// signals); 0: the policy alone.
    signals: u32,
    _pad: u32 = 0,
    detect: DetectOptions,
};

/// The range of every knob of `SchedOptions`: the one check (relations between knobs are checked
/// in sched/sched.zig). `watchdog_ms` is 0 (the kernel's default) or within its range.
pub const sched_limits = .{
    .slice_us = .{ 50, 100_000 },
    .slice_min_us = .{ 10, 100_000 },
    .lag_us = .{ 0, 1_000_000 },
    .lag_max_us = .{ 0, 1_000_000 },
    .wake_ref_hz = .{ 1, 1_000_000 },
    .latency_hz = .{ 1, 1_000_000 },
    .busy_high_pct = .{ 0, 100 },
    .busy_low_pct = .{ 0, 100 },
    .foreground_weight_pct = .{ 1, 10_000 },
    .watchdog_ms = .{ 500, 30_000 },
};

/// Whether a `sched_limits` knob also takes 0 (the kernel's default): the one place that says so,
/// for the library's check (sched/sched.zig) and the layout TypeScript checks against.
pub fn zeroAllowed(comptime knob: []const u8) bool {
    return comptime std.mem.eql(u8, knob, "watchdog_ms");
}

/// "slice_min_us" → "sliceMinUs": a field as the scripting API (and messages, marked) spell it.
pub fn apiName(comptime field: []const u8) []const u8 {
    comptime var out: []const u8 = "";
    comptime var up = false;
    inline for (field) |ch| {
        if (ch == '_') {
            up = true;
        } else {
            out = out ++ &[_]u8{if (up) std.ascii.toUpper(ch) else ch};
            up = false;
        }
    }
    return out;
}

// --- Detectors (the game's latency-critical threads) ------------------------------------------

/// The detectors' knobs (zig/bpf/detect.h struct fp_detect_knobs), each with its unit in its name.
/// TypeScript (src/sched.ts DETECT_KNOBS) holds their defaults; `detect_limits` their ranges. They
/// change while the detectors run (fp_detect_set_knobs).
pub const DetectKnobs = extern struct {
    /// How long an input event favours the compositor's reader and the threads it wakes.
    input_window_us: u32,
    /// How long a wakeup from an interrupt or a real-time task favours its wakee.
    urgent_window_us: u32,
    /// How many wake hops input and urgency travel on (0: the first wakee only).
    chain_hops: u32,
    /// Submit/present ioctls per second from which a game thread counts as GPU-submit.
    gpu_min_hz: u32,
    /// INET sends per second from which a game thread counts as network.
    net_min_hz: u32,
    /// How long evidence (a submit, a PCM write, a send) keeps a class.
    evidence_ms: u32,
    /// `Signal` bits switched off (a mode, not a knob: 0 = every detector that can attach).
    signals_off: u32,
    /// How long a new game candidate must lead before it replaces the game (read by the library).
    game_switch_ms: u32,
};

pub const detect_limits = .{
    .input_window_us = .{ 100, 1_000_000 },
    .urgent_window_us = .{ 0, 1_000_000 },
    .chain_hops = .{ 0, 4 },
    .gpu_min_hz = .{ 1, 100_000 },
    .net_min_hz = .{ 1, 100_000 },
    .evidence_ms = .{ 10, 60_000 },
    .game_switch_ms = .{ 0, 600_000 },
};

/// The detectors' signals (detect.h enum fp_signal).
pub const Signal = enum(u32) {
    input = 1 << 0,
    wake = 1 << 1,
    irq = 1 << 2,
    gpu = 1 << 3,
    nvidia = 1 << 4,
    pcm = 1 << 5,
    pcm_write = 1 << 6,
    net = 1 << 7,
    exec = 1 << 8,
};

/// A thread's classes (detect.h enum fp_class) and its group's roles (enum fp_role).
pub const ThreadClass = enum(u32) { input = 1 << 0, gpu = 1 << 1, audio = 1 << 2, net = 1 << 3, urgent = 1 << 4 };
pub const Role = enum(u32) { game = 1 << 0, compositor = 1 << 1, audio_server = 1 << 2, audio_client = 1 << 3 };

/// Why the game is the game (sched/roles.zig).
pub const GameReason = enum(u8) { none = 0, named = 1, steam = 2, wine_exe = 3 };

pub const DetectOptions = extern struct {
    knobs: DetectKnobs,
    /// `game`: a PID, or a process name; neither: detected.
    game_pid: u32,
    game_name: [16]u8,
    /// `compositor`: a PID or a process name besides the known ones (and whoever holds evdev open).
    compositor: [16]u8,
};

/// The detectors' counters (detect.h struct fp_detect_counters), summed over CPUs.
pub const DetectCounters = extern struct {
    input_events: u64 = 0,
    input_windows: u64 = 0,
    input_boosts: u64 = 0,
    urgent_boosts: u64 = 0,
    irq_wakeups: u64 = 0,
    rt_wakeups: u64 = 0,
    gpu_submits: u64 = 0,
    pcm_periods: u64 = 0,
    pcm_writes: u64 = 0,
    net_sends: u64 = 0,
    execs: u64 = 0,
    exits: u64 = 0,
    events_lost: u64 = 0,
};

pub const DetectStatus = extern struct {
    /// `Signal` bits attached (and not switched off).
    signals: u32 = 0,
    game_tgid: u32 = 0,
    game_comm: [16]u8 = .{0} ** 16,
    /// A `GameReason`.
    game_reason: u8 = 0,
    _pad: [3]u8 = .{0} ** 3,
    /// From the game's exec to the detectors making it the game, µs; 0 when a scan found it (it
    /// was running before the detectors started, or became the game by winning later).
    game_found_after_exec_us: u32 = 0,
    compositors: u32 = 0,
    audio_servers: u32 = 0,
    audio_clients: u32 = 0,
    /// Why each absent detector is absent ("GPU submit (no DRM driver loaded); ...").
    absent: [512]u8 = .{0} ** 512,
    counters: DetectCounters = .{},
};

/// One thread as the detectors see it (detect.h struct fp_thread). Times in ns since boot
/// (CLOCK_MONOTONIC), rates in Hz.
pub const DetectThread = extern struct {
    tid: u32,
    tgid: u32,
    comm: [16]u8,
    /// `ThreadClass` bits as of `seen`.
    class: u32,
    /// `Role` bits of its thread group.
    roles: u32,
    seen: u64,
    input_at: u64,
    gpu_last: u64,
    pcm_last: u64,
    net_last: u64,
    gpu_hz: u32,
    net_hz: u32,
    waker_tid: u32,
    input_hops: u8,
    urgent_hops: u8,
    woken_by_irq: u8,
    woken_by_rt: u8,
};

/// Live counters of the scheduler, summed over CPUs by the loader every `fold` (100 ms).
pub const SchedCounters = extern struct {
    enqueued: u64 = 0,
    direct_idle: u64 = 0,
    direct_local: u64 = 0,
    dispatched: u64 = 0,
    kept_running: u64 = 0,
    preempt_kicks: u64 = 0,
    foreground_runs: u64 = 0,
    runs: u64 = 0,
    busy_ns: u64 = 0,
    wakeups: u64 = 0,
    resumed: u64 = 0,
    rt_reenqueued: u64 = 0,
    no_task_ctx: u64 = 0,
    /// Times a task got a CPU with its urgency raised by a detector (input, GPU, audio, network,
    /// a wakeup from an interrupt or a real-time task).
    signal_runs: u64 = 0,
    /// Latency-critical wakeups queued first on their waker's CPU: the waker said it would sleep
    /// (a sync wakeup), or it handed on an input window (the next hop of an input chain).
    handoffs: u64 = 0,
    /// The scheduler's own view (its .bss): utilisation of the last period, busy flag, flips.
    util_pct: u64 = 0,
    busy: u64 = 0,
    busy_flips: u64 = 0,
    /// Times the loader re-attached because the kernel asked it to (CPU hotplug).
    restarts: u64 = 0,
    /// Threads the loader queued again because a real-time task held their CPU for over 100 ms
    /// (sched.zig rescueStranded): any left in that CPU's local queue then run elsewhere.
    rt_rescues: u64 = 0,
    nr_cpus: u64 = 0,
    nr_llcs: u64 = 0,
};

/// Why the scheduler went away (struct scx_exit_info as ops.exit saw it).
pub const SchedExit = extern struct {
    /// enum scx_exit_kind: 0 still running, 64 unregistered by us, >= 1024 an error (1026 stall).
    kind: i32 = 0,
    _pad: u32 = 0,
    exit_code: i64 = 0,
    reason: [128]u8 = .{0} ** 128,
    msg: [1024]u8 = .{0} ** 1024,
    /// The CPU a real-time task held longest at exit, and for how long (ms); -1: none.
    rt_cpu: i32 = -1,
    rt_ms: u32 = 0,
};

/// The kernel's enum scx_exit_kind (include/linux/sched/ext.h), as ops.exit reports it: a stable
/// ABI of sched_ext, listed here so TypeScript names each kind the way the kernel does.
pub const SchedExitKind = enum(i32) {
    none = 0,
    done = 1,
    unreg = 64,
    unreg_bpf = 65,
    unreg_kern = 66,
    sysrq = 67,
    @"error" = 1024,
    error_bpf = 1025,
    error_stall = 1026,
};

pub const sched_state = struct {
    pub const running: u32 = 1;
    /// Detached on request.
    pub const stopped: u32 = 2;
    /// The kernel ejected it; `SchedExit` says why.
    pub const ejected: u32 = 3;
};

comptime {
    std.debug.assert(@sizeOf(ItoConfig) == 16);
    std.debug.assert(@sizeOf(Counters) == 256 and @alignOf(Counters) >= 8);
    std.debug.assert(@sizeOf(Counters) % 64 == 0);
    std.debug.assert(@sizeOf(ReflectorOptions) == 124);
    std.debug.assert(@offsetOf(ReflectorInfo, "max_frame") == 24 and @offsetOf(ReflectorInfo, "reason") == 52);
    std.debug.assert(@sizeOf(ProbeOptions) % 8 == 0);
    std.debug.assert(@offsetOf(ProbeStats, "rtt_hist") % 8 == 0);
    std.debug.assert(@offsetOf(SchedOptions, "detect") == 56);
    std.debug.assert(@sizeOf(SchedCounters) == 22 * 8);
    std.debug.assert(@sizeOf(SchedExit) == 16 + 128 + 1024 + 8);
}

// ---------------------------------------------------------------------------------------------
// The layout, as JSON, for TypeScript.

fn typeName(comptime T: type) []const u8 {
    return switch (@typeInfo(T)) {
        .int => @typeName(T),
        .array => |a| std.fmt.comptimePrint("{s}[{d}]", .{ typeName(a.child), a.len }),
        .@"struct" => @typeName(T),
        else => @compileError("unsupported field type " ++ @typeName(T)),
    };
}

/// A field's range where the library checks one (`sched_limits`, `detect_limits`), so that TypeScript
/// refuses a value the field cannot hold (-1, 1.5) with the same numbers as the library's own check;
/// null elsewhere. A knob that also takes 0 (`zeroAllowed`) says so with "or_zero".
fn rangeOf(comptime T: type, comptime name: []const u8) ?[2]u64 {
    const table = if (T == SchedOptions) sched_limits else if (T == DetectKnobs) detect_limits else return null;
    if (!@hasField(@TypeOf(table), name)) return null;
    const lim = @field(table, name);
    return .{ lim[0], lim[1] };
}

fn structJson(comptime T: type) []const u8 {
    comptime var s: []const u8 = std.fmt.comptimePrint("{{\"size\":{d},\"align\":{d},\"fields\":{{", .{ @sizeOf(T), @alignOf(T) });
    comptime var first = true;
    inline for (std.meta.fields(T)) |f| {
        if (comptime std.mem.startsWith(u8, f.name, "_")) continue;
        s = s ++ (if (first) "" else ",") ++ std.fmt.comptimePrint("\"{s}\":{{\"offset\":{d},\"type\":\"{s}\"", .{ f.name, @offsetOf(T, f.name), comptime typeName(f.type) });
        if (comptime rangeOf(T, f.name)) |r| s = s ++ std.fmt.comptimePrint(",\"range\":[{d},{d}]", .{ r[0], r[1] });
        if (T == SchedOptions and comptime zeroAllowed(f.name)) s = s ++ ",\"or_zero\":true";
        s = s ++ "}";
        first = false;
    }
    return s ++ "}}";
}

/// `{"name":value,…}` of an enum, or of a namespace of integer constants.
fn enumJson(comptime T: type) []const u8 {
    comptime var s: []const u8 = "{";
    switch (@typeInfo(T)) {
        .@"enum" => |e| for (e.fields, 0..) |f, j| {
            s = s ++ (if (j == 0) "" else ",") ++ std.fmt.comptimePrint("\"{s}\":{d}", .{ f.name, f.value });
        },
        .@"struct" => |st| for (st.decls, 0..) |d, j| {
            s = s ++ (if (j == 0) "" else ",") ++ std.fmt.comptimePrint("\"{s}\":{d}", .{ d.name, @field(T, d.name) });
        },
        else => @compileError("not an enumeration: " ++ @typeName(T)),
    }
    return s ++ "}";
}

pub const layout_json: [:0]const u8 = blk: {
    @setEvalBranchQuota(100_000);
    const structs = .{
        .{ "DetectKnobs", DetectKnobs },
        .{ "DetectOptions", DetectOptions },
        .{ "DetectCounters", DetectCounters },
        .{ "DetectStatus", DetectStatus },
        .{ "DetectThread", DetectThread },
        .{ "ItoConfig", ItoConfig },
        .{ "Counters", Counters },
        .{ "ReflectorOptions", ReflectorOptions },
        .{ "ReflectorInfo", ReflectorInfo },
        .{ "ProbeOptions", ProbeOptions },
        .{ "ProbeStats", ProbeStats },
        .{ "SchedOptions", SchedOptions },
        .{ "SchedCounters", SchedCounters },
        .{ "SchedExit", SchedExit },
    };
    var s: []const u8 = std.fmt.comptimePrint("{{\"abi_version\":{d},\"hist_sub_bits\":{d},\"hist_buckets\":{d},\"structs\":{{", .{ abi_version, hist_sub_bits, hist_buckets });
    for (structs, 0..) |entry, i| {
        s = s ++ (if (i == 0) "" else ",") ++ "\"" ++ entry[0] ++ "\":" ++ structJson(entry[1]);
    }
    s = s ++ "},\"enums\":{";
    // Every enumeration TypeScript must know (ffi/enums.ts checks its own list against these): Zig
    // enums, and namespaces of u32 constants (states kept in atomics).
    const enums = .{
        .{ "Status", Status },                .{ "SwapMode", SwapMode },             .{ "Profile", Profile },
        .{ "Signature", Signature },          .{ "Verdict", Verdict },               .{ "Dataplane", Dataplane },
        .{ "Fanout", Fanout },                .{ "XdpAttach", XdpAttach },           .{ "ReflectorState", reflector_state },
        .{ "ProbeState", probe_state },       .{ "SchedState", sched_state },        .{ "SchedExitKind", SchedExitKind },
        .{ "Signal", Signal },                .{ "ThreadClass", ThreadClass },       .{ "Role", Role },
        .{ "GameReason", GameReason },
    };
    for (enums, 0..) |entry, i| {
        s = s ++ (if (i == 0) "" else ",") ++ "\"" ++ entry[0] ++ "\":" ++ enumJson(entry[1]);
    }
    const final = s ++ "}}";
    const arr: [final.len:0]u8 = final[0..final.len].*;
    break :blk &arr;
};

test "the layout JSON parses and names every counter" {
    const parsed = try std.json.parseFromSlice(std.json.Value, std.testing.allocator, layout_json, .{});
    defer parsed.deinit();
    const counters = parsed.value.object.get("structs").?.object.get("Counters").?.object;
    try std.testing.expectEqual(@as(i64, 256), counters.get("size").?.integer);
    const fields = counters.get("fields").?.object;
    try std.testing.expectEqual(@as(i64, 0), fields.get("rx_packets").?.object.get("offset").?.integer);
    try std.testing.expect(fields.get("_pad") == null);
    const hops = parsed.value.object.get("structs").?.object.get("DetectKnobs").?.object
        .get("fields").?.object.get("chain_hops").?.object.get("range").?.array.items;
    try std.testing.expectEqual(@as(i64, detect_limits.chain_hops[1]), hops[1].integer);
    const sched = parsed.value.object.get("structs").?.object.get("SchedOptions").?.object.get("fields").?.object;
    try std.testing.expect(sched.get("slice_us").?.object.get("range") != null);
    try std.testing.expect(sched.get("watchdog_ms").?.object.get("or_zero").?.bool);
}

test "histogram buckets are monotonic and their lower bounds invert them" {
    var last: usize = 0;
    var ns: u64 = 0;
    while (ns < 1 << 40) : (ns = ns + 1 + ns / 7) {
        const b = histBucket(ns);
        try std.testing.expect(b >= last);
        last = b;
        try std.testing.expect(histLower(b) <= ns);
        if (b + 1 < hist_buckets) try std.testing.expect(histLower(b + 1) > ns);
    }
}
