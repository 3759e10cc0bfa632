// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * conn.bpf.c — TCP connection events and, for -m pcap, packets through tcx.
 *
 * No kprobes and no fentry here: syscall and socket tracepoints (tp_btf)
 * and tc programs only (see ebpf/README.md).
 *
 * Connections (struct rc_conn, RC_KIND_CONN), in the caller's context:
 *  - tp_btf sys_exit: connect(2) returning 0 or -EINPROGRESS (the local
 *    port is assigned by then), accept(2)/accept4(2) returning an fd; the
 *    fd's socket gives the tuple. TCP sockets only.
 *  - tp_btf sys_enter: close(2) of a connected TCP socket's fd.
 *  - tp_btf tcp_destroy_sock of a socket announced by connect/accept whose
 *    fd was never closed (exit, close_range, dup2): emitted with the
 *    identity saved at connect/accept, as the task destroying it is often
 *    a softirq's.
 *
 * Packets (struct rc_packet, RC_KIND_PACKET): SCHED_CLS programs attached
 * through tcx (BPF_TCX_INGRESS / BPF_TCX_EGRESS), returning TCX_NEXT. Each
 * packet matching the load-time filter (pkt_tests) is sent up to snap_len
 * bytes, in chunks of RC_CHUNK_MAX. Its header carries the process of its
 * connection, looked up by tuple in rc_flows, which connect/accept and, once
 * per socket and process, tp_btf sock_send_length/sock_recv_length fill
 * (connections opened before the capture started); unknown: pid 0.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"

/* x86_64 syscall numbers. */
#define RC_NR_CLOSE 3
#define RC_NR_CONNECT 42
#define RC_NR_ACCEPT 43
#define RC_NR_ACCEPT4 288
#define RC_EINPROGRESS 115
#define RC_TCP_CLOSE 7
#define RC_IPPROTO_TCP 6
#define RC_IPPROTO_UDP 17
#define RC_SOCK_STREAM 1
#define RC_ETH_HLEN 14
#define RC_ETH_P_IP 0x0800
#define RC_ETH_P_IPV6 0x86DD
#define RC_ETH_P_8021Q 0x8100
#define RC_ETH_P_8021AD 0x88A8
/* Chunks of one packet at most: snap_len is capped at this many RC_CHUNK_MAX. */
#define RC_PKT_CHUNKS 16

/* -m pcap: keep rc_flows up to date so that packets find their process. */
const volatile __u32 track_flows = 0;
/* Bytes of a packet sent at most (≤ RC_PKT_CHUNKS * RC_CHUNK_MAX). */
const volatile __u32 snap_len = 262144;
/* The packet filter: pkt_ntests tests of pkt_tests (records.h). */
const volatile __u32 pkt_ntests = 0;
const volatile struct rc_pkt_test pkt_tests[RC_PKT_TESTS_MAX] = {};

/* Who owns a connection: the process that connected or accepted it. */
struct rc_ident {
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 fd;
	char comm[16];
};

/* A socket seen by these programs. */
struct rc_sock_state {
	struct rc_ident id;
	struct rc_tuple tuple;
	__u8 announced; /* a connect/accept event was sent: a close event is due */
	__u8 _pad[7];
};

/* struct sock address → owner; bounded, the least recently used goes first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct rc_sock_state);
} rc_socks SEC(".maps");

/* Tuple (local → remote, IPv4-mapped IPv6 as IPv4) → owner, for packets. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rc_tuple);
	__type(value, struct rc_ident);
} rc_flows SEC(".maps");

/* Per-CPU scratch of packet records. */
struct rc_pkt_scratch {
	__u32 call_seq;
	__u32 _pad;
	struct rc_packet rec;
	__u8 payload[RC_CHUNK_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_pkt_scratch);
} rc_pkt_scratch SEC(".maps");

