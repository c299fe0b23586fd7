/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Shared by the BPF programs (clang -target bpf) and the Zig library (@cImport). Zig asserts at
 * compile time that these layouts match abi.zig, so the two sides cannot drift.
 */
#ifndef FASTPATH_H
#define FASTPATH_H

#include <linux/types.h>

/* Why a frame was not reflected (FP_REFLECT: it was). Same order as abi.Verdict. */
enum fp_verdict {
	FP_REFLECT = 0,
	FP_TOO_SHORT = 1,
	FP_NOT_OURS = 2,
	FP_OUI = 3,
	FP_NOT_UDP = 4,
	FP_MALFORMED = 5,
	FP_PORT = 6,
	FP_SIGNATURE = 7,
	FP_VERDICTS = 8,
};

/* Same order as abi.Signature. */
enum fp_signature {
	FP_SIG_PROBEOT = 0,
	FP_SIG_DATAOT = 1,
	FP_SIG_LATENCY = 2,
	FP_SIG_RFC2544 = 3,
	FP_SIG_Y1564 = 4,
	FP_SIGNATURES = 5,
};

enum fp_swap {
	FP_SWAP_MAC = 0,
	FP_SWAP_MAC_IP = 1,
	FP_SWAP_ALL = 2,
};

/* What the XDP program does with a frame it accepts. */
enum fp_action {
	FP_ACTION_TX = 0,	/* rewrite in the kernel and XDP_TX */
	FP_ACTION_REDIRECT = 1,	/* hand to the AF_XDP socket of the receive queue */
};

/* The rulebook's settings (abi.ItoConfig). `port` is in host byte order; 0 = any. */
struct fp_ito_config {
	__u8 our_mac[6];
	__u8 oui[3];
	__u8 oui_filter;
	__u16 port;
	__u8 mode;
	__u8 tos_toggle;
	__u8 signatures;
	__u8 _pad;
};

/* Per-CPU counters of the XDP program: one entry of a BPF_MAP_TYPE_PERCPU_ARRAY. */
struct fp_xdp_counters {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 sig[FP_SIGNATURES];
	__u64 drop[FP_VERDICTS];	/* drop[FP_REFLECT] counts frames redirected to AF_XDP */
	__u64 too_long;			/* afxdp mode: longer than a UMEM chunk, passed to the stack */
	__u64 tx_held;			/* xdp mode: reflections dropped while the veth peer could not take them */
};

#endif /* FASTPATH_H */
