// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * gen.bpf.c — a synthetic record source for the kernel→user capacity test.
 *
 * On every getppid() made by the harness's trigger thread (`target_tid`), a
 * raw tracepoint on sys_enter emits `batch` TLS data records (struct rc_data
 * + `payload_len` bytes, laid out as in ../../ebpf/include/records.h) into
 * this CPU's ring buffer, exactly as rcapture's probes do: copied from a
 * per-CPU scratch with bpf_ringbuf_output, no wakeup unless the ring already
 * holds `wakeup_bytes`. Records that do not fit are counted, never hidden.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "records.h"

#define GEN_PAYLOAD_MAX 4096
#define GEN_NR_GETPPID 110 /* x86_64 */

const volatile __u32 target_tid = 0;
const volatile __u32 batch = 256;
const volatile __u32 payload_len = 256;
const volatile __u32 wakeup_bytes = 64 * 1024;
/* 0: force a wakeup on every record while the backlog is >= wakeup_bytes
 * (rcapture's former policy); 1: only on the record that crosses it (rc_output's). */
const volatile __u32 wake_on_crossing = 0;

struct gen_inner_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* set to the number of possible CPUs by the loader */
	__type(key, __u32);
	__array(values, struct gen_inner_ring);
} gen_rings SEC(".maps");

/* Per-CPU: [0] records emitted, [1] records that could not be reserved. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} gen_counts SEC(".maps");

struct gen_scratch {
	struct rc_data rec;
	__u8 payload[GEN_PAYLOAD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_scratch);
} gen_scratch SEC(".maps");

struct gen_loop {
	struct gen_scratch *s;
	void *ring;
	__u64 *emitted;
	__u64 *lost;
	__u32 size;
};

static long gen_one(__u32 i, struct gen_loop *l)
{
	struct gen_scratch *s = l->s;
	__u64 flags, avail;

	s->rec.hdr.ts_ns = bpf_ktime_get_boot_ns();
	s->rec.chunk.call_seq++;
	s->rec.direction = i & 1;
	avail = bpf_ringbuf_query(l->ring, BPF_RB_AVAIL_DATA);
	if (wake_on_crossing)
		flags = avail < wakeup_bytes && avail + l->size >= wakeup_bytes ?
				BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	else
		flags = avail >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (l->size <= sizeof(*s) && bpf_ringbuf_output(l->ring, s, l->size, flags) == 0)
		(*l->emitted)++;
	else
		(*l->lost)++;
	return 0;
}

/* Printable payload text, written once per CPU. */
static long gen_fill(__u32 i, struct gen_loop *l)
{
	struct gen_scratch *s = l->s;

	__u32 at = i & (GEN_PAYLOAD_MAX - 1); /* a mask the verifier can see */

	s->payload[at] = (at & 63) == 63 ? '\n' : 'a' + at % 26;
	return 0;
}

SEC("raw_tp/sys_enter")
int gen_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	const __u64 *args = (const __u64 *)ctx;
	__u64 pid_tgid;
	__u32 zero = 0, one = 1, cpu, len;
	struct gen_loop l = {};
	struct gen_scratch *s;

	if ((long)args[1] != GEN_NR_GETPPID)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)pid_tgid != target_tid)
		return 0;
	s = bpf_map_lookup_elem(&gen_scratch, &zero);
	l.emitted = bpf_map_lookup_elem(&gen_counts, &zero);
	l.lost = bpf_map_lookup_elem(&gen_counts, &one);
	if (!s || !l.emitted || !l.lost)
		return 0;
	cpu = bpf_get_smp_processor_id();
	l.ring = bpf_map_lookup_elem(&gen_rings, &cpu);
	if (!l.ring) {
		*l.lost += batch;
		return 0;
	}
	len = payload_len < GEN_PAYLOAD_MAX ? payload_len : GEN_PAYLOAD_MAX;
	l.s = s;
	if (!s->payload[0])
		bpf_loop(GEN_PAYLOAD_MAX, gen_fill, &l, 0);
	l.size = sizeof(struct rc_data) + len;

	/* A loopback TCP connection 127.0.0.1:40000 -> 127.0.0.1:8443, fd 7. */
	s->rec.hdr.kind = RC_KIND_TLS_DATA;
	s->rec.hdr.flags = RC_F_FIRST | RC_F_LAST;
	s->rec.hdr.uid = (__u32)bpf_get_current_uid_gid();
	s->rec.hdr.pid = (__u32)(pid_tgid >> 32);
	s->rec.hdr.tid = (__u32)pid_tgid;
	__builtin_memset(s->rec.hdr.comm, 0, sizeof(s->rec.hdr.comm));
	bpf_get_current_comm(s->rec.hdr.comm, sizeof(s->rec.hdr.comm));
	s->rec.chunk.total_len = len;
	s->rec.chunk.offset = 0;
	s->rec.chunk.len = len;
	s->rec.sock = 0xffff888000001000ULL;
	s->rec.fd = 7;
	__builtin_memset(s->rec._pad, 0, sizeof(s->rec._pad));
	__builtin_memset(&s->rec.tuple, 0, sizeof(s->rec.tuple));
	s->rec.tuple.family = 2;
	s->rec.tuple.sport = 40000;
	s->rec.tuple.dport = 8443;
	s->rec.tuple.saddr[0] = 127;
	s->rec.tuple.saddr[3] = 1;
	s->rec.tuple.daddr[0] = 127;
	s->rec.tuple.daddr[3] = 1;

	bpf_loop(batch, gen_one, &l, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
