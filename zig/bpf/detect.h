/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The game's latency-critical threads, found in the kernel: shared by the detectors (detect.bpf.c,
 * which run with or without the scheduler - `fastpath sched observe`), the scheduler (sched.bpf.c,
 * which reads what they found from the same maps) and the Zig library (@cImport; layouts asserted in
 * abi.zig). Times in ns, rates in Hz, windows in us as their names say.
 */
#ifndef FASTPATH_DETECT_H
#define FASTPATH_DETECT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Roles of a thread group, set by the library (the roles map): whom the classes apply to. */
enum fp_role {
	FP_ROLE_GAME = 1 << 0,	       /* the detected (or named) game */
	FP_ROLE_COMPOSITOR = 1 << 1,   /* reads evdev and forwards input: X, Wayland, gamescope */
	FP_ROLE_AUDIO_SERVER = 1 << 2, /* PipeWire, PulseAudio */
	FP_ROLE_AUDIO_CLIENT = 1 << 3, /* talks to the audio server */
};

/* What a thread is now, from the evidence below (the `class` bits of fp_thread). */
enum fp_class {
	FP_CLASS_INPUT = 1 << 0,  /* in an input window: the compositor's reader, or a thread it woke */
	FP_CLASS_GPU = 1 << 1,	  /* submits GPU work or presents, in the game or the compositor */
	FP_CLASS_AUDIO = 1 << 2,  /* writes PCM, or is an audio server's or client's woken thread */
	FP_CLASS_NET = 1 << 3,	  /* sends on INET sockets, in the game */
	FP_CLASS_URGENT = 1 << 4, /* woken from an interrupt or by a real-time task (or by such a task) */
};

/* Which detectors are attached (fp_detect_state.signals): each absent one has a reason. */
enum fp_signal {
	FP_SIGNAL_INPUT = 1 << 0,   /* fentry/input_event */
	FP_SIGNAL_WAKE = 1 << 1,    /* tp_btf/sched_waking: wake chains, IRQ and RT wakers */
	FP_SIGNAL_IRQ = 1 << 2,	    /* tp_btf/irq_handler_*, softirq_*, hrtimer_expire_*: wakeups from device IRQs and softirqs */
	FP_SIGNAL_GPU = 1 << 3,	    /* fentry/drm_ioctl */
	FP_SIGNAL_NVIDIA = 1 << 4,  /* kprobe on the NVIDIA driver's ioctl entry */
	FP_SIGNAL_PCM = 1 << 5,	    /* fentry/snd_pcm_period_elapsed */
	FP_SIGNAL_PCM_WRITE = 1 << 6, /* fentry/__snd_pcm_lib_xfer */
	FP_SIGNAL_NET = 1 << 7,	    /* fentry/inet_sendmsg and inet6_sendmsg */
	FP_SIGNAL_EXEC = 1 << 8,    /* tp_btf/sched_process_exec and _exit: game detection */
};

/*
 * Per-thread evidence (task storage, freed with the thread: a reused TID never inherits it). The
 * scheduler reads it through the same map. Counts and last times of each kind of evidence; a class
 * holds while its evidence is fresh (fp_classes).
 */
struct fp_task_sig {
	__u64 input_until;  /* end of the input window this thread is in (0: none) */
	__u64 urgent_until; /* end of an urgency passed to it by an IRQ, RT or urgent waker */
	__u64 gpu_last;	    /* last GPU submit / present ioctl */
	__u64 pcm_last;	    /* last PCM write */
	__u64 net_last;	    /* last INET send */
	__u32 gpu_hz;	    /* submits per second, exponential average */
	__u32 net_hz;	    /* INET sends per second, exponential average */
	__u8 input_hops;    /* 0: woken by the input itself (the compositor's reader); 1, 2: hops on */
	__u8 urgent_hops;
	__u8 woken_by_irq;  /* last wakeup came from hardirq/softirq context */
	__u8 woken_by_rt;   /* last wakeup came from a real-time or deadline task */
	__u32 waker_tid;    /* who woke it last (the wake chain, for `observe`) */
};

/* One thread as `observe` and `status --threads` show it (the threads LRU map, deleted at exit). */
struct fp_thread {
	__u32 tid;
	__u32 tgid;
	char comm[16];
	__u32 class;	   /* fp_class bits, as of `seen` */
	__u32 roles;	   /* fp_role bits of its thread group */
	__u64 seen;	   /* last time any evidence came in */
	__u64 input_at;	   /* start of the last input window it was part of */
	__u64 gpu_last;
	__u64 pcm_last;
	__u64 net_last;
	__u32 gpu_hz;
	__u32 net_hz;
	__u32 waker_tid;
	__u8 input_hops;
	__u8 urgent_hops;
	__u8 woken_by_irq;
	__u8 woken_by_rt;
};

