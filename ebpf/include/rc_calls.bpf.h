/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * rc_calls.bpf.h — the per-thread call tracking every TLS module shares:
 * a library call's arguments saved at entry (keyed by thread) for its
 * return probe, and the fd of the socket syscall a thread makes inside the
 * call when the library object does not show it (raw tracepoint sys_enter,
 * program rc_sys_enter: attach it with the module's other programs).
 * Include after rc_common.bpf.h, once per BPF object.
 */
#ifndef RCAPTURE_CALLS_BPF_H
#define RCAPTURE_CALLS_BPF_H

/* A TLS call in flight, saved at entry (per thread). */
struct rc_call {
	__u64 owner;    /* rc_calls slots: pid_tgid of the thread in the call, 0 = free */
	__u64 conn;    /* the library's connection object (SSL *, gnutls_session_t, PRFileDesc *) */
	__u64 buf;
	__u64 len_ptr;  /* _ex: size_t *written / *readbytes; 0 otherwise */
	__u64 sock;     /* sock_known: fd's socket, resolved earlier on this connection */
	struct rc_tuple tuple;
	__s32 fd;       /* from the BIO or a syscall inside the call; -1 unknown */
	__u8 direction; /* RC_DIR_* */
	__u8 fd_from_syscall;
	__u8 active;    /* rc_active entries: between entry and return */
	__u8 conn_known; /* the SSL's cache was valid at entry (same connection) */
	__u8 sock_known; /* sock and tuple are fd's (valid with conn_known) */
	__u8 fd_wait;   /* counted in rc_fd_waits: the fd is to come from a syscall */
	__u8 _pad[2];
	__u32 aux;      /* module-specific (e.g. an iovec count) */
	/* rc_calls slots: calls of other threads with this slot's index that
	 * found it taken and went to rc_active instead. */
	__u32 overflow;
};

/*
 * The calls in flight, by thread: slot tid % RC_CALL_SLOTS of an array (an
 * array lookup is inlined, a hash lookup costs ~40 ns here, and the slot is
 * looked up at entry, at return and at every socket syscall). A thread
 * claims its slot at entry (compare-and-swap of owner) and frees it at
 * return. If another thread holds it, the call goes to the rc_active hash
 * (key pid_tgid) and the slot's overflow count tells later lookups to look
 * there. (Task storage would do without either, but aya 0.14 refuses it.)
 */
#define RC_CALL_SLOTS 16384

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RC_CALL_SLOTS);
	__type(key, __u32);
	__type(value, struct rc_call);
} rc_calls SEC(".maps");

/* Overflow calls; an entry is rewritten in place per call, never deleted
 * (dead threads' entries age out of the LRU). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct rc_call);
} rc_active SEC(".maps");

/*
 * Calls in flight whose fd is unknown (not a socket/fd BIO, not learnt
 * before): while there are none, the syscall program stops after the
 * syscall number test.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} rc_fd_waits SEC(".maps");

static __always_inline void fd_waits_add(__s64 n)
{
	__u32 zero = 0;
	__s64 *w = bpf_map_lookup_elem(&rc_fd_waits, &zero);

	if (w)
		__sync_fetch_and_add(w, n);
}

static __always_inline struct rc_call *call_array_slot(__u64 pid_tgid)
{
	__u32 idx = (__u32)pid_tgid & (RC_CALL_SLOTS - 1);

	return bpf_map_lookup_elem(&rc_calls, &idx);
}

/* A slot for the call this thread is entering (its array slot if free). */
static __always_inline struct rc_call *call_begin(__u64 pid_tgid)
{
	struct rc_call *slot = call_array_slot(pid_tgid);
	struct rc_call init = {}, *c;

	if (!slot)
		return NULL;
	if (slot->owner == pid_tgid || __sync_val_compare_and_swap(&slot->owner, 0, pid_tgid) == 0)
		return slot;
	c = bpf_map_lookup_elem(&rc_active, &pid_tgid);
	if (!c) {
		bpf_map_update_elem(&rc_active, &pid_tgid, &init, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&rc_active, &pid_tgid);
		if (!c)
			return NULL;
	}
	if (!c->active)
		__sync_fetch_and_add(&slot->overflow, 1);
	return c;
}

