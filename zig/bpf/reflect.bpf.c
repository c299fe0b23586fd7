// SPDX-License-Identifier: GPL-2.0
/*
 * The ITO reflector inside the kernel. The same rules as zig/src/ito/ito.zig, frame for frame (a test
 * runs one table of frames through both and compares verdicts and bytes): frames that are ITO test
 * frames addressed to us are rewritten and sent back with XDP_TX (or, in AF_XDP mode, redirected to
 * the receive queue's socket); everything else goes to the stack with XDP_PASS, so ARP keeps working.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fastpath.h"

/*
 * The receive VLAN tag a driver took out of the frame into metadata (rx-vlan offload; a veth keeps
 * the tag of a frame a VLAN device sent). Kernel 6.8+; answers only in a program loaded for the
 * device (prog_ifindex, BPF_F_XDP_DEV_BOUND_ONLY) whose driver implements it, -EOPNOTSUPP otherwise.
 */
extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto,
					__u16 *vlan_tci) __ksym __weak;

/*
 * Written by the loader before the program is loaded, so the verifier sees constants and the JIT
 * drops the branches a configuration does not use.
 */
const volatile struct fp_ito_config cfg = {};
/* FP_ACTION_TX (xdp mode) or FP_ACTION_REDIRECT (afxdp mode). */
const volatile __u8 action = FP_ACTION_TX;
/*
 * afxdp mode without multi-buffer sockets: the longest frame a UMEM chunk holds; longer ones go to
 * the stack, counted. 0: no limit (the sockets chain chunks).
 */
const volatile __u32 xsk_max_frame = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_xdp_counters);
} counters SEC(".maps");

/*
 * The interface's MAC now: bytes 0-5 of the one value, 0 when none. cfg.our_mac is only the MAC at
 * load; the reflector writes this map at load and again the moment the interface's address changes,
 * so a frame to an address that is no longer ours is never answered. Read with one 8-byte load, so a
 * frame is checked against the old MAC or the new, never a mix.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ours SEC(".maps");

/*
 * xdp mode on a veth: 1 while its peer runs no XDP program. Such a peer cannot take XDP_TX frames
 * (dropped, or left in its ring until other traffic flushes them: zig/src/reflect/veth.zig), so the
 * reflector's monitor sets this and reflections are dropped and counted (tx_held) instead, until the
 * peer has a program again.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} hold_tx SEC(".maps");

/* AF_XDP sockets by receive queue (afxdp mode). */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define VENDOR_HEADER_LEN 5
#define SIG_LEN 7
/* ito.max_tags: VLAN tags in all, one held as metadata included. */
#define MAX_TAGS 2

struct parsed {
	__u32 verdict;
	__u32 sig;
	__u32 l3;
	__u32 l4;
	__u32 ipv6;
};

static __always_inline int mac_eq(const __u8 *a, const volatile __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

static __always_inline int sig_eq(const __u8 *p, const char *s)
{
	return p[0] == s[0] && p[1] == s[1] && p[2] == s[2] && p[3] == s[3] && p[4] == s[4] && p[5] == s[5] &&
	       p[6] == s[6];
}

/* Copies the interface's MAC now (map `ours`) to mac[0..5]; 0 when there is none. */
static __always_inline int ours_now(__u8 *mac)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&ours, &zero);

	if (!v)
		return 0;
	*(__u64 *)mac = *(volatile __u64 *)v;
	return *(__u64 *)mac != 0;
}

/*
 * Mirrors ito.classifyTagged: same checks in the same order, so verdicts match exactly. `meta_tag`:
 * the outermost tag is in metadata, not in the frame.
 */
