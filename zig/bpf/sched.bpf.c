// SPDX-License-Identifier: GPL-2.0
/*
 * fastpath - a sched_ext scheduler that keeps a game's latency-critical threads responsive while
 * the rest of the machine is busy.
 *
 * Policy (the arithmetic is in sched.h, shared with the host's unit tests):
 *  - Every task has a virtual runtime that advances with the time it runs, scaled by its weight.
 *    When it wakes it is queued by deadline = vruntime (no further behind the system's virtual
 *    clock than a bounded sleep credit) + the runtime it used since it last woke, counted up to
 *    one slice for a latency-critical task (foreground, marked by a detector, or a frequent waker
 *    that fell behind) and up to lag_max for the rest. Tasks that sleep often and run briefly -
 *    input, render submission, audio, network - get early deadlines; CPU hogs get late ones. The
 *    clock advances with the fair share of the runnable tasks as they run.
 *  - Frequent wakers get shorter slices, and every slice shrinks with the number of tasks waiting
 *    per CPU, so a task that lost its place waits about one slice, not one per hog.
 *  - A latency-critical wakeup (foreground, or waking at `latency_hz` or more) that finds no idle
 *    CPU goes straight to the local queue of a CPU running something less urgent, preempting it
 *    (SCX_ENQ_PREEMPT: no round trip through the shared queue, where a hog could take its place);
 *    a latency-critical task preempted that way resumes right after, on its CPU.
 *  - A task's virtual runtime never runs more than FP_DEBT_SLICES slices ahead of the clock - one of
 *    its own slices for a frequent waker - so a favoured task pays back a bounded debt instead of
 *    waiting behind every hog at once.
 *  - When a real-time task takes a CPU, the tasks queued on that CPU that may run elsewhere are
 *    queued again (ops.cpu_release, or the sched_switch tracepoint on kernels without it).
 *  - Placement: an idle whole core in the waker's LLC, then any idle core, then any idle CPU,
 *    always within p->cpus_ptr. Pinned and migration-disabled tasks stay on their CPU. LLCs come
 *    from the real topology (the loader reads sysfs into cpu_llc[]); SMT siblings from the
 *    kernel's own idle SMT mask.
 *  - Busy/idle hysteresis: while the system is idle, wakeups spread to idle CPUs anywhere; while
 *    it is busy, they stay within their LLC.
 *  - The foreground thread groups (a map the loader fills at run time) run with
 *    knobs.foreground_weight_pct of their weight; fastpath's own process (own_tgid) gets no favour:
 *    never latency-critical, no sleep credit, queued as a CPU hog, the shortest slice - its CLI does
 *    not jump the game.
 *
 * One object runs on 6.12 through 6.18: kfuncs renamed in 6.13 are declared weak under both
 * names and picked with bpf_ksym_exists(); enum values come from the running kernel's BTF
 * (scx_enums[], written by the loader).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sched.h"
#include "detect_maps.h"

char LICENSE[] SEC("license") = "GPL";

#define BPF_STRUCT_OPS(name, args...) SEC("struct_ops/" #name) BPF_PROG(name, ##args)
#define BPF_STRUCT_OPS_SLEEPABLE(name, args...) SEC("struct_ops.s/" #name) BPF_PROG(name, ##args)

/* --- kfuncs ------------------------------------------------------------------------------------ */

/* 6.13 renamed the dispatch kfuncs; the old names exist on 6.12 only. */
extern void scx_bpf_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern void scx_bpf_dispatch(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern void scx_bpf_dsq_insert_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
				     u64 enq_flags) __ksym __weak;
extern void scx_bpf_dispatch_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
				   u64 enq_flags) __ksym __weak;
extern bool scx_bpf_dsq_move_to_local(u64 dsq_id) __ksym __weak;
extern bool scx_bpf_consume(u64 dsq_id) __ksym __weak;
extern int bpf_iter_scx_dsq_new(struct bpf_iter_scx_dsq *it, u64 dsq_id, u64 flags) __ksym;
extern struct task_struct *bpf_iter_scx_dsq_next(struct bpf_iter_scx_dsq *it) __ksym;
extern void bpf_iter_scx_dsq_destroy(struct bpf_iter_scx_dsq *it) __ksym;

extern s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym;
extern void scx_bpf_kick_cpu(s32 cpu, u64 flags) __ksym;
extern s32 scx_bpf_pick_idle_cpu(const struct cpumask *cpus_allowed, u64 flags) __ksym;
extern bool scx_bpf_test_and_clear_cpu_idle(s32 cpu) __ksym;
extern const struct cpumask *scx_bpf_get_idle_smtmask(void) __ksym;
extern void scx_bpf_put_idle_cpumask(const struct cpumask *cpumask) __ksym;
extern s32 scx_bpf_task_cpu(const struct task_struct *p) __ksym;
extern bool bpf_cpumask_test_cpu(u32 cpu, const struct cpumask *cpumask) __ksym;
extern void scx_bpf_error_bstr(char *fmt, unsigned long long *data, u32 data_len) __ksym;
/* 6.14: a cheaper clock, exact within a scheduling event. */
extern u64 scx_bpf_now(void) __ksym __weak;
extern s32 scx_bpf_dsq_nr_queued(u64 dsq_id) __ksym;
/* The per-CPU run queues, read in ops.stopping (other_class_queued); in BTF since pahole 1.18. */
extern const struct rq runqueues __ksym __weak;
/* 6.12-6.18: callable from ops.cpu_release() only (libbpf resolves the name before ___). */
extern u32 scx_bpf_reenqueue_local___v1(void) __ksym __weak;
/* 6.19+: callable from anywhere; the kernel names it ..___v2 (libbpf drops our ___compat). */
extern void scx_bpf_reenqueue_local___v2___compat(void) __ksym __weak;

static __always_inline void insert(struct task_struct *p, u64 dsq, u64 slice, u64 flags)
{
	if (bpf_ksym_exists(scx_bpf_dsq_insert))
		scx_bpf_dsq_insert(p, dsq, slice, flags);
	else
		scx_bpf_dispatch(p, dsq, slice, flags);
}

static __always_inline void insert_vtime(struct task_struct *p, u64 dsq, u64 slice, u64 vtime, u64 flags)
{
	if (bpf_ksym_exists(scx_bpf_dsq_insert_vtime))
		scx_bpf_dsq_insert_vtime(p, dsq, slice, vtime, flags);
	else
		scx_bpf_dispatch_vtime(p, dsq, slice, vtime, flags);
}

static __always_inline bool move_to_local(u64 dsq)
{
	if (bpf_ksym_exists(scx_bpf_dsq_move_to_local))
		return scx_bpf_dsq_move_to_local(dsq);
	return scx_bpf_consume(dsq);
}

/* Queues again every task in this CPU's local queue (ops.enqueue sees SCX_ENQ_REENQ). */
static __always_inline void reenqueue_local(void)
{
	if (bpf_ksym_exists(scx_bpf_reenqueue_local___v2___compat))
		scx_bpf_reenqueue_local___v2___compat();
	else if (bpf_ksym_exists(scx_bpf_reenqueue_local___v1))
		scx_bpf_reenqueue_local___v1();
}

static __always_inline u64 now_ns(void)
{
	if (bpf_ksym_exists(scx_bpf_now))
		return scx_bpf_now();
	return bpf_ktime_get_ns();
}

#define fp_error(fmt, args...)                                                          \
	({                                                                              \
		static char ___fmt[] = fmt;                                             \
		unsigned long long ___param[___bpf_narg(args)];                         \
		_Pragma("GCC diagnostic push")                                          \
		_Pragma("GCC diagnostic ignored \"-Wint-conversion\"")                  \
		___bpf_fill(___param, args);                                            \
		_Pragma("GCC diagnostic pop")                                           \
		scx_bpf_error_bstr(___fmt, ___param, sizeof(___param));                 \
	})

/* --- Configuration ----------------------------------------------------------------------------- */

/* Written by the loader from the running kernel's BTF: values differ between kernels. */
const volatile u64 scx_enums[FP_SCX_ENUMS];
#define SCX(name) scx_enums[FP_SCX_##name]

/*
 * The knobs of `fastpath sched run`, in .bss rather than .rodata so they change while the scheduler
 * runs (Scheduler.setKnobs): written by the loader through the mapped .bss before attaching (their
 * defaults live in src/sched.ts, their ranges in abi.zig; zero here only until then).
 */
