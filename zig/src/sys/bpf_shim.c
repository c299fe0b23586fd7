// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The libbpf calls that take option structs (LIBBPF_OPTS), which Zig's C translation cannot build.
 * Plain C, no state; called from bpf.zig.
 */
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <errno.h>

struct bpf_object *fp_bpf_open_mem(const void *buf, size_t len, const char *name)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name);
	return bpf_object__open_mem(buf, len, &opts);
}

/* BPF_PROG_TEST_RUN, `repeat` runs on the same data; 0 or a negative errno (errno is set too).
 * `duration`: the kernel's mean time per run in ns (its clock read included). */
int fp_bpf_test_run(int prog_fd, const void *in, __u32 in_len, void *out, __u32 *out_len, __u32 repeat,
		    __u32 *retval, __u32 *duration)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = in_len, .data_out = out,
		    .data_size_out = *out_len, .repeat = repeat);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	if (err)
		return err;
	*out_len = opts.data_size_out;
	*retval = opts.retval;
	*duration = opts.duration;
	return 0;
}

/* Runs a loaded SEC("syscall") program once, with no context: its return value, or a negative errno. */
int fp_bpf_run_syscall(int prog_fd)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	return err ? err : (int)opts.retval;
}

/* XDP_ATTACHED_* of the program on `ifindex`, or a negative errno. */
int fp_bpf_xdp_attach_mode(int ifindex)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, opts);
	int err = bpf_xdp_query(ifindex, 0, &opts);

	return err ? err : opts.attach_mode;
}

/* The device's XDP features (NETDEV_XDP_ACT_* bits; 0 when the kernel cannot say, before 6.3) and the
 * most fragments its AF_XDP zero-copy takes; 0 or a negative errno. */
int fp_bpf_xdp_features(int ifindex, __u64 *features, __u32 *zc_max_segs)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, opts);
	int err = bpf_xdp_query(ifindex, 0, &opts);

	if (err)
		return err;
	*features = opts.feature_flags;
	*zc_max_segs = opts.xdp_zc_max_segs;
	return 0;
}

/* Name, type and map ids of a loaded program (struct bpf_prog_info has bitfields Zig cannot see). */
int fp_bpf_prog_maps(int prog_fd, char name[16], __u32 *type, __u32 *map_ids, __u32 *nr_maps)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	int err;

	info.nr_map_ids = *nr_maps;
	info.map_ids = (__u64)(unsigned long)map_ids;
	err = bpf_prog_get_info_by_fd(prog_fd, &info, &len);
	if (err)
		return err;
	__builtin_memcpy(name, info.name, 16);
	*type = info.type;
	*nr_maps = info.nr_map_ids < *nr_maps ? info.nr_map_ids : *nr_maps;
	return 0;
}

/* Name, type, value size and BTF object id of a map. */
int fp_bpf_map_about(int map_fd, char name[16], __u32 *type, __u32 *value_size, __u32 *btf_id)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int err = bpf_map_get_info_by_fd(map_fd, &info, &len);

	if (err)
		return err;
	__builtin_memcpy(name, info.name, 16);
	*type = info.type;
	*value_size = info.value_size;
	*btf_id = info.btf_id;
	return 0;
}
