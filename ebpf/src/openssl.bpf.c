// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * openssl.bpf.c — OpenSSL 1.1.1 – 4.0 and BoringSSL plaintext and secrets.
 *
 * Hooks (see ebpf/README.md):
 *  - uprobe + uretprobe on SSL_write, SSL_write_ex, SSL_read, SSL_read_ex:
 *    arguments are saved at entry keyed by pid_tgid (Debian's build zeroes the
 *    argument registers before `ret`), the bytes actually moved are emitted at
 *    return as struct rc_data records (RC_KIND_TLS_DATA), split into chunks of
 *    at most RC_CHUNK_MAX bytes, up to `max_payload` bytes per call; 3.3+
 *    also SSL_write_ex2, and in stripped executables ssl_read_internal and
 *    ssl_write_internal instead (rc_ssl_write_ex2_entry: 5 arguments);
 *  - at entry, once per (SSL *, client_random) after the handshake: struct
 *    rc_master_secret (RC_KIND_MASTER_SECRET);
 *  - uprobe on SSL_set_fd / SSL_set_rfd / SSL_set_wfd: fd per SSL pointer;
 *  - per SSL pointer (rc_ssl), once the secrets are sent: the BIO fd, socket
 *    and tuple, so the BIO and socket walks run once per connection;
 *  - raw tracepoint sys_enter (write/sendto/sendmsg, read/recvfrom/recvmsg
 *    only): the fd of the socket syscall a thread makes inside a TLS call
 *    (custom BIOs, e.g. curl's, hide the fd from the SSL object).
 *
 * Offsets are load-time globals set by user space from the layout table
 * generated from each release's own headers (target/openssl_layouts.rs):
 * OpenSSL 1.1.1 (s3 behind a pointer), 3.0/3.1, and 3.2+ (SSL * is an
 * SSL_CONNECTION whose base header's `type` tells TLS connections from QUIC
 * objects, which are skipped and counted). With no known layout
 * (`layout_known` = 0) no SSL field is read: plaintext only, the fd from
 * SSL_set_fd or the socket syscalls.
 *
 * BoringSSL (`flavor_boring` = 1, layout of boring-sys 5.4.0's BoringSSL,
 * target/boringssl_layout.rs): no SSL_write_ex/SSL_read_ex; the state is in
 * s3 (behind a pointer): the handshake is complete when s3->hs is NULL and
 * s3->established_session is set; the application traffic secrets are
 * s3's write/read secrets (by the `server` bit), TLS 1.2's master secret is
 * the established session's. The handshake traffic secrets live only in
 * s3->hs, freed when the handshake ends: they are read when the internal
 * bssl::ssl_run_handshake returns (entry + return probes, where the symbol
 * is there). Secrets that fail the checks (version, cipher suite, secret
 * lengths: another BoringSSL than the one the layout is of) are not sent,
 * counted in rc_skipped.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "records.h"
#include "rc_common.bpf.h"
#include "rc_calls.bpf.h"

/* The layout (user space checks that every head field lies in RC_SSL_HEAD). */
const volatile __u32 layout_known = 0;
const volatile __u32 type_check = 0; /* 3.2+: int type at SSL*+0 must be conn_type */
const volatile __u32 conn_type = 0;
const volatile __u32 version_off = 0;
const volatile __u32 rbio_off = 0;
const volatile __u32 wbio_off = 0;
const volatile __u32 hand_state_off = 0;
const volatile __u32 s3_ptr = 0;            /* 1.1.1: s3 is a pointer */
const volatile __u32 s3_off = 0;
const volatile __u32 client_random_off = 0; /* in s3 */
const volatile __u32 handshake_secret_off = 0;
const volatile __u32 handshake_traffic_hash_off = 0;
const volatile __u32 client_app_traffic_secret_off = 0;
const volatile __u32 server_app_traffic_secret_off = 0;
const volatile __u32 exporter_master_secret_off = 0;
const volatile __u32 session_off = 0;
const volatile __u32 session_master_key_length_off = 0;
const volatile __u32 session_master_key_off = 0;
const volatile __u32 session_cipher_off = 0;
const volatile __u32 cipher_id_off = 0;
const volatile __u32 bio_method_off = 0;
const volatile __u32 bio_num_off = 0;

/* BoringSSL (with layout_known = 1, s3_off, rbio_off, wbio_off, bio_*_off). */
const volatile __u32 flavor_boring = 0;
const volatile __u32 b_server_byte = 0;   /* ssl: the byte of the `server` bit-field */
const volatile __u32 b_server_mask = 0;
const volatile __u32 b_client_random = 0; /* in s3 */
const volatile __u32 b_version = 0;       /* s3: u16 */
const volatile __u32 b_hs = 0;            /* s3: SSL_HANDSHAKE * */
const volatile __u32 b_write_secret = 0;  /* s3: InplaceVector<u8, 48> */
const volatile __u32 b_read_secret = 0;
const volatile __u32 b_exporter_secret = 0;
const volatile __u32 b_established = 0;   /* s3: SSL_SESSION * */
const volatile __u32 b_secret_len = 0;    /* the length byte in an InplaceVector<u8, 48> */
const volatile __u32 b_hs_ssl = 0;        /* hs: SSL * */
const volatile __u32 b_hs_client_secret = 0; /* hs: client handshake traffic secret */
const volatile __u32 b_hs_server_secret = 0;
const volatile __u32 b_session_secret = 0;   /* session: InplaceVector<u8, 48> */
const volatile __u32 b_session_cipher = 0;
const volatile __u32 b_cipher_protocol_id = 0; /* cipher: u16 */

#define BIO_TYPE_FD 0x504
#define BIO_TYPE_SOCKET 0x505
#define TLS_ST_OK 1

/* The bytes of an SSL read at every entry, from offset 0, in one user read
 * (each costs ~100 ns here, whatever its size): type, version, rbio, wbio,
 * hand_state, s3 (1.1.1: its pointer). Must match RC_SSL_HEAD in
 * target/openssl.rs. */
#define RC_SSL_HEAD 0x1c0
/* BoringSSL: the bytes of s3 read at every entry, from offset 0 (client_random,
 * version, hs, the traffic secrets, established_session). Must match
 * RC_BORING_S3_HEAD in target/openssl.rs. */
#define RC_BORING_S3_HEAD 0x1d8
/* An InplaceVector<u8, 48> secret: its data then its length byte. */
#define RC_BORING_SECRET 49

/* Why a call or a secret was skipped (rc_skipped, per CPU; the names are
 * MODULE.skipped in target/openssl.rs). */
enum rc_ssl_skip {
	RC_SKIP_NOT_CONNECTION = 0, /* 3.2+: a QUIC object, not an SSL_CONNECTION */
	RC_SKIP_BAD_SECRET = 1,     /* the secrets failed the sanity checks */
	RC_SKIP_MAX = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RC_SKIP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rc_skipped SEC(".maps");

static __always_inline void count_skip(__u32 why)
{
	__u64 *n = bpf_map_lookup_elem(&rc_skipped, &why);

	if (n)
		(*n)++;
}

/*
 * Per SSL pointer: the fd learnt from SSL_set_fd or a syscall (for calls that
 * make no syscall, e.g. buffered reads), and, once the connection's secrets
 * were sent, its client_random and what the calls resolved: the BIO and its
 * fd per direction, the socket and tuple of an fd. The cache is only used
 * while the handshake is complete and client_random (read at every entry)
 * and the process match, so a new handshake or a reused pointer resets it.
 */
struct rc_ssl_state {
	__u8 client_random[32];
	__u64 bio[2];      /* by RC_DIR_SEND? 1 : 0 */
	__s32 bio_fd[2];
	__u64 sock;
	struct rc_tuple tuple;
	__s32 sock_fd;
	__s32 known_fd;    /* -1: none */
	__u32 tgid;
	__u8 conn_valid;   /* client_random/tgid valid: secrets sent */
	__u8 bio_valid[2];
	__u8 sock_valid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct rc_ssl_state);
} rc_ssl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_master_secret);
} rc_secret_scratch SEC(".maps");