struct fp_sched_tunables tun;

/*
 * 1 on kernels without ops.cpu_release: the sched_switch program queues again the tasks of a CPU a
 * real-time task takes (set by the loader from the kernel's BTF).
 */
const volatile u32 reenqueue_from_switch;

/*
 * 1 in partial mode (SCX_OPS_SWITCH_PARTIAL): the fair class's tasks run before ours on every CPU, so
 * a wakeup is never put straight into a CPU's local queue from ops.select_cpu - a fair task taking
 * that CPU in between would hold it there as long as it runs, which no callback reports (set by
 * the loader).
 */
const volatile u32 partial_mode;

/*
 * The loader's getpid(), set before load: its thread group is fastpath's own (sched.h:
 * fp_task_class) unless ops.init sees another - inside a PID namespace getpid() is not the
 * kernel's tgid, so ops.init takes the tgid of the task attaching it (own_tgid below).
 */
const volatile u32 loader_tgid;

/* LLC of each CPU, read by the loader from /sys/devices/system/cpu/cpuN/cache (never guessed). */
const volatile u32 cpu_llc[FP_MAX_CPUS];

/*
 * 1 when some CPU has an SMT sibling, or the loader could not tell (it reads each CPU's
 * topology/thread_siblings_list). Without SMT every idle CPU is a whole idle core, and placement
 * skips the idle-core pass: at least three kfunc calls fewer on every wakeup. In the emulated VM
 * the BPF run on a wakeup's path is time the other vCPU's wakeups wait (docs/sched-measurements.md,
 * "The quiet row in a trace").
 */
const volatile u32 smt_on;

/* The thread group of the loader that attached this scheduler; 0 until ops.init. */
static u32 own_tgid;

/* Changed at run time by the loader through the mmaped .bss. */
struct fp_sched_knobs knobs; /* zero here: the loader writes it before attaching */
/* The detectors' knobs (a copy the library keeps equal to theirs): which evidence makes a class. */
struct fp_detect_knobs dknobs;
struct fp_sched_state state;
struct fp_sched_exit uei;

/* --- Maps -------------------------------------------------------------------------------------- */

/*
 * Foreground thread groups (tgid -> FP_FG_LOADER, put there by the loader; or FP_FG_EXEC, by the
 * kernel at an exec or a rename the names match: fastpath_exec, fastpath_rename).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_FOREGROUND);
	__type(key, u32);
	__type(value, u32);
} foreground SEC(".maps");

/*
 * The --foreground names (key -> FP_NAME_COMM | FP_NAME_EXE, sched.h), matched in the kernel at each
 * exec and rename (fastpath_exec, fastpath_rename): a game is foreground from its first instruction, however late the
 * loader's own threads - which get no favour - run beside a loaded machine.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * FP_MAX_FOREGROUND);
	__type(key, struct fp_name_key);
	__type(value, u32);
} fg_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct fp_sched_counters);
} counters SEC(".maps");

/* How long after a real-time task ran on a CPU wakeups stop going straight to its local queue. */
#define FP_RT_QUIET_NS 1000000000ULL

struct cpu_ctx {
	u64 started_at;	  /* when the running task got this CPU */
	u64 busy_ns;	  /* running time, summed by the utilisation fold */
	u64 running_deadline;
	u64 rt_since;	  /* when a real-time or deadline task took this CPU from us; 0 = it did not */
	u32 running_lat;  /* urgency() of the running task */
	s32 running_pid;  /* the task running here (0: none of ours) */
	s32 preempted_pid; /* the task a wakeup was queued in front of, to resume right after it */
	u32 running_weight; /* weight_of() the running task: its deadline moves by its runtime over it */
	u32 overtakes;	  /* hand-offs queued first here, ahead of waiting tasks, since one of those ran */
	u32 _pad;
};

/*
 * How many hand-offs in a row (sync wakeups, input hops) may go first on a CPU whose local queue
 * already holds tasks: a whole input chain (the game's input thread, then its worker) - and no
 * more, or a sync ping-pong pair could keep a waiting task from ever running. Without the ones in
 * front of a waiting task, the compositor's CPU refused the hand-off to the game's input thread for
 * 98 % of events beside four hogs per CPU (the task it had preempted to run waited there): its
 * wake-up took a median 0.18 ms, mostly through an IPI to the other CPU; allowed, 0.03 ms (a
 * tracefs capture of bench:sched's input-hogs4 row, one run each).
 */
#define FP_OVERTAKES_MAX 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cpu_ctx);
} cpu_ctxs SEC(".maps");

