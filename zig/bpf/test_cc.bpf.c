// SPDX-License-Identifier: GPL-2.0
/*
 * fp_test_cc - Reno as a BPF tcp_congestion_ops, used only by the loader's tests: the host kernel
 * has no sched_ext, but it has this struct_ops type, so the same prepare/attach-through-a-link
 * path the scheduler uses is proven on every machine.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

extern u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern void tcp_reno_cong_avoid(struct sock *sk, u32 ack, u32 acked) __ksym;
extern u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

SEC("struct_ops/fp_cc_ssthresh")
u32 BPF_PROG(fp_cc_ssthresh, struct sock *sk)
{
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops/fp_cc_cong_avoid")
void BPF_PROG(fp_cc_cong_avoid, struct sock *sk, u32 ack, u32 acked)
{
	tcp_reno_cong_avoid(sk, ack, acked);
}

SEC("struct_ops/fp_cc_undo_cwnd")
u32 BPF_PROG(fp_cc_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC(".struct_ops.link")
struct tcp_congestion_ops fp_test_cc = {
	.ssthresh = (void *)fp_cc_ssthresh,
	.cong_avoid = (void *)fp_cc_cong_avoid,
	.undo_cwnd = (void *)fp_cc_undo_cwnd,
	.name = "fp_test_cc",
};