/* The fd of a socket/fd BIO at user address bio, -1 for other BIOs. */
static __always_inline __s32 bio_num_fd(__u64 bio)
{
	__u64 method = 0;
	__s32 type = 0, num = -1;

	if (!bio)
		return -1;
	if (bpf_probe_read_user(&method, sizeof(method), (void *)(bio + bio_method_off)) || !method)
		return -1;
	if (bpf_probe_read_user(&type, sizeof(type), (void *)method))
		return -1;
	if (type != BIO_TYPE_SOCKET && type != BIO_TYPE_FD)
		return -1;
	if (bpf_probe_read_user(&num, sizeof(num), (void *)(bio + bio_num_off)))
		return -1;
	return num < 0 ? -1 : num;
}

/* A TLS/DTLS protocol version as OpenSSL stores it. */
static __always_inline bool version_plausible(__s32 v)
{
	return (v >= 0x0300 && v <= 0x0304) || v == 0xfeff || v == 0xfefd;
}

/* The per-CPU secret record, its header and identity filled in; NULL if none. */
static __always_inline struct rc_master_secret *secret_record(__u64 pid_tgid, const __u8 *cr,
							       __u32 version, __u32 cipher_id,
							       __u8 hs_form)
{
	__u32 zero = 0;
	struct rc_master_secret *ms = bpf_map_lookup_elem(&rc_secret_scratch, &zero);

	if (!ms)
		return NULL;
	rc_fill_hdr(&ms->hdr, RC_KIND_MASTER_SECRET, pid_tgid);
	__builtin_memcpy(ms->client_random, cr, sizeof(ms->client_random));
	ms->version = version;
	ms->cipher_id = cipher_id;
	ms->hs_form = hs_form;
	__builtin_memset(ms->_pad, 0, sizeof(ms->_pad));
	return ms;
}