/* Per-task state: task storage, freed with the task, so a reused TID never inherits it. */
struct task_ctx {
	u64 vruntime;
	u64 exec_ns;	 /* runtime since the task last woke */
	u64 last_woke;	 /* when it last became runnable */
	u64 slept_at;	 /* when it last went to sleep (0: never, a new task) */
	u64 slept_ns;	 /* how long it slept before it last woke: the most credit it may use */
	u64 wake_hz;	 /* exponential average, events per second */
	u64 deadline;
	u64 exec_vtime;	 /* the runtime term of the deadline it was last given (deadline_of) */
	u32 cls;	 /* enum fp_task_class, cached at each ops.enqueue (class_of) */
	s32 idle_cpu;	 /* an idle CPU ops.select_cpu claimed for it, to wake once it is queued; -1: none */
	s32 sync_cpu;	 /* the waker's CPU, for a wakeup queued first there (see fastpath_select_cpu) */
	u32 jumped;	 /* queued first (a hand-off, a preempting wakeup): its start does not end its CPU's overtakes */
	u32 new_thread;	 /* 1 from its fork (a rare thread of a running process) until its first queueing */
	u64 spawn_hz;	 /* threads it creates a second (exponential average, sched.h fp_spawn_rare) */
	u64 last_spawn;	 /* when it last created one */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

static u64 last_fold;
/*
 * When a real-time or deadline task last started on each CPU (fastpath_sched_switch): read for
 * another CPU at wakeups, where a plain array costs no helper call (a per-CPU map's does).
 */
static u64 rt_last_at[FP_MAX_CPUS];
static u64 last_busy_sum;
static u64 nr_running; /* tasks between ops.running and ops.stopping, all CPUs */

static __always_inline struct fp_sched_counters *cnt(void)
{
	u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

static __always_inline struct cpu_ctx *this_cpu_ctx(void)
{
	u32 zero = 0;

	return bpf_map_lookup_elem(&cpu_ctxs, &zero);
}

static __always_inline struct task_ctx *tctx_of(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctxs, p, 0, 0);
}

/*
 * The task's state, created now if ops.init_task could not allocate it (memory pressure): a task
 * without it is scheduled plainly (FIFO on the shared queue) rather than ejecting the scheduler.
 */
static __always_inline struct task_ctx *tctx_or_create(struct task_struct *p)
{
	struct task_ctx *tc = bpf_task_storage_get(&task_ctxs, p, 0, 0);

	if (!tc) {
		tc = bpf_task_storage_get(&task_ctxs, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (tc) {
			tc->vruntime = state.vtime_now;
			tc->idle_cpu = -1;
			tc->sync_cpu = -1;
		}
	}
	return tc;
}

/* Named with --foreground, or the game the detectors found (its thread group has the game role). */
static __always_inline bool is_foreground(struct task_struct *p)
{
	u32 tgid = p->tgid;

	return ((knobs.nr_foreground || knobs.nr_names) && bpf_map_lookup_elem(&foreground, &tgid)) ||
	       (roles_of(tgid) & FP_ROLE_GAME);
}

/* The task's class (sched.h): fastpath's own process first, whatever it is named or detected as. */
static __always_inline u32 class_of(struct task_struct *p)
{
	if (own_tgid && p->tgid == own_tgid)
		return FP_TASK_OWN;
	return is_foreground(p) ? FP_TASK_FOREGROUND : FP_TASK_NORMAL;
}

/*
 * The task's wake frequency as of `now` (sched.h: a task that stopped waking loses its frequency).
 * Each callback reads the clock once and passes it down: on 6.12, without scx_bpf_now, every read
 * is a helper call on the wake-up path.
 */
static __always_inline u64 hz_of(struct task_ctx *tc, u64 now)
{
	return fp_wake_hz_now(tc->wake_hz, now - tc->last_woke);
}

static __always_inline u64 weight_of(struct task_struct *p, struct task_ctx *tc)
{
	return fp_weight(p->scx.weight, tc->cls, knobs.foreground_weight_pct);
}

/*
 * What the detectors found (their task storage, detect_maps.h; empty without them): 3 in an input
 * window (the compositor's reader and the threads it wakes) or an audio thread; 2 the game's
 * GPU-submit or network thread; 1 woken from an interrupt or by a real-time task; else 0.
 */
static __always_inline u32 signal_urgency(struct task_struct *p, u64 now)
{
	struct fp_task_sig *sig = bpf_task_storage_get(&task_sig, p, 0, 0);
	u32 cls;

	if (!sig)
		return 0;
	cls = fp_classes(sig, roles_of(p->tgid), now, &dknobs);
	if (cls & (FP_CLASS_INPUT | FP_CLASS_AUDIO))
		return 3;
	if (cls & (FP_CLASS_GPU | FP_CLASS_NET))
		return 2;
	return cls & FP_CLASS_URGENT ? 1 : 0;
}

/*
 * The most runtime since its last wakeup `p`'s deadline counts (sched.h: fp_exec_max): one slice
 * for a latency-critical task, even one that has not slept for a while because it fell behind.
 */
static __always_inline u64 exec_max_of(struct task_struct *p, struct task_ctx *tc, u64 now)
{
	int urgent = fp_deadline_urgent(&tun, tc->wake_hz, now - tc->last_woke, tc->cls,
					signal_urgency(p, now) > 0);

	return fp_exec_max(&tun, tc->wake_hz, urgent);
}

/*
 * The deadline `p` is queued with after running `ran` ns more than its task context records (the
 * running task's context is brought up to date only when it stops). Records its runtime term, so
 * the clock's bound (shared_head_vruntime) takes off what the queued deadline holds.
 */
static __always_inline u64 deadline_of(struct task_struct *p, struct task_ctx *tc, u64 ran, u64 now)
{
	u64 weight = weight_of(p, tc);
	u64 exec = tc->exec_ns + ran;
	/*
	 * The time slept bounds the credit only of a task that has not run since it woke. Bounding it
	 * for one that ran and waits again cost a compositor forwarding 1 kHz input beside eight CPU
	 * hogs its place - queued at the clock like a hog after each short slice, it fell behind for
	 * good and the game's input waited 0.1-0.7 s (p99). fastpath's own threads get none.
	 */
	u64 credit = fp_wake_credit(&tun, hz_of(tc, now), weight, exec == 0, tc->slept_ns, tc->cls);
	/* Right after a wakeup there is no runtime to bound: skip the detectors' lookups. */
	u64 max = exec ? exec_max_of(p, tc, now) : 0;
	u64 counted = fp_deadline_exec(&tun, exec, max, weight, tc->cls);

	/* `counted` is already bounded (for fastpath's own, not by `max`): it is its own bound. */
	tc->exec_vtime = fp_lead_vtime(&tun, counted, weight);
	return fp_deadline_at(tc->vruntime + fp_vtime_delta(ran, weight), state.vtime_now, credit, tc->exec_vtime);
}

/* The slice for `tc` now: shorter for frequent wakers, and shorter as more tasks wait (sched.h). */
static __always_inline u64 slice_of(struct task_ctx *tc, u64 now)
{
	s32 cpu = bpf_get_smp_processor_id();
	u64 queued = scx_bpf_dsq_nr_queued(FP_DSQ_SHARED) + tun.nr_cpus * scx_bpf_dsq_nr_queued(FP_DSQ_CPU(cpu));

	return tc ? fp_class_slice(&tun, hz_of(tc, now), queued, tc->cls) : fp_slice_loaded(&tun, 0, queued);
}

/* Deadline of the first task in queue `dsq`; ~0 when it is empty. */
static __always_inline u64 head_deadline(u64 dsq)
{
	struct task_struct *p;
	u64 deadline = ~0ULL;

	if (!scx_bpf_dsq_nr_queued(dsq))
		return deadline; /* a count costs less than an iterator (every wakeup and dispatch) */
	bpf_for_each(scx_dsq, p, dsq, 0) {
		deadline = p->scx.dsq_vtime;
		break;
	}
	return deadline;
}

static __always_inline u64 shared_head_deadline(void)
{
	return head_deadline(FP_DSQ_SHARED);
}

/*
 * The virtual runtime the first task of the shared queue is placed at (its deadline less the
 * runtime term it was queued with); ~0 when the queue is empty. The clock may not pass it.
 */
static __always_inline u64 shared_head_vruntime(void)
{
	struct task_struct *p;
	struct task_ctx *tc;
	u64 v = ~0ULL;

	if (!scx_bpf_dsq_nr_queued(FP_DSQ_SHARED))
		return v;
	bpf_for_each(scx_dsq, p, FP_DSQ_SHARED, 0) {
		v = p->scx.dsq_vtime;
		tc = tctx_of(p);
		if (tc)
			v -= tc->exec_vtime;
		break;
	}
	return v;
}

/*
 * Moves the virtual clock forward to `v`, never back. Two CPUs update it at once: with a plain
 * compare-and-store the slower one can overwrite a larger value with its smaller one, and a
 * low-weight task (nice 19 has weight 1: 6 ms of running is 600 ms of virtual time) makes that
 * step back hundreds of milliseconds - every task queued before it then sorts behind every task
 * queued after it until the clock catches up again (seen as a 300 ms stall of a frame loop).
 */
static __always_inline void advance_vtime(u64 v)
{
	u64 cur = state.vtime_now, seen;
	u32 i;

	bpf_for(i, 0, 8) {
		if (v <= cur)
			return;
		seen = __sync_val_compare_and_swap(&state.vtime_now, cur, v);
		if (seen == cur)
			return;
		cur = seen;
	}
}

/*
 * Whether `p` has migration disabled right now. Every BPF program runs with migration disabled
 * for the task it runs in (the trampoline calls migrate_disable()), so when `p` is the current
 * task - ops.enqueue at the end of its slice, or after a preemption - a count of 1 is our own
 * doing, not the task's. Taking it at face value pinned every CPU hog to its CPU at each slice
 * end, past the shared queue and every deadline in it (a frame thread waited 400 ms behind one).
 */
static __always_inline bool migration_disabled(const struct task_struct *p)
{
	if (p->migration_disabled == 1)
		return (void *)bpf_get_current_task_btf() != (void *)p;
	return p->migration_disabled;
}

/* Tasks that must stay where they are: one allowed CPU, or migration disabled right now. */
static __always_inline bool is_pinned(const struct task_struct *p)
{
	return p->nr_cpus_allowed == 1 || migration_disabled(p);
}

static __always_inline u32 llc_of(s32 cpu)
{
	if (cpu < 0 || cpu >= FP_MAX_CPUS)
		return 0;
	return cpu_llc[cpu];
}

/*
 * An idle CPU in `llc` that `p` may use, claimed (its idle bit cleared); with `smt` (the idle SMT
 * mask), only one whose SMT siblings are idle too. -1 when there is none.
 */
static s32 pick_idle_in_llc(const struct task_struct *p, u32 llc, const struct cpumask *smt)
{
	u32 i;

	bpf_for(i, 0, FP_MAX_CPUS) {
		if (i >= tun.nr_cpus)
			break;
		if (cpu_llc[i] != llc || !bpf_cpumask_test_cpu(i, p->cpus_ptr))
			continue;
		if (smt && !bpf_cpumask_test_cpu(i, smt))
			continue;
		if (scx_bpf_test_and_clear_cpu_idle(i))
			return i;
	}
	return -1;
}

/*
 * One placement pass, claiming what it returns: the previous CPU (warm caches, no migration), then
 * the rest of its LLC, then - while the system is idle - anywhere. With `smt` (the idle SMT mask)
 * only CPUs whose whole core is idle count. -1 when the pass finds nothing.
 */
static s32 pick_idle_pass(struct task_struct *p, s32 prev_cpu, u32 llc, const struct cpumask *smt,
			  u64 pick_flags)
{
	s32 cpu;

	if ((!smt || bpf_cpumask_test_cpu(prev_cpu, smt)) && bpf_cpumask_test_cpu(prev_cpu, p->cpus_ptr) &&
	    scx_bpf_test_and_clear_cpu_idle(prev_cpu))
		return prev_cpu;
	cpu = pick_idle_in_llc(p, llc, smt);
	if (cpu < 0 && !state.busy)
		cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, pick_flags);
	return cpu;
}

/* Idle-core-first placement: whole idle cores, then any idle CPU; -1 when every allowed CPU is busy. */
static s32 pick_idle(struct task_struct *p, s32 prev_cpu)
{
	const struct cpumask *smt;
	u32 llc = llc_of(prev_cpu);
	s32 cpu;

	if (!smt_on) /* every idle CPU is an idle core: the second pass alone finds the same */
		return pick_idle_pass(p, prev_cpu, llc, NULL, 0);
	smt = scx_bpf_get_idle_smtmask();
	cpu = pick_idle_pass(p, prev_cpu, llc, smt, SCX(PICK_IDLE_CORE));
	if (cpu < 0)
		cpu = pick_idle_pass(p, prev_cpu, llc, NULL, 0);
	scx_bpf_put_idle_cpumask(smt);
	return cpu;
}

/* Every `fold_ms`, one CPU sums the others' busy time into utilisation and the busy state. */
static void maybe_fold(u64 now)
{
	u64 last = last_fold, sum = 0, period;
	u32 i, zero = 0, util;
	int busy;

	if (now < last + (u64)tun.fold_ms * FP_NSEC_PER_MSEC)
		return;
	if (__sync_val_compare_and_swap(&last_fold, last, now) != last)
		return; /* another CPU is folding this period */

	bpf_for(i, 0, FP_MAX_CPUS) {
		struct cpu_ctx *cc;

		if (i >= tun.nr_cpus)
			break;
		cc = bpf_map_lookup_percpu_elem(&cpu_ctxs, &zero, i);
		if (cc)
			sum += cc->busy_ns;
	}
	period = last ? now - last : 0;
	util = fp_util_pct(sum - last_busy_sum, period, tun.nr_cpus);
	last_busy_sum = sum;
	busy = fp_busy_next(state.busy, util, tun.busy_high_pct, tun.busy_low_pct);
	if (busy != (int)state.busy)
		__sync_fetch_and_add(&state.busy_flips, 1);
	state.busy = busy;
	state.util_pct = util;
	__sync_fetch_and_add(&state.folds, 1);
}

/* --- sched_ext_ops ----------------------------------------------------------------------------- */

/* 0 normal, 1 latency-critical (wakes often), 2 foreground (named, or the detected game). */
static __always_inline u32 policy_urgency(struct task_ctx *tc, u64 now)
{
	return tc->cls == FP_TASK_FOREGROUND ? 2 : fp_latency_critical(&tun, hz_of(tc, now), tc->cls) ? 1 : 0;
}

static __always_inline u32 urgency(struct task_struct *p, struct task_ctx *tc, u64 now)
{
	return fp_urgency(tc->cls, policy_urgency(tc, now), signal_urgency(p, now));
}

/*
 * Whether this wakeup is the next hop of an input chain: the waker - running here - passed on the
 * input window it carries just now (the detectors' sched_waking, which fires before ops.select_cpu;
 * a wakeup from an interrupt names no waker there). Sent to another CPU, the wakee waited for an
 * interrupt that preempted a hog there: a median 0.22 ms of the game worker's 0.38 ms beside eight
 * hogs (tracefs in the VM), and longer whenever that CPU's vCPU was not running. It goes first on
 * this CPU instead (fastpath_select_cpu, fastpath_enqueue).
 */
static __always_inline bool input_handoff(const struct fp_task_sig *ps, struct task_struct *waker, u64 now)
{
	struct fp_task_sig *ws;

	if (!ps || !ps->input_hops || ps->input_until <= now || ps->waker_tid != waker->pid)
		return false;
	ws = bpf_task_storage_get(&task_sig, waker, 0, 0);
	return ws && ws->input_until == ps->input_until;
}

/*
 * Whether the detectors saw this wakeup come from an interrupt, a softirq or a timer (their
 * sched_waking, just before, named no waker). Unknown without them, or for a task they keep no
 * evidence of - which they do for every task an interrupt or softirq wakes: false then.
 */
static __always_inline bool from_interrupt(const struct fp_task_sig *ps)
{
	return ps && !ps->waker_tid;
}

/* What the detectors' sched_waking just wrote of `p`; NULL without them or with their wake signal off (stale). */
static __always_inline struct fp_task_sig *wake_sig(struct task_struct *p)
{
	if (dknobs.signals_off & FP_SIGNAL_WAKE)
		return NULL;
	return bpf_task_storage_get(&task_sig, p, 0, 0);
}

/* PF_EXITING, PF_KTHREAD (include/linux/sched.h): the task is in do_exit(); a kernel thread. */
#define FP_PF_EXITING 0x00000004
#define FP_PF_KTHREAD 0x00200000

/*
 * A wakeup's bookkeeping: its frequency, how long it slept, a runtime count started afresh. Done
 * where the wakeup is queued - ops.select_cpu when it inserts the task itself, else ops.enqueue -
 * and not in ops.runnable: every sched_ext callback is a BPF trampoline on the wake-up path, and on
 * a quiet machine one callback fewer per wakeup is most of what separates a policy from the floor
 * (bench:sched's "minimal" scheduler).
 */
static __always_inline void woke(struct task_ctx *tc, u64 now)
{
	struct fp_sched_counters *c = cnt();

	/*
	 * A wakeup by a task that is exiting - a parent reaping its child - says nothing about how often
	 * the wakee waits on input or a timer: fork-storm parents, woken ~80 times a second by their
	 * children's exits, counted as latency-critical and stood level with a 60 Hz frame thread, which
	 * then waited 2-3 ms behind one (tracefs in the VM). Its frequency is left as it was. (A
	 * wakeup the kernel hands to the target CPU to queue - an idle one, on 6.12-6.14 - reaches
	 * ops.enqueue there, where the current task is not the waker: it counts, as before.)
	 */
	if (!(bpf_get_current_task_btf()->flags & FP_PF_EXITING))
		tc->wake_hz = fp_wake_hz(tc->wake_hz, now - tc->last_woke);
	tc->last_woke = now;
	tc->slept_ns = tc->slept_at && now > tc->slept_at ? now - tc->slept_at : 0;
	tc->exec_ns = 0;
	if (c)
		c->wakeups++;
}

/*
 * Whether no real-time or deadline task started on `cpu` in the last FP_RT_QUIET_NS. `now` is this
 * CPU's clock and rt_last_at that CPU's: with scx_bpf_now (6.14+) one may run slightly ahead of the
 * other, and an RT task that started "after now" has just started.
 */
static __always_inline bool rt_quiet(s32 cpu, u64 now)
{
	u64 last;

	if (cpu < 0 || cpu >= FP_MAX_CPUS)
		return false;
	last = rt_last_at[cpu];
	return now > last && now - last > FP_RT_QUIET_NS;
}

s32 BPF_STRUCT_OPS(fastpath_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	struct fp_sched_counters *c;
	struct task_ctx *tc;
	s32 cpu;
	u64 now;

	if (is_pinned(p))
		return prev_cpu;
	tc = tctx_or_create(p);
	cpu = pick_idle(p, prev_cpu);
	if (cpu < 0) {
		/*
		 * No idle CPU and the waker says it will sleep: run the wakee here, after it, as the
		 * fair class's wake_affine does - not on another CPU through an IPI that interrupts a
		 * hog there (ops.enqueue decides, once the wakee's urgency is known).
		 */
		struct task_struct *waker = bpf_get_current_task_btf();
		struct fp_task_sig *sig;
		s32 self = bpf_get_smp_processor_id();
		struct cpu_ctx *cc;

		if (!tc || !bpf_cpumask_test_cpu(self, p->cpus_ptr))
			return prev_cpu;
		/*
		 * Not in partial mode, where a fair waker's CPU runs fair tasks before ours (see
		 * partial_mode), nor behind a real-time or deadline waker, which keeps its CPU for as long
		 * as it runs; nor from an interrupt (a network receive wakes its reader as a sync wakeup
		 * in the softirq of whatever task it interrupted, a CPU hog, say); and ahead of tasks
		 * already waiting in this CPU's local queue only FP_OVERTAKES_MAX times in a row. The next
		 * hop of an input chain goes first there too, sync or not (a futex wake says nothing of the
		 * waker's sleep, yet an input thread hands the event over and waits for the next). The
		 * wakee waits for its waker to sleep or to end its slice (tun.slice_ns at most). Taking the
		 * CPU from the waker instead (SCX_ENQ_PREEMPT) was measured and not kept: in the VM's input
		 * bench the game's input thread's median wake-up went from 0.15-0.16 to 0.32-0.35 ms and
		 * the worker's p99 from 2.4-2.8 to 3.2-3.5 ms (one boot each, against 185f0ec).
		 */
		cc = this_cpu_ctx();
		sig = wake_sig(p); /* one lookup for both checks below */
		if (!partial_mode && waker->prio >= 100 && /* MAX_RT_PRIO */ !from_interrupt(sig) &&
		    (!scx_bpf_dsq_nr_queued(SCX(DSQ_LOCAL)) || (cc && cc->overtakes < FP_OVERTAKES_MAX))) {
			if ((wake_flags & SCX(WAKE_SYNC)) || input_handoff(sig, waker, bpf_ktime_get_ns())) {
				tc->sync_cpu = self;
				return self;
			}
		}
		/*
		 * A latency-critical wakeup that may take this CPU from a less urgent class: here, where
		 * ops.enqueue runs at once and preempts without an IPI, rather than on its previous CPU,
		 * which the kernel reaches through an interrupt before ops.enqueue even runs (the
		 * detectors' evidence is already in: sched_waking fires before ops.select_cpu; the
		 * class is as ops.enqueue last cached it).
		 */
		if (cc && cc->started_at && cc->running_lat < urgency(p, tc, now_ns()))
			return self;
		return prev_cpu;
	}
	if ((c = cnt()))
		c->direct_idle++;
	/*
	 * Straight into that CPU's local queue, with no ops.enqueue: on a quiet machine that is every
	 * wakeup. Not where a real-time task started in the last second, nor in partial mode: one
	 * taking the CPU before the task leaves idle (in partial mode, any fair task) would hold it
	 * there for as long as it runs - seconds, for an RT hog - and the kernel says so only when it
	 * takes a CPU from a task of ours (ops.cpu_release). There ops.enqueue puts it on the shared
	 * queue and wakes the CPU for it. A new task (SCX_WAKE_FORK) is no wakeup: its frequency is
	 * left as it is.
	 */
	now = now_ns();
	if (tc && !partial_mode && rt_quiet(cpu, now)) {
		if (wake_flags & SCX(WAKE_TTWU))
			woke(tc, now);
		else
			tc->new_thread = 0; /* a new task on an idle CPU at once: its first queueing is this */
		tc->cls = class_of(p);
		tc->deadline = deadline_of(p, tc, 0, now);
		insert(p, SCX(DSQ_LOCAL), slice_of(tc, now), 0);
		return cpu;
	}
	if (tc)
		tc->idle_cpu = cpu;
	return cpu;
}

/*
 * Whether a wakeup of urgency `level` due at `deadline` should interrupt what `cc`'s CPU runs: a
 * less urgent class at once; the same class when due earlier than the running task is now (its
 * deadline moves on with what it ran since it started), by more than `slice_min_ns` - or by any
 * amount once that task ran `slice_min_ns`. The margin keeps two tasks with close deadlines from
 * taking the CPU from each other on every wakeup, each paying a context switch for a few
 * microseconds of work; without the "by more than" a task that had just started kept the CPU for
 * its whole slice, which ends only at a tick after it runs out: a 60 Hz frame thread woken beside
 * fork-storm parents - as latency-critical by their wake rate, each fork 3 ms in the VM - waited
 * 4-6 ms at p99 though due 10 ms before them.
 */
static __always_inline bool preemptible(struct cpu_ctx *cc, u32 level, u64 deadline, u64 now)
{
	u64 ran, due;

	if (!cc->started_at)
		return false; /* idle, or running something that is not ours */
	if (cc->running_lat != level)
		return cc->running_lat < level;
	ran = now > cc->started_at ? now - cc->started_at : 0;
	due = cc->running_deadline + fp_vtime_delta(ran, cc->running_weight);
	if (ran >= tun.slice_min_ns)
		return due > deadline;
	return due > deadline + tun.slice_min_ns;
}

/*
 * A wakeup found no idle CPU: the allowed CPU running the least urgent task - lowest urgency class
 * first (normal < latency-critical < foreground), then the latest deadline - provided that task is
 * preemptible for `p` (above); the CPU this wakeup runs on first, where interrupting needs no IPI
 * (the wakeup's timer or interrupt fired here, so its caches are warm for the wakee too). -1 when
 * no CPU should be interrupted.
 */
static s32 preempt_victim(struct task_struct *p, u32 level, u64 deadline, u64 now)
{
	u32 i, zero = 0, best_level = ~0U;
	u64 best_deadline = 0;
	s32 victim = -1;
	s32 self = bpf_get_smp_processor_id();
	struct cpu_ctx *cc = this_cpu_ctx();

	if (cc && bpf_cpumask_test_cpu(self, p->cpus_ptr) && preemptible(cc, level, deadline, now))
		return self;
	bpf_for(i, 0, FP_MAX_CPUS) {
		if (i >= tun.nr_cpus)
			break;
		if (!bpf_cpumask_test_cpu(i, p->cpus_ptr))
			continue;
		cc = bpf_map_lookup_percpu_elem(&cpu_ctxs, &zero, i);
		if (!cc || !preemptible(cc, level, deadline, now))
			continue;
		if (cc->running_lat < best_level ||
		    (cc->running_lat == best_level && cc->running_deadline > best_deadline)) {
			best_level = cc->running_lat;
			best_deadline = cc->running_deadline;
			victim = i;
		}
	}
	return victim;
}

/*
 * Queues `p` first on `cpu`'s local queue and takes the CPU from what runs there (SCX_ENQ_PREEMPT:
 * its slice ends now), remembering whom it preempted so that task resumes right after `p`. `p` went
 * ahead of whatever waited there: its start does not end that CPU's run of overtakes (a preemption
 * plus two hand-offs in front of a waiting task, again and again, otherwise).
 */
static __always_inline void preempt_with(struct task_struct *p, struct task_ctx *tc, s32 cpu, u64 slice,
					 u64 enq_flags)
{
	struct fp_sched_counters *c;
	struct cpu_ctx *cc;
	u32 zero = 0;

	cc = bpf_map_lookup_percpu_elem(&cpu_ctxs, &zero, cpu);
	if (cc)
		cc->preempted_pid = cc->running_pid;
	tc->jumped = 1;
	insert(p, SCX(DSQ_LOCAL_ON) | cpu, slice, enq_flags | SCX(ENQ_PREEMPT));
	if ((c = cnt()))
		c->preempt_kicks++;
}

#ifdef FP_TEST_STALL
static __always_inline bool is_strand_test(const struct task_struct *p)
{
	static const char name[] = "fp-strand";
	int i;

#pragma unroll
	for (i = 0; i < (int)sizeof(name); i++) {
		if (p->comm[i] != name[i])
			return false;
	}
	return true;
}
#endif

void BPF_STRUCT_OPS(fastpath_enqueue, struct task_struct *p, u64 enq_flags)
{
	struct fp_sched_counters *c = cnt();
	struct task_ctx *tc = tctx_or_create(p);
	struct cpu_ctx *cc;
	u64 slice, deadline, now = now_ns();
	u32 zero = 0, level;
	bool new_thread;
	s32 cpu;

#ifdef FP_TEST_STALL
	/* The deliberately broken build: starve one thread group so the watchdog ejects us. */
	if (knobs.stall_tgid && p->tgid == knobs.stall_tgid) {
		insert(p, FP_DSQ_STALL, tun.slice_ns, enq_flags);
		return;
	}
	/*
	 * And strand a thread named "fp-strand" at each wakeup in the last CPU's local queue, as the
	 * kernel's races do (see sched_switch below): a test of the loader's rescue.
	 */
	if ((enq_flags & SCX(ENQ_WAKEUP)) && is_strand_test(p) && bpf_cpumask_test_cpu(tun.nr_cpus - 1, p->cpus_ptr)) {
		insert(p, SCX(DSQ_LOCAL_ON) | (tun.nr_cpus - 1), tun.slice_ns, enq_flags);
		return;
	}
#endif
	if (!tc) {
		if (c)
			c->no_task_ctx++;
		insert(p, FP_DSQ_SHARED, tun.slice_ns, enq_flags);
		scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX(KICK_IDLE));
		return;
	}
	/*
	 * Only a wakeup is a wakeup. The kernel also queues a task again after changing it
	 * (sched_setaffinity, nice, policy): a CPU hog re-pinned every 10 ms would otherwise "wake" 100
	 * times a second - latency-critical, its runtime forgotten each time - and a frame thread beside
	 * it waited 0.3 s.
	 */
	if (enq_flags & SCX(ENQ_WAKEUP))
		woke(tc, now);
	new_thread = tc->new_thread;
	tc->new_thread = 0;
	/*
	 * Looked up at every queueing, not only at wakeups: a game thread that never sleeps - a main
	 * loop spinning at 100 % - named or detected after it started was never seen as foreground.
	 */
	tc->cls = class_of(p);
	level = urgency(p, tc, now);
	/*
	 * A thread in an input window or an audio thread (urgency 3) gets a whole slice, not the one a
	 * frequent waker shrinks to beside a long queue: the compositor's 0.5 ms ran out between its read
	 * and its write (the emulated VM's vCPU stalls count as runtime), and at the next tick the task it
	 * had preempted - resumed first in the local queue - ran before it: 34 of 3005 input chains
	 * beside four hogs per CPU, a median 2.2 ms each, most of the event->worker p99 (tracefs).
	 */
	slice = level >= 3 ? tun.slice_ns : slice_of(tc, now);
	cpu = scx_bpf_task_cpu(p);

