/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Shared by the sched_ext scheduler (sched.bpf.c, clang -target bpf) and the Zig loader
 * (@cImport). Zig asserts at compile time that these layouts match abi.zig.
 *
 * The policy arithmetic lives here as plain C with no kfunc or helper calls, so the host's unit
 * tests run exactly the code the kernel runs.
 */
#ifndef FASTPATH_SCHED_H
#define FASTPATH_SCHED_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define FP_NSEC_PER_SEC 1000000000ULL
#define FP_NSEC_PER_MSEC 1000000ULL

/* Size of the per-CPU tables in .rodata (LLC id of each CPU). */
#define FP_MAX_CPUS 1024
/* Foreground thread groups the user can name at once. */
#define FP_MAX_FOREGROUND 64
/*
 * Foreground names matched in the kernel at exec (the fg_names map, sched.bpf.c): a key is a name
 * zero-padded to FP_NAME_KEY_BYTES; how it may match is FP_NAME_COMM (the command name, 15 bytes at
 * most: a longer name by its first 15) and/or FP_NAME_EXE (the executable's base name, up to
 * FP_NAME_KEY_BYTES - 2 bytes; longer ones are matched by the loader only). The rule is
 * roles.nameMatches; nameKeys in sched.zig builds the keys.
 */
#define FP_NAME_KEY_BYTES 64
#define FP_NAME_COMM 1
#define FP_NAME_EXE 2
/* 15 bytes of a command name (TASK_COMM_LEN - 1). */
#define FP_COMM_BYTES 15
/* Values in the foreground map: put there by the loader, or by the kernel at an exec it matched. */
#define FP_FG_LOADER 1
#define FP_FG_EXEC 2
/* Weight of a nice-0 task in sched_ext (p->scx.weight). */
#define FP_WEIGHT_NICE0 100

/*
 * sched_ext enum values the scheduler needs. Their values and presence differ between kernels,
 * so the loader reads each one from the running kernel's BTF and writes it into
 * `scx_enums[FP_SCX_*]` in .rodata before load (names in src/sched/sched.zig, same order).
 */
enum fp_scx_enum {
	FP_SCX_DSQ_LOCAL = 0,
	FP_SCX_DSQ_LOCAL_ON = 1,
	FP_SCX_ENQ_WAKEUP = 2,
	FP_SCX_KICK_IDLE = 3,
	FP_SCX_KICK_PREEMPT = 4,
	FP_SCX_PICK_IDLE_CORE = 5,
	FP_SCX_TASK_QUEUED = 6,
	FP_SCX_EXIT_ERROR_STALL = 7,
	FP_SCX_ENQ_PREEMPT = 8,
	FP_SCX_ENQ_REENQ = 9,
	FP_SCX_WAKE_SYNC = 10,
	FP_SCX_ENQ_HEAD = 11,
	FP_SCX_WAKE_TTWU = 12,
	FP_SCX_ENUMS = 13,
};

/* The scheduler's own dispatch queues. */
#define FP_DSQ_SHARED 0x6670000ULL /* deadline-ordered queue every CPU pulls from */
#define FP_DSQ_STALL 0x6670001ULL  /* test build only: never consumed */
/*
 * One deadline-ordered queue per CPU for tasks that may run only there. Not the CPU's local queue:
 * that one is FIFO and is always served before the shared queue, so four tasks re-pinning
 * themselves every 10 ms (stress-ng --affinity) kept a frame thread off both CPUs for 2.4 s.
 */
#define FP_DSQ_CPU(cpu) (0x6671000ULL + (cpu))

