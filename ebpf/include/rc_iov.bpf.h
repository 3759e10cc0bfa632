/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * rc_iov.bpf.h — payload output of a gathered write (writev-style calls):
 * the bytes of every vector entry of ONE call, in order, as struct rc_data
 * records of one call (same tid and call_seq, increasing chunk offsets,
 * RC_F_FIRST on the first record, RC_F_LAST on the last), packed: a record
 * carries up to RC_CHUNK_MAX bytes taken from as many entries as fit, so a
 * small gathered write is one record, like a plain write of the same bytes.
 *
 * Entries are {void *base @0; 32-bit length @8}, stride 16: NSPR's PRIOVec
 * ({char *iov_base; int iov_len}) and the low half of struct iovec's size_t.
 * At most RC_IOV_MAX entries (NSPR's PR_MAX_IOVECTOR_SIZE: PR_Writev
 * refuses more).
 *
 * Include after rc_common.bpf.h, in the objects that need it (it adds a
 * per-CPU scratch map of 32 KiB).
 */
#ifndef RCAPTURE_IOV_BPF_H
#define RCAPTURE_IOV_BPF_H

#define RC_IOV_MAX 16
#define RC_IOV_STRIDE 16

/*
 * The record being filled: as large as a per-CPU array value may be (32 KiB).
 * A copy lands at any fill level below RC_CHUNK_MAX, and the verifier cannot
 * relate the copy's length to that level: a copy is therefore at most
 * RC_IOV_PIECE_MAX bytes, so that level + length stays inside the buffer
 * whatever both are. A record never carries more than RC_CHUNK_MAX.
 */
#define RC_IOV_BUF (32768 - sizeof(struct rc_data))
#define RC_IOV_PIECE_MAX (RC_IOV_BUF - RC_CHUNK_MAX)

struct rc_iov_scratch {
	struct rc_data rec;
	__u8 payload[RC_IOV_BUF];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_iov_scratch);
} rc_iov_scratch SEC(".maps");

struct rc_iov_entry {
	__u64 base;
	__u32 len;
	__u32 _pad;
};

struct rc_iov_loop {
	__u64 iov;      /* user address of the vector */
	__u32 cnt;      /* entries (≤ RC_IOV_MAX) */
	__u32 send_len; /* bytes to send: min(total_len, max_payload) */
	__u32 idx;      /* entries loaded so far */
	__u32 used;     /* bytes of the current entry consumed */
	__u32 rec_off;  /* chunk offset of the record being filled */
	__u32 pos;      /* bytes in the record being filled (< RC_CHUNK_MAX) */
	__u64 base;     /* current entry */
	__u32 len;
	__u32 _pad;
};

static __always_inline void rc_iov_count_lost(__u32 bytes)
{
	struct rc_counters *cnt = rc_counters_get();

	if (cnt) {
		cnt->lost++;
		cnt->lost_bytes += bytes;
	}
}

/* Outputs the record being filled (pos bytes at offset rec_off). */
static __always_inline void rc_iov_flush(struct rc_iov_scratch *s, struct rc_iov_loop *lc)
{
	__u32 len = lc->pos;

	if (len > RC_CHUNK_MAX) /* never; for the verifier */
		len = RC_CHUNK_MAX;
	s->rec.chunk.offset = lc->rec_off;
	s->rec.chunk.len = len;
	s->rec.hdr.flags = (lc->rec_off == 0 ? RC_F_FIRST : 0) |
			   (lc->rec_off + len >= lc->send_len ? RC_F_LAST : 0);
	rc_output(rc_ring(), &s->rec, sizeof(struct rc_data) + len, len);
	lc->rec_off += len;
	lc->pos = 0;
}

/*
 * One step: load the next entry, or copy the largest piece that fits from
 * the current entry into the record (outputting it once full or at the
 * end). At most RC_IOV_MAX loads, plus a copy per entry, plus two copies
 * per record (a piece is a little under RC_CHUNK_MAX), plus the last step.
 */