	/*
	 * A task that may only run where it is: a latency-critical wakeup preempts what runs there if
	 * it may; otherwise it waits in that CPU's own deadline-ordered queue (FP_DSQ_CPU). A task with
	 * migration disabled right now may not even wait elsewhere: it goes to the local queue. The
	 * kernel allows SCX_DSQ_LOCAL_ON only for a CPU in p->cpus_ptr.
	 */
	if (is_pinned(p) && bpf_cpumask_test_cpu(cpu, p->cpus_ptr)) {
		cc = bpf_map_lookup_percpu_elem(&cpu_ctxs, &zero, cpu);
		deadline = deadline_of(p, tc, 0, now);
		tc->deadline = deadline;
		if ((enq_flags & SCX(ENQ_WAKEUP)) && level && cc && preemptible(cc, level, deadline, now))
			preempt_with(p, tc, cpu, slice, enq_flags);
		else if (migration_disabled(p))
			insert(p, SCX(DSQ_LOCAL_ON) | cpu, slice, enq_flags);
		else
			insert_vtime(p, FP_DSQ_CPU(cpu), slice, deadline, enq_flags);
		scx_bpf_kick_cpu(cpu, SCX(KICK_IDLE));
		if (c)
			c->direct_local++;
		return;
	}

	/*
	 * A latency-critical task a wakeup just took the CPU from: it goes back first on the same CPU,
	 * right behind that wakeup, instead of behind whatever the shared queue holds (its deadline,
	 * after a few milliseconds of running, may be later than a hog's). Not when a real-time task
	 * took the CPU (SCX_ENQ_REENQ, or the loader's rescue while one holds it): any CPU will do.
	 */
	cc = bpf_map_lookup_percpu_elem(&cpu_ctxs, &zero, cpu);
	if (cc && cc->preempted_pid == p->pid && !cc->rt_since &&
	    !(enq_flags & (SCX(ENQ_WAKEUP) | SCX(ENQ_REENQ)))) {
		cc->preempted_pid = 0;
		if (level && bpf_cpumask_test_cpu(cpu, p->cpus_ptr)) {
			insert(p, SCX(DSQ_LOCAL_ON) | cpu, slice, enq_flags);
			if (c)
				c->resumed++;
			return;
		}
	}

