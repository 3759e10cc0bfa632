// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * gnutls.bpf.c — GnuTLS (libgnutls.so.30) plaintext and session secrets.
 *
 * Hooks (see ebpf/README.md):
 *  - uprobe on gnutls_record_send2 (gnutls_record_send is a stub that
 *    tail-jumps into it: hooking both would double every write),
 *    gnutls_record_send_range and gnutls_record_send_early_data (send),
 *    gnutls_record_recv, gnutls_record_recv_seq and
 *    gnutls_record_recv_early_data (receive); one uretprobe program on all
 *    of them emits the bytes moved (ret > 0) as struct rc_data records
 *    (RC_KIND_GNUTLS_DATA);
 *  - uprobe + uretprobe on gnutls_handshake: the session is saved at entry
 *    (by pid_tgid) and, when the handshake returns 0, its secrets are read
 *    and emitted as struct rc_gnutls_secret (RC_KIND_GNUTLS_SECRET);
 *  - raw tracepoint sys_enter (rc_calls.bpf.h): the fd of the socket syscall
 *    made inside a call whose transport is not an fd (custom push/pull).
 *
 * Every offset is a load-time global set by user space: the transport and
 * cork offsets are decoded from the library's own accessors, the session
 * layout comes from a table of verified versions (the handshake probes are
 * attached only for those).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"
#include "rc_calls.bpf.h"

/* session->internals.transport_recv_ptr / _send_ptr (0: unknown, the fd
 * comes from the socket syscall), from gnutls_transport_get_int(2). */
const volatile __u32 transport_recv_off = 0;
const volatile __u32 transport_send_off = 0;
/* session->internals.rsend_state and its RECORD_SEND_CORKED value, from
 * gnutls_record_cork (0: unknown). CORKED and CORKED_TO_KU (the next
 * value) only buffer: the bytes are sent (and captured) by
 * gnutls_record_uncork's gnutls_record_send. */
const volatile __u32 cork_off = 0;
const volatile __u32 cork_state = 0;

/* Session layout of the key log (set with the handshake probes). */
const volatile __u32 sp_prf_off = 0;        /* security_parameters.prf (mac_entry_st *) */
const volatile __u32 mac_id_off = 0;        /* mac_entry_st.id */
const volatile __u32 sp_master_off = 0;     /* security_parameters.master_secret[48] */
const volatile __u32 sp_random_off = 0;     /* security_parameters.client_random[32] */
const volatile __u32 sp_pversion_off = 0;   /* security_parameters.pversion (version_entry_st *) */
const volatile __u32 version_id_off = 0;    /* version_entry_st.id */
const volatile __u32 tls13_secrets_off = 0; /* key.proto.tls13.e_ckey: then hs_ckey, hs_skey,
					     * ap_ckey, ap_skey, ap_expkey, 64 bytes each */

/* A transport pointer below this is an fd (gnutls_transport_set_int, or an
 * fd cast to a pointer); anything else is the application's object. */
#define RC_FD_LIMIT (1ULL << 20)

/* gnutls_protocol_t, gnutls_mac_algorithm_t (public enums). */
#define GNUTLS_SSL3 1
#define GNUTLS_TLS1_0 2
#define GNUTLS_TLS1_1 3
#define GNUTLS_TLS1_2 4
#define GNUTLS_TLS1_3 5
#define GNUTLS_DTLS0_9 200
#define GNUTLS_DTLS1_0 201
#define GNUTLS_DTLS1_2 202
#define GNUTLS_MAC_SHA256 6
#define GNUTLS_MAC_SHA384 7
#define GNUTLS_E_AGAIN (-28)
#define GNUTLS_E_INTERRUPTED (-52)

_Static_assert(__builtin_offsetof(struct rc_gnutls_secret, exporter) ==
		       __builtin_offsetof(struct rc_gnutls_secret, early_secret) + 5 * 64,
	       "the TLS 1.3 secrets are read into the record in one copy");

/* gnutls_handshake in flight: the session, by pid_tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} rc_handshakes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_gnutls_secret);
} rc_secret_scratch SEC(".maps");

/* The fd in the session's transport pointer at off, -1 if it is not one. */
static __always_inline __s32 transport_fd(__u64 session, __u32 off)
{
	__u64 ptr = 0;

	if (!off || bpf_probe_read_user(&ptr, sizeof(ptr), (void *)(session + off)))
		return -1;
	return ptr < RC_FD_LIMIT ? (__s32)ptr : -1;
}

static __always_inline int data_entry(__u64 session, __u64 buf, __u8 direction)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 off = direction == RC_DIR_SEND ? transport_send_off : transport_recv_off;

	if (!session)
		return 0;
	if (!rc_filter_pass(pid_tgid))
		return 0;
	/* no slot: counted lost by rc_call_enter */
	rc_call_enter(pid_tgid, session, buf, 0, transport_fd(session, off), direction, 0);
	return 0;
}