/* This thread's call in flight, or NULL; *slot_out is its array slot. */
static __always_inline struct rc_call *call_find(__u64 pid_tgid, struct rc_call **slot_out)
{
	struct rc_call *slot = call_array_slot(pid_tgid), *c;

	*slot_out = slot;
	if (!slot)
		return NULL;
	if (slot->owner == pid_tgid)
		return slot;
	if (!slot->overflow)
		return NULL;
	c = bpf_map_lookup_elem(&rc_active, &pid_tgid);
	return c && c->active ? c : NULL;
}

/* Ends the call c found by call_find (copy it out first). */
static __always_inline void call_end(struct rc_call *c, struct rc_call *slot)
{
	if (c == slot) {
		c->owner = 0;
	} else {
		c->active = 0;
		if (slot)
			__sync_fetch_and_add(&slot->overflow, -1);
	}
}

/* x86_64 syscall numbers of the socket I/O a TLS library makes. */
#define RC_NR_READ 0
#define RC_NR_WRITE 1
#define RC_NR_SENDTO 44
#define RC_NR_RECVFROM 45
#define RC_NR_SENDMSG 46
#define RC_NR_RECVMSG 47

/*
 * Every syscall entry: if this thread is inside a TLS call whose fd is not
 * known yet, the fd of its first socket send (for SSL_write*) or receive (for
 * SSL_read*) syscall is the connection's. Cheap for everything else: a
 * syscall-number test, then (socket I/O syscalls only) a counter test, and
 * an array lookup only while some TLS call waits for its fd.
 */
SEC("raw_tp/sys_enter")
int rc_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	/* args[0] = struct pt_regs *, args[1] = syscall number. A plain array:
	 * CO-RE relocations on the flexible args[] are refused by aya. */
	const __u64 *args = (const __u64 *)ctx;
	long nr = (long)args[1];
	struct pt_regs *regs;
	struct rc_call *call, *slot;
	__u64 pid_tgid;
	__s64 *waits;
	__u32 zero = 0;
	__u8 direction;

	switch (nr) {
	case RC_NR_WRITE:
	case RC_NR_SENDTO:
	case RC_NR_SENDMSG:
		direction = RC_DIR_SEND;
		break;
	case RC_NR_READ:
	case RC_NR_RECVFROM:
	case RC_NR_RECVMSG:
		direction = RC_DIR_RECV;
		break;
	default:
		return 0;
	}
	waits = bpf_map_lookup_elem(&rc_fd_waits, &zero);
	if (!waits || *waits <= 0)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	call = call_find(pid_tgid, &slot);
	if (!call || call->fd >= 0 || call->direction != direction)
		return 0;
	regs = (struct pt_regs *)args[0];
	call->fd = (__s32)PT_REGS_PARM1_CORE_SYSCALL(regs);
	call->fd_from_syscall = 1;
	if (call->fd_wait) {
		call->fd_wait = 0;
		fd_waits_add(-1);
	}
	return 0;
}


/*
 * Begins tracking a call of a module without per-connection caches: saves
 * the connection object, buffer and fd (-1 if unknown: the next socket
 * syscall of the call gives it). Returns the call (the caller may add its
 * own fields), NULL if no slot was found (counted lost).
 */
static __always_inline struct rc_call *rc_call_enter(__u64 pid_tgid, __u64 conn, __u64 buf, __u64 len_ptr,
					  __s32 fd, __u8 direction, __u32 aux)
{
	struct rc_call *call = call_begin(pid_tgid);

	if (!call) {
		struct rc_counters *cnt = rc_counters_get();

		if (cnt)
			cnt->lost++;
		return NULL;
	}
	if (call->fd_wait) /* a call that never returned */
		fd_waits_add(-1);
	call->fd_wait = fd < 0;
	if (fd < 0)
		fd_waits_add(1);
	call->conn = conn;
	call->buf = buf;
	call->len_ptr = len_ptr;
	call->fd = fd;
	call->direction = direction;
	call->fd_from_syscall = 0;
	call->conn_known = 0;
	call->sock_known = 0;
	call->aux = aux;
	call->active = 1;
	return call;
}

/* Ends this thread's call: copies it to *out; false if there was none. */
static __always_inline bool rc_call_exit(__u64 pid_tgid, struct rc_call *out)
{
	struct rc_call *saved, *slot;

	saved = call_find(pid_tgid, &slot);
	if (!saved)
		return false;
	*out = *saved;
	if (out->fd_wait) {
		saved->fd_wait = 0;
		fd_waits_add(-1);
	}
	call_end(saved, slot);
	return true;
}

#endif /* RCAPTURE_CALLS_BPF_H */
