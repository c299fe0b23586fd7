// SPDX-License-Identifier: GPL-2.0
/*
 * Lets a veth receive XDP_TX frames from its peer: veth delivers them only to a device that runs XDP
 * itself. The namespace lab attaches this to the probe's side. Everything passes to the stack.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp.frags")
int fp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