/* Per-CPU counters, folded by the loader into abi.SchedCounters (same order). */
struct fp_sched_counters {
	__u64 enqueued;     /* tasks put on the shared deadline queue */
	__u64 direct_idle;  /* wakeups that found an idle CPU (and woke it for the task) */
	__u64 direct_local; /* pinned / migration-disabled tasks kept on their CPU */
	__u64 dispatched;   /* tasks a CPU pulled from the shared queue */
	__u64 kept_running; /* slices renewed because nothing else was waiting */
	__u64 preempt_kicks;  /* CPUs interrupted for a latency-critical wakeup */
	__u64 foreground_runs; /* times a foreground task got a CPU */
	__u64 runs;         /* times any task got a CPU */
	__u64 busy_ns;      /* time CPUs spent running tasks we schedule */
	__u64 wakeups;      /* wakeups seen (not new tasks, not re-queueings) */
	__u64 resumed;      /* latency-critical tasks put back first on their CPU after a preemption */
	__u64 rt_reenqueued; /* times a real-time task took a CPU and its queued tasks were moved */
	__u64 no_task_ctx;  /* tasks scheduled without per-task state (its allocation failed) */
	__u64 signal_runs;  /* times a task got a CPU with its urgency raised by a detector */
	__u64 handoffs;     /* latency-critical wakeups queued first on their waker's CPU (sync, input chain) */
};

struct fp_name_key {
	char s[FP_NAME_KEY_BYTES];
};

/* Knobs that change while the scheduler runs; they live in .bss, written by the loader. */
struct fp_sched_knobs {
	__u32 foreground_weight_pct; /* weight of foreground tasks, in % of their own */
	__u32 nr_foreground;	     /* number of tgids in the foreground map */
	__u32 stall_tgid;	     /* test build only: thread group to starve */
	__u32 nr_names;		     /* number of keys in the fg_names map (0: no names, no lookup at exec) */
};

/* State the scheduler publishes in .bss for the loader (read through the mmaped map). */
struct fp_sched_state {
	__u64 vtime_now;  /* the system's virtual clock */
	__u32 busy;	  /* 1 while utilisation is above the busy watermark */
	__u32 util_pct;	  /* utilisation of the last fold period, % of all CPUs */
	__u64 busy_flips; /* busy/idle transitions */
	__u64 folds;	  /* utilisation periods folded */
	__u64 rt_rescues; /* written by the loader: threads it queued again (sched.zig rescueStranded) */
	/*
	 * Per CPU: when (CLOCK_MONOTONIC ns) a real-time or deadline task took it; 0 while none holds
	 * it. The loader reads it to rescue tasks left in that CPU's local queue (see sched.zig).
	 */
	__u64 rt_held_since[FP_MAX_CPUS];
	/*
	 * Per CPU: how many tasks of ours wait in its local queue while a real-time or deadline task
	 * holds it (0 where none holds it), as of the loader's last count (sched.bpf.c
	 * fastpath_count_stranded, run by the loader before it walks /proc for them).
	 */
	__u32 rt_local_queued[FP_MAX_CPUS];
};

/* What ops.exit saw (struct scx_exit_info, copied out). */
struct fp_sched_exit {
	__s32 kind; /* enum scx_exit_kind; 0 while running */
	__u32 _pad;
	__s64 exit_code; /* bits 48-63: actions the kernel asks of the loader */
	char reason[128];
	char msg[1024];
	/*
	 * The CPU a real-time (or deadline) task has held longest without a break at exit, and for how
	 * long: a stall there is RT starvation, which no sched_ext scheduler can prevent for a task that
	 * may run only on that CPU before kernel 7.0 (no deadline server for sched_ext tasks). -1: none.
	 */
	__s32 rt_cpu;
	__u32 rt_ms;
};

/* Tunables fixed at load time (.rodata). */
struct fp_sched_tunables {
	__u64 slice_ns;	     /* slice of a task that rarely wakes */
	__u64 slice_min_ns;  /* floor for slices of frequent wakers */
	__u64 lag_ns;	     /* sleep credit a rarely-waking task keeps against vtime_now */
	__u64 lag_max_ns;    /* ceiling for sleep credit of frequent wakers */
	__u32 wake_ref_hz;   /* wake frequency at which slices start to shrink */
	__u32 latency_hz;    /* wake frequency from which a task counts as latency-critical */
	__u32 busy_high_pct; /* utilisation above which the system turns busy */
	__u32 busy_low_pct;  /* ... and below which it turns idle again */
	__u32 fold_ms;	     /* utilisation period */
	__u32 nr_cpus;	     /* possible CPUs (entries of cpu_llc used) */
};

