/**
 * The whole C ABI of libfastpath, declared once. Each parameter carries its C type.
 * Statuses are `fp_status` (0 = ok); see `unwrap` in error.ts.
 */
export const symbols = {
  /** uint32_t fp_abi_version(void) */
  fp_abi_version: { parameters: [], result: "u32" },
  /** const char *fp_layout_json(void) — struct offsets and enum values */
  fp_layout_json: { parameters: [], result: "pointer" },
  /** const char *fp_last_error(void) — message behind the last non-zero status on this thread */
  fp_last_error: { parameters: [], result: "pointer" },
  /** uint32_t fp_libbpf_version(void) — major << 16 | minor of the libbpf linked in; 0 = none */
  fp_libbpf_version: { parameters: [], result: "u32" },

  /** fp_status fp_reflector_check(const struct fp_reflector_options *opts) — what start checks first, opening nothing */
  fp_reflector_check: { parameters: ["buffer"], result: "i32" },
  fp_reflector_start: {
    parameters: [
      "buffer", // const struct fp_reflector_options *opts
      "buffer", // struct fp_reflector **out
    ],
    result: "i32",
  },
  fp_reflector_counters: {
    parameters: [
      "pointer", // struct fp_reflector *r
      "buffer", // struct fp_counters **out (array, one per worker)
    ],
    result: "u32", // number of workers
  },
  fp_reflector_info: {
    parameters: [
      "pointer", // struct fp_reflector *r
      "buffer", // struct fp_reflector_info *out
    ],
    result: "void",
  },
  /** void fp_reflector_stop(struct fp_reflector *r) — stop; counters stay readable until close */
  fp_reflector_stop: { parameters: ["pointer"], result: "void" },
  /** void fp_reflector_refresh(struct fp_reflector *r) — bring counters up to date (xdp mode) */
  fp_reflector_refresh: { parameters: ["pointer"], result: "void" },
  /** uint32_t fp_reflector_state(struct fp_reflector *r) */
  fp_reflector_state: { parameters: ["pointer"], result: "u32" },
  /** const char *fp_reflector_failure(struct fp_reflector *r) */
  fp_reflector_failure: { parameters: ["pointer"], result: "pointer" },
  /** void fp_reflector_close(struct fp_reflector *r) — NULL is a no-op */
  fp_reflector_close: { parameters: ["pointer"], result: "void" },

  fp_probe_start: {
    parameters: [
      "buffer", // const struct fp_probe_options *opts
      "buffer", // struct fp_probe **out
    ],
    result: "i32",
  },
  /** fp_status fp_probe_check(const struct fp_probe_options *opts) — what start checks first, opening nothing */
  fp_probe_check: { parameters: ["buffer"], result: "i32" },
  /** uint32_t fp_probe_min_frame_size(const struct fp_probe_options *opts) — what size "min" becomes */
  fp_probe_min_frame_size: { parameters: ["buffer"], result: "u32" },
  /** struct fp_probe_stats *fp_probe_stats(struct fp_probe *p) — live */
  fp_probe_stats: { parameters: ["pointer"], result: "pointer" },
  /** void fp_probe_stop(struct fp_probe *p) */
  fp_probe_stop: { parameters: ["pointer"], result: "void" },
  fp_probe_wait: {
    parameters: [
      "pointer", // struct fp_probe *p
      "u32", // uint32_t timeout_ms
    ],
    result: "i32", // 1 = finished
    nonblocking: true,
  },
  /** const char *fp_probe_failure(struct fp_probe *p) */
  fp_probe_failure: { parameters: ["pointer"], result: "pointer" },
  /** void fp_probe_close(struct fp_probe *p) — NULL is a no-op */
  fp_probe_close: { parameters: ["pointer"], result: "void" },

  fp_xdp_pass: {
    parameters: [
      "buffer", // const char *netns ("" = current)
      "buffer", // const char *ifname
      "u8", // uint8_t on
    ],
    result: "i32",
  },
  fp_xdp_features: {
    parameters: [
      "buffer", // const char *netns ("" = current)
      "buffer", // const char *ifname
      "buffer", // uint64_t *features — NETDEV_XDP_ACT_* bits, 0 before Linux 6.3
      "buffer", // uint32_t *zc_max_segs
      "buffer", // uint8_t *vlan_tag — 1: the driver hands XDP the receive VLAN tag (Linux 6.8+)
    ],
    result: "i32",
  },
  fp_run_lock: {
    parameters: [
      "buffer", // const char *name — a file in /run/fastpath
      "buffer", // int32_t *out — its descriptor
    ],
    result: "i32", // busy while another process holds it
  },
  /** void fp_run_unlock(int32_t fd, const char *name, uint8_t remove) */
  fp_run_unlock: { parameters: ["i32", "buffer", "u8"], result: "void" },
  fp_neigh_solicit: {
    parameters: [
      "buffer", // const char *netns ("" = current)
      "buffer", // const char *ifname
      "buffer", // const uint8_t ip[16]
      "u8", // uint8_t ipv6
    ],
    result: "i32",
  },

  /** fp_status fp_sched_preflight(void) — could a scheduler attach now? (sched_ext, root, none attached) */
  fp_sched_preflight: { parameters: [], result: "i32" },
  fp_sched_read_attached: {
    parameters: [
      "buffer", // struct fp_sched_counters *out — of the fastpath scheduler attached by any process
    ],
    result: "i32",
  },
  /** fp_status fp_sched_check(const struct fp_sched_options *opts) — what start checks first, opening nothing */
  fp_sched_check: { parameters: ["buffer"], result: "i32" },
  /** fp_status fp_sched_check_foreground(const uint32_t *tgids, uint32_t n) — none init or a kernel thread */
  fp_sched_check_foreground: { parameters: ["buffer", "u32"], result: "i32" },
  fp_sched_start: {
    parameters: [
      "buffer", // const struct fp_sched_options *opts
      "buffer", // struct fp_scheduler **out
    ],
    result: "i32",
  },
  /** struct fp_sched_counters *fp_sched_counters(struct fp_scheduler *s) — live, folded every 100 ms */
  fp_sched_counters: { parameters: ["pointer"], result: "pointer" },
  /** void fp_sched_refresh(struct fp_scheduler *s) — fold the per-CPU counters now */
  fp_sched_refresh: { parameters: ["pointer"], result: "void" },
  /** uint32_t fp_sched_state(struct fp_scheduler *s) — 1 running, 2 stopped, 3 ejected */
  fp_sched_state: { parameters: ["pointer"], result: "u32" },
  /** const struct fp_sched_exit *fp_sched_exit_info(struct fp_scheduler *s) */
  fp_sched_exit_info: { parameters: ["pointer"], result: "pointer" },
  fp_sched_set_foreground: {
    parameters: [
      "pointer", // struct fp_scheduler *s
      "buffer", // const uint32_t *tgids
      "u32", // uint32_t n
      "buffer", // const char *names - NUL-separated process names, looked up again at each exec
      "u32", // uint32_t names_len
      "u32", // uint32_t weight_pct
    ],
    result: "i32",
  },
  fp_sched_foreground: {
    parameters: [
      "pointer", // struct fp_scheduler *s
      "buffer", // uint32_t *out
      "u32", // uint32_t cap
    ],
    result: "u32", // how many thread groups are foreground now (may exceed cap)
  },
  fp_sched_foreground_left_out: {
    parameters: ["pointer"], // struct fp_scheduler *s
    result: "u32", // processes the names match that a full foreground set (64) left out
  },
  fp_sched_wait: {
    parameters: [
      "pointer", // struct fp_scheduler *s
      "u32", // uint32_t timeout_ms
    ],
    result: "i32", // 1 = ejected or stopped
    nonblocking: true,
  },
  fp_sched_set_knobs: {
    parameters: [
      "pointer", // struct fp_scheduler *s
      "buffer", // const struct fp_sched_options *opts — its knobs; the modes stay as started
    ],
    result: "i32",
  },
  /** struct fp_detector *fp_sched_detector(struct fp_scheduler *s) — its detectors (owned by it), or NULL */
  fp_sched_detector: { parameters: ["pointer"], result: "pointer" },
  /** void fp_sched_stop(struct fp_scheduler *s) — detach; exit info stays readable until close */
  fp_sched_stop: { parameters: ["pointer"], result: "void" },
  /** void fp_sched_close(struct fp_scheduler *s) — NULL is a no-op */
  fp_sched_close: { parameters: ["pointer"], result: "void" },

  fp_detect_start: {
    parameters: [
      "buffer", // const struct fp_detect_options *opts
      "buffer", // struct fp_detector **out
    ],
    result: "i32",
  },
  /** void fp_detect_status(struct fp_detector *d, struct fp_detect_status *out) */
  fp_detect_status: { parameters: ["pointer", "buffer"], result: "void" },
  fp_detect_threads: {
    parameters: [
      "pointer", // struct fp_detector *d
      "buffer", // struct fp_detect_thread *out
      "u32", // uint32_t cap
    ],
    result: "u32", // how many were copied
  },
  fp_detect_set_knobs: {
    parameters: [
      "pointer", // struct fp_detector *d
      "buffer", // const struct fp_detect_knobs *knobs
    ],
    result: "i32",
  },
  fp_detect_read_attached: {
    parameters: [
      "buffer", // struct fp_detect_status *out — of the detectors any process runs now
      "buffer", // struct fp_detect_thread *threads
      "u32", // uint32_t cap
      "buffer", // uint32_t *n — threads copied
    ],
    result: "i32",
  },
  /** uint64_t fp_monotonic_ns(void) — CLOCK_MONOTONIC, the clock of the detectors' times */
  fp_monotonic_ns: { parameters: [], result: "u64" },
  /** void fp_detect_close(struct fp_detector *d) — only for fp_detect_start's; NULL is a no-op */
  fp_detect_close: { parameters: ["pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The ABI this TypeScript was written against; the library must report the same. */
export const ABI_VERSION = 12;