static __always_inline void ident_current(struct rc_ident *id, __u64 pid_tgid, __s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();

	id->pid = (__u32)(pid_tgid >> 32);
	id->tid = (__u32)pid_tgid;
	id->uid = task->cred->uid.val;
	id->fd = fd < 0 ? RC_FD_UNKNOWN : (__u32)fd;
	__builtin_memcpy(id->comm, task->comm, sizeof(id->comm));
}

/* The rc_flows key of a tuple: IPv4-mapped IPv6 addresses (an AF_INET6
 * socket talking IPv4) become IPv4, as the packets on the wire are. */
static __always_inline void flow_key(const struct rc_tuple *t, struct rc_tuple *key)
{
	__builtin_memcpy(key, t, sizeof(*key));
	key->_pad = 0;
	if (t->family != AF_INET6)
		return;
	if (*(__u64 *)&t->saddr[0] != 0 || *(__u32 *)&t->saddr[8] != bpf_htonl(0xffff) ||
	    *(__u64 *)&t->daddr[0] != 0 || *(__u32 *)&t->daddr[8] != bpf_htonl(0xffff))
		return;
	__builtin_memset(key->saddr, 0, sizeof(key->saddr));
	__builtin_memset(key->daddr, 0, sizeof(key->daddr));
	*(__u32 *)&key->saddr[0] = *(__u32 *)&t->saddr[12];
	*(__u32 *)&key->daddr[0] = *(__u32 *)&t->daddr[12];
	key->family = AF_INET;
}

static __always_inline void flow_set(const struct rc_tuple *t, const struct rc_ident *id)
{
	struct rc_tuple key;

	flow_key(t, &key);
	bpf_map_update_elem(&rc_flows, &key, id, BPF_ANY);
}

static __always_inline bool is_tcp(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_protocol) == RC_IPPROTO_TCP &&
	       BPF_CORE_READ(sk, sk_type) == RC_SOCK_STREAM;
}

/* Outputs one connection event with the identity `id`. */
static __always_inline void emit_conn(const struct rc_ident *id, __u8 event, __u64 sk,
				      const struct rc_tuple *tuple)
{
	struct rc_conn rec = {};

	rec.hdr.kind = RC_KIND_CONN;
	rec.hdr.uid = id->uid;
	rec.hdr.ts_ns = bpf_ktime_get_boot_ns();
	rec.hdr.pid = id->pid;
	rec.hdr.tid = id->tid;
	__builtin_memcpy(rec.hdr.comm, id->comm, sizeof(rec.hdr.comm));
	rec.sock = sk;
	rec.fd = id->fd;
	rec.event = event;
	__builtin_memcpy(&rec.tuple, tuple, sizeof(rec.tuple));
	rc_output(rc_ring(), &rec, sizeof(rec), 0);
}

/* The live filter applied to a saved identity (the current task is not the
 * owner); counts what it skips. */
static __always_inline bool filter_pass_ident(const struct rc_ident *id)
{
	struct rc_filter *f = rc_filter_get();

	if (!f)
		return true;
	if (f->stopped)
		return false;
	if ((f->pid && (!id || f->pid != id->pid)) || (f->uid && (!id || f->uid != id->uid)))
		return rc_filtered();
	return true;
}