/*
 * Sends the secrets of ssl (handshake complete, protocol version, client_random
 * cr); true if sent. A session, cipher or version that does not look like
 * OpenSSL's (another layout than the one loaded) sends nothing: counted.
 */
static __always_inline bool emit_secret(__u64 ssl, __u64 pid_tgid, __s32 version, const __u8 *cr)
{
	struct rc_master_secret *ms;
	__u64 session = 0, cipher = 0, mkl = 0;
	__u32 cipher_id = 0;

	if (bpf_probe_read_user(&session, sizeof(session), (void *)(ssl + session_off)) ||
	    !session)
		return false;
	if (!version_plausible(version) ||
	    bpf_probe_read_user(&cipher, sizeof(cipher), (void *)(session + session_cipher_off)) ||
	    !cipher ||
	    bpf_probe_read_user(&cipher_id, sizeof(cipher_id), (void *)(cipher + cipher_id_off)) ||
	    (cipher_id >> 24) != 0x03) {
		count_skip(RC_SKIP_BAD_SECRET);
		return false;
	}
	ms = secret_record(pid_tgid, cr, version, cipher_id, RC_MS_HS_DERIVE);
	if (!ms)
		return false;
	bpf_probe_read_user(&mkl, sizeof(mkl), (void *)(session + session_master_key_length_off));
	ms->master_key_len = mkl > sizeof(ms->master_key) ? sizeof(ms->master_key) : (__u32)mkl;
	bpf_probe_read_user(ms->master_key, sizeof(ms->master_key),
			    (void *)(session + session_master_key_off));
	bpf_probe_read_user(ms->handshake_secret, sizeof(ms->handshake_secret),
			    (void *)(ssl + handshake_secret_off));
	bpf_probe_read_user(ms->handshake_traffic_hash, sizeof(ms->handshake_traffic_hash),
			    (void *)(ssl + handshake_traffic_hash_off));
	bpf_probe_read_user(ms->client_app_traffic_secret, sizeof(ms->client_app_traffic_secret),
			    (void *)(ssl + client_app_traffic_secret_off));
	bpf_probe_read_user(ms->server_app_traffic_secret, sizeof(ms->server_app_traffic_secret),
			    (void *)(ssl + server_app_traffic_secret_off));
	bpf_probe_read_user(ms->exporter_master_secret, sizeof(ms->exporter_master_secret),
			    (void *)(ssl + exporter_master_secret_off));
	/* not marked if lost: retried at the next call */
	return rc_output(rc_ring(), ms, sizeof(*ms), 0);
}

