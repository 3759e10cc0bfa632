// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * gotls.bpf.c — Go crypto/tls plaintext and key logs (amd64, Go >= 1.17
 * register ABI), shared/spec/GOTLS.md.
 *
 * Plain uprobes only: a uretprobe rewrites the return address on a
 * goroutine stack that Go may move (the program dies with "unexpected
 * return pc"), and a goroutine may return on another thread than it
 * entered, so nothing is paired between entry and return:
 *  - rc_gotls_write, at the entry of (*Conn).writeRecordLocked(typ, data)
 *    (more exactly at its stack check, see at_morestack):
 *    conn = RAX, typ = RBX (23, application data, only), data = RCX/RDI;
 *  - rc_gotls_read_copy, at (*Conn).Read(b)'s one `call runtime.memmove`
 *    (the copy of the plaintext into b: memmove(to RAX, from RBX, n RCX)):
 *    n = RCX bytes from RBX; conn from its spill slot (SP + go_read_conn_sp);
 *  - or, when Read has no such single call, rc_gotls_read at every RET of
 *    Read (user space decodes the function and attaches one probe per
 *    `ret`): n = RAX; conn and b.ptr are read from the argument spill slots
 *    the prologue wrote in the caller's frame (SP + go_read_conn_sp /
 *    go_read_buf_sp at the RET, offsets found by decoding the prologue).
 *    A call is emulated by the kernel; a `ret` is single-stepped out of
 *    line, which costs ~15 us per hit in this VM against ~1.3 us;
 *  - rc_gotls_keylog, at the entry of (*Config).writeKeyLog(label,
 *    clientRandom, secret): label = RBX/RCX, clientRandom = RDI/RSI,
 *    secret = R9/R10 (called whether or not a KeyLogWriter is set).
 * The fd comes from the Go net structures: tls.Conn.conn (an interface) ->
 * its itab's type hash must be *net.TCPConn's or *net.UnixConn's (hashes
 * read from the binary by user space) -> *netFD -> pfd.Sysfd; the socket
 * and tuple from the fd (rc_sock_of_fd).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"

#define GO_RECORD_TYPE_APPLICATION_DATA 23

/* Layout of the target's Go version, set by user space at load time. */
const volatile __u32 go_conn_iface_off = 0; /* tls.Conn.conn (net.Conn) */
const volatile __u32 go_netfd_off = 0;      /* *net.TCPConn -> conn.fd (*netFD) */
const volatile __u32 go_sysfd_off = 16;     /* netFD.pfd.Sysfd (int) */
const volatile __u32 go_itab_hash_off = 16; /* itab.hash: the dynamic type's hash */
const volatile __u32 go_tcpconn_hash = 0;   /* 0: unknown */
const volatile __u32 go_unixconn_hash = 0;
const volatile __u32 go_read_conn_sp = 8;   /* Read: receiver's spill slot, from SP at RET */
const volatile __u32 go_read_buf_sp = 16;   /* Read: b.ptr's spill slot */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_gotls_key);
} rc_key_scratch SEC(".maps");

/* The fd of a *tls.Conn over a TCP or Unix connection, -1 otherwise. */
static __always_inline __s32 go_conn_fd(__u64 conn)
{
	__u64 iface[2] = {}, netfd = 0;
	__u32 hash = 0;
	__s64 sysfd = -1;

	if (!conn || (!go_tcpconn_hash && !go_unixconn_hash))
		return -1;
	if (bpf_probe_read_user(iface, sizeof(iface), (void *)(conn + go_conn_iface_off)) ||
	    !iface[0] || !iface[1])
		return -1;
	if (bpf_probe_read_user(&hash, sizeof(hash), (void *)(iface[0] + go_itab_hash_off)) ||
	    !hash || (hash != go_tcpconn_hash && hash != go_unixconn_hash))
		return -1;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(iface[1] + go_netfd_off)) || !netfd)
		return -1;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(netfd + go_sysfd_off)))
		return -1;
	return sysfd < 0 || sysfd > 0x7fffffff ? -1 : (__s32)sysfd;
}

/*
 * Entry probes sit on the prologue's stack check, `jbe runtime.morestack`
 * (attach cookie 1), where the arguments are still in their registers:
 * when the branch is taken (CF or ZF), the stack is grown and morestack
 * jumps back to the entry, so the call is seen at the next hit instead
 * (an entry probe would report it twice). The branch is emulated by the
 * kernel, no out-of-line single step.
 */