/* connect(2) and accept(2)/accept4(2) returns. */
SEC("tp_btf/sys_exit")
int BPF_PROG(rc_conn_sys_exit, struct pt_regs *regs, long ret)
{
	struct rc_sock_state st = {};
	__u64 pid_tgid, sk;
	__s32 fd;
	__u8 event;

	switch (regs->orig_ax) {
	case RC_NR_CONNECT:
		if (ret != 0 && ret != -RC_EINPROGRESS)
			return 0;
		fd = (__s32)regs->di;
		event = RC_CONN_CONNECT;
		break;
	case RC_NR_ACCEPT:
	case RC_NR_ACCEPT4:
		if (ret < 0)
			return 0;
		fd = (__s32)ret;
		event = RC_CONN_ACCEPT;
		break;
	default:
		return 0;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	if (!rc_filter_pass(pid_tgid))
		return 0;
	sk = rc_sock_of_fd(fd, &st.tuple);
	if (!sk || !st.tuple.family || !is_tcp((const struct sock *)sk))
		return 0;
	/* A connect refused at once (loopback: the RST came during the call). */
	if (BPF_CORE_READ((struct sock *)sk, __sk_common.skc_state) == RC_TCP_CLOSE)
		return 0;
	ident_current(&st.id, pid_tgid, fd);
	emit_conn(&st.id, event, sk, &st.tuple);
	st.announced = 1;
	bpf_map_update_elem(&rc_socks, &sk, &st, BPF_ANY);
	if (track_flows)
		flow_set(&st.tuple, &st.id);
	return 0;
}

/* close(2) of a connected TCP socket's fd (with the addresses it had: a
 * socket already closed by the peer has given its local port back). */
SEC("tp_btf/sys_enter")
int BPF_PROG(rc_conn_sys_enter, struct pt_regs *regs, long id)
{
	struct rc_sock_state *st;
	struct rc_ident ident;
	struct rc_tuple tuple;
	__u64 pid_tgid, sk;
	__s32 fd;

	if (id != RC_NR_CLOSE)
		return 0;
	fd = (__s32)regs->di;
	pid_tgid = bpf_get_current_pid_tgid();
	if (!rc_filter_pass(pid_tgid))
		return 0;
	sk = rc_sock_of_fd(fd, &tuple);
	if (!sk || !tuple.family || !is_tcp((const struct sock *)sk))
		return 0;
	st = bpf_map_lookup_elem(&rc_socks, &sk);
	if (st && st->tuple.family)
		__builtin_memcpy(&tuple, &st->tuple, sizeof(tuple));
	else if (!tuple.dport)
		return 0; /* a listening socket, or one never connected */
	ident_current(&ident, pid_tgid, fd);
	emit_conn(&ident, RC_CONN_CLOSE, sk, &tuple);
	/* Its close is sent; the flow stays for the packets still to come. */
	if (st)
		bpf_map_delete_elem(&rc_socks, &sk);
	return 0;
}

/* A TCP socket destroyed: a close event if it was announced and its fd
 * never closed (the process exited, close_range, dup2 over it), and its
 * entries go. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(rc_conn_destroy, struct sock *sk)
{
	struct rc_sock_state *st;
	struct rc_tuple tuple = {};
	struct rc_tuple key;
	__u64 addr = (__u64)sk;

	st = bpf_map_lookup_elem(&rc_socks, &addr);
	if (st) {
		__builtin_memcpy(&tuple, &st->tuple, sizeof(tuple));
		if (st->announced && filter_pass_ident(&st->id))
			emit_conn(&st->id, RC_CONN_CLOSE, addr, &tuple);
		bpf_map_delete_elem(&rc_socks, &addr);
	} else {
		rc_sock_tuple(sk, &tuple);
	}
	if (track_flows && tuple.family) {
		flow_key(&tuple, &key);
		bpf_map_delete_elem(&rc_flows, &key);
	}
	return 0;
}

/* Sends and receives (pcap only): the owner of a connection opened before
 * the capture started, or passed to another process, once per socket and
 * process. */
static __always_inline void sock_io(struct sock *sk)
{
	struct rc_sock_state st = {}, *known;
	__u64 addr = (__u64)sk;
	__u64 pid_tgid;
	__u16 family = sk->__sk_common.skc_family;
	__u16 proto = sk->sk_protocol;

	if ((family != AF_INET && family != AF_INET6) ||
	    (proto != RC_IPPROTO_TCP && proto != RC_IPPROTO_UDP))
		return;
	pid_tgid = bpf_get_current_pid_tgid();
	known = bpf_map_lookup_elem(&rc_socks, &addr);
	if (known && known->id.pid == (__u32)(pid_tgid >> 32))
		return;
	rc_sock_tuple(sk, &st.tuple);
	if (!st.tuple.dport) /* an unconnected UDP socket: no one flow */
		return;
	ident_current(&st.id, pid_tgid, -1);
	if (known) {
		st.id.fd = known->id.fd;
		st.announced = known->announced;
	}
	bpf_map_update_elem(&rc_socks, &addr, &st, BPF_ANY);
	flow_set(&st.tuple, &st.id);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(rc_conn_send, struct sock *sk, int ret, int flags)
{
	sock_io(sk);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(rc_conn_recv, struct sock *sk, int ret, int flags)
{
	sock_io(sk);
	return 0;
}

/* What the filter looks at in a packet. */
struct pkt_meta {
	struct rc_tuple t; /* source → destination */
	__u8 proto;
	__u8 has_ports;
};

static __always_inline void pkt_parse(struct __sk_buff *skb, struct pkt_meta *m)
{
	__u32 off = RC_ETH_HLEN;
	__u16 proto;
	__u8 vihl;
	__u16 frag;
	__u16 ports[2];

	if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)))
		return;
	if (proto == bpf_htons(RC_ETH_P_8021Q) || proto == bpf_htons(RC_ETH_P_8021AD)) {
		if (bpf_skb_load_bytes(skb, 16, &proto, sizeof(proto)))
			return;
		off += 4;
	}
	if (proto == bpf_htons(RC_ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, off, &vihl, 1) ||
		    bpf_skb_load_bytes(skb, off + 6, &frag, 2) ||
		    bpf_skb_load_bytes(skb, off + 9, &m->proto, 1) ||
		    bpf_skb_load_bytes(skb, off + 12, m->t.saddr, 4) ||
		    bpf_skb_load_bytes(skb, off + 16, m->t.daddr, 4))
			return;
		m->t.family = AF_INET;
		if (frag & bpf_htons(0x1fff))
			return; /* a later fragment: no ports */
		off += (vihl & 0xf) * 4;
	} else if (proto == bpf_htons(RC_ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, off + 6, &m->proto, 1) ||
		    bpf_skb_load_bytes(skb, off + 8, m->t.saddr, 16) ||
		    bpf_skb_load_bytes(skb, off + 24, m->t.daddr, 16))
			return;
		m->t.family = AF_INET6;
		off += 40;
	} else {
		return;
	}
	if (m->proto != RC_IPPROTO_TCP && m->proto != RC_IPPROTO_UDP)
		return;
	if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)))
		return;
	m->t.sport = bpf_ntohs(ports[0]);
	m->t.dport = bpf_ntohs(ports[1]);
	m->has_ports = 1;
}

