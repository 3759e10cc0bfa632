// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * mysqld.bpf.c — MariaDB/MySQL queries as the server dispatches them.
 *
 * Hooks (shared/spec/MODULES.md §4): uprobe + uretprobe on
 * dispatch_command(enum_server_command command, THD *thd, char *packet,
 * uint packet_length, ...) (MariaDB 10.5+: the mangled name starts with
 * _Z16dispatch_command19enum_server_commandP3THDPcj). For COM_QUERY and
 * COM_STMT_PREPARE the packet is the SQL text.
 *
 * The SQL must be read at entry: the packet is the connection's network
 * buffer, and the reply (result set, OK or error packet) is written over
 * it before dispatch_command returns. The return value (al) and the
 * statement's error number (THD's Diagnostics_area) are only known at
 * return. So the entry copies the text into staging units (a pool of
 * RC_CHUNK_MAX-byte records shared by all threads, taken from a free queue)
 * and saves the call by pid_tgid (each connection is a thread of one
 * process); the return fills in retval and sql_errno and emits the units as
 * struct rc_query records (RC_KIND_MYSQL_QUERY), then frees them.
 *
 * Limits: a query is staged up to min(max_payload, MY_CALL_UNITS chunks);
 * with the pool exhausted (MY_UNITS chunks in flight across all threads)
 * the rest of a query is not staged (counted lost, its cut shows in
 * total_len). A call always yields at least one record (the header with no
 * payload if nothing could be staged).
 *
 * Diagnostics_area offsets (load-time globals, 0 = unknown: sql_errno 0)
 * are decoded by user space from the exported accessor
 * thd_get_error_number: `mov disp32(%rdi),%rax; mov disp8(%rax),%eax`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"

/* Offset in THD of its Diagnostics_area pointer; 0: not known. */
const volatile __u32 thd_da_off = 0;
/* Offset of sql_errno (u32) in the Diagnostics_area. */
const volatile __u32 da_errno_off = 0;

#define COM_QUERY 3
#define COM_STMT_PREPARE 22

#define MY_UNITS 256       /* staging chunks for all threads: 4 MiB */
#define MY_CALL_UNITS 64   /* chunks per query: 1 MiB */
#define MY_NO_UNIT 0xffffffffU

/* A staged chunk: laid out as the record it becomes at return. */
struct my_unit {
	struct rc_query rec;
	__u8 payload[RC_CHUNK_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MY_UNITS);
	__type(key, __u32);
	__type(value, struct my_unit);
} rc_my_units SEC(".maps");

/* Indexes of the free units that were used before. */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, MY_UNITS);
	__type(value, __u32);
} rc_my_free SEC(".maps");

/* Units never used yet: indexes from *rc_my_fresh up are free. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rc_my_fresh SEC(".maps");

/* A query between dispatch_command's entry and return. */
struct my_call {
	struct rc_hdr hdr;   /* filled at entry (time, pid, uid, comm) */
	__u64 thd;
	__u32 total_len;     /* packet_length */
	__u32 staged;        /* bytes staged in units[0..nunits) */
	__u32 nunits;
	__u32 call_seq;      /* set at return */
	__u32 units[MY_CALL_UNITS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct my_call);
} rc_my_calls SEC(".maps");

/* Per CPU: the call being built at entry, or being emitted at return. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct my_call);
} rc_my_call_scratch SEC(".maps");

static __always_inline struct my_call *call_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rc_my_call_scratch, &zero);
}

static __always_inline void count_lost(__u64 bytes)
{
	struct rc_counters *cnt = rc_counters_get();

	if (cnt) {
		cnt->lost++;
		cnt->lost_bytes += bytes;
	}
}

static __always_inline __u32 unit_alloc(void)
{
	__u64 cur, *fresh;
	__u32 idx, zero = 0;

	if (bpf_map_pop_elem(&rc_my_free, &idx) == 0)
		return idx;
	fresh = bpf_map_lookup_elem(&rc_my_fresh, &zero);
	if (!fresh)
		return MY_NO_UNIT;
	/* Take the next fresh index (compare-and-swap: the objects are built
	 * for the BPF ISA v1, whose fetch-and-add returns nothing). */