/*
 * How far ahead of the virtual clock a task's virtual runtime may run, in slices (`slice_ns`, the
 * same for every weight). Two reasons. A task that took more than its share (a frame loop favoured
 * at each wakeup) pays back at most this much before it is due again, instead of waiting behind
 * every CPU hog until they caught up. And the clock follows the virtual runtime of the tasks that
 * run: a low-weight task (nice 19 has weight 1, so 5 ms of running is 500 ms of virtual time) used
 * to push it hundreds of milliseconds ahead at once, leaving every task queued before that sorted
 * ahead of every task that woke after it - a 60 Hz frame thread waited 70-160 ms behind CPU hogs.
 */
#define FP_DEBT_SLICES 2

/* --- Policy (pure functions) ------------------------------------------------------------------ */

/* floor(log2(v)) for v > 0, 0 for v = 0. */
static inline __u32 fp_log2(__u64 v)
{
	__u32 r = 0;

	while (v > 1 && r < 63) {
		v >>= 1;
		r++;
	}
	return r;
}

/*
 * Wake frequency in Hz (events per second), as an exponential average: each wakeup moves it a
 * quarter of the way to the rate implied by the gap since the last one, rounded towards that
 * rate so a steady rate is reached exactly. A zero gap counts as 1 ns.
 */
static inline __u64 fp_wake_hz(__u64 old_hz, __u64 gap_ns)
{
	__u64 now_hz = FP_NSEC_PER_SEC / (gap_ns ? gap_ns : 1);

	if (now_hz >= old_hz)
		return old_hz + (now_hz - old_hz + 3) / 4;
	return old_hz - (old_hz - now_hz + 3) / 4;
}

/*
 * The wake frequency to act on now: the average, but never more than one wakeup per the time since
 * the last one. The average moves only when the task wakes, so a task that stopped waking - a CPU
 * hog that woke a few times a millisecond while starting up, then never slept again - would keep a
 * high frequency forever, and with it short slices, a big sleep credit and the right to preempt.
 */
static inline __u64 fp_wake_hz_now(__u64 wake_hz, __u64 since_wake_ns)
{
	__u64 bound = FP_NSEC_PER_SEC / (since_wake_ns ? since_wake_ns : 1);

	return wake_hz < bound ? wake_hz : bound;
}

/*
 * What the policy treats a task as, cached in its context at each ops.enqueue: named with
 * --foreground or the detected game; fastpath's own process (the loader that attached the
 * scheduler - its CLI, live view and runtime threads); or neither. fastpath's own threads get no
 * favour: never latency-critical (no preemption, no hand-off, no detector's urgency), no sleep
 * credit, the shortest slice. In a trace beside eight CPU hogs, the CLI's Deno/V8/tokio threads -
 * frequent wakers, so latency-critical with the largest credit - ran in 20 of the frame thread's 23
 * waits over 8 ms (docs/sched-measurements.md).
 */
enum fp_task_class {
	FP_TASK_NORMAL = 0,
	FP_TASK_FOREGROUND = 1,
	FP_TASK_OWN = 2,
};

/*
 * A task's weight for its class: the foreground's boosted to `fg_pct` % of its own (100 leaves it
 * alone), everyone else's as the kernel set it (never 0). fastpath's own threads keep theirs: a
 * lower weight (nice 19's) pushed their deadlines seconds out beside CPU hogs - the loader then
 * answered a message in 10-13 s where it took 5 (docs/sched-measurements.md) - and each run of
 * theirs dragged the virtual clock up to its debt bound.
 */
