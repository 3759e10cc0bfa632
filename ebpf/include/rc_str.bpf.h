/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * rc_str.bpf.h — a NUL-terminated user string (a bash command line, an SQL
 * text) sent whole as records of the 64-byte layout "rc_hdr, rc_chunk, two
 * 32-bit fields" (struct rc_bash, struct rc_query), in chunks of at most
 * RC_CHUNK_MAX bytes, up to max_payload bytes. Include after rc_common.bpf.h.
 *
 * The string's length must be in the first record (chunk.total_len), so a
 * string of RC_CHUNK_MAX bytes or more is measured first (bpf_loop over
 * RC_CHUNK_MAX windows, up to RC_STR_SCAN_MAX of them) and then read again
 * chunk by chunk; a shorter one (the usual case) costs one read.
 */
#ifndef RCAPTURE_STR_BPF_H
#define RCAPTURE_STR_BPF_H

/* The common layout of struct rc_bash and struct rc_query. */
struct rc_rec64 {
	struct rc_hdr hdr;
	struct rc_chunk chunk;
	__u32 a; /* rc_bash.bash_type, rc_query.retval */
	__u32 b; /* rc_bash.retval, rc_query._pad */
};

_Static_assert(sizeof(struct rc_rec64) == sizeof(struct rc_bash), "rc_bash layout");
_Static_assert(__builtin_offsetof(struct rc_bash, bash_type) == __builtin_offsetof(struct rc_rec64, a),
	       "rc_bash.bash_type");
_Static_assert(__builtin_offsetof(struct rc_bash, retval) == __builtin_offsetof(struct rc_rec64, b),
	       "rc_bash.retval");
_Static_assert(sizeof(struct rc_rec64) == sizeof(struct rc_query), "rc_query layout");
_Static_assert(__builtin_offsetof(struct rc_query, retval) == __builtin_offsetof(struct rc_rec64, a),
	       "rc_query.retval");

/* Strings are measured exactly up to (RC_STR_SCAN_MAX + 1) * RC_CHUNK_MAX
 * bytes (64 MiB); a longer one reports that as its total_len. */
#define RC_STR_SCAN_MAX 4095

struct rc_str_scratch {
	__u32 call_seq;
	__u32 _pad;
	struct rc_rec64 rec;
	__u8 payload[RC_CHUNK_MAX + 1]; /* + the NUL of bpf_probe_read_user_str */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_str_scratch);
} rc_str_scratch SEC(".maps");

struct rc_str_loop {
	__u64 str;      /* user address of the string */
	__u32 total;    /* its length (scan result) */
	__u32 send_len; /* min(total, max_payload) */
	__u8 cut;       /* the scan hit unreadable memory before the NUL */
};

/* Window i + 1 of the length scan (window 0 was read by the caller). */
static long rc_str_scan(__u32 i, struct rc_str_loop *lc)
{
	__u32 zero = 0;
	struct rc_str_scratch *s = bpf_map_lookup_elem(&rc_str_scratch, &zero);
	__u32 off = (i + 1) * RC_CHUNK_MAX;
	long n;

	if (!s)
		return 1;
	/* Windows overlap by one byte: a return of RC_CHUNK_MAX + 1 means the
	 * NUL is at or after off + RC_CHUNK_MAX, which the next window sees. */
	n = bpf_probe_read_user_str(s->payload, RC_CHUNK_MAX + 1, (void *)(lc->str + off));
	if (n <= 0) {
		lc->total = off;
		lc->cut = 1;
		return 1;
	}
	if (n <= RC_CHUNK_MAX) {
		lc->total = off + (__u32)n - 1;
		return 1;
	}
	lc->total = off + RC_CHUNK_MAX;
	return 0;
}

static long rc_str_chunk(__u32 i, struct rc_str_loop *lc)
{
	__u32 zero = 0;
	struct rc_str_scratch *s = bpf_map_lookup_elem(&rc_str_scratch, &zero);

	if (!s)
		return 1;
	return rc_send_chunk(i, lc->send_len, lc->str, &s->rec, sizeof(s->rec), &s->rec.hdr,
			     &s->rec.chunk, s->payload);
}

/* The next call_seq of this CPU for 64-byte records (0 without the scratch). */
static __always_inline __u32 rc_str_call_seq(void)
{
	__u32 zero = 0;
	struct rc_str_scratch *s = bpf_map_lookup_elem(&rc_str_scratch, &zero);

	return s ? ++s->call_seq : 0;
}

/*
 * Emits the NUL-terminated string at user address str as one or more
 * records of kind `kind` with fields a and b, all with the same tid and
 * call_seq. The record header is the current task's. Returns the string's
 * length (0 if it could not be read: counted as lost).
 */
static __always_inline __u32 rc_emit_str(__u64 pid_tgid, __u16 kind, __u32 a, __u32 b, __u64 str)
{
	__u32 zero = 0;
	struct rc_str_scratch *s = bpf_map_lookup_elem(&rc_str_scratch, &zero);
	struct rc_str_loop lc = {};
	__u32 total, send;
	long n;

	if (!s)
		return 0;
	rc_fill_hdr(&s->rec.hdr, kind, pid_tgid);
	s->call_seq++;
	s->rec.chunk.call_seq = s->call_seq;
	s->rec.a = a;
	s->rec.b = b;
	n = bpf_probe_read_user_str(s->payload, RC_CHUNK_MAX + 1, (void *)str);
	if (n <= 0) {
		rc_count_lost(0);
		return 0;
	}
	if (n > RC_CHUNK_MAX) {
		/* RC_CHUNK_MAX bytes or more: measure, then send chunk by chunk. */
		lc.str = str;
		bpf_loop(RC_STR_SCAN_MAX, rc_str_scan, &lc, 0);
		if (lc.cut)
			rc_count_lost(0);
		lc.send_len = lc.total < max_payload ? lc.total : max_payload;
		s->rec.chunk.total_len = lc.total;
		bpf_loop((lc.send_len + RC_CHUNK_MAX - 1) / RC_CHUNK_MAX, rc_str_chunk, &lc, 0);
		return lc.total;
	}
	total = (__u32)n - 1;
	send = total < max_payload ? total : max_payload;
	if (send > RC_CHUNK_MAX)
		send = RC_CHUNK_MAX; /* cannot happen (total < RC_CHUNK_MAX); for the verifier */
	s->rec.chunk.total_len = total;
	s->rec.chunk.offset = 0;
	s->rec.chunk.len = send;
	s->rec.hdr.flags = RC_F_FIRST | RC_F_LAST;
	rc_output(rc_ring(), &s->rec, sizeof(struct rc_rec64) + send, send);
	return total;
}

#endif /* RCAPTURE_STR_BPF_H */