static long rc_iov_step(__u32 i, struct rc_iov_loop *lc)
{
	__u32 zero = 0, n, room, left;
	struct rc_iov_scratch *s = bpf_map_lookup_elem(&rc_iov_scratch, &zero);
	struct rc_iov_entry e;

	if (!s)
		return 1;
	if (lc->rec_off + lc->pos >= lc->send_len)
		return 1;
	if (lc->used >= lc->len) {
		if (lc->idx >= lc->cnt || lc->idx >= RC_IOV_MAX)
			goto short_vector;
		if (bpf_probe_read_user(&e, sizeof(e),
					(void *)(lc->iov + (__u64)lc->idx * RC_IOV_STRIDE)))
			goto short_vector;
		lc->idx++;
		lc->base = e.base;
		lc->len = e.len > 0x7fffffffU ? 0 : e.len; /* a negative PRIOVec length */
		lc->used = 0;
		return 0;
	}
	n = lc->len - lc->used;
	room = RC_CHUNK_MAX - lc->pos;
	left = lc->send_len - lc->rec_off - lc->pos;
	if (n > room)
		n = room;
	if (n > left)
		n = left;
	if (n > RC_IOV_PIECE_MAX)
		n = RC_IOV_PIECE_MAX;
	if (n == 0)
		return 1;
	if (bpf_probe_read_user(s->payload + (lc->pos & (RC_CHUNK_MAX - 1)), n,
				(void *)(lc->base + lc->used))) {
		/* Unreadable: what is filled goes out, the offsets show the hole. */
		rc_iov_count_lost(n);
		if (lc->pos)
			rc_iov_flush(s, lc);
		lc->rec_off += n;
		lc->used += n;
		return 0;
	}
	lc->used += n;
	lc->pos += n;
	if (lc->pos >= RC_CHUNK_MAX || lc->rec_off + lc->pos >= lc->send_len)
		rc_iov_flush(s, lc);
	return 0;

short_vector:
	/* The vector ends (or cannot be read) before send_len bytes. */
	if (lc->pos)
		rc_iov_flush(s, lc);
	if (lc->rec_off < lc->send_len)
		rc_iov_count_lost(lc->send_len - lc->rec_off);
	return 1;
}

/*
 * Emits the first total_len bytes (the call's return value) of the cnt
 * entries of the vector at user address iov as one call of kind `kind`,
 * up to max_payload bytes. The fd's socket and tuple are looked up once.
 */
static __always_inline void rc_emit_iov(__u64 pid_tgid, __u16 kind, __u8 direction, __s32 fd,
					__u64 iov, __u32 cnt, __u32 total_len)
{
	__u32 zero = 0;
	struct rc_data_scratch *seq = bpf_map_lookup_elem(&rc_data_scratch, &zero);
	struct rc_iov_scratch *s = bpf_map_lookup_elem(&rc_iov_scratch, &zero);
	struct rc_iov_loop lc = {};

	if (!seq || !s)
		return;
	rc_fill_hdr(&s->rec.hdr, kind, pid_tgid);
	/* call_seq is shared with rc_emit_data's records of this CPU. */
	seq->call_seq++;
	s->rec.chunk.total_len = total_len;
	s->rec.chunk.call_seq = seq->call_seq;
	s->rec.direction = direction;
	s->rec._pad[0] = 0;
	s->rec._pad[1] = 0;
	s->rec._pad[2] = 0;
	s->rec.sock = rc_sock_of_fd(fd, &s->rec.tuple);
	s->rec.fd = fd < 0 ? RC_FD_UNKNOWN : (__u32)fd;

	lc.iov = iov;
	lc.cnt = cnt > RC_IOV_MAX ? RC_IOV_MAX : cnt;
	lc.send_len = total_len < max_payload ? total_len : max_payload;
	if (!lc.send_len)
		return;
	bpf_loop(2 * RC_IOV_MAX + 2 + 2 * ((lc.send_len + RC_CHUNK_MAX - 1) / RC_CHUNK_MAX),
		 rc_iov_step, &lc, 0);
	if (lc.pos) /* not reached with the bound above; never keep bytes back */
		rc_iov_flush(s, &lc);
}

#endif /* RCAPTURE_IOV_BPF_H */
