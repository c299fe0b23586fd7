// SPDX-License-Identifier: GPL-2.0
/*
 * minimal - the least a sched_ext scheduler can do, as a floor for bench:sched: what sched_ext itself
 * costs on a wakeup, before any policy. Shaped like the kernel's scx_simple in FIFO mode:
 *
 *  select_cpu: the kernel's own idle-CPU search (scx_bpf_select_cpu_dfl); a task that found an idle CPU
 *              goes straight to that CPU's local queue.
 *  enqueue:    everything else to one shared FIFO queue.
 *  dispatch:   a CPU that runs out of work takes the head of that queue.
 *
 * Not part of fastpath: the bench builds it with clang and attaches it with `bpftool struct_ops
 * register` (a pinned link; unpinning detaches it).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define MINIMAL_DSQ 0x6d696e00ULL

extern s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym;
extern s32 scx_bpf_select_cpu_dfl(struct task_struct *p, s32 prev_cpu, u64 wake_flags, bool *is_idle) __ksym;
/* 6.13 renamed these; the old names exist on 6.12 only. */
extern void scx_bpf_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern void scx_bpf_dispatch(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_dsq_move_to_local(u64 dsq_id) __ksym __weak;
extern bool scx_bpf_consume(u64 dsq_id) __ksym __weak;

static __always_inline void insert(struct task_struct *p, u64 dsq, u64 flags)
{
	if (bpf_ksym_exists(scx_bpf_dsq_insert))
		scx_bpf_dsq_insert(p, dsq, SCX_SLICE_DFL, flags);
	else
		scx_bpf_dispatch(p, dsq, SCX_SLICE_DFL, flags);
}

SEC("struct_ops/minimal_select_cpu")
s32 BPF_PROG(minimal_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool idle = false;
	s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &idle);

	if (idle)
		insert(p, SCX_DSQ_LOCAL, 0);
	return cpu;
}

SEC("struct_ops/minimal_enqueue")
void BPF_PROG(minimal_enqueue, struct task_struct *p, u64 enq_flags)
{
	insert(p, MINIMAL_DSQ, enq_flags);
}

SEC("struct_ops/minimal_dispatch")
void BPF_PROG(minimal_dispatch, s32 cpu, struct task_struct *prev)
{
	if (bpf_ksym_exists(scx_bpf_dsq_move_to_local))
		scx_bpf_dsq_move_to_local(MINIMAL_DSQ);
	else
		scx_bpf_consume(MINIMAL_DSQ);
}

SEC("struct_ops.s/minimal_init")
s32 BPF_PROG(minimal_init)
{
	return scx_bpf_create_dsq(MINIMAL_DSQ, -1);
}

SEC(".struct_ops.link")
struct sched_ext_ops minimal_ops = {
	.select_cpu = (void *)minimal_select_cpu,
	.enqueue = (void *)minimal_enqueue,
	.dispatch = (void *)minimal_dispatch,
	.init = (void *)minimal_init,
	.name = "minimal",
};
