// SPDX-License-Identifier: GPL-2.0
/* Benchmark fixture: a veth accepts XDP_TX frames from its peer only when it runs XDP itself. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp.frags")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