	deadline = deadline_of(p, tc, 0, now);
	tc->deadline = deadline;

	/*
	 * A latency-critical wakeup on its waker's CPU (a sync wakeup, an input chain's next hop): first
	 * in line there; the waker keeps the CPU until it sleeps (its slice at most).
	 */
	if (tc->sync_cpu == cpu && cpu == bpf_get_smp_processor_id() && (enq_flags & SCX(ENQ_WAKEUP)) && level) {
		tc->sync_cpu = -1;
		tc->jumped = 1;
		if (cc && scx_bpf_dsq_nr_queued(SCX(DSQ_LOCAL)))
			cc->overtakes++;
		insert(p, SCX(DSQ_LOCAL), slice, enq_flags | SCX(ENQ_HEAD));
		if (c)
			c->handoffs++;
		return;
	}
	tc->sync_cpu = -1;

	/*
	 * Wake an idle CPU to pull it - the one ops.select_cpu claimed, or any; failing that, preempt
	 * for a latency-critical wakeup, or for a new thread's first queueing (not fastpath's own):
	 * placed at the clock (sched.h fp_fork_vruntime), it takes a CPU whose task is no more urgent
	 * and due later (preemptible) - as EEVDF lets a new task preempt, and its parent's CPU first.
	 */
	cpu = tc->idle_cpu >= 0 ? tc->idle_cpu : scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	tc->idle_cpu = -1;
	if (cpu < 0 && (((enq_flags & SCX(ENQ_WAKEUP)) && level) || (new_thread && tc->cls != FP_TASK_OWN))) {
		cpu = preempt_victim(p, level, deadline, now);
		if (cpu >= 0) {
			preempt_with(p, tc, cpu, slice, enq_flags);
			return;
		}
	}
	insert_vtime(p, FP_DSQ_SHARED, slice, deadline, enq_flags);
	if (c)
		c->enqueued++;
	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, SCX(KICK_IDLE));
}