static inline __u64 fp_weight(__u32 task_weight, __u32 cls, __u32 fg_pct)
{
	__u64 w = task_weight ? task_weight : 1;

	return cls == FP_TASK_FOREGROUND ? (w * fg_pct + 99) / 100 : w;
}

/* Runtime `ns` converted to virtual time: heavier tasks age more slowly. */
static inline __u64 fp_vtime_delta(__u64 ns, __u64 weight)
{
	return ns * FP_WEIGHT_NICE0 / (weight ? weight : 1);
}

/*
 * Slice for a task waking `wake_hz` times a second: the full slice up to `wake_ref_hz`, then
 * divided by one more for every doubling, never below `slice_min_ns`. A frame loop at 60 Hz
 * keeps a slice long enough for a frame; a thread waking 8000 times a second gets the floor.
 */
static inline __u64 fp_slice(const volatile struct fp_sched_tunables *t, __u64 wake_hz)
{
	__u64 slice = t->slice_ns;

	if (wake_hz > t->wake_ref_hz && t->wake_ref_hz)
		slice /= 1 + fp_log2(wake_hz / t->wake_ref_hz);
	return slice > t->slice_min_ns ? slice : t->slice_min_ns;
}

/*
 * The slice for a task given the tasks waiting in the shared queue: `fp_slice`, divided by how many
 * wait per CPU, never below `slice_min_ns`. With four CPU hogs per CPU a 5 ms slice would keep a task
 * that lost its place waiting 20 ms for its CPU; shrinking slices as the queue grows bounds that wait
 * near one full slice whatever the load (at the cost of more switches between hogs).
 */
static inline __u64 fp_slice_loaded(const volatile struct fp_sched_tunables *t, __u64 wake_hz, __u64 nr_queued)
{
	__u64 cpus = t->nr_cpus ? t->nr_cpus : 1;
	__u64 per_cpu = (nr_queued + cpus - 1) / cpus;
	__u64 slice = fp_slice(t, wake_hz);

	if (per_cpu > 1)
		slice /= per_cpu;
	return slice > t->slice_min_ns ? slice : t->slice_min_ns;
}

/*
 * How far behind the virtual clock a waking task may be placed (its sleep credit): `lag_ns`
 * for a task that rarely wakes, growing with each doubling of its wake frequency up to
 * `lag_max_ns`, then scaled by its weight. Bounded, so a long sleeper cannot bank unlimited
 * credit and starve everyone when it wakes.
 */
static inline __u64 fp_lag_credit(const volatile struct fp_sched_tunables *t, __u64 wake_hz, __u64 weight)
{
	__u64 credit = t->lag_ns * (1 + fp_log2(wake_hz + 1));

	if (credit > t->lag_max_ns)
		credit = t->lag_max_ns;
	return credit * weight / FP_WEIGHT_NICE0;
}

/*
 * The credit a waking task may use: never more than the time it slept. A thread that sleeps 100 us
 * between bursts - a process forking and reaping children, a producer handing work to a consumer -
 * wakes thousands of times a second and so earns the largest credit by frequency, yet it gave up
 * only 100 us: with the whole credit it would queue ahead of a frame thread that slept 12 ms (in a
 * fork storm such threads held a 60 Hz frame thread off the CPU for 8-9 ms at p99).
 */
static inline __u64 fp_sleep_credit(__u64 credit, __u64 slept_ns)
{
	return credit < slept_ns ? credit : slept_ns;
}

/*
 * The credit a task of class `cls` is queued with: `fp_lag_credit`, bounded by the time it slept
 * (`fp_sleep_credit`) when it has not run since it woke (`fresh`: its vruntime is stale; one that
 * ran and waits again is behind because it was served less than its share). None for fastpath's own
 * threads: they never go ahead of a task that waited.
 */
