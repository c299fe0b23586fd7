// SPDX-License-Identifier: GPL-2.0
/*
 * fastpath detectors - which threads a player feels, seen from the kernel paths their work takes,
 * decided in the kernel (no userspace round trip on the latency path). They run with the scheduler
 * (which reads what they find through the shared maps of detect_maps.h) or alone (`fastpath sched
 * observe`, on any kernel with BTF and fentry, sched_ext or not).
 *
 *  - Input: fentry on input_event opens an input window. A compositor thread (X, Wayland,
 *    gamescope: the roles map) woken while it is open is the input reader; the threads it wakes,
 *    and the threads those wake (`chain_hops`), carry the window on - through the UNIX socket to the
 *    game's input thread and on to the worker it hands the event to.
 *  - Generic wake signals: a wakeup from hardirq or softirq context, or by a real-time or deadline
 *    task (an audio server's RT thread waking its helper), makes the wakee urgent for
 *    `urgent_window_us`; urgency travels on along wake chains, one hop less each time.
 *  - GPU: fentry on drm_ioctl counts driver command ioctls (DRM_COMMAND_BASE .. _END: execbuffer,
 *    CS, submit, fence attach) and KMS presents (page flip, atomic commit) per thread; the NVIDIA
 *    driver's own ioctl entry by kprobe when nvidia.ko is loaded.
 *  - Audio: PCM periods elapsing (fentry/snd_pcm_period_elapsed) and threads writing PCM
 *    (fentry/__snd_pcm_lib_xfer); the audio server's and its clients' RT-woken threads.
 *  - Network: the game's threads sending on INET sockets (fentry on inet_sendmsg and inet6_sendmsg,
 *    which AF_UNIX sends never reach).
 *  - Game detection: exec and exit of thread groups go to the library through a ring buffer; it
 *    scores candidates and writes the game into the roles map.
 * Every optional program (a driver's function) is `SEC("?...")`: the library enables each only when its target exists in
 * the running kernel's (or a module's) BTF, and says which are absent.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "detect_maps.h"

char LICENSE[] SEC("license") = "GPL";

/* Changed at run time by the library through the mmaped .bss. */
struct fp_detect_knobs dknobs;
struct fp_detect_state dstate;

/* Threads with a role, as `observe` shows them (LRU: bounded; deleted when the thread exits). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct fp_thread);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} proc_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_detect_counters);
} dcounters SEC(".maps");

/*
 * Which interrupt context this CPU is in, kept by tracepoints: the same on every architecture and
 * kernel, with no per-CPU kernel symbol to resolve (the preempt count would say it all, but x86 keeps
 * it in a per-CPU variable whose address the kernel gives BPF only with CONFIG_KALLSYMS_ALL: the
 * host's 6.18 refused the load). One flag per kind, set at its entry and cleared at its exit - not a
 * depth: a depth raised by an entry whose exit came before the exit program was attached (they attach
 * one by one) stayed up for good, and every wakeup on that CPU looked like an interrupt's. Handlers of
 * one kind do not nest on a CPU; kinds that nest in each other have a flag each.
 *  - hardirq: a device's handler (irq_handler_entry/exit). A wakeup there is "from an interrupt"
 *    (the urgency signal): input, network, sound, a GPU completion woke the task.
 *  - softirq: a softirq other than the timers' (network receive, block, tasklets): likewise.
 *  - timer_softirq (TIMER_SOFTIRQ, HRTIMER_SOFTIRQ) and hrtimer (an hrtimer callback, hard or soft:
 *    a sleeper's timeout, the tick; hrtimer_expire_entry/exit): a wakeup there raises no urgency - no
 *    device woke a task its own timer woke - but, like the others, names no waker: the current task
 *    is whatever the interrupt interrupted. Taken for the waker, a compositor interrupted by a timer
 *    handed its input window to the sleeper that timer woke (the input injector, a frame loop), which
 *    then ran at the input chain's urgency and took the CPU from the next event's reader (tracefs in
 *    the VM). A hard hrtimer inside a soft one's callback clears `hrtimer` early, but that callback
 *    runs in HRTIMER_SOFTIRQ, whose flag stays set.
 */
struct fp_irq_ctx {
	__u8 hardirq;
	__u8 softirq;
	__u8 timer_softirq;
	__u8 hrtimer;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_irq_ctx);
} irq_ctx SEC(".maps");

/* Softirq vectors (include/linux/interrupt.h): the timers' run timer callbacks. */
#define FP_TIMER_SOFTIRQ 1
#define FP_HRTIMER_SOFTIRQ 8