/*
 * Accounts what `p` ran on this CPU since `cc->started_at` (up to `now`, which becomes the new start):
 * its runtime since it woke and its virtual runtime (held to fp_debt_bound ahead of the clock), the
 * CPU's busy time, and the clock's step (sched.h fp_clock_step). Called when a task stops, and when
 * ops.dispatch lets it go on: a CPU hog kept running slice after slice never stops, and accounted
 * only then, its whole run was forgiven by the debt bound at once and the clock stood still - two
 * spinning --foreground threads per CPU left the other hogs 6-9 ticks in 6 s, 1-2 % of a CPU.
 */
static __always_inline void account_run(struct task_struct *p, struct task_ctx *tc, struct cpu_ctx *cc, u64 now)
{
	struct fp_sched_counters *c = cnt();
	u64 ran = now > cc->started_at ? now - cc->started_at : 0, nr_runnable;

	cc->started_at = now;
	cc->busy_ns += ran;
	if (c)
		c->busy_ns += ran;
	nr_runnable = nr_running + scx_bpf_dsq_nr_queued(FP_DSQ_SHARED) +
		      scx_bpf_dsq_nr_queued(FP_DSQ_CPU(bpf_get_smp_processor_id()));
	__sync_fetch_and_add(&state.vtime_now, fp_clock_step(ran, nr_runnable));
	if (tc) {
		tc->exec_ns += ran;
		tc->vruntime = fp_vruntime_capped(tc->vruntime + fp_vtime_delta(ran, weight_of(p, tc)),
						  state.vtime_now,
						  fp_debt_bound(&tun, tc->wake_hz, now - tc->last_woke, tc->cls));
	}
}

void BPF_STRUCT_OPS(fastpath_dispatch, s32 cpu, struct task_struct *prev)
{
	struct fp_sched_counters *c = cnt();
	struct cpu_ctx *cc = this_cpu_ctx();
	bool expired = prev && (prev->scx.flags & SCX(TASK_QUEUED));
	struct task_ctx *tc = expired ? tctx_of(prev) : NULL;
	u64 shared = shared_head_deadline(), own = head_deadline(FP_DSQ_CPU(cpu));
	u64 first = shared < own ? shared : own, now;

	/*
	 * Both queues empty and nothing to go on with: this CPU idles (most calls, on a quiet machine),
	 * before the clock is read - a helper call on 6.12.
	 */
	if (first == ~0ULL && !expired)
		return;
	now = now_ns();
	/*
	 * The previous task used up its slice and is still runnable. It has not been queued again
	 * yet, so no queue holds it: compare it with the first task of either queue this CPU serves,
	 * or a frame thread whose slice ends mid-frame would wait behind a hog's whole slice.
	 */
	if (tc && cc && cc->started_at && deadline_of(prev, tc, now - cc->started_at, now) <= first)
		goto keep;
	/* The earlier of the two heads; the other queue when that one was emptied meanwhile. */
	if (move_to_local(own <= shared ? FP_DSQ_CPU(cpu) : FP_DSQ_SHARED) ||
	    move_to_local(own <= shared ? FP_DSQ_SHARED : FP_DSQ_CPU(cpu))) {
		if (c)
			c->dispatched++;
		return;
	}
	if (!expired)
		return;
keep:
	/*
	 * Nothing queued is due earlier: the previous task goes on, with no ops.stopping - so its
	 * runtime is accounted here, and its deadline as the next wakeup's preemption sees it.
	 */
	prev->scx.slice = slice_of(tc, now);
	if (cc && cc->started_at) {
		account_run(prev, tc, cc, now);
		if (tc)
			cc->running_deadline = tc->deadline = deadline_of(prev, tc, 0, now);
	}
	if (c)
		c->kept_running++;
}