static __always_inline bool cr_equal(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* The SSL's state entry, created (fd unknown) if missing. */
static __always_inline struct rc_ssl_state *ssl_state_get(__u64 ssl)
{
	struct rc_ssl_state *st = bpf_map_lookup_elem(&rc_ssl, &ssl);
	struct rc_ssl_state init = {};

	if (st)
		return st;
	init.known_fd = -1;
	bpf_map_update_elem(&rc_ssl, &ssl, &init, BPF_NOEXIST);
	return bpf_map_lookup_elem(&rc_ssl, &ssl);
}

struct rc_ssl_head {
	__u8 b[RC_SSL_HEAD];
	__u8 cr[32]; /* client_random read through the s3 pointer (1.1.1) */
	__u8 s3[RC_BORING_S3_HEAD]; /* BoringSSL: the head of s3 */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rc_ssl_head);
} rc_head_scratch SEC(".maps");

/* The TYPE at buf + off, 0 unless it lies in buf's first cap bytes. */
#define RC_LOAD(type, buf, cap, off) \
	((off) > (cap) - sizeof(type) ? (type)0 : *(const type *)((buf) + (off)))

static __always_inline __s32 head_s32(const struct rc_ssl_head *h, __u32 off)
{
	return RC_LOAD(__s32, h->b, RC_SSL_HEAD, off);
}

static __always_inline __u64 head_u64(const struct rc_ssl_head *h, __u32 off)
{
	return RC_LOAD(__u64, h->b, RC_SSL_HEAD, off);
}

/* The connection's client_random (in the head, or read through s3), NULL if unreadable. */
static __always_inline const __u8 *head_client_random(struct rc_ssl_head *h)
{
	__u32 off = s3_off + client_random_off;
	__u64 s3;

	if (!s3_ptr) {
		if (off > RC_SSL_HEAD - sizeof(h->cr))
			return NULL;
		return h->b + off;
	}
	s3 = head_u64(h, s3_off);
	if (!s3 || bpf_probe_read_user(h->cr, sizeof(h->cr), (void *)(s3 + client_random_off)))
		return NULL;
	return h->cr;
}

static __always_inline __u64 s3_u64(const struct rc_ssl_head *h, __u32 off)
{
	return RC_LOAD(__u64, h->s3, RC_BORING_S3_HEAD, off);
}

static __always_inline __u16 s3_u16(const struct rc_ssl_head *h, __u32 off)
{
	return RC_LOAD(__u16, h->s3, RC_BORING_S3_HEAD, off);
}

/*
 * BoringSSL: reads s3 (its pointer in the SSL head) into h->s3; the
 * connection's client_random, NULL if unreadable.
 */
static __always_inline const __u8 *boring_read_s3(struct rc_ssl_head *h, __u64 *s3)
{
	*s3 = head_u64(h, s3_off);
	if (!*s3 || bpf_probe_read_user(h->s3, sizeof(h->s3), (void *)*s3))
		return NULL;
	if (b_client_random > RC_BORING_S3_HEAD - 32)
		return NULL;
	return h->s3 + b_client_random;
}

/* The length byte of an InplaceVector<u8, 48> copied to v[0..49): v[48] is cleared. */
static __always_inline __u8 secret_take_len(__u8 *v)
{
	__u8 n = v[48];

	v[48] = 0;
	return n;
}

/* One InplaceVector secret of s3 (in the head) into out[0..64): its length. */
static __always_inline __u32 boring_s3_secret(const struct rc_ssl_head *h, __u32 off, __u8 *out)
{
	__builtin_memset(out, 0, 64);
	if (off > RC_BORING_S3_HEAD - RC_BORING_SECRET || b_secret_len != 48)
		return 0xff;
	__builtin_memcpy(out, h->s3 + off, RC_BORING_SECRET);
	return secret_take_len(out);
}

