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

/* One BPF_PROG_TEST_RUN; 0 or a negative errno (errno is set too). */
int fp_bpf_test_run(int prog_fd, const void *in, __u32 in_len, void *out, __u32 *out_len, __u32 *retval)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = in_len, .data_out = out,
		    .data_size_out = *out_len, .repeat = 1);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	if (err)
		return err;
	*out_len = opts.data_size_out;
	*retval = opts.retval;
	return 0;
}

/* XDP_ATTACHED_* of the program on `ifindex`, or a negative errno. */
int fp_bpf_xdp_attach_mode(int ifindex)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, opts);
	int err = bpf_xdp_query(ifindex, 0, &opts);

	return err ? err : opts.attach_mode;
}