void BPF_STRUCT_OPS(fastpath_running, struct task_struct *p)
{
	struct fp_sched_counters *c = cnt();
	struct cpu_ctx *cc = this_cpu_ctx();
	struct task_ctx *tc = tctx_of(p);
	u64 now = now_ns();
	u32 policy = tc ? policy_urgency(tc, now) : 0;
	u32 lat = fp_urgency(tc ? tc->cls : FP_TASK_NORMAL, policy, signal_urgency(p, now));

	if (cc) {
		/* A task that waited its turn runs: the hand-offs that went ahead of it start again from 0. */
		if (tc && tc->jumped)
			tc->jumped = 0;
		else
			cc->overtakes = 0;
		cc->started_at = now;
		cc->running_deadline = tc ? tc->deadline : 0;
		cc->running_lat = lat;
		cc->running_weight = tc ? weight_of(p, tc) : FP_WEIGHT_NICE0;
		cc->running_pid = p->pid;
	}
	if (cc)
		__sync_fetch_and_add(&nr_running, 1);
	/* The clock moves only forward: no look at the shared queue's head when it would not move. */
	if (tc && tc->vruntime > state.vtime_now)
		advance_vtime(fp_clock_bound(tc->vruntime, shared_head_vruntime()));
	if (c) {
		c->runs++;
		if (tc && tc->cls == FP_TASK_FOREGROUND)
			c->foreground_runs++;
		if (lat > policy)
			c->signal_runs++;
	}
	maybe_fold(now);
}

/*
 * Whether this CPU's run queue holds a task of another class (rq->nr_running counts every class);
 * false on a kernel whose BTF lacks the per-CPU variables (the loader's rescue is left there).
 */
static __always_inline bool other_class_queued(void)
{
	struct rq *rq;

	if (!bpf_ksym_exists(&runqueues))
		return false;
	rq = bpf_this_cpu_ptr(&runqueues);
	return rq->nr_running > rq->scx.nr_running;
}

void BPF_STRUCT_OPS(fastpath_stopping, struct task_struct *p, bool runnable)
{
	struct cpu_ctx *cc = this_cpu_ctx();
	struct task_ctx *tc = tctx_of(p);
	u64 now = now_ns();

	/*
	 * Runnable, and a task of another class waits here: that real-time, deadline or stop task (a
	 * fair one in partial mode) takes the CPU. With slice left the kernel would put `p` back first
	 * in this CPU's local queue and leave moving it to ops.cpu_release, which it skips while it
	 * holds the CPU as already released (after a pick that no balance preceded, 6.12-6.18): a 1 kHz
	 * sleeper so waited 1.1-1.3 s behind an RT hog (tracefs, VM test). With its slice ended it goes
	 * through ops.enqueue, which sends a task that may run elsewhere where any CPU may run it - and
	 * not back here as a preempted task to resume (preempted_pid). Only then: a core-scheduling
	 * pick that idles the CPU also stops a task with slice left, and ended, the kernel would queue
	 * it with SCX_ENQ_LAST, which it warns about for a scheduler without SCX_OPS_ENQ_LAST. The
	 * run queue is read only when there is a slice to end or a mark to clear.
	 */
	if (runnable && (p->scx.slice || (cc && cc->preempted_pid == p->pid)) && other_class_queued()) {
		p->scx.slice = 0;
		if (cc && cc->preempted_pid == p->pid)
			cc->preempted_pid = 0;
	}
	if (!cc || !cc->started_at)
		return;
	account_run(p, tc, cc, now);
	cc->started_at = 0;
	cc->running_pid = 0;
	__sync_fetch_and_sub(&nr_running, 1);
	if (tc && !runnable)
		tc->slept_at = now;
}

/*
 * A real-time or deadline task (or the stop task) takes this CPU: whatever waits in its local queue
 * would wait for as long as that task runs - seconds, for an RT hog, and the watchdog ejects us. Queue
 * them again: ops.enqueue sends each that may run elsewhere to the shared queue.
 */
void BPF_STRUCT_OPS(fastpath_cpu_release, s32 cpu, struct scx_cpu_release_args *args)
{
	struct fp_sched_counters *c = cnt();
	struct cpu_ctx *cc = this_cpu_ctx();

	if (cc && !cc->rt_since)
		cc->rt_since = now_ns();
#ifdef FP_TEST_STALL
	/* The test build is the kernel that skips this call (see ops.stopping): nothing moves here. */
	return;
#endif
	reenqueue_local();
	if (c)
		c->rt_reenqueued++;
}

/*
 * Every context switch: whether a real-time or deadline task holds the CPU, and since when - also
 * when it took the CPU from an idle or a fair task, which ops.cpu_release is not told about (the
 * stall message names the CPU; the loader rescues tasks left queued there, state.rt_held_since).
 * Only a switch to a task of ours or to idle ends the hold: not ops.cpu_acquire, which also runs
 * when a blocking RT task is picked again with no switch at all (its I/O done while this CPU's
 * ops.dispatch dropped the run-queue lock to pull a task - which then stays in the local queue).
 * On kernels that retired ops.cpu_release (and whose scx_bpf_reenqueue_local may be called from
 * anywhere), it also queues this CPU's tasks again.
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(fastpath_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct cpu_ctx *cc = this_cpu_ctx();
	u32 cpu = bpf_get_smp_processor_id();

	if (!cc)
		return 0;
	if (next->prio < 100) { /* MAX_RT_PRIO: RT and deadline tasks */
		u64 now = now_ns();

		if (cpu < FP_MAX_CPUS)
			rt_last_at[cpu] = now;
		if (!cc->rt_since)
			cc->rt_since = now;
		if (cpu < FP_MAX_CPUS && !state.rt_held_since[cpu])
			state.rt_held_since[cpu] = bpf_ktime_get_ns();
#ifdef FP_TEST_STALL
		/*
		 * The test build, whose ops.cpu_release moves nothing: a runnable task of ours this takes
		 * the CPU from - preempted in the kernel or on its way back to user space - that is now in
		 * a local queue, where it would wait for the loader's rescue, is an error, so that the VM
		 * test sees it at once. Not one exiting (the kernel queues it there itself, without
		 * SCX_OPS_ENQ_EXITING) or with migration disabled (ops.enqueue must put it there).
		 */
		if (prev->__state == 0 /* TASK_RUNNING */ && prev->scx.dsq && prev->scx.dsq->id == SCX(DSQ_LOCAL) &&
		    !(prev->flags & FP_PF_EXITING) && !migration_disabled(prev))
			fp_error("%s[%d] left in CPU %u's local queue by a real-time task", prev->comm, prev->pid, cpu);
#endif
		if (reenqueue_from_switch && bpf_ksym_exists(scx_bpf_reenqueue_local___v2___compat))
			scx_bpf_reenqueue_local___v2___compat();
	} else if (cc->rt_since) {
		/* Set with rt_since above, so cleared with it: no read of .bss at every switch. */
		cc->rt_since = 0;
		if (cpu < FP_MAX_CPUS)
			state.rt_held_since[cpu] = 0;
	}
	return 0;
}

/*
 * Run by the loader (BPF_PROG_TEST_RUN) when a real-time or deadline task has held a CPU for a
 * while: how many tasks of ours wait in each held CPU's local queue (state.rt_local_queued), so that
 * it walks /proc for them only when some are there, and at once - not on a guess every 0.1-0.2 s
 * (sched.zig rescueStranded). Returns how many CPUs have such tasks.
 */