static __always_inline struct fp_detect_counters *dcnt(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dcounters, &zero);
}

static __always_inline bool signal_on(__u32 s)
{
	return !(dknobs.signals_off & s);
}

static __always_inline struct fp_irq_ctx *irq_ctx_here(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&irq_ctx, &zero);
}

/* Whether this wakeup runs in a device interrupt handler or a (non-timer) softirq. */
static __always_inline bool in_interrupt_ctx(const struct fp_irq_ctx *x)
{
	return x && (x->hardirq || x->softirq);
}

/* In a timer callback, a device interrupt handler or a softirq: the current task woke no one. */
static __always_inline bool no_waker_here(const struct fp_irq_ctx *x)
{
	return in_interrupt_ctx(x) || (x && (x->timer_softirq || x->hrtimer));
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(fp_irq_entry, int irq, struct irqaction *action)
{
	struct fp_irq_ctx *x = irq_ctx_here();

	if (x)
		x->hardirq = 1;
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(fp_irq_exit, int irq, struct irqaction *action, int ret)
{
	struct fp_irq_ctx *x = irq_ctx_here();

	if (x)
		x->hardirq = 0;
	return 0;
}

static __always_inline bool timer_vec(unsigned int vec)
{
	return vec == FP_TIMER_SOFTIRQ || vec == FP_HRTIMER_SOFTIRQ;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(fp_softirq_entry, unsigned int vec)
{
	struct fp_irq_ctx *x = irq_ctx_here();

	if (x && timer_vec(vec))
		x->timer_softirq = 1;
	else if (x)
		x->softirq = 1;
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(fp_softirq_exit, unsigned int vec)
{
	struct fp_irq_ctx *x = irq_ctx_here();

	if (x && timer_vec(vec))
		x->timer_softirq = 0;
	else if (x)
		x->softirq = 0;
	return 0;
}

SEC("tp_btf/hrtimer_expire_entry")
int BPF_PROG(fp_hrtimer_entry, struct hrtimer *timer, ktime_t *now)
{
	struct fp_irq_ctx *x = irq_ctx_here();

	if (x)
		x->hrtimer = 1;
	return 0;
}

SEC("tp_btf/hrtimer_expire_exit")
int BPF_PROG(fp_hrtimer_exit, struct hrtimer *timer)
{
	struct fp_irq_ctx *x = irq_ctx_here();

	if (x)
		x->hrtimer = 0;
	return 0;
}

/* The evidence of `p` (created on first use). */
static __always_inline struct fp_task_sig *sig_of(struct task_struct *p)
{
	return bpf_task_storage_get(&task_sig, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* What `observe` shows of a thread with a role (or in an input chain). */
static __always_inline void record(struct task_struct *p, struct fp_task_sig *s, __u32 roles, __u64 now)
{
	struct fp_thread t = {};
	__u32 tid = p->pid;
	struct fp_thread *old = bpf_map_lookup_elem(&threads, &tid);

	t.tid = tid;
	t.tgid = p->tgid;
	bpf_probe_read_kernel_str(t.comm, sizeof(t.comm), p->comm);
	t.class = fp_classes(s, roles, now, &dknobs);
	t.roles = roles;
	t.seen = now;
	t.input_at = s->input_until ? s->input_until - (__u64)dknobs.input_window_us * 1000 : (old ? old->input_at : 0);
	t.gpu_last = s->gpu_last;
	t.pcm_last = s->pcm_last;
	t.net_last = s->net_last;
	t.gpu_hz = s->gpu_hz;
	t.net_hz = s->net_hz;
	t.waker_tid = s->waker_tid;
	t.input_hops = s->input_hops;
	t.urgent_hops = s->urgent_hops;
	t.woken_by_irq = s->woken_by_irq;
	t.woken_by_rt = s->woken_by_rt;
	bpf_map_update_elem(&threads, &tid, &t, BPF_ANY);
}

SEC("?fentry/input_event")
int BPF_PROG(fp_input_event, struct input_dev *dev, unsigned int type, unsigned int code, int value)
{
	struct fp_detect_counters *c = dcnt();
	__u64 now = bpf_ktime_get_ns();

	if (!signal_on(FP_SIGNAL_INPUT))
		return 0;
	if (c) {
		c->input_events++;
		if (now - dstate.input_at > (__u64)dknobs.input_window_us * 1000)
			c->input_windows++;
	}
	dstate.input_at = now;
	return 0;
}

/*
 * Every wakeup, in the waker's context (sched_waking: before a remote wakeup is handed to the
 * target CPU's interrupt, which would look like an IRQ wakeup): what the wakee inherits.
 */
SEC("tp_btf/sched_waking")
int BPF_PROG(fp_sched_waking, struct task_struct *p)
{
	struct fp_detect_counters *c;
	struct task_struct *waker = NULL;
	__u64 now;
	__u64 input_ns = (__u64)dknobs.input_window_us * 1000;
	__u64 urgent_ns = (__u64)dknobs.urgent_window_us * 1000;
	bool irq, rt, reader, input_hop, urgent_hop;
	struct fp_task_sig *ws = NULL, *ps;
	struct fp_irq_ctx *x;
	__u32 roles;

	if (!signal_on(FP_SIGNAL_WAKE))
		return 0;
	/*
	 * In an interrupt the current task is whatever it interrupted: no waker to inherit from.
	 * Helper calls are made only where they are needed: a timer's wakeup of a thread with no
	 * evidence and no role (most of a quiet machine's) makes two (its roles, its storage) besides
	 * the per-CPU lookup - in the emulated VM the BPF run on a wakeup's path is time the other
	 * vCPU's wakeups wait (docs/sched-measurements.md, "The quiet row in a trace").
	 */
	x = irq_ctx_here();
	if (!no_waker_here(x))
		waker = bpf_get_current_task_btf();
	irq = signal_on(FP_SIGNAL_IRQ) && in_interrupt_ctx(x);
	/*
	 * A real-time or deadline waker (an audio server's thread). Not a timer or an interrupt that
	 * interrupted one: the task it interrupted is no waker. (That rule once covered for the
	 * scheduler, which left an unpinned sleeper woken on a real-time hog's CPU behind it for 6.2 s;
	 * the VM test "a real-time hog on one CPU" now runs with --no-signals too.)
	 */
	rt = waker && waker->prio < 100; /* MAX_RT_PRIO */
	if (waker)
		ws = bpf_task_storage_get(&task_sig, waker, 0, 0);
	roles = roles_of(p->tgid);
	ps = bpf_task_storage_get(&task_sig, p, 0, 0);
	/* Nothing to carry and nowhere to keep it: a reader needs a role, a hop a waker's evidence. */
	if (!ps && !(irq || rt || ws || roles))
		return 0;
	now = bpf_ktime_get_ns();
	/* Input: the compositor's reader, woken while a window is open; then hop by hop. */
	reader = (roles & FP_ROLE_COMPOSITOR) && dstate.input_at && now - dstate.input_at < input_ns;
	input_hop = !reader && ws && ws->input_until > now && ws->input_hops < dknobs.chain_hops;
	urgent_hop = !rt && ws && ws->urgent_until > now && ws->urgent_hops < dknobs.chain_hops;

	/* Storage only for a thread with something to carry (or a role): most wakeups have neither. */
	if (!ps) {
		if (!(irq || rt || reader || input_hop || urgent_hop || roles))
			return 0;
		ps = sig_of(p);
		if (!ps)
			return 0;
	}
	c = dcnt();
	ps->woken_by_irq = irq;
	ps->woken_by_rt = rt;
	ps->waker_tid = waker ? waker->pid : 0;

	if (reader) {
		ps->input_until = dstate.input_at + input_ns;
		ps->input_hops = 0;
	} else if (input_hop) {
		ps->input_until = ws->input_until;
		ps->input_hops = ws->input_hops + 1;
	}
	if ((reader || input_hop) && c)
		c->input_boosts++;

	/* Urgency: from an interrupt or a real-time waker; then on at half length, one hop more each time. */
	if (irq || rt) {
		ps->urgent_until = now + urgent_ns;
		ps->urgent_hops = 0;
		if (c) {
			c->urgent_boosts++;
			if (irq)
				c->irq_wakeups++;
			else
				c->rt_wakeups++;
		}
	} else if (urgent_hop) {
		ps->urgent_until = now + urgent_ns / 2;
		ps->urgent_hops = ws->urgent_hops + 1;
		if (c)
			c->urgent_boosts++;
	}

	if (roles || ps->input_until > now)
		record(p, ps, roles, now);
	return 0;
}

/* DRM_COMMAND_BASE .. DRM_COMMAND_END: the driver's own ioctls (submission lives there). */
#define FP_DRM_COMMAND_BASE 0x40
#define FP_DRM_COMMAND_END 0xa0
#define FP_DRM_MODE_PAGE_FLIP 0xb0
#define FP_DRM_MODE_ATOMIC 0xbc

static __always_inline void gpu_submit(void)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct fp_detect_counters *c = dcnt();
	struct fp_task_sig *s = sig_of(cur);
	__u64 now = bpf_ktime_get_ns();
	__u32 roles;

	if (!s)
		return;
	s->gpu_hz = fp_rate_hz(s->gpu_hz, s->gpu_last ? now - s->gpu_last : 0);
	s->gpu_last = now;
	if (c)
		c->gpu_submits++;
	roles = roles_of(cur->tgid);
	if (roles)
		record(cur, s, roles, now);
}

SEC("?fentry/drm_ioctl")
int BPF_PROG(fp_drm_ioctl, struct file *filp, unsigned int cmd, unsigned long arg)
{
	__u32 nr = cmd & 0xff;

	if (!signal_on(FP_SIGNAL_GPU))
		return 0;
	if ((nr >= FP_DRM_COMMAND_BASE && nr < FP_DRM_COMMAND_END) || nr == FP_DRM_MODE_PAGE_FLIP ||
	    nr == FP_DRM_MODE_ATOMIC)
		gpu_submit();
	return 0;
}

/* The NVIDIA driver submits through its own ioctls, not drm_ioctl. */
SEC("?kprobe/nvidia_unlocked_ioctl")
int fp_nvidia_ioctl(void *ctx)
{
	if (signal_on(FP_SIGNAL_NVIDIA))
		gpu_submit();
	return 0;
}

SEC("?fentry/snd_pcm_period_elapsed")
int BPF_PROG(fp_pcm_period, struct snd_pcm_substream *substream)
{
	struct fp_detect_counters *c = dcnt();

	if (signal_on(FP_SIGNAL_PCM) && c)
		c->pcm_periods++;
	return 0;
}

SEC("?fentry/__snd_pcm_lib_xfer")
int BPF_PROG(fp_pcm_write, struct snd_pcm_substream *substream, void *data, bool interleaved,
	     snd_pcm_uframes_t size, bool in_kernel)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct fp_detect_counters *c = dcnt();
	struct fp_task_sig *s;
	__u64 now = bpf_ktime_get_ns();

	if (!signal_on(FP_SIGNAL_PCM_WRITE) || !(s = sig_of(cur)))
		return 0;
	s->pcm_last = now;
	if (c)
		c->pcm_writes++;
	record(cur, s, roles_of(cur->tgid), now);
	return 0;
}

/* A send on an INET socket (AF_UNIX sends never get here), counted for the game's threads only. */
static __always_inline void inet_send(void)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct fp_detect_counters *c;
	struct fp_task_sig *s;
	__u32 roles = roles_of(cur->tgid);
	__u64 now;

	if (!(roles & FP_ROLE_GAME) || !signal_on(FP_SIGNAL_NET) || !(s = sig_of(cur)))
		return;
	now = bpf_ktime_get_ns();
	s->net_hz = fp_rate_hz(s->net_hz, s->net_last ? now - s->net_last : 0);
	s->net_last = now;
	if ((c = dcnt()))
		c->net_sends++;
	record(cur, s, roles, now);
}

SEC("?fentry/inet_sendmsg")
int BPF_PROG(fp_inet_sendmsg, struct socket *sock, struct msghdr *msg, size_t size)
{
	inet_send();
	return 0;
}

SEC("?fentry/inet6_sendmsg")
int BPF_PROG(fp_inet6_sendmsg, struct socket *sock, struct msghdr *msg, size_t size)
{
	inet_send();
	return 0;
}

static __always_inline void proc_event(__u32 kind, struct task_struct *p)
{
	struct fp_detect_counters *c = dcnt();
	struct fp_proc_event *e = bpf_ringbuf_reserve(&proc_events, sizeof(*e), 0);

	if (!e) {
		if (c)
			c->events_lost++;
		return;
	}
	e->kind = kind;
	e->tgid = p->tgid;
	e->at = bpf_ktime_get_ns();
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(fp_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct fp_detect_counters *c = dcnt();

	if (!signal_on(FP_SIGNAL_EXEC))
		return 0;
	if (c)
		c->execs++;
	proc_event(FP_EVENT_EXEC, p);
	return 0;
}

/* Every exiting thread: its row goes; the group leader's exit ends the thread group for the library. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(fp_process_exit, struct task_struct *p)
{
	struct fp_detect_counters *c = dcnt();
	__u32 tid = p->pid;

	bpf_map_delete_elem(&threads, &tid);
	if (p->pid != p->tgid || !signal_on(FP_SIGNAL_EXEC))
		return 0;
	if (c)
		c->exits++;
	proc_event(FP_EVENT_EXIT, p);
	return 0;
}
