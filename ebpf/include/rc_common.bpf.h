/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * rc_common.bpf.h — maps, read-only globals and helpers shared by every
 * rcapture BPF program: the per-CPU ring buffers, counters and live filter,
 * header filling, socket lookup from an fd, and chunked payload output.
 * Include after vmlinux.h, the libbpf headers and records.h.
 */
#ifndef RCAPTURE_COMMON_BPF_H
#define RCAPTURE_COMMON_BPF_H

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define RC_S_IFMT 0170000
#define RC_S_IFSOCK 0140000
#define RC_FD_UNKNOWN 0xffffffffU

/* Capture limit per call: bytes beyond it are not sent. */
const volatile __u32 max_payload = 1 << 20;
/* Ring backlog (bytes) whose crossing by an output wakes the consumer. */
const volatile __u32 wakeup_bytes = 64 * 1024;

/* One ring buffer per CPU; user space creates and inserts them. */
struct rc_inner_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* set to the number of possible CPUs by the loader */
	__type(key, __u32);
	__array(values, struct rc_inner_ring);
} rc_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_counters);
} rc_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_filter);
} rc_filter SEC(".maps");

/* Per-CPU scratch for payload records. */
struct rc_data_scratch {
	__u32 call_seq;
	__u32 _pad;
	struct rc_data rec;
	__u8 payload[RC_CHUNK_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_data_scratch);
} rc_data_scratch SEC(".maps");

static __always_inline struct rc_counters *rc_counters_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rc_counters, &zero);
}

/* The ring buffer of this CPU, or NULL if user space has not set it. */
static __always_inline void *rc_ring(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&rc_rings, &cpu);
}

/* Outputs one record, counting it as emitted or lost; true on success. */
static __always_inline bool rc_output(void *ring, void *rec, __u64 size, __u64 payload_len)
{
	struct rc_counters *cnt = rc_counters_get();
	__u64 flags, avail;

	if (ring) {
		/* Wake the consumer only with the record that takes the backlog
		 * over wakeup_bytes (each forced wakeup is a self-IPI); below it,
		 * and while it stays above, the consumer's poll timeout drains. */
		avail = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
		flags = avail < wakeup_bytes && avail + size >= wakeup_bytes ?
				BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
		if (bpf_ringbuf_output(ring, rec, size, flags) == 0) {
			if (cnt)
				cnt->emitted++;
			return true;
		}
	}
	if (cnt) {
		cnt->lost++;
		cnt->lost_bytes += payload_len;
	}
	return false;
}

static __always_inline struct rc_filter *rc_filter_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rc_filter, &zero);
}

/* Counts a call the live filter skipped; returns false. */
static __always_inline bool rc_filtered(void)
{
	struct rc_counters *cnt = rc_counters_get();

	if (cnt)
		cnt->filtered++;
	return false;
}

/* Live pid/uid filter; counts skipped calls. */
static __always_inline bool rc_filter_pass(__u64 pid_tgid)
{
	struct rc_filter *f = rc_filter_get();

	if (!f)
		return true;
	if (f->stopped)
		return false;
	if ((f->pid && f->pid != (__u32)(pid_tgid >> 32)) ||
	    (f->uid && f->uid != (__u32)bpf_get_current_uid_gid()))
		return rc_filtered();
	return true;
}

/*
 * uid and comm are read from the current task through BTF (plain loads)
 * rather than with bpf_get_current_uid_gid / bpf_get_current_comm, which
 * cost ~30 and ~50 ns here. cred->uid is the kuid, i.e. the uid in the
 * initial user namespace, as the helper reports it; task->comm is always
 * NUL-terminated within its 16 bytes, and bytes after the NUL are zeroed by
 * the kernel's set_task_comm (strscpy_pad), as the helper's copy would be.
 */
static __always_inline void rc_fill_hdr(struct rc_hdr *hdr, __u16 kind, __u64 pid_tgid)
{
	struct task_struct *task = bpf_get_current_task_btf();

	hdr->kind = kind;
	hdr->flags = 0;
	hdr->uid = task->cred->uid.val;
	hdr->ts_ns = bpf_ktime_get_boot_ns();
	hdr->pid = (__u32)(pid_tgid >> 32);
	hdr->tid = (__u32)pid_tgid;
	__builtin_memcpy(hdr->comm, task->comm, sizeof(hdr->comm));
}

/*
 * The addresses of socket sk in *tuple, local side first (family 0 if it is
 * not an inet socket); *tuple must be zeroed by the caller.
 */