static __always_inline bool addr_eq(const __u8 *a, const volatile __u8 *b, __u32 family)
{
	const __u32 *x = (const __u32 *)a;
	const volatile __u32 *y = (const volatile __u32 *)b;

	if (family == AF_INET)
		return x[0] == y[0];
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline bool pkt_test(const volatile struct rc_pkt_test *t,
				     const struct pkt_meta *m)
{
	__u32 v = t->value;
	bool host = m->t.family && m->t.family == v;

	switch (t->op) {
	case RC_PT_PROTO:
		return m->t.family && m->proto == v;
	case RC_PT_FAMILY:
		return m->t.family == v;
	case RC_PT_PORT:
		return m->has_ports && (m->t.sport == v || m->t.dport == v);
	case RC_PT_SPORT:
		return m->has_ports && m->t.sport == v;
	case RC_PT_DPORT:
		return m->has_ports && m->t.dport == v;
	case RC_PT_HOST:
		return host && (addr_eq(m->t.saddr, t->addr, v) || addr_eq(m->t.daddr, t->addr, v));
	case RC_PT_SHOST:
		return host && addr_eq(m->t.saddr, t->addr, v);
	case RC_PT_DHOST:
		return host && addr_eq(m->t.daddr, t->addr, v);
	}
	return false;
}

static __always_inline bool pkt_match(const struct pkt_meta *m)
{
	bool ok = true;
	__u32 i;

	if (pkt_ntests == 0)
		return true;
	for (i = 0; i < RC_PKT_TESTS_MAX && i < pkt_ntests; i++) {
		const volatile struct rc_pkt_test *t = &pkt_tests[i];

		if (ok && pkt_test(t, m) == !!t->negate)
			ok = false;
		if (t->last) {
			if (ok)
				return true;
			ok = true;
		}
	}
	return false;
}

static __always_inline int pkt_capture(struct __sk_buff *skb, __u8 direction)
{
	struct pkt_meta m = {};
	struct rc_tuple key = {};
	struct rc_ident *id = NULL;
	struct rc_pkt_scratch *s;
	__u32 zero = 0, total, i;
	/* 64-bit: a u32 is tested on a zero-extended copy the verifier does
	 * not link to the register passed to the helper. */
	__u64 send_len, off, len;
	void *ring;

	pkt_parse(skb, &m);
	if (!pkt_match(&m))
		return TCX_NEXT;
	if (m.has_ports) {
		/* The local end: the source of what leaves, the destination of what arrives. */
		key.family = m.t.family;
		if (direction == RC_DIR_SEND) {
			key.sport = m.t.sport;
			key.dport = m.t.dport;
			__builtin_memcpy(key.saddr, m.t.saddr, 16);
			__builtin_memcpy(key.daddr, m.t.daddr, 16);
		} else {
			key.sport = m.t.dport;
			key.dport = m.t.sport;
			__builtin_memcpy(key.saddr, m.t.daddr, 16);
			__builtin_memcpy(key.daddr, m.t.saddr, 16);
		}
		id = bpf_map_lookup_elem(&rc_flows, &key);
	}
	if (!filter_pass_ident(id))
		return TCX_NEXT;
	s = bpf_map_lookup_elem(&rc_pkt_scratch, &zero);
	if (!s)
		return TCX_NEXT;
	__builtin_memset(&s->rec.hdr, 0, sizeof(s->rec.hdr));
	s->rec.hdr.kind = RC_KIND_PACKET;
	s->rec.hdr.ts_ns = bpf_ktime_get_boot_ns();
	if (id) {
		s->rec.hdr.uid = id->uid;
		s->rec.hdr.pid = id->pid;
		s->rec.hdr.tid = id->tid;
		__builtin_memcpy(s->rec.hdr.comm, id->comm, sizeof(s->rec.hdr.comm));
	}
	total = skb->len;
	send_len = total < snap_len ? total : snap_len;
	s->call_seq++;
	s->rec.chunk.total_len = total;
	s->rec.chunk.call_seq = s->call_seq;
	s->rec.ifindex = skb->ifindex;
	s->rec.direction = direction;
	s->rec._pad[0] = 0;
	s->rec._pad[1] = 0;
	s->rec._pad[2] = 0;
	ring = rc_ring();
	for (i = 0; i < RC_PKT_CHUNKS; i++) {
		off = i * RC_CHUNK_MAX;
		if (off >= send_len)
			break;
		len = send_len - off;
		if (len > RC_CHUNK_MAX)
			len = RC_CHUNK_MAX;
		/* Tested here, in the register passed to the helper. */
		barrier_var(len);
		if (len == 0)
			break;
		s->rec.chunk.offset = off;
		s->rec.chunk.len = len;
		s->rec.hdr.flags = (i == 0 ? RC_F_FIRST : 0) | (off + len >= send_len ? RC_F_LAST : 0);
		if (bpf_skb_load_bytes(skb, off, s->payload, len)) {
			struct rc_counters *cnt = rc_counters_get();

			if (cnt) {
				cnt->lost++;
				cnt->lost_bytes += len;
			}
			continue;
		}
		rc_output(ring, &s->rec, sizeof(struct rc_packet) + len, len);
	}
	return TCX_NEXT;
}

SEC("classifier")
int rc_tc_ingress(struct __sk_buff *skb)
{
	return pkt_capture(skb, RC_DIR_RECV);
}

SEC("classifier")
int rc_tc_egress(struct __sk_buff *skb)
{
	return pkt_capture(skb, RC_DIR_SEND);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
