// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * floor.bpf.c — the uprobe floor: the cheapest possible program on the same
 * eight attach points as rcapture's OpenSSL probes (entry and return of
 * SSL_write, SSL_write_ex, SSL_read, SSL_read_ex). Each program only bumps
 * its slot of a per-CPU array, so a run with these attached measures what
 * the uprobe/uretprobe traps alone cost the traced process.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* Slots of floor_hits, one per program (same order as the harness). */
enum floor_slot {
	FLOOR_WRITE_ENTRY,
	FLOOR_WRITE_RETURN,
	FLOOR_WRITE_EX_ENTRY,
	FLOOR_WRITE_EX_RETURN,
	FLOOR_READ_ENTRY,
	FLOOR_READ_RETURN,
	FLOOR_READ_EX_ENTRY,
	FLOOR_READ_EX_RETURN,
	FLOOR_SLOTS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOOR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} floor_hits SEC(".maps");

static __always_inline int hit(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&floor_hits, &slot);

	if (n)
		(*n)++;
	return 0;
}

SEC("uprobe")
int floor_write_entry(void *ctx) { return hit(FLOOR_WRITE_ENTRY); }
SEC("uretprobe")
int floor_write_return(void *ctx) { return hit(FLOOR_WRITE_RETURN); }
SEC("uprobe")
int floor_write_ex_entry(void *ctx) { return hit(FLOOR_WRITE_EX_ENTRY); }
SEC("uretprobe")
int floor_write_ex_return(void *ctx) { return hit(FLOOR_WRITE_EX_RETURN); }
SEC("uprobe")
int floor_read_entry(void *ctx) { return hit(FLOOR_READ_ENTRY); }
SEC("uretprobe")
int floor_read_return(void *ctx) { return hit(FLOOR_READ_RETURN); }
SEC("uprobe")
int floor_read_ex_entry(void *ctx) { return hit(FLOOR_READ_EX_ENTRY); }
SEC("uretprobe")
int floor_read_ex_return(void *ctx) { return hit(FLOOR_READ_EX_RETURN); }

char LICENSE[] SEC("license") = "Dual MIT/GPL";