static inline __u64 fp_wake_credit(const volatile struct fp_sched_tunables *t, __u64 wake_hz, __u64 weight,
				   int fresh, __u64 slept_ns, __u32 cls)
{
	__u64 credit;

	if (cls == FP_TASK_OWN)
		return 0;
	credit = fp_lag_credit(t, wake_hz, weight);
	return fresh ? fp_sleep_credit(credit, slept_ns) : credit;
}

/*
 * The slice of a task of class `cls` (`fp_slice_loaded`). fastpath's own threads hold a CPU as
 * briefly as any task may, `slice_min_ns`, however rarely they wake: they are background.
 */
static inline __u64 fp_class_slice(const volatile struct fp_sched_tunables *t, __u64 wake_hz, __u64 nr_queued,
				   __u32 cls)
{
	return cls == FP_TASK_OWN ? t->slice_min_ns : fp_slice_loaded(t, wake_hz, nr_queued);
}

/*
 * How long a task that woke `latency_hz` times a second or more stays latency-critical for its
 * deadline while it runs or waits without sleeping. A pipeline stage - the compositor forwarding
 * input, the game's input thread - that falls behind at 1 kHz no longer sleeps: each event is
 * already waiting when it finishes the last. By its runtime since it last woke it then looked like
 * a CPU hog, was queued among the hogs and never caught up (0.1-0.2 s behind, seen with
 * bpf_printk beside eight hogs). A hog that woke often while starting up is favoured for at most
 * this long.
 */
#define FP_BACKLOG_NS (250ULL * FP_NSEC_PER_MSEC)

/*
 * Whether a task is latency-critical by the way it wakes: `latency_hz` times a second or more (its
 * average, `wake_hz`) and awake for less than FP_BACKLOG_NS (`since_wake_ns`). What a deadline's
 * runtime term (fp_deadline_urgent) and the debt bound (fp_debt_bound) go by.
 */
static inline int fp_wakes_often(const volatile struct fp_sched_tunables *t, __u64 wake_hz, __u64 since_wake_ns)
{
	return wake_hz >= t->latency_hz && since_wake_ns < FP_BACKLOG_NS;
}

/*
 * Whether a task's deadline counts its runtime as a latency-critical task's: in the foreground
 * (`cls`), a detector's signal on it (`signal`), or waking often (fp_wakes_often). Never fastpath's own.
 */
static inline int fp_deadline_urgent(const volatile struct fp_sched_tunables *t, __u64 wake_hz,
				     __u64 since_wake_ns, __u32 cls, int signal)
{
	if (cls == FP_TASK_OWN)
		return 0;
	return cls == FP_TASK_FOREGROUND || signal || fp_wakes_often(t, wake_hz, since_wake_ns);
}

/*
 * The most runtime since its last wakeup a deadline counts (fp_deadline's `exec_max`): one of its
 * slices for a latency-critical task - what it asks for each time it runs, as EEVDF's request -
 * else `lag_max_ns`. With the same 20 ms bound as the hogs, a backlogged latency-critical task was
 * due no earlier than they were; with its slice it is due first while its virtual runtime is
 * within (lag_max_ns - slice) of theirs, and the clock's steady advance (fp_clock_step) bounds how
 * long the hogs wait for it.
 */
static inline __u64 fp_exec_max(const volatile struct fp_sched_tunables *t, __u64 wake_hz, int urgent)
{
	__u64 slice = fp_slice(t, wake_hz);

	return urgent && slice < t->lag_max_ns ? slice : t->lag_max_ns;
}

/*
 * The runtime since its last wakeup the deadline of a task of class `cls` and weight `weight` counts:
 * `exec_ns` up to `exec_max` (fp_exec_max); for fastpath's own threads, whatever they ran, the
 * runtime that is `lag_max_ns` of virtual time at their weight - queued as a nice-0 CPU hog that has
 * run for long is, never ahead of the tasks that waited, and no further back for a loader run at
 * nice 19 (counted at its own weight, 1, its 20 ms would be 2 s of virtual time: ~9 s of waiting
 * beside eight hogs on two CPUs). Counting what they ran, the CLI's V8 worker threads woke at the
 * clock and were kept slice after slice, ~10 ms on both CPUs at once while a 60 Hz frame thread
 * waited 17 ms (bpf_printk trace beside eight hogs).
 */