/* Knobs of the detectors, in .bss: the library changes them while they run. */
struct fp_detect_knobs {
	__u32 input_window_us;	/* how long an input event favours the threads it wakes */
	__u32 urgent_window_us; /* how long an IRQ/RT wakeup favours its wakee */
	__u32 chain_hops;	/* how many wake hops input and urgency travel (0: the wakee only) */
	__u32 gpu_min_hz;	/* submit ioctls per second from which a thread is GPU-submit */
	__u32 net_min_hz;	/* INET sends per second from which a game thread is network */
	__u32 evidence_ms;	/* how long evidence stays fresh */
	__u32 signals_off;	/* fp_signal bits switched off at run time */
	__u32 game_switch_ms;	/* how long a new game candidate must lead (the library's only) */
};

/* State the detectors publish in .bss (what `sched status` reads from another process too). */
struct fp_detect_state {
	__u64 input_at;	     /* the last input event */
	__u32 signals;	     /* fp_signal bits attached (written by the library) */
	__u32 game_tgid;     /* the game now (written by the library) */
	__u32 game_reason;   /* why it is the game (abi.zig GameReason; written by the library) */
	__u32 _pad;
	__u64 game_exec_at;  /* the game's exec, ns since boot (0: found by a scan; written by the library) */
	__u64 game_found_at; /* when the library made it the game, ns since boot */
	char absent[512];    /* why each absent detector is absent (written by the library) */
};

/* Counters (per CPU, folded by the library). */
struct fp_detect_counters {
	__u64 input_events;
	__u64 input_windows;   /* input events that opened a new window */
	__u64 input_boosts;    /* wakeups that carried an input window */
	__u64 urgent_boosts;   /* wakeups that carried urgency (IRQ, RT, or an urgent waker) */
	__u64 irq_wakeups;
	__u64 rt_wakeups;
	__u64 gpu_submits;
	__u64 pcm_periods;
	__u64 pcm_writes;
	__u64 net_sends;
	__u64 execs;
	__u64 exits;
	__u64 events_lost;     /* exec/exit events the ring buffer had no room for */
};

/* An exec or exit, for the library's game detection (ring buffer). */
struct fp_proc_event {
	__u32 kind; /* 1 exec, 2 exit of a thread group */
	__u32 tgid;
	__u64 at;
	char comm[16];
};

#define FP_EVENT_EXEC 1
#define FP_EVENT_EXIT 2

/* --- Policy (pure functions, tested on the host) --------------------------------------------- */

/* Per-second rate as an exponential average over gaps (the same rule as fp_wake_hz in sched.h). */
static inline __u32 fp_rate_hz(__u32 old_hz, __u64 gap_ns)
{
	__u64 now_hz = 1000000000ULL / (gap_ns ? gap_ns : 1);

	if (now_hz > 0xffffffffULL)
		now_hz = 0xffffffffULL;
	if (now_hz >= old_hz)
		return old_hz + (__u32)((now_hz - old_hz + 3) / 4);
	return old_hz - (__u32)((old_hz - now_hz + 3) / 4);
}

/* A rate that decays with the time since its last event: never more than one per that time. */
static inline __u32 fp_rate_now(__u32 hz, __u64 since_ns)
{
	__u64 bound = 1000000000ULL / (since_ns ? since_ns : 1);

	return hz < bound ? hz : (__u32)bound;
}

/*
 * The classes a thread with evidence `s` and roles `roles` holds at `now`. GPU and network classes
 * apply only inside the game (and GPU in the compositor); audio to PCM writers and the audio server
 * and clients; input and urgency to whoever carries a live window.
 */
static inline __u32 fp_classes(const struct fp_task_sig *s, __u32 roles, __u64 now,
			       const volatile struct fp_detect_knobs *k)
{
	__u64 fresh = (__u64)k->evidence_ms * 1000000ULL;
	__u32 c = 0;

	if (s->input_until > now)
		c |= FP_CLASS_INPUT;
	if (s->urgent_until > now)
		c |= FP_CLASS_URGENT;
	if ((roles & (FP_ROLE_GAME | FP_ROLE_COMPOSITOR)) && s->gpu_last && now - s->gpu_last < fresh &&
	    fp_rate_now(s->gpu_hz, now - s->gpu_last) >= k->gpu_min_hz)
		c |= FP_CLASS_GPU;
	if ((s->pcm_last && now - s->pcm_last < fresh) ||
	    ((roles & (FP_ROLE_AUDIO_SERVER | FP_ROLE_AUDIO_CLIENT)) && s->woken_by_rt && s->urgent_until > now))
		c |= FP_CLASS_AUDIO;
	if ((roles & FP_ROLE_GAME) && s->net_last && now - s->net_last < fresh &&
	    fp_rate_now(s->net_hz, now - s->net_last) >= k->net_min_hz)
		c |= FP_CLASS_NET;
	return c;
}

#endif