#pragma unroll
	for (int k = 0; k < 8; k++) {
		cur = *fresh;
		if (cur >= MY_UNITS)
			return MY_NO_UNIT;
		if (__sync_val_compare_and_swap(fresh, cur, cur + 1) == cur)
			return (__u32)cur;
	}
	return MY_NO_UNIT;
}

static __always_inline void unit_free(__u32 idx)
{
	bpf_map_push_elem(&rc_my_free, &idx, 0);
}

/* i (checked < MY_CALL_UNITS) as an index the verifier sees bounded: the
 * mask would be dropped by the compiler after the check without the barrier. */
static __always_inline __u32 unit_slot(__u32 i)
{
	barrier_var(i);
	return i & (MY_CALL_UNITS - 1);
}

struct my_stage {
	__u64 packet;
	__u32 send_len; /* bytes to stage */
};

/* Stages chunk i of the packet into a unit of the call scratch. */
static long stage_chunk(__u32 i, struct my_stage *st)
{
	struct my_call *c = call_scratch();
	struct my_unit *u;
	__u32 off, len, idx;

	if (!c || i >= MY_CALL_UNITS)
		return 1;
	off = i * RC_CHUNK_MAX;
	if (off >= st->send_len)
		return 1;
	len = st->send_len - off;
	if (len > RC_CHUNK_MAX)
		len = RC_CHUNK_MAX;
	idx = unit_alloc();
	if (idx == MY_NO_UNIT)
		return 1;
	u = bpf_map_lookup_elem(&rc_my_units, &idx);
	if (!u)
		return 1;
	if (bpf_probe_read_user(u->payload, len, (void *)(st->packet + off))) {
		unit_free(idx);
		return 1;
	}
	c->units[unit_slot(i)] = idx;
	c->nunits = i + 1;
	c->staged = off + len;
	return 0;
}

/* Frees unit i of the call scratch. */
static long free_chunk(__u32 i, void *unused)
{
	struct my_call *c = call_scratch();

	if (!c || i >= c->nunits || i >= MY_CALL_UNITS)
		return 1;
	unit_free(c->units[unit_slot(i)]);
	return 0;
}

/* Frees the units of the call in the call scratch. */
static __always_inline void free_call_units(void)
{
	int unused = 0;

	bpf_loop(MY_CALL_UNITS, free_chunk, &unused, 0);
}

SEC("uprobe")
int rc_mysql_dispatch_entry(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct my_stage st = {};
	struct my_call *c, *old;
	__u32 command, len, send, nr;

	if (!rc_filter_pass(pid_tgid))
		return 0;
	command = (__u32)PT_REGS_PARM1(ctx);
	if (command != COM_QUERY && command != COM_STMT_PREPARE)
		return 0;
	c = call_scratch();
	if (!c)
		return 0;
	old = bpf_map_lookup_elem(&rc_my_calls, &pid_tgid);
	if (old) {
		/* This thread's previous call never returned (probe attached
		 * mid-call, or the thread unwound): give its units back. */
		__builtin_memcpy(c, old, sizeof(*c));
		free_call_units();
		bpf_map_delete_elem(&rc_my_calls, &pid_tgid);
	}
	len = (__u32)PT_REGS_PARM4(ctx);
	rc_fill_hdr(&c->hdr, RC_KIND_MYSQL_QUERY, pid_tgid);
	c->thd = PT_REGS_PARM2(ctx);
	c->total_len = len;
	c->staged = 0;
	c->nunits = 0;
	c->call_seq = 0;

	send = len < max_payload ? len : max_payload;
	if (send > MY_CALL_UNITS * RC_CHUNK_MAX)
		send = MY_CALL_UNITS * RC_CHUNK_MAX;
	st.packet = PT_REGS_PARM3(ctx);
	st.send_len = send;
	nr = (send + RC_CHUNK_MAX - 1) / RC_CHUNK_MAX;
	if (nr == 1)
		stage_chunk(0, &st);
	else if (nr)
		bpf_loop(nr, stage_chunk, &st, 0);
	if (c->staged < send)
		count_lost(send - c->staged);

	if (bpf_map_update_elem(&rc_my_calls, &pid_tgid, c, BPF_ANY)) {
		free_call_units();
		count_lost(c->staged);
	}
	return 0;
}