static __always_inline void rc_sock_tuple(const struct sock *sk, struct rc_tuple *tuple)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family == AF_INET) {
		/* BPF_CORE_READ_INTO would copy sizeof(*dst) = 1 byte into an array. */
		bpf_core_read(tuple->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(tuple->daddr, 4, &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		bpf_core_read(tuple->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(tuple->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		return;
	}
	tuple->family = family;
	tuple->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	tuple->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/*
 * The kernel socket behind fd in the current task, with its addresses in
 * *tuple (family 0 if not an inet socket). Returns the struct sock address,
 * 0 if fd is not a socket.
 */
static __always_inline __u64 rc_sock_of_fd(__s32 fd, struct rc_tuple *tuple)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt;
	struct file **fds;
	struct file *file = NULL;
	struct socket *sock;
	struct sock *sk;
	__u16 mode;

	__builtin_memset(tuple, 0, sizeof(*tuple));
	if (fd < 0)
		return 0;
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & RC_S_IFMT) != RC_S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	rc_sock_tuple(sk, tuple);
	return (__u64)sk;
}

struct rc_chunk_loop {
	__u64 buf;      /* user address of the call's bytes */
	__u32 send_len; /* bytes to send: min(total_len, max_payload) */
};

/* Counts a record that could not be sent (e.g. unreadable user memory). */
static __always_inline void rc_count_lost(__u64 payload_len)
{
	struct rc_counters *cnt = rc_counters_get();

	if (cnt) {
		cnt->lost++;
		cnt->lost_bytes += payload_len;
	}
}

/*
 * Sends chunk i of a payload whose first send_len bytes (at user address
 * buf) are sent: sets the offset, length and RC_F_* flags of the record at
 * rec (fixed bytes long, its header at hdr and chunk at chunk), reads the
 * bytes into payload (right after the fixed part) and outputs it. For
 * bpf_loop callbacks: returns 1 past the end.
 */
static __always_inline long rc_send_chunk(__u32 i, __u32 send_len, __u64 buf, void *rec, __u64 fixed,
					  struct rc_hdr *hdr, struct rc_chunk *chunk, __u8 *payload)
{
	__u32 off = i * RC_CHUNK_MAX, len;

	if (off >= send_len)
		return 1;
	len = send_len - off;
	if (len > RC_CHUNK_MAX)
		len = RC_CHUNK_MAX;
	chunk->offset = off;
	chunk->len = len;
	hdr->flags = (i == 0 ? RC_F_FIRST : 0) | (len >= send_len - off ? RC_F_LAST : 0);
	if (bpf_probe_read_user(payload, len, (void *)(buf + off))) {
		/* unreadable user memory: counted as lost, the offsets show the hole */
		rc_count_lost(len);
		return 0;
	}
	rc_output(rc_ring(), rec, fixed + len, len);
	return 0;
}

static long rc_emit_chunk(__u32 i, struct rc_chunk_loop *lc)
{
	__u32 zero = 0;
	struct rc_data_scratch *s = bpf_map_lookup_elem(&rc_data_scratch, &zero);

	if (!s)
		return 1;
	return rc_send_chunk(i, lc->send_len, lc->buf, &s->rec, sizeof(s->rec), &s->rec.hdr,
			     &s->rec.chunk, s->payload);
}

/*
 * Emits a payload of total_len bytes at user address buf as one or more
 * struct rc_data records (same tid and call_seq, increasing offsets).
 * cached_tuple, if not NULL, is fd's socket (address cached_sock) already
 * resolved by the caller; otherwise the socket is looked up from fd.
 */
static __always_inline void rc_emit_data_sock(__u64 pid_tgid, __u16 kind, __u8 direction,
					      __s32 fd, __u64 cached_sock,
					      const struct rc_tuple *cached_tuple, __u64 buf,
					      __u32 total_len)
{
	__u32 zero = 0;
	struct rc_data_scratch *s = bpf_map_lookup_elem(&rc_data_scratch, &zero);
	struct rc_chunk_loop lc = {};
	__u32 nr;

	if (!s)
		return;
	rc_fill_hdr(&s->rec.hdr, kind, pid_tgid);
	s->call_seq++;
	s->rec.chunk.total_len = total_len;
	s->rec.chunk.call_seq = s->call_seq;
	s->rec.direction = direction;
	s->rec._pad[0] = 0;
	s->rec._pad[1] = 0;
	s->rec._pad[2] = 0;
	if (cached_tuple) {
		s->rec.sock = cached_sock;
		__builtin_memcpy(&s->rec.tuple, cached_tuple, sizeof(s->rec.tuple));
	} else {
		s->rec.sock = rc_sock_of_fd(fd, &s->rec.tuple);
	}
	s->rec.fd = fd < 0 ? RC_FD_UNKNOWN : (__u32)fd;

	lc.buf = buf;
	lc.send_len = total_len < max_payload ? total_len : max_payload;
	nr = (__u32)(((__u64)lc.send_len + RC_CHUNK_MAX - 1) / RC_CHUNK_MAX);
	if (nr == 1)
		rc_emit_chunk(0, &lc); /* the common case, without bpf_loop's calls */
	else if (nr)
		bpf_loop(nr, rc_emit_chunk, &lc, 0);
}

static __always_inline void rc_emit_data(__u64 pid_tgid, __u16 kind, __u8 direction, __s32 fd,
					 __u64 buf, __u32 total_len)
{
	rc_emit_data_sock(pid_tgid, kind, direction, fd, 0, NULL, buf, total_len);
}

#endif /* RCAPTURE_COMMON_BPF_H */