/* One InplaceVector secret at user address at into out[0..64): its length (0xff unreadable). */
static __always_inline __u32 boring_user_secret(__u64 at, __u8 *out)
{
	__builtin_memset(out, 0, 64);
	if (b_secret_len != 48 || bpf_probe_read_user(out, RC_BORING_SECRET, (void *)at))
		return 0xff;
	return secret_take_len(out);
}

/*
 * BoringSSL: sends the secrets of ssl, whose s3 is in h (handshake complete,
 * client_random cr); hs: its SSL_HANDSHAKE while it still exists (the
 * handshake traffic secrets), else 0. True if sent. Anything implausible
 * for this layout (version, cipher suite, a secret's length) sends nothing:
 * counted.
 */
static __always_inline bool emit_secret_boring(__u64 pid_tgid, const struct rc_ssl_head *h,
					       const __u8 *cr, __u64 hs)
{
	struct rc_master_secret *ms;
	__u64 session = s3_u64(h, b_established), cipher = 0;
	__u16 version = s3_u16(h, b_version), id = 0;
	__u32 want, n1, n2, n3;
	__u8 hi, server = 0;
	bool ok;

	if (!session)
		return false;
	if (b_server_byte < RC_SSL_HEAD)
		server = (h->b[b_server_byte] & b_server_mask) != 0;
	hi = 0;
	ok = version >= 0x0301 && version <= 0x0304 &&
	     !bpf_probe_read_user(&cipher, sizeof(cipher), (void *)(session + b_session_cipher)) &&
	     cipher &&
	     !bpf_probe_read_user(&id, sizeof(id), (void *)(cipher + b_cipher_protocol_id));
	if (ok) {
		hi = id >> 8;
		ok = version == 0x0304 ? hi == 0x13 : (hi == 0x00 || hi == 0xc0 || hi == 0xcc);
	}
	if (!ok) {
		count_skip(RC_SKIP_BAD_SECRET);
		return false;
	}
	ms = secret_record(pid_tgid, cr, version, 0x03000000 | id, RC_MS_HS_TRAFFIC);
	if (!ms)
		return false;
	__builtin_memset(ms->master_key, 0, sizeof(ms->master_key));
	ms->master_key_len = 0;
	if (version < 0x0304) {
		/* TLS 1.2: the master secret, 48 bytes. */
		__builtin_memset(ms->client_app_traffic_secret, 0, 64);
		__builtin_memset(ms->server_app_traffic_secret, 0, 64);
		__builtin_memset(ms->exporter_master_secret, 0, 64);
		__builtin_memset(ms->handshake_secret, 0, 64);
		__builtin_memset(ms->handshake_traffic_hash, 0, 64);
		n1 = boring_user_secret(session + b_session_secret, ms->handshake_secret);
		__builtin_memcpy(ms->master_key, ms->handshake_secret, sizeof(ms->master_key));
		__builtin_memset(ms->handshake_secret, 0, 64);
		if (n1 != 48) {
			count_skip(RC_SKIP_BAD_SECRET);
			return false;
		}
		ms->master_key_len = n1;
		return rc_output(rc_ring(), ms, sizeof(*ms), 0);
	}
	/* TLS 1.3: every secret has the length of the suite's hash. */
	want = id == 0x1302 ? 48 : 32;
	n1 = boring_s3_secret(h, b_write_secret,
			      server ? ms->server_app_traffic_secret : ms->client_app_traffic_secret);
	n2 = boring_s3_secret(h, b_read_secret,
			      server ? ms->client_app_traffic_secret : ms->server_app_traffic_secret);
	n3 = boring_s3_secret(h, b_exporter_secret, ms->exporter_master_secret);
	if (n1 != want || n2 != want || n3 != want) {
		count_skip(RC_SKIP_BAD_SECRET);
		return false;
	}
	__builtin_memset(ms->handshake_secret, 0, 64);
	__builtin_memset(ms->handshake_traffic_hash, 0, 64);
	if (hs) {
		n1 = boring_user_secret(hs + b_hs_client_secret, ms->handshake_secret);
		n2 = boring_user_secret(hs + b_hs_server_secret, ms->handshake_traffic_hash);
		if (n1 != want || n2 != want) {
			count_skip(RC_SKIP_BAD_SECRET);
			return false;
		}
	}
	/* not marked if lost: retried at the next call */
	return rc_output(rc_ring(), ms, sizeof(*ms), 0);
}