struct my_emit {
	void *ring;
	__s32 retval;
	__u32 sql_errno;
};

/* Emits staged unit i of the call scratch as a record and frees it. */
static long emit_chunk(__u32 i, struct my_emit *e)
{
	struct my_call *c = call_scratch();
	struct my_unit *u;
	__u32 off, len, idx;

	if (!c || i >= c->nunits || i >= MY_CALL_UNITS)
		return 1;
	idx = c->units[unit_slot(i)];
	u = bpf_map_lookup_elem(&rc_my_units, &idx);
	if (!u)
		return 1;
	off = i * RC_CHUNK_MAX;
	len = c->staged > off ? c->staged - off : 0;
	if (len > RC_CHUNK_MAX)
		len = RC_CHUNK_MAX;
	__builtin_memcpy(&u->rec.hdr, &c->hdr, sizeof(u->rec.hdr));
	u->rec.hdr.flags = (i == 0 ? RC_F_FIRST : 0) | (i + 1 == c->nunits ? RC_F_LAST : 0);
	u->rec.chunk.total_len = c->total_len;
	u->rec.chunk.offset = off;
	u->rec.chunk.len = len;
	u->rec.chunk.call_seq = c->call_seq;
	u->rec.retval = e->retval;
	u->rec.sql_errno = e->sql_errno;
	rc_output(e->ring, u, sizeof(u->rec) + len, len);
	unit_free(idx);
	return 0;
}

SEC("uretprobe")
int rc_mysql_dispatch_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct my_emit e = {};
	struct my_call *found, *c;
	struct rc_data_scratch *s;
	__u64 da = 0;
	__u32 zero = 0;

	found = bpf_map_lookup_elem(&rc_my_calls, &pid_tgid);
	if (!found)
		return 0;
	c = call_scratch();
	s = bpf_map_lookup_elem(&rc_data_scratch, &zero);
	if (!c || !s) {
		bpf_map_delete_elem(&rc_my_calls, &pid_tgid);
		return 0;
	}
	__builtin_memcpy(c, found, sizeof(*c));
	bpf_map_delete_elem(&rc_my_calls, &pid_tgid);

	e.ring = rc_ring();
	/* dispatch_command_return (an enum in a byte): sign-extend al. */
	e.retval = (__s32)(__s8)(PT_REGS_RC(ctx) & 0xff);
	if (thd_da_off && c->thd &&
	    !bpf_probe_read_user(&da, sizeof(da), (void *)(c->thd + thd_da_off)) && da)
		bpf_probe_read_user(&e.sql_errno, sizeof(e.sql_errno), (void *)(da + da_errno_off));
	s->call_seq++;
	c->call_seq = s->call_seq;

	if (c->nunits == 0) {
		/* Nothing staged (empty query, or no free unit): the header alone. */
		struct rc_query *q = (struct rc_query *)&s->rec;

		__builtin_memcpy(&q->hdr, &c->hdr, sizeof(q->hdr));
		q->hdr.flags = RC_F_FIRST | RC_F_LAST;
		q->chunk.total_len = c->total_len;
		q->chunk.offset = 0;
		q->chunk.len = 0;
		q->chunk.call_seq = s->call_seq;
		q->retval = e.retval;
		q->sql_errno = e.sql_errno;
		rc_output(e.ring, q, sizeof(*q), 0);
		return 0;
	}
	if (c->nunits == 1)
		emit_chunk(0, &e);
	else
		bpf_loop(MY_CALL_UNITS, emit_chunk, &e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