/* gnutls_record_send2(session, data, size, pad, flags) */
SEC("uprobe")
int BPF_KPROBE(rc_gnutls_send2_entry, void *session, const void *data, size_t size)
{
	__u32 state = 0;

	if (session && cork_off &&
	    !bpf_probe_read_user(&state, sizeof(state), (void *)((__u64)session + cork_off)) &&
	    (state == cork_state || state == cork_state + 1))
		return 0; /* corked: only buffered, sent at uncork */
	return data_entry((__u64)session, (__u64)data, RC_DIR_SEND);
}

/* gnutls_record_send_range(session, data, size, range),
 * gnutls_record_send_early_data(session, data, size) */
SEC("uprobe")
int BPF_KPROBE(rc_gnutls_send_entry, void *session, const void *data, size_t size)
{
	return data_entry((__u64)session, (__u64)data, RC_DIR_SEND);
}

/* gnutls_record_recv(session, data, size), gnutls_record_recv_seq(session,
 * data, size, seq), gnutls_record_recv_early_data(session, data, size) */
SEC("uprobe")
int BPF_KPROBE(rc_gnutls_recv_entry, void *session, void *data, size_t size)
{
	return data_entry((__u64)session, (__u64)data, RC_DIR_RECV);
}

/* Every data call's return: ssize_t bytes moved, 0 at close, < 0 error. */
SEC("uretprobe")
int rc_gnutls_data_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	long ret = PT_REGS_RC(ctx);
	struct rc_call call;

	if (!rc_call_exit(pid_tgid, &call))
		return 0;
	if (ret <= 0)
		return 0;
	rc_emit_data(pid_tgid, RC_KIND_GNUTLS_DATA, call.direction, call.fd, call.buf,
		     ret > 0xffffffffL ? 0xffffffffU : (__u32)ret);
	return 0;
}

/* gnutls_handshake(session) */
SEC("uprobe")
int BPF_KPROBE(rc_gnutls_handshake_entry, void *session)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 s = (__u64)session;

	if (!s)
		return 0;
	if (!rc_filter_pass(pid_tgid))
		return 0;
	bpf_map_update_elem(&rc_handshakes, &pid_tgid, &s, BPF_ANY);
	return 0;
}

static __always_inline __u32 wire_version(__s32 id)
{
	switch (id) {
	case GNUTLS_SSL3:
		return 0x0300;
	case GNUTLS_TLS1_0:
		return 0x0301;
	case GNUTLS_TLS1_1:
		return 0x0302;
	case GNUTLS_TLS1_2:
		return 0x0303;
	case GNUTLS_TLS1_3:
		return 0x0304;
	case GNUTLS_DTLS0_9:
		return 0x0100;
	case GNUTLS_DTLS1_0:
		return 0xfeff;
	case GNUTLS_DTLS1_2:
		return 0xfefd;
	default:
		return 0;
	}
}

/* The int at *(*(session + ptr_off) + field_off), or -1. */
static __always_inline __s32 entry_id(__u64 session, __u32 ptr_off, __u32 field_off)
{
	__u64 entry = 0;
	__s32 id = -1;

	if (bpf_probe_read_user(&entry, sizeof(entry), (void *)(session + ptr_off)) || !entry)
		return -1;
	if (bpf_probe_read_user(&id, sizeof(id), (void *)(entry + field_off)))
		return -1;
	return id;
}

SEC("uretprobe")
int rc_gnutls_handshake_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	int ret = (int)PT_REGS_RC(ctx);
	struct rc_gnutls_secret *g;
	__u64 *saved, session;
	__u32 zero = 0;
	__s32 mac;

	saved = bpf_map_lookup_elem(&rc_handshakes, &pid_tgid);
	if (!saved)
		return 0;
	session = *saved;
	/* A non-blocking handshake returns EAGAIN/INTERRUPTED and is called again. */
	if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED)
		return 0;
	bpf_map_delete_elem(&rc_handshakes, &pid_tgid);
	if (ret != 0)
		return 0;
	g = bpf_map_lookup_elem(&rc_secret_scratch, &zero);
	if (!g)
		return 0;
	__builtin_memset(g, 0, sizeof(*g));
	rc_fill_hdr(&g->hdr, RC_KIND_GNUTLS_SECRET, pid_tgid);
	g->version = wire_version(entry_id(session, sp_pversion_off, version_id_off));
	mac = entry_id(session, sp_prf_off, mac_id_off);
	g->hash_len = mac == GNUTLS_MAC_SHA256 ? 32 : mac == GNUTLS_MAC_SHA384 ? 48 : 0;
	if (bpf_probe_read_user(g->client_random, sizeof(g->client_random),
				(void *)(session + sp_random_off))) {
		/* unreadable: no key log line can be made without it */
		struct rc_counters *cnt = rc_counters_get();

		if (cnt)
			cnt->lost++;
		return 0;
	}
	if (g->version == 0x0304) {
		/* the six 64-byte secrets are contiguous in the session and in the record */
		if (bpf_probe_read_user(g->early_secret, 6 * 64, (void *)(session + tls13_secrets_off)))
			__builtin_memset(g->early_secret, 0, 6 * 64);
	} else if (bpf_probe_read_user(g->master_secret, sizeof(g->master_secret),
				       (void *)(session + sp_master_off))) {
		__builtin_memset(g->master_secret, 0, sizeof(g->master_secret));
	}
	rc_output(rc_ring(), g, sizeof(*g), 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