/* Secrets sent for (ssl, cr): the calls of this connection use its cache. */
static __always_inline struct rc_ssl_state *mark_sent(__u64 ssl, struct rc_ssl_state *st,
						      const __u8 *cr, __u32 tgid)
{
	if (!st)
		st = ssl_state_get(ssl);
	if (st) {
		__builtin_memcpy(st->client_random, cr, sizeof(st->client_random));
		st->tgid = tgid;
		st->bio_valid[0] = 0;
		st->bio_valid[1] = 0;
		st->sock_valid = 0;
		st->conn_valid = 1;
	}
	return st;
}

/*
 * BoringSSL at an SSL_write/SSL_read entry (the SSL head read): once the
 * handshake is complete (s3->hs freed, the session established), the
 * secrets once per (SSL *, client_random). The connection's state entry if
 * its secrets were sent (its caches usable), else NULL.
 */
static __always_inline struct rc_ssl_state *boring_entry(__u64 ssl, __u64 pid_tgid,
						    struct rc_ssl_head *head)
{
	__u32 tgid = (__u32)(pid_tgid >> 32);
	struct rc_ssl_state *st;
	const __u8 *cr;
	__u64 s3;

	if (!head)
		return NULL;
	cr = boring_read_s3(head, &s3);
	if (!cr || s3_u64(head, b_hs) || !s3_u64(head, b_established))
		return NULL;
	st = bpf_map_lookup_elem(&rc_ssl, &ssl);
	if (st && st->conn_valid && st->tgid == tgid && cr_equal(st->client_random, cr))
		return st;
	if (!emit_secret_boring(pid_tgid, head, cr, 0))
		return NULL;
	return mark_sent(ssl, st, cr, tgid);
}

static __always_inline int on_entry(__u64 ssl, __u64 buf, __u64 len_ptr, __u8 direction)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = (__u32)(pid_tgid >> 32), zero = 0;
	struct rc_ssl_state *st = NULL;
	struct rc_ssl_head *head;
	struct rc_call *call;
	__u32 bio_off = direction == RC_DIR_SEND ? wbio_off : rbio_off;
	__u32 di = direction == RC_DIR_SEND ? 1 : 0;
	const __u8 *cr;
	__u64 bio = 0;
	__s32 fd;
	bool known = false;

	if (!ssl)
		return 0;
	if (!rc_filter_pass(pid_tgid))
		return 0;
	if (layout_known) {
		head = bpf_map_lookup_elem(&rc_head_scratch, &zero);
		if (!head)
			return 0;
		if (bpf_probe_read_user(head->b, sizeof(head->b), (void *)ssl))
			__builtin_memset(head->b, 0, sizeof(head->b));
		if (type_check && head_s32(head, 0) != (__s32)conn_type) {
			count_skip(RC_SKIP_NOT_CONNECTION);
			return 0;
		}
		bio = head_u64(head, bio_off);
		if (flavor_boring) {
			/* (for OpenSSL targets this branch is dead code, removed at load) */
			st = boring_entry(ssl, pid_tgid, head);
			if (st)
				known = true;
		} else {
			cr = head_client_random(head);
			/* Secrets, once per (SSL *, client_random) after the handshake. */
			if (cr && head_s32(head, hand_state_off) == TLS_ST_OK) {
				st = bpf_map_lookup_elem(&rc_ssl, &ssl);
				if (st && st->conn_valid && st->tgid == tgid &&
				    cr_equal(st->client_random, cr)) {
					known = true;
				} else if (emit_secret(ssl, pid_tgid, head_s32(head, version_off),
						       cr)) {
					st = mark_sent(ssl, st, cr, tgid);
					if (st)
						known = true;
				}
			}
		}
	}

	/* fd of the BIO (socket and fd BIOs), cached per BIO pointer. */
	if (known && st && di < 2 && st->bio_valid[di] && st->bio[di] == bio) {
		fd = st->bio_fd[di];
	} else {
		fd = bio_num_fd(bio);
		if (known && st && di < 2) {
			st->bio[di] = bio;
			st->bio_fd[di] = fd;
			st->bio_valid[di] = 1;
		}
	}
	/* Another BIO (e.g. curl's): the fd a syscall of this connection used. */
	if (fd < 0 && known && st && st->known_fd >= 0)
		fd = st->known_fd;

	call = rc_call_enter(pid_tgid, ssl, buf, len_ptr, fd, direction, 0);
	if (!call)
		return 0; /* no slot and no room in the overflow hash: counted lost */
	call->conn_known = known;
	if (known && st && fd >= 0 && st->sock_valid && st->sock_fd == fd) {
		/* the socket is resolved: the return needs no rc_ssl lookup */
		call->sock = st->sock;
		__builtin_memcpy(&call->tuple, &st->tuple, sizeof(call->tuple));
		call->sock_known = 1;
	}
	return 0;
}