SEC("syscall")
int fastpath_count_stranded(void *ctx)
{
	u32 i, held = 0;
	s32 n;

	bpf_for(i, 0, FP_MAX_CPUS) {
		if (i >= tun.nr_cpus)
			break;
		n = state.rt_held_since[i] ? scx_bpf_dsq_nr_queued(SCX(DSQ_LOCAL_ON) | i) : 0;
		state.rt_local_queued[i] = n > 0 ? n : 0;
		if (n > 0)
			held++;
	}
	return held;
}

/* Whether `comm` (a task's command name) is one of the foreground names as a command name. */
static __always_inline bool comm_named(const char *comm)
{
	struct fp_name_key key = {};
	u32 *how;

	bpf_probe_read_kernel_str(key.s, FP_COMM_BYTES + 1, comm);
	how = bpf_map_lookup_elem(&fg_names, &key);
	return how && (*how & FP_NAME_COMM);
}

/* Whether the executable `bprm` loads has one of the foreground names as its base name. */
static __always_inline bool exe_named(struct linux_binprm *bprm)
{
	struct fp_name_key key = {};
	u32 *how;
	long n;

	n = bpf_probe_read_kernel_str(key.s, sizeof(key.s), bprm->file->f_path.dentry->d_name.name);
	/* A name as long as the key may have been cut: the loader matches those. */
	if (n <= 0 || n >= (long)sizeof(key.s))
		return false;
	how = bpf_map_lookup_elem(&fg_names, &key);
	return how && (*how & FP_NAME_EXE);
}

/*
 * A program was just exec'd: its thread group joins the foreground when one of the names names it
 * (by command name or executable, as roles.nameMatches in the loader), and leaves it when the kernel
 * had put it there and it no longer is (a launcher that execs the real program under another name).
 * The loader learns of it at its next look and keeps it; a full map leaves it to the loader, which
 * counts it as left out. Beside eight CPU hogs in the VM the loader's own exec hook ran 0.5-1.8 s
 * late in some runs (its threads get no favour), and the game ran those first frames as any hog would.
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(fastpath_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	u32 tgid = p->tgid, how = FP_FG_EXEC;
	u32 *was;

	/* Never init: in partial mode every process it starts would inherit SCHED_EXT. */
	if (!knobs.nr_names || tgid <= 1)
		return 0;
	if (comm_named(p->comm) || exe_named(bprm)) {
		bpf_map_update_elem(&foreground, &tgid, &how, BPF_NOEXIST);
		return 0;
	}
	was = bpf_map_lookup_elem(&foreground, &tgid);
	if (was && *was == FP_FG_EXEC)
		bpf_map_delete_elem(&foreground, &tgid);
	return 0;
}

/*
 * A process renamed its main thread (prctl PR_SET_NAME, as Wine does to take its game's .exe name
 * after its exec): it joins the foreground if the new command name is one of the names. Only joins:
 * whether a process the kernel marked at its exec is still named is the next exec's question, and the
 * loader's (it also matches the executable). Other threads' names are not the process's.
 */
SEC("tp_btf/task_rename")
int BPF_PROG(fastpath_rename, struct task_struct *task, const char *comm)
{
	u32 tgid = task->tgid, how = FP_FG_EXEC;

	if (!knobs.nr_names || tgid <= 1 || task->pid != tgid || !comm_named(comm))
		return 0;
	bpf_map_update_elem(&foreground, &tgid, &how, BPF_NOEXIST);
	return 0;
}

void BPF_STRUCT_OPS(fastpath_tick, struct task_struct *p)
{
	maybe_fold(now_ns());
}

/*
 * A task joins at the clock, or later where ops.init_task placed a forked one. One that has run
 * before it joins - forked under another class, moved to SCHED_EXT later (partial mode) - is no new
 * thread any more: its first queueing here does not preempt.
 */
void BPF_STRUCT_OPS(fastpath_enable, struct task_struct *p)
{
	struct task_ctx *tc = tctx_or_create(p);

	if (!tc)
		return;
	if (p->se.sum_exec_runtime)
		tc->new_thread = 0;
	if (tc->vruntime < state.vtime_now)
		tc->vruntime = state.vtime_now;
}

/*
 * Creating a task's state can fail under memory pressure (task storage is allocated without
 * sleeping); failing init_task would fail the fork - or, while attaching, eject the scheduler. The
 * task is scheduled without it instead, and it is created again at its next wakeup.
 */
s32 BPF_STRUCT_OPS(fastpath_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	struct task_ctx *tc = bpf_task_storage_get(&task_ctxs, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!tc)
		return 0;
	tc->idle_cpu = -1;
	tc->sync_cpu = -1;
	/*
	 * A forked task: a new process a slice behind the clock, a new thread of a running process at
	 * it unless its creator - running here - creates them in a storm (sched.h fp_fork_vruntime,
	 * fp_spawn_rare). Its PID and thread group are set by now: copy_process() sets them before
	 * sched_cgroup_fork(), which calls this.
	 */
	if (args->fork) {
		if (p->pid != p->tgid) {
			struct task_ctx *ctc = bpf_task_storage_get(&task_ctxs, bpf_get_current_task_btf(), 0, 0);
			u64 now = bpf_ktime_get_ns();

			if (ctc) {
				tc->new_thread = fp_spawn_rare(ctc->spawn_hz, now - ctc->last_spawn);
				ctc->spawn_hz = fp_wake_hz(ctc->spawn_hz, now - ctc->last_spawn);
				ctc->last_spawn = now;
			}
		}
		tc->vruntime = fp_fork_vruntime(state.vtime_now, tun.slice_ns, tc->new_thread);
	}
	return 0;
}

s32 BPF_STRUCT_OPS_SLEEPABLE(fastpath_init)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	s32 err = scx_bpf_create_dsq(FP_DSQ_SHARED, -1);
	u32 i;

	/* On 6.12 the loader's own task attaches; a kernel enabling from a kthread leaves getpid(). */
	own_tgid = cur->flags & FP_PF_KTHREAD ? loader_tgid : cur->tgid;

	bpf_for(i, 0, FP_MAX_CPUS) {
		if (err || i >= tun.nr_cpus)
			break;
		err = scx_bpf_create_dsq(FP_DSQ_CPU(i), -1);
	}
#ifdef FP_TEST_STALL
	if (!err)
		err = scx_bpf_create_dsq(FP_DSQ_STALL, -1);
#endif
	if (err)
		fp_error("creating the shared dispatch queue: %d", err);
	return err;
}

void BPF_STRUCT_OPS(fastpath_exit, struct scx_exit_info *ei)
{
	u64 now = now_ns(), longest = 0;
	u32 i, zero = 0;
	s32 rt_cpu = -1;

	/* Which CPU a real-time task has held longest, for the loader's message about a stall. */
	bpf_for(i, 0, FP_MAX_CPUS) {
		struct cpu_ctx *cc;

		if (i >= tun.nr_cpus)
			break;
		cc = bpf_map_lookup_percpu_elem(&cpu_ctxs, &zero, i);
		if (cc && cc->rt_since && now > cc->rt_since && now - cc->rt_since > longest) {
			longest = now - cc->rt_since;
			rt_cpu = i;
		}
	}
	uei.rt_cpu = rt_cpu;
	uei.rt_ms = longest / FP_NSEC_PER_MSEC;
	uei.exit_code = ei->exit_code;
	bpf_probe_read_kernel_str(uei.reason, sizeof(uei.reason), ei->reason);
	bpf_probe_read_kernel_str(uei.msg, sizeof(uei.msg), ei->msg);
	/* kind last: the loader treats a non-zero kind as "the rest is there". */
	__sync_val_compare_and_swap(&uei.kind, 0, ei->kind);
}

SEC(".struct_ops.link")
struct sched_ext_ops fastpath_ops = {
	.select_cpu = (void *)fastpath_select_cpu,
	.enqueue = (void *)fastpath_enqueue,
	.dispatch = (void *)fastpath_dispatch,
	.running = (void *)fastpath_running,
	.stopping = (void *)fastpath_stopping,
	.cpu_release = (void *)fastpath_cpu_release,
	.tick = (void *)fastpath_tick,
	.enable = (void *)fastpath_enable,
	.init_task = (void *)fastpath_init_task,
	.init = (void *)fastpath_init,
	.exit = (void *)fastpath_exit,
	.name = "fastpath",
};