static __always_inline void classify(void *data, void *end, struct parsed *p, int meta_tag)
{
	__u8 mac[8] __attribute__((aligned(8)));
	__u8 *f = data;
	__u64 len = end - data;
	__u16 ethertype;
	__u32 l3 = 14, l4;

	p->verdict = FP_TOO_SHORT;
	if (data + 14 > end)
		return;
	p->verdict = FP_NOT_OURS;
	if ((f[0] | f[6]) & 1)
		return;
	if (!ours_now(mac) || !mac_eq(f, mac) || mac_eq(f + 6, mac))
		return;
	if (cfg.oui_filter && (f[6] != cfg.oui[0] || f[7] != cfg.oui[1] || f[8] != cfg.oui[2])) {
		p->verdict = FP_OUI;
		return;
	}
	ethertype = (f[12] << 8) | f[13];
#pragma unroll
	for (int tags = 0; tags < MAX_TAGS; tags++) {
		if (tags < meta_tag || (ethertype != ETH_P_8021Q_ && ethertype != ETH_P_8021AD_))
			continue;
		p->verdict = FP_TOO_SHORT;
		if (data + l3 + 4 > end)
			return;
		ethertype = (f[l3 + 2] << 8) | f[l3 + 3];
		l3 += 4;
	}

	if (ethertype == ETH_P_IP) {
		__u8 *ip = data + l3;
		__u32 ihl;

		p->verdict = FP_TOO_SHORT;
		if ((void *)(ip + 20) > end)
			return;
		p->verdict = FP_MALFORMED;
		if (ip[0] >> 4 != 4)
			return;
		ihl = ip[0] & 0x0f;
		if (ihl < 5 || l3 + ihl * 4 > len)
			return;
		p->verdict = FP_NOT_UDP;
		if (ip[9] != IPPROTO_UDP)
			return;
		p->verdict = FP_MALFORMED;
		if (((ip[6] << 8) | ip[7]) & 0x1fff)
			return;
		l4 = l3 + ihl * 4;
		p->ipv6 = 0;
	} else if (ethertype == ETH_P_IPV6) {
		__u8 *ip6 = data + l3;

		p->verdict = FP_TOO_SHORT;
		if ((void *)(ip6 + 40) > end)
			return;
		p->verdict = FP_MALFORMED;
		if (ip6[0] >> 4 != 6)
			return;
		p->verdict = FP_NOT_UDP;
		if (ip6[6] != IPPROTO_UDP)
			return;
		l4 = l3 + 40;
		p->ipv6 = 1;
	} else {
		p->verdict = FP_NOT_UDP;
		return;
	}

	/* l4 <= 22 + 60: bounded, so the verifier can follow the pointer arithmetic below. */
	l4 &= 0xff;
	__u8 *udp = data + l4;
	p->verdict = FP_TOO_SHORT;
	if ((void *)(udp + 8) > end)
		return;
	if (cfg.port && ((udp[2] << 8) | udp[3]) != cfg.port) {
		p->verdict = FP_PORT;
		return;
	}

	__u8 *payload = udp + 8;
	int room5 = (void *)(payload + VENDOR_HEADER_LEN + SIG_LEN) <= end;
	int room0 = (void *)(payload + SIG_LEN) <= end;

	p->l3 = l3;
	p->l4 = l4;
	p->verdict = FP_REFLECT;
	if (room5) {
		__u8 *s = payload + VENDOR_HEADER_LEN;

		if ((cfg.signatures & (1 << FP_SIG_PROBEOT)) && sig_eq(s, "PROBEOT")) {
			p->sig = FP_SIG_PROBEOT;
			return;
		}
		if ((cfg.signatures & (1 << FP_SIG_DATAOT)) && sig_eq(s, "DATA:OT")) {
			p->sig = FP_SIG_DATAOT;
			return;
		}
		if ((cfg.signatures & (1 << FP_SIG_LATENCY)) && sig_eq(s, "LATENCY")) {
			p->sig = FP_SIG_LATENCY;
			return;
		}
	}
	if (room0) {
		if ((cfg.signatures & (1 << FP_SIG_RFC2544)) && sig_eq(payload, "RFC2544")) {
			p->sig = FP_SIG_RFC2544;
			return;
		}
		if ((cfg.signatures & (1 << FP_SIG_Y1564)) && sig_eq(payload, "Y.1564 ")) {
			p->sig = FP_SIG_Y1564;
			return;
		}
	}
	p->verdict = room5 ? FP_SIGNATURE : FP_TOO_SHORT;
}

static __always_inline void swap_bytes(__u8 *a, __u8 *b, int n)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i < n) {
			__u8 t = a[i];

			a[i] = b[i];
			b[i] = t;
		}
	}
}

/* RFC 1624: add (new - old) to a one's-complement checksum field. */
static __always_inline __u16 csum_adjust(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u32)new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/*
 * Puts the tag the driver holds as metadata back in front of the frame's ethertype (or inner tag),
 * so the reflection leaves with the VLAN and priority it came in with; moves l3 and l4 along.
 */
