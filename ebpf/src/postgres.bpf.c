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
 * bytes up to max_payload (include/rc_str.bpf.h). The string's length is
 * not an argument: a text shorter than one chunk is read once
 * (bpf_probe_read_user_str); a longer one is measured first, exactly up to
 * 64 MiB (longer texts report 64 MiB as their length).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"
#include "rc_rec64.bpf.h"
#include "rc_str.bpf.h"

SEC("uprobe")
int rc_pg_parse_query(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 own = 0; /* rc_query.retval and .sql_errno: 0 */

	if (!rc_filter_pass(pid_tgid))
		return 0;
	rc_emit_str(pid_tgid, RC_KIND_PG_QUERY, &own, PT_REGS_PARM1(ctx));
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
