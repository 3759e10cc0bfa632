/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * rc_str.bpf.h — a NUL-terminated user string (a bash command line, an SQL
 * text) sent whole as 64-byte-header records (struct rc_bash, struct
 * rc_query: include/rc_rec64.bpf.h), in chunks of at most RC_CHUNK_MAX
 * bytes, up to max_payload bytes. Include after rc_rec64.bpf.h.
 *
 * The string's length must be in the first record (chunk.total_len), so a
 * string of RC_CHUNK_MAX bytes or more is measured first (bpf_loop over
 * RC_CHUNK_MAX windows, up to RC_STR_SCAN_MAX of them) and then read again
 * chunk by chunk; a shorter one (the usual case) costs one read.
 */
#ifndef RCAPTURE_STR_BPF_H
#define RCAPTURE_STR_BPF_H

/* Strings are measured exactly up to (RC_STR_SCAN_MAX + 1) * RC_CHUNK_MAX
 * bytes (64 MiB); a longer one reports that as its total_len. */
#define RC_STR_SCAN_MAX 4095

/* The reads below take RC_CHUNK_MAX + 1 bytes (the string and its NUL)
 * into rc_rec64.payload, which lies inside rc_data_scratch's value. */
_Static_assert(sizeof(__u32) * 2 + __builtin_offsetof(struct rc_rec64, payload) + RC_CHUNK_MAX + 1 <=
		       sizeof(struct rc_data_scratch),
	       "a string window fits in rc_data_scratch");

struct rc_str_scan {
	__u64 str;   /* user address of the string */
	__u32 total; /* its length, once found */
	__u8 cut;    /* unreadable memory before the NUL */
};

/* Window i + 1 of the length scan (window 0 was read by the caller). */
static long rc_str_scan_step(__u32 i, struct rc_str_scan *sc)
{
	struct rc_rec64 *r = rc_rec64_scratch();
	__u32 off = (i + 1) * RC_CHUNK_MAX;
	long n;

	if (!r)
		return 1;
	/* Windows overlap by one byte: a return of RC_CHUNK_MAX + 1 means the
	 * NUL is at or after off + RC_CHUNK_MAX, which the next window sees. */
	n = bpf_probe_read_user_str(r->payload, RC_CHUNK_MAX + 1, (void *)(sc->str + off));
	if (n <= 0) {
		sc->total = off;
		sc->cut = 1;
		return 1;
	}
	if (n <= RC_CHUNK_MAX) {
		sc->total = off + (__u32)n - 1;
		return 1;
	}
	sc->total = off + RC_CHUNK_MAX;
	return 0;
}

/*
 * Emits the NUL-terminated string at user address str as records of kind
 * `kind` whose 8 bytes after the chunk are `own` (the header is the current
 * task's). Returns the string's length (0 if it could not be read: counted
 * as lost).
 */
static __always_inline __u32 rc_emit_str(__u64 pid_tgid, __u16 kind, const void *own, __u64 str)
{
	struct rc_rec64 *r = rc_rec64_scratch();
	struct rc_str_scan sc = {};
	__u32 total, send;
	long n;

	if (!r)
		return 0;
	n = bpf_probe_read_user_str(r->payload, RC_CHUNK_MAX + 1, (void *)str);
	if (n <= 0) {
		rc_count_lost(0);
		return 0;
	}
	if (n > RC_CHUNK_MAX) {
		/* RC_CHUNK_MAX bytes or more: measure, then send chunk by chunk. */
		sc.str = str;
		bpf_loop(RC_STR_SCAN_MAX, rc_str_scan_step, &sc, 0);
		if (sc.cut)
			rc_count_lost(0);
		rc_emit_rec64(pid_tgid, kind, own, str, sc.total);
		return sc.total;
	}
	/* The usual case: the whole string is in the scratch already. */
	total = (__u32)n - 1;
	r = rc_rec64_begin(pid_tgid, kind, own, total);
	if (!r)
		return 0;
	send = total < max_payload ? total : max_payload;
	if (send > RC_CHUNK_MAX)
		send = RC_CHUNK_MAX; /* cannot happen (total < RC_CHUNK_MAX); for the verifier */
	r->chunk.offset = 0;
	r->chunk.len = send;
	r->hdr.flags = RC_F_FIRST | RC_F_LAST;
	rc_output(rc_ring(), r, __builtin_offsetof(struct rc_rec64, payload) + send, send);
	return total;
}

#endif /* RCAPTURE_STR_BPF_H */