static __always_inline int push_tag(struct xdp_md *ctx, struct parsed *p, __be16 proto, __u16 tci)
{
	void *data, *end;
	__u8 *f;

	if (bpf_xdp_adjust_head(ctx, -4))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + 18 > end)
		return -1;
	f = data;
	__builtin_memmove(f, f + 4, 12);
	*(__be16 *)(f + 12) = proto;
	*(__be16 *)(f + 14) = bpf_htons(tci);
	p->l3 += 4;
	p->l4 += 4;
	return 0;
}

/* Mirrors ito.rewrite. Bounds were checked by classify; the verifier wants them again. */
static __always_inline int rewrite(void *data, void *end, struct parsed *p)
{
	__u8 *f = data;
	__u32 l3 = p->l3 & 0x3f, l4 = p->l4 & 0xff;

	if (data + 14 > end)
		return -1;
	swap_bytes(f, f + 6, 6);
	if (cfg.mode == FP_SWAP_MAC)
		return 0;
	if (p->ipv6) {
		__u8 *ip6 = data + l3;

		if ((void *)(ip6 + 40) > end)
			return -1;
		swap_bytes(ip6 + 8, ip6 + 24, 16);
	} else {
		__u8 *ip = data + l3;

		if ((void *)(ip + 20) > end)
			return -1;
		swap_bytes(ip + 12, ip + 16, 4);
		if (cfg.tos_toggle) {
			__u16 old = (ip[0] << 8) | ip[1];
			__u16 check = (ip[10] << 8) | ip[11];

			ip[1] ^= 0x01;
			check = csum_adjust(check, old, (ip[0] << 8) | ip[1]);
			ip[10] = check >> 8;
			ip[11] = check & 0xff;
		}
	}
	if (cfg.mode == FP_SWAP_ALL) {
		__u8 *udp = data + l4;

		if ((void *)(udp + 4) > end)
			return -1;
		swap_bytes(udp, udp + 2, 2);
	}
	return 0;
}

static __always_inline int reflect(struct xdp_md *ctx, int read_vlan_tag)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct parsed p = {};
	struct fp_xdp_counters *c;
	__u32 zero = 0, *held;
	__u64 bytes = bpf_xdp_get_buff_len(ctx);
	__be16 tag_proto = 0;
	__u16 tag_tci = 0;
	int meta_tag = 0;

	c = bpf_map_lookup_elem(&counters, &zero);
	if (!c)
		return XDP_PASS;
	if (read_vlan_tag && bpf_ksym_exists(bpf_xdp_metadata_rx_vlan_tag) &&
	    bpf_xdp_metadata_rx_vlan_tag(ctx, &tag_proto, &tag_tci) == 0) {
		meta_tag = 1;
		bytes += 4; /* counted as on the wire, as packet mode does */
	}
	c->rx_packets++;
	c->rx_bytes += bytes;

	classify(data, end, &p, meta_tag);
	if (p.verdict != FP_REFLECT) {
		if (p.verdict < FP_VERDICTS)
			c->drop[p.verdict]++;
		return XDP_PASS;
	}
	if (p.sig < FP_SIGNATURES)
		c->sig[p.sig]++;

	/* Only reflections get the tag back: a frame passed to the stack keeps it in metadata. */
	if (meta_tag) {
		if (push_tag(ctx, &p, tag_proto, tag_tci))
			return XDP_PASS;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
	}

	if (action == FP_ACTION_REDIRECT) {
		if (xsk_max_frame && bytes > xsk_max_frame) {
			c->too_long++;
			return XDP_PASS;
		}
		c->drop[FP_REFLECT]++;
		return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	}
	held = bpf_map_lookup_elem(&hold_tx, &zero);
	if (held && *held) {
		c->tx_held++;
		return XDP_DROP;
	}
	if (rewrite(data, end, &p))
		return XDP_PASS;
	c->tx_packets++;
	c->tx_bytes += bytes;
	return XDP_TX;
}

/* The reflector where the driver does not give XDP the receive VLAN tag. */
SEC("xdp.frags")
int fp_reflect(struct xdp_md *ctx)
{
	return reflect(ctx, 0);
}

/*
 * The reflector that reads the tag and puts it back into reflections. The verifier takes a metadata
 * kfunc only in a device-bound program, so the loader loads one of the two (the other not at all).
 */
SEC("xdp.frags")
int fp_reflect_vlan(struct xdp_md *ctx)
{
	return reflect(ctx, 1);
}

char LICENSE[] SEC("license") = "GPL";
