/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * rc_rec64.bpf.h — chunked payload output for the records whose fixed part
 * is 64 bytes (struct rc_bash, struct rc_query), as rc_emit_data does it for
 * struct rc_data. Include after rc_common.bpf.h.
 */
#ifndef RCAPTURE_REC64_BPF_H
#define RCAPTURE_REC64_BPF_H

/*
 * Records of 64 bytes followed by a payload (struct rc_bash, struct
 * rc_query): the header, the chunk and 8 bytes of the kind's own fields,
 * assembled in rc_data_scratch's memory (header and chunk at the offsets of
 * struct rc_data, the payload right after the 64 bytes), so objects using
 * them need no second scratch map.
 */
struct rc_rec64 {
	struct rc_hdr hdr;
	struct rc_chunk chunk;
	__u8 own[8];               /* the kind's fields after the chunk */
	__u8 payload[RC_CHUNK_MAX];
};

_Static_assert(sizeof(struct rc_rec64) == 64 + RC_CHUNK_MAX, "rc_rec64 layout");
_Static_assert(sizeof(struct rc_bash) == 64 && sizeof(struct rc_query) == 64,
	       "64-byte payload records");
_Static_assert(sizeof(struct rc_rec64) <= sizeof(struct rc_data) + RC_CHUNK_MAX,
	       "rc_rec64 fits in rc_data_scratch.rec and payload");

/* This CPU's rc_rec64 (inside rc_data_scratch), or NULL. */
static __always_inline struct rc_rec64 *rc_rec64_scratch(void)
{
	__u32 zero = 0;
	struct rc_data_scratch *s = bpf_map_lookup_elem(&rc_data_scratch, &zero);

	return s ? (struct rc_rec64 *)&s->rec : NULL;
}

/*
 * Starts a call's records in this CPU's rc_rec64: header, a new call_seq,
 * total_len and the kind's 8 bytes (own). Leaves the payload alone, so a
 * caller may have read the first chunk into it already. NULL if no scratch.
 */
static __always_inline struct rc_rec64 *rc_rec64_begin(__u64 pid_tgid, __u16 kind,
						       const void *own, __u32 total_len)
{
	__u32 zero = 0;
	struct rc_data_scratch *s = bpf_map_lookup_elem(&rc_data_scratch, &zero);
	struct rc_rec64 *r;

	if (!s)
		return NULL;
	r = (struct rc_rec64 *)&s->rec;
	rc_fill_hdr(&r->hdr, kind, pid_tgid);
	s->call_seq++;
	r->chunk.total_len = total_len;
	r->chunk.call_seq = s->call_seq;
	__builtin_memcpy(r->own, own, sizeof(r->own));
	return r;
}

static long rc_emit_chunk64(__u32 i, struct rc_chunk_loop *lc)
{
	struct rc_rec64 *r = rc_rec64_scratch();
	__u32 off, len;

	if (!r)
		return 1;
	off = i * RC_CHUNK_MAX;
	if (off >= lc->send_len)
		return 1;
	len = lc->send_len - off;
	if (len > RC_CHUNK_MAX)
		len = RC_CHUNK_MAX;
	r->chunk.offset = off;
	r->chunk.len = len;
	r->hdr.flags = (i == 0 ? RC_F_FIRST : 0) | (len >= lc->send_len - off ? RC_F_LAST : 0);
	if (bpf_probe_read_user(r->payload, len, (void *)(lc->buf + off))) {
		struct rc_counters *cnt = rc_counters_get();

		if (cnt) {
			cnt->lost++;
			cnt->lost_bytes += len;
		}
		return 0;
	}
	rc_output(rc_ring(), r, __builtin_offsetof(struct rc_rec64, payload) + len, len);
	return 0;
}

/*
 * Emits total_len bytes at user address buf as 64-byte-header records of
 * `kind` (struct rc_bash / rc_query; own = its 8 bytes after the chunk),
 * split like rc_emit_data: RC_CHUNK_MAX bytes a record, up to max_payload.
 */
static __always_inline void rc_emit_rec64(__u64 pid_tgid, __u16 kind, const void *own,
					  __u64 buf, __u32 total_len)
{
	struct rc_chunk_loop lc = {};
	__u32 nr;

	if (!rc_rec64_begin(pid_tgid, kind, own, total_len))
		return;
	lc.buf = buf;
	lc.send_len = total_len < max_payload ? total_len : max_payload;
	nr = (__u32)(((__u64)lc.send_len + RC_CHUNK_MAX - 1) / RC_CHUNK_MAX);
	if (nr == 1)
		rc_emit_chunk64(0, &lc);
	else if (nr)
		bpf_loop(nr, rc_emit_chunk64, &lc, 0);
}

#endif /* RCAPTURE_REC64_BPF_H */
