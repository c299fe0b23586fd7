// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark fixture, not the product: the least an in-kernel reflector can do. Untagged IPv4 with a
 * 20-byte header, UDP, "DATA:OT" at payload offset 5: swap MAC, IP and ports and return XDP_TX.
 * Everything else passes to the stack. The bench measures fastpath against this ceiling.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp.frags")
int bare_xdp_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp = (void *)(ip + 1);
	unsigned char *sig = (unsigned char *)(udp + 1) + 5;
	unsigned char mac[ETH_ALEN];
	__u32 addr;
	__u16 port;

	if ((void *)(sig + 7) > end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	if (sig[0] != 'D' || sig[1] != 'A' || sig[2] != 'T' || sig[3] != 'A' ||
	    sig[4] != ':' || sig[5] != 'O' || sig[6] != 'T')
		return XDP_PASS;

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
