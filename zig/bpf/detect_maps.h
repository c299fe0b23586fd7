/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The maps the detectors (detect.bpf.c) fill and the scheduler (sched.bpf.c) reads: declared the
 * same in both objects; the loader makes the scheduler's reuse the detectors' (bpf_map__reuse_fd).
 */
#ifndef FASTPATH_DETECT_MAPS_H
#define FASTPATH_DETECT_MAPS_H

#include "detect.h"

/* Per-thread evidence: task storage, freed with the thread, so it never grows and a reused TID
 * never inherits a class. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fp_task_sig);
} task_sig SEC(".maps");

/* Roles of thread groups (tgid -> fp_role bits): the game, the compositor, the audio server and its
 * clients, written by the library. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} roles SEC(".maps");

static __always_inline __u32 roles_of(__u32 tgid)
{
	__u32 *r = bpf_map_lookup_elem(&roles, &tgid);

	return r ? *r : 0;
}

#endif