static inline __u64 fp_deadline_exec(const volatile struct fp_sched_tunables *t, __u64 exec_ns, __u64 exec_max,
				     __u64 weight, __u32 cls)
{
	if (cls == FP_TASK_OWN)
		return t->lag_max_ns * (weight ? weight : 1) / FP_WEIGHT_NICE0;
	return exec_ns < exec_max ? exec_ns : exec_max;
}

/*
 * The most virtual time a deadline's runtime term holds - never less than a nice-0 CPU hog's term,
 * `--lag-max-us` (so that knob above 200 ms is not cut): 200 ms, about the lead EEVDF gives
 * nice 19 (its 3 ms slice at weight 15/1024 is 205 ms). With N tasks runnable on C CPUs the clock
 * moves C/N of a second a second, so a task waits about its lead times N/C for each turn. A CPU
 * hog's term is `lag_max_ns` of runtime at its weight: at weight 1 (nice 19, and SCHED_IDLE in
 * sched_ext's scale) 20 ms was 2 s of virtual time, ten times EEVDF's lead, and beside eight CPU hogs
 * on two CPUs with --watchdog-ms 5000 the kernel ejected the scheduler ("runnable task stall"); at
 * the kernel's 30 s it took about 15 runnable tasks per CPU. At the default `--lag-max-us` (20 ms)
 * only weights of 10 and under (nice 11 to 19, SCHED_IDLE) that run long reach it - those share
 * alike, ones that run briefly keep their order; at 100 ms, weights of 50 and under.
 */
#define FP_LEAD_VTIME_MAX_NS (200ULL * FP_NSEC_PER_MSEC)

/* The runtime term of a deadline: `ns` of runtime at `weight`, at most max(FP_LEAD_VTIME_MAX_NS, lag_max_ns). */
static inline __u64 fp_lead_vtime(const volatile struct fp_sched_tunables *t, __u64 ns, __u64 weight)
{
	__u64 v = fp_vtime_delta(ns, weight);
	__u64 cap = t->lag_max_ns > FP_LEAD_VTIME_MAX_NS ? t->lag_max_ns : FP_LEAD_VTIME_MAX_NS;

	return v < cap ? v : cap;
}

/*
 * Deadline of a task whose runtime term is `lead` of virtual time (fp_lead_vtime): its virtual
 * runtime, clamped to at most `credit` behind the virtual clock, plus `lead`.
 */
static inline __u64 fp_deadline_at(__u64 vruntime, __u64 vtime_now, __u64 credit, __u64 lead)
{
	__u64 floor = vtime_now > credit ? vtime_now - credit : 0;

	return (vruntime < floor ? floor : vruntime) + lead;
}

/*
 * Deadline of a task: its virtual runtime, clamped to at most `credit` behind the virtual clock,
 * plus the weighted runtime it used since it last woke, counted up to `exec_max` (a task that
 * runs long before sleeping queues behind ones that run briefly; the bound keeps CPU hogs fair
 * among themselves: without it a hog that started later would run alone until its runtime
 * caught up with the older ones') and held to fp_lead_vtime's bound.
 */
static inline __u64 fp_deadline(const volatile struct fp_sched_tunables *t, __u64 vruntime, __u64 vtime_now,
				__u64 credit, __u64 exec_ns, __u64 weight, __u64 exec_max)
{
	return fp_deadline_at(vruntime, vtime_now, credit,
			      fp_lead_vtime(t, exec_ns < exec_max ? exec_ns : exec_max, weight));
}

