// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * postgres.bpf.c — PostgreSQL queries as the server parses them.
 *
 * Hook (shared/spec/MODULES.md §5): uprobe on pg_parse_query(const char *),
 * exported by the postgres binary (exec_simple_query, which upstream eCapture
 * hooks, is static in Debian's stripped build). It runs for every simple-
 * protocol query and for every extended-protocol Parse message, in the
 * backend process of the connection. The text is read at entry: on a
 * syntax error the function never returns (ereport longjmps), so a return
 * probe would miss exactly the queries that failed to parse.
 *
 * Output: struct rc_query (RC_KIND_PG_QUERY), retval 0 and sql_errno 0, the
 * SQL as payload (no terminating NUL), split into records of RC_CHUNK_MAX
 * bytes up to max_payload. The string's length is not an argument: a text
 * shorter than one chunk is read once (bpf_probe_read_user_str); a longer
 * one is measured first, up to PG_SCAN_MAX bytes (longer texts report
 * PG_SCAN_MAX as their length).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"
#include "rc_rec64.bpf.h"

/* Longest text measured (1024 reads of a chunk at most). */
#define PG_SCAN_STEP (RC_CHUNK_MAX - 1)
#define PG_SCAN_MAX (1024 * PG_SCAN_STEP)

struct pg_scan {
	__u64 buf;
	__u32 len; /* the string's length, once its NUL was found */
	__u32 found;
};

/*
 * Step i reads the bytes from (i + 1) * PG_SCAN_STEP on and stops at the
 * NUL. (sc is written only at the end: the verifier's walk of the loop
 * then sees the same state every turn.)
 */
static long pg_scan_step(__u32 i, struct pg_scan *sc)
{
	struct rc_rec64 *r = rc_rec64_scratch();
	__u64 off = ((__u64)i + 1) * PG_SCAN_STEP;
	long n;

	if (!r)
		return 1;
	n = bpf_probe_read_user_str(r->payload, RC_CHUNK_MAX, (void *)(sc->buf + off));
	if (n <= 0) {
		/* unreadable from here: the length is what was readable */
		sc->len = (__u32)off;
		sc->found = 1;
		return 1;
	}
	if (n < RC_CHUNK_MAX) {
		sc->len = (__u32)(off + n - 1);
		sc->found = 1;
		return 1;
	}
	return 0;
}

SEC("uprobe")
int rc_pg_parse_query(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 own = 0; /* rc_query.retval and .sql_errno: 0 */
	struct pg_scan sc = {};
	struct rc_rec64 *r;
	__u64 buf;
	__u32 len, send;
	long n;

	if (!rc_filter_pass(pid_tgid))
		return 0;
	r = rc_rec64_scratch();
	if (!r)
		return 0;
	buf = PT_REGS_PARM1(ctx);
	n = bpf_probe_read_user_str(r->payload, RC_CHUNK_MAX, (void *)buf);
	if (n <= 0) {
		struct rc_counters *cnt = rc_counters_get();

		if (cnt)
			cnt->lost++;
		return 0;
	}
	if (n < RC_CHUNK_MAX) {
		/* The common case: the whole text is in the scratch already. */
		len = (__u32)n - 1;
		r = rc_rec64_begin(pid_tgid, RC_KIND_PG_QUERY, &own, len);
		if (!r)
			return 0;
		send = len < max_payload ? len : max_payload;
		if (send > RC_CHUNK_MAX)
			send = RC_CHUNK_MAX;
		r->chunk.offset = 0;
		r->chunk.len = send;
		r->hdr.flags = RC_F_FIRST | RC_F_LAST;
		rc_output(rc_ring(), r, __builtin_offsetof(struct rc_rec64, payload) + send, send);
		return 0;
	}
	sc.buf = buf;
	bpf_loop(PG_SCAN_MAX / PG_SCAN_STEP - 1, pg_scan_step, &sc, 0);
	rc_emit_rec64(pid_tgid, RC_KIND_PG_QUERY, &own, buf, sc.found ? sc.len : PG_SCAN_MAX);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