static __always_inline int on_return(struct pt_regs *ctx, bool ex)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct rc_call *saved, *slot, call;
	struct rc_ssl_state *st;
	long ret = PT_REGS_RC(ctx);
	__u64 len = 0;

	saved = call_find(pid_tgid, &slot);
	if (!saved)
		return 0;
	call = *saved;
	if (call.fd_wait) {
		saved->fd_wait = 0;
		fd_waits_add(-1);
	}
	call_end(saved, slot);

	if (ex) {
		if ((int)ret != 1 || !call.len_ptr)
			return 0;
		if (bpf_probe_read_user(&len, sizeof(len), (void *)call.len_ptr))
			return 0;
	} else {
		if ((int)ret <= 0)
			return 0;
		len = (__u32)(int)ret;
	}
	if (!len)
		return 0;
	len = len > 0xffffffffULL ? 0xffffffffU : (__u32)len;

	if (call.sock_known) {
		/* Same connection, its socket resolved before: nothing to look up. */
		rc_emit_data_sock(pid_tgid, RC_KIND_TLS_DATA, call.direction, call.fd, call.sock,
				  &call.tuple, call.buf, (__u32)len);
		return 0;
	}
	if (call.fd >= 0) {
		if (call.fd_from_syscall) {
			st = ssl_state_get(call.conn);
			if (st)
				st->known_fd = call.fd;
		} else {
			st = call.conn_known ? bpf_map_lookup_elem(&rc_ssl, &call.conn) : NULL;
		}
	} else {
		st = bpf_map_lookup_elem(&rc_ssl, &call.conn);
		if (st && st->known_fd >= 0)
			call.fd = st->known_fd;
	}
	if (call.conn_known && st && call.fd >= 0 && st->conn_valid &&
	    st->tgid == (__u32)(pid_tgid >> 32)) {
		/* Same connection as when its socket was resolved: reuse it. */
		if (!st->sock_valid || st->sock_fd != call.fd) {
			st->sock = rc_sock_of_fd(call.fd, &st->tuple);
			st->sock_fd = call.fd;
			st->sock_valid = 1;
		}
		rc_emit_data_sock(pid_tgid, RC_KIND_TLS_DATA, call.direction, call.fd, st->sock,
				  &st->tuple, call.buf, (__u32)len);
		return 0;
	}
	rc_emit_data(pid_tgid, RC_KIND_TLS_DATA, call.direction, call.fd, call.buf, (__u32)len);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(rc_ssl_write_entry, void *ssl, const void *buf, int num)
{
	return on_entry((__u64)ssl, (__u64)buf, 0, RC_DIR_SEND);
}

SEC("uretprobe")
int rc_ssl_write_return(struct pt_regs *ctx)
{
	return on_return(ctx, false);
}

SEC("uprobe")
int BPF_KPROBE(rc_ssl_write_ex_entry, void *ssl, const void *buf, size_t num, size_t *written)
{
	return on_entry((__u64)ssl, (__u64)buf, (__u64)written, RC_DIR_SEND);
}

SEC("uretprobe")
int rc_ssl_write_ex_return(struct pt_regs *ctx)
{
	return on_return(ctx, true);
}