/*
 * Where the virtual clock may move when a task with `vruntime` starts running: to it, but never past
 * the virtual runtime the first task of the shared queue was placed at (`head`, ~0 when the queue is
 * empty: no bound). The clock is the floor of every waking task and the reference of every cap; if
 * a favoured task dragged it ahead of the queued CPU hogs, every hog would sit at the floor, due at
 * the same moment however long it ran, and a task that lost its place would wait for all of them
 * (a frame thread waited 0.3-2.9 s). The bound is the head's own placement, not its deadline less
 * the largest runtime term: with that looser bound the clock stopped while the head waited, every
 * task's lead was cut to the same cap above it, and order fell to whoever had run least since it
 * last woke.
 */
static inline __u64 fp_clock_bound(__u64 vruntime, __u64 head)
{
	return vruntime > head ? head : vruntime;
}

/*
 * How far the virtual clock advances when a task stops after running `ran` ns with `nr_runnable`
 * tasks runnable: the virtual time each of them earned meanwhile at its fair share (nice-0
 * weights), ran / nr_runnable - the rate at which EEVDF's average virtual runtime moves. Otherwise
 * the clock moves only to the virtual runtime of a task that starts running (fp_clock_bound), and
 * stands while favoured tasks, held near it (FP_DEBT_SLICES), run ahead of the queued ones; with
 * this step a queued task's deadline comes due however long they keep running.
 */
static inline __u64 fp_clock_step(__u64 ran, __u64 nr_runnable)
{
	return ran / (nr_runnable ? nr_runnable : 1);
}

/*
 * How far ahead of the virtual clock the virtual runtime of a task of class `cls` may run:
 * FP_DEBT_SLICES slices, but one of its own slices (fp_slice) for a task that wakes often
 * (fp_wakes_often: its average rate, so a frame thread running late keeps the bound). A 60 Hz frame thread doing 6 ms of work beside eight CPU hogs on two CPUs asks 36 % of a CPU
 * where nine tasks have ~22 % each: it is always in debt, and at the two-slice bound it stood 10 ms
 * of virtual time ahead of the clock, behind every hog queued earlier (bpf_printk on its thread:
 * vruntime - clock at 997 queueings median 9.9 ms, p90 10.0; 2-5 of 480 frames missed in each of 6
 * rounds, docs/sched-measurements.md). EEVDF forgives a sleeper's debt while it sleeps; here a task
 * that sleeps often owes at most what it asks each time it runs, and the clock's steady advance
 * (fp_clock_step) still brings every hog's deadline due (later than before beside such a task that
 * keeps a CPU busy). A task that does not sleep keeps the wider bound whatever its class - two
 * spinning --foreground threads per CPU must not take the CPUs from the other hogs - and so do
 * fastpath's own threads. So does a frame loop under `latency_hz` (a 30 Hz game), --foreground or
 * not: only the wake rate lowers the bound.
 */
static inline __u64 fp_debt_bound(const volatile struct fp_sched_tunables *t, __u64 wake_hz, __u64 since_wake_ns,
				  __u32 cls)
{
	if (cls != FP_TASK_OWN && fp_wakes_often(t, wake_hz, since_wake_ns))
		return fp_slice(t, wake_hz);
	return FP_DEBT_SLICES * t->slice_ns;
}

/*
 * A virtual runtime held to at most `debt` ahead of the virtual clock (fp_debt_bound): what
 * the loader stores back, so the forgiven part is never paid later.
 */
static inline __u64 fp_vruntime_capped(__u64 vruntime, __u64 vtime_now, __u64 debt)
{
	return vruntime > vtime_now + debt ? vtime_now + debt : vruntime;
}