static __always_inline bool at_morestack(struct pt_regs *ctx)
{
	return bpf_get_attach_cookie(ctx) == 1 && (ctx->flags & (0x1 /* CF */ | 0x40 /* ZF */));
}

static __always_inline __u32 clamp_len(__s64 n)
{
	if (n <= 0)
		return 0;
	return n > 0xffffffffLL ? 0xffffffffU : (__u32)n;
}

SEC("uprobe")
int rc_gotls_write(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 len;

	if ((__u8)ctx->bx != GO_RECORD_TYPE_APPLICATION_DATA || at_morestack(ctx))
		return 0;
	if (!rc_filter_pass(pid_tgid))
		return 0;
	len = clamp_len((__s64)ctx->di);
	if (!len)
		return 0;
	rc_emit_data(pid_tgid, RC_KIND_GOTLS_DATA, RC_DIR_SEND, go_conn_fd(ctx->ax), ctx->cx, len);
	return 0;
}

SEC("uprobe")
int rc_gotls_read(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 conn = 0, buf = 0;
	__u32 len = clamp_len((__s64)ctx->ax);

	if (!len) /* error or nothing read */
		return 0;
	if (!rc_filter_pass(pid_tgid))
		return 0;
	if (bpf_probe_read_user(&buf, sizeof(buf), (void *)(ctx->sp + go_read_buf_sp)) || !buf) {
		struct rc_counters *cnt = rc_counters_get();

		if (cnt) {
			cnt->lost++;
			cnt->lost_bytes += len;
		}
		return 0;
	}
	bpf_probe_read_user(&conn, sizeof(conn), (void *)(ctx->sp + go_read_conn_sp));
	rc_emit_data(pid_tgid, RC_KIND_GOTLS_DATA, RC_DIR_RECV, go_conn_fd(conn), buf, len);
	return 0;
}

SEC("uprobe")
int rc_gotls_read_copy(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 conn = 0;
	__u32 len = clamp_len((__s64)ctx->cx);

	if (!len || !ctx->bx)
		return 0;
	if (!rc_filter_pass(pid_tgid))
		return 0;
	bpf_probe_read_user(&conn, sizeof(conn), (void *)(ctx->sp + go_read_conn_sp));
	rc_emit_data(pid_tgid, RC_KIND_GOTLS_DATA, RC_DIR_RECV, go_conn_fd(conn), ctx->bx, len);
	return 0;
}

SEC("uprobe")
int rc_gotls_keylog(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 label = ctx->bx, label_len = ctx->cx;
	__u64 random = ctx->di, random_len = ctx->si;
	__u64 secret = ctx->r9, secret_len = ctx->r10;
	struct rc_gotls_key *k;
	__u32 zero = 0, n;

	if (at_morestack(ctx) || !rc_filter_pass(pid_tgid))
		return 0;
	if (random_len != sizeof(k->client_random) || !label_len || !secret_len)
		return 0;
	k = bpf_map_lookup_elem(&rc_key_scratch, &zero);
	if (!k)
		return 0;
	rc_fill_hdr(&k->hdr, RC_KIND_GOTLS_KEY, pid_tgid);
	__builtin_memset(k->label, 0, sizeof(k->label));
	__builtin_memset(k->secret, 0, sizeof(k->secret));
	n = label_len > sizeof(k->label) ? sizeof(k->label) : (__u32)label_len;
	k->label_len = n;
	if (bpf_probe_read_user(k->label, n & (sizeof(k->label) * 2 - 1), (void *)label))
		goto unreadable;
	if (bpf_probe_read_user(k->client_random, sizeof(k->client_random), (void *)random))
		goto unreadable;
	n = secret_len > sizeof(k->secret) ? sizeof(k->secret) : (__u32)secret_len;
	k->secret_len = n;
	if (bpf_probe_read_user(k->secret, n & (sizeof(k->secret) * 2 - 1), (void *)secret))
		goto unreadable;
	rc_output(rc_ring(), k, sizeof(*k), 0);
	return 0;
unreadable: {
	struct rc_counters *cnt = rc_counters_get();

	if (cnt)
		cnt->lost++;
	return 0;
}
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