/* 3.3+: SSL_write_ex2(ssl, buf, num, flags, written), and in stripped
 * executables ssl_write_internal(ssl, buf, num, flags, written): the byte
 * count comes back through the 5th argument (return: rc_ssl_write_ex_return).
 * A nested entry (SSL_write_ex jumps to SSL_write_ex2) overwrites the
 * thread's call with the same arguments; the first return records it. */
SEC("uprobe")
int BPF_KPROBE(rc_ssl_write_ex2_entry, void *ssl, const void *buf, size_t num, __u64 flags,
	       size_t *written)
{
	return on_entry((__u64)ssl, (__u64)buf, (__u64)written, RC_DIR_SEND);
}

SEC("uprobe")
int BPF_KPROBE(rc_ssl_read_entry, void *ssl, void *buf, int num)
{
	return on_entry((__u64)ssl, (__u64)buf, 0, RC_DIR_RECV);
}

SEC("uretprobe")
int rc_ssl_read_return(struct pt_regs *ctx)
{
	return on_return(ctx, false);
}

SEC("uprobe")
int BPF_KPROBE(rc_ssl_read_ex_entry, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return on_entry((__u64)ssl, (__u64)buf, (__u64)readbytes, RC_DIR_RECV);
}

SEC("uretprobe")
int rc_ssl_read_ex_return(struct pt_regs *ctx)
{
	return on_return(ctx, true);
}

/*
 * BoringSSL's bssl::ssl_run_handshake(SSL_HANDSHAKE *hs, bool *early_return):
 * at its return (> 0: the handshake is done; SSL_do_handshake frees hs right
 * after) every secret is readable, the handshake traffic secrets too.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);   /* pid_tgid */
	__type(value, __u64); /* hs */
} rc_boring_hs SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(rc_boring_handshake_entry, void *hs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid(), h = (__u64)hs;

	if (!flavor_boring || !hs || !rc_filter_pass(pid_tgid))
		return 0;
	bpf_map_update_elem(&rc_boring_hs, &pid_tgid, &h, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int rc_boring_handshake_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid(), hs, ssl = 0, s3;
	__u32 zero = 0;
	struct rc_ssl_head *head;
	struct rc_ssl_state *st;
	const __u8 *cr;
	__u64 *saved;

	saved = bpf_map_lookup_elem(&rc_boring_hs, &pid_tgid);
	if (!saved)
		return 0;
	hs = *saved;
	bpf_map_delete_elem(&rc_boring_hs, &pid_tgid);
	if ((int)PT_REGS_RC(ctx) <= 0 || !flavor_boring)
		return 0;
	head = bpf_map_lookup_elem(&rc_head_scratch, &zero);
	if (!head)
		return 0;
	if (bpf_probe_read_user(&ssl, sizeof(ssl), (void *)(hs + b_hs_ssl)) || !ssl ||
	    bpf_probe_read_user(head->b, sizeof(head->b), (void *)ssl))
		return 0;
	cr = boring_read_s3(head, &s3);
	/* this SSL's handshake, finished (its session established) */
	if (!cr || s3_u64(head, b_hs) != hs || !s3_u64(head, b_established))
		return 0;
	st = bpf_map_lookup_elem(&rc_ssl, &ssl);
	if (st && st->conn_valid && st->tgid == (__u32)(pid_tgid >> 32) &&
	    cr_equal(st->client_random, cr))
		return 0;
	if (emit_secret_boring(pid_tgid, head, cr, hs))
		mark_sent(ssl, st, cr, (__u32)(pid_tgid >> 32));
	return 0;
}

/* SSL_set_fd(ssl, fd), SSL_set_rfd, SSL_set_wfd: remember the fd. */
SEC("uprobe")
int BPF_KPROBE(rc_ssl_set_fd, void *ssl, int fd)
{
	struct rc_ssl_state *st;

	if (!ssl || fd < 0)
		return 0;
	st = ssl_state_get((__u64)ssl);
	if (st) {
		st->known_fd = fd;
		/* new BIOs: resolve them again */
		st->bio_valid[0] = 0;
		st->bio_valid[1] = 0;
		st->sock_valid = 0;
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