/*
 * Where a forked task starts. A new process: one slice behind the virtual clock, as a new task that
 * asks for a whole slice should. At the clock itself, the children of a fork storm - thousands a
 * second - queued ahead of every running task, held the clock where they were placed, and a 60 Hz
 * frame thread beside them waited 9-11 ms at p99. A new thread of a running process whose creator
 * creates threads rarely (`thread`, fp_spawn_rare): at the clock, with no lag, as EEVDF places every
 * new task: placed a slice behind, the frame probe's
 * new thread beside a fork storm first ran 5-10 ms after it was woken, where the default ran it
 * within 1.4 ms (tracefs in the VM, docs/sched-measurements.md); its first queueing may also
 * preempt (fastpath_enqueue). Not behind its parent: a parent may run up to FP_DEBT_SLICES ahead of
 * the clock, and each generation added that lead and a slice - a thread spawned by a process just
 * started began up to 20 ms behind the clock, level with CPU hogs (whose deadlines count lag_max_ns
 * of runtime). Beside eight hogs in the VM the frame probe's thread first ran 11-27 ms after the
 * probe created it; placed a slice behind, 2-5 ms (bench:sched hogs4-6ms, "thread start": 5 rounds
 * in one boot with the probe of b007b2e, docs/sched-measurements.md). What a child gains is bounded
 * by its parent's debt.
 */
static inline __u64 fp_fork_vruntime(__u64 vtime_now, __u64 slice_ns, int thread)
{
	return thread ? vtime_now : vtime_now + slice_ns;
}

/*
 * A thread creator that creates threads this often or more (its average, fp_wake_hz, as of now:
 * fp_wake_hz_now) makes a storm: its new threads start a slice behind the clock, as new processes
 * do. At the clock and free to preempt, the threads of `stress-ng --pthread` (hundreds a second) went
 * ahead of a 60 Hz frame thread one after another once it no longer counted as latency-critical:
 * its worst frame in four rounds in the VM was 0.02-2.36 s, against 22-52 ms with them behind
 * (docs/sched-measurements.md). A process adding a thread now and then creates them rarely. Of a
 * burst - a game starting eight workers at once - only the first two start at the clock, the rest
 * a slice behind (not measured). The rate is the creating thread's: threads created by different
 * threads of one process are counted apart.
 */
#define FP_SPAWN_STORM_HZ 10

/* Whether a thread created now by a creator with `spawn_hz`, that last created one `since_ns` ago, is a rare one. */
static inline int fp_spawn_rare(__u64 spawn_hz, __u64 since_ns)
{
	return fp_wake_hz_now(spawn_hz, since_ns) < FP_SPAWN_STORM_HZ;
}

/* Busy/idle hysteresis: turns busy above `high`, idle again only below `low`. */
static inline int fp_busy_next(int busy, __u32 util_pct, __u32 high, __u32 low)
{
	return busy ? util_pct >= low : util_pct >= high;
}

/* Utilisation in % of `nr_cpus` CPUs over `period_ns`, from the busy time spent in it. */
static inline __u32 fp_util_pct(__u64 busy_ns, __u64 period_ns, __u32 nr_cpus)
{
	__u64 cap = period_ns * (nr_cpus ? nr_cpus : 1);
	__u64 pct;

	if (!cap)
		return 0;
	pct = busy_ns * 100 / cap;
	return pct > 100 ? 100 : (__u32)pct;
}

/*
 * Whether a task of class `cls` waking `wake_hz` times a second should preempt: the foreground
 * always, a frequent waker too - but never fastpath's own threads, however often they wake.
 */
static inline int fp_latency_critical(const volatile struct fp_sched_tunables *t, __u64 wake_hz, __u32 cls)
{
	if (cls == FP_TASK_OWN)
		return 0;
	return cls == FP_TASK_FOREGROUND || wake_hz >= t->latency_hz;
}

/*
 * A task's urgency class for preemption (0 normal .. 3 input/audio): the higher of what the policy
 * says (`policy`: 2 foreground, 1 frequent waker) and what the detectors found (`signal`) - 0 for
 * fastpath's own threads, which a terminal's input or a timer interrupt would otherwise raise.
 */
static inline __u32 fp_urgency(__u32 cls, __u32 policy, __u32 signal)
{
	if (cls == FP_TASK_OWN)
		return 0;
	return signal > policy ? signal : policy;
}

#endif
