/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * records.h — the binary layout of every record the rcapture BPF programs
 * emit into the per-CPU ring buffers, and of the maps user space shares with
 * them. This file is the single definition: core/src/records.rs mirrors it
 * with #[repr(C)] types, and core/tests/layout.rs compiles this header with
 * the system C compiler and compares every size and offset.
 *
 * Rules:
 *  - every record starts with struct rc_hdr; rc_hdr.kind selects the layout;
 *  - all padding is explicit (fields named _pad*), no implicit holes;
 *  - records carrying a payload have a struct rc_chunk right after the header
 *    and are followed by exactly chunk.len payload bytes (never a fixed-size
 *    buffer): the ring-buffer record is sizeof(fixed part) + chunk.len bytes;
 *  - a payload longer than RC_CHUNK_MAX continues in further records with the
 *    same (hdr.tid, chunk.call_seq), increasing chunk.offset, RC_F_FIRST on the
 *    first and RC_F_LAST on the last. chunk.total_len is the real length of the
 *    call; bytes beyond the capture limit are never sent, so
 *    total_len - (bytes received) is what was cut.
 *  - integers are in host byte order (little-endian on x86_64), ports too.
 */
#ifndef RCAPTURE_RECORDS_H
#define RCAPTURE_RECORDS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Record kinds (rc_hdr.kind). */
enum rc_kind {
	RC_KIND_TLS_DATA = 1,       /* OpenSSL SSL_read/SSL_write(_ex): struct rc_data */
	RC_KIND_MASTER_SECRET = 2,  /* OpenSSL 3.0 secrets: struct rc_master_secret */
	RC_KIND_GNUTLS_DATA = 3,    /* gnutls_record_recv/send: struct rc_data */
	RC_KIND_NSS_DATA = 4,       /* PR_Read/PR_Write: struct rc_data */
	RC_KIND_GOTLS_DATA = 5,     /* Go crypto/tls Read/writeRecordLocked: struct rc_data */
	RC_KIND_GOTLS_KEY = 6,      /* Go crypto/tls writeKeyLog: struct rc_gotls_key */
	RC_KIND_BASH = 7,           /* bash readline / command status: struct rc_bash */
	RC_KIND_MYSQL_QUERY = 8,    /* mysqld dispatch_command: struct rc_query */
	RC_KIND_PG_QUERY = 9,       /* postgres pg_parse_query (exec_simple_query is static): struct rc_query */
	RC_KIND_CONN = 10,          /* connect/accept/close: struct rc_conn */
	RC_KIND_PACKET = 11,        /* tc ingress/egress: struct rc_packet */
	RC_KIND_GNUTLS_SECRET = 12, /* GnuTLS session secrets at gnutls_handshake return: struct rc_gnutls_secret */
};
#define RC_KIND_MAX 12

/* rc_hdr.flags */
#define RC_F_FIRST 0x1 /* first record of a payload (chunk.offset == 0) */
#define RC_F_LAST 0x2  /* last record of a payload */

/* Largest payload slice carried by one record. */
#define RC_CHUNK_MAX 16384

/* Direction (rc_data.direction, rc_packet.direction). */
#define RC_DIR_RECV 0    /* SSL_read: data received; tc ingress */
#define RC_DIR_SEND 1    /* SSL_write: data sent; tc egress */

/* 40 bytes, at offset 0 of every record. */
struct rc_hdr {
	__u16 kind;     /* enum rc_kind */
	__u16 flags;    /* RC_F_* */
	__u32 uid;
	__u64 ts_ns;    /* bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME */
	__u32 pid;      /* thread group id */
	__u32 tid;
	char comm[16];  /* NUL-padded */
};

/* 16 bytes: where this record's payload bytes sit in the whole call. */
struct rc_chunk {
	__u32 total_len; /* real length of the call's payload */
	__u32 offset;    /* offset of the bytes that follow */
	__u32 len;       /* bytes that follow the fixed part of this record */
	__u32 call_seq;  /* same for every record of one call (per CPU counter) */
};

/* 40 bytes: a connection's addresses, from the local side's point of view. */
struct rc_tuple {
	__u16 family;   /* 0 = unknown, 2 = AF_INET, 10 = AF_INET6 */
	__u16 sport;    /* host byte order */
	__u16 dport;
	__u16 _pad;
	__u8 saddr[16]; /* IPv4: first 4 bytes */
	__u8 daddr[16];
};

/* TLS plaintext (OpenSSL, GnuTLS, NSS, Go): 112 bytes, then chunk.len bytes. */
struct rc_data {
	struct rc_hdr hdr;
	struct rc_chunk chunk;
	__u64 sock;        /* kernel struct sock address, 0 if unknown */
	__u32 fd;          /* (__u32)-1 if unknown */
	__u8 direction;    /* RC_DIR_* */
	__u8 _pad[3];
	struct rc_tuple tuple;
	/* __u8 data[chunk.len]; */
};

/* OpenSSL, BoringSSL secrets read at SSL_read/SSL_write entry (see RC_MS_HS_*): 456 bytes. */
struct rc_master_secret {
	struct rc_hdr hdr;
	__u32 version;                       /* ssl.version: 0x0303, 0x0304 */
	__u32 cipher_id;                     /* cipher.id, e.g. 0x03001302 */
	__u8 client_random[32];
	__u32 master_key_len;                /* session.master_key_length */
	__u8 master_key[48];                 /* session.master_key (TLS 1.2) */
	__u8 handshake_secret[64];           /* TLS 1.3 (RC_MS_HS_TRAFFIC: client handshake traffic secret) */
	__u8 handshake_traffic_hash[64];     /* (RC_MS_HS_TRAFFIC: server handshake traffic secret) */
	__u8 client_app_traffic_secret[64];
	__u8 server_app_traffic_secret[64];
	__u8 exporter_master_secret[64];
	__u8 hs_form, _pad[3];               /* hs_form: RC_MS_HS_* (end of file) */
};

/*
 * GnuTLS secrets read from the session when gnutls_handshake returns 0:
 * 512 bytes. TLS 1.2 (and older): master_secret; TLS 1.3: the traffic
 * secrets as stored (the first hash_len bytes of each 64-byte slot; zero
 * where the handshake did not set them, e.g. early_secret without 0-RTT).
 */
struct rc_gnutls_secret {
	struct rc_hdr hdr;
	__u32 version;             /* wire version: 0x0301-0x0304, DTLS 0xfeff/0xfefd (0 unknown) */
	__u32 hash_len;            /* PRF hash length: 32 (SHA-256), 48 (SHA-384), 0 unknown */
	__u8 client_random[32];
	__u8 master_secret[48];    /* TLS 1.2 CLIENT_RANDOM secret */
	__u8 early_secret[64];     /* CLIENT_EARLY_TRAFFIC_SECRET */
	__u8 client_hs[64];        /* CLIENT_HANDSHAKE_TRAFFIC_SECRET */
	__u8 server_hs[64];        /* SERVER_HANDSHAKE_TRAFFIC_SECRET */
	__u8 client_ap[64];        /* CLIENT_TRAFFIC_SECRET_0 */
	__u8 server_ap[64];        /* SERVER_TRAFFIC_SECRET_0 */
	__u8 exporter[64];         /* EXPORTER_SECRET */
};

/* Go crypto/tls (*Config).writeKeyLog arguments: 176 bytes. */
struct rc_gotls_key {
	struct rc_hdr hdr;
	__u32 label_len;
	__u32 secret_len;
	char label[32];
	__u8 client_random[32];
	__u8 secret[64];
};

/* rc_bash.bash_type */
#define RC_BASH_READLINE 0  /* a line the shell read (payload); retval = its index in its command (0 first, n continuation) */
#define RC_BASH_RETVAL 1    /* retval = exit status of the command read last (payload: its lines joined by \n) */
#define RC_BASH_EXIT_EXEC 2 /* the shell exits (retval = exit status) or execs (retval = $?); payload: the command, if any */

/* bash: 64 bytes, then chunk.len bytes of command line. */
struct rc_bash {
	struct rc_hdr hdr;
	struct rc_chunk chunk;
	__u32 bash_type;  /* RC_BASH_* */
	__s32 retval;
};

/* MySQL/MariaDB and PostgreSQL queries: 64 bytes, then chunk.len bytes of SQL. */
struct rc_query {
	struct rc_hdr hdr;
	struct rc_chunk chunk;
	__s32 retval;     /* mysqld dispatch_command result (int8 range); 0 for postgres */
	__u32 sql_errno;  /* mysqld: the statement's error number (THD Diagnostics_area) at return, 0 = none; 0 for postgres */
};

/* rc_conn.event */
#define RC_CONN_CONNECT 0 /* connect(2) returned 0 or EINPROGRESS: the caller's pid */
#define RC_CONN_ACCEPT 1  /* accept(2)/accept4(2) returned fd: the acceptor's pid */
#define RC_CONN_CLOSE 2   /* close(2) of the socket's fd, or the socket was destroyed
			   * without one (exit, close_range): the pid seen at connect/accept */

/* A TCP connection opened or closed: 96 bytes. */
struct rc_conn {
	struct rc_hdr hdr;
	__u64 sock;
	__u32 fd;
	__u8 event;       /* RC_CONN_* */
	__u8 _pad[3];
	struct rc_tuple tuple;
};

/* A packet seen by tc: 64 bytes, then chunk.len bytes of the frame. */
struct rc_packet {
	struct rc_hdr hdr;
	struct rc_chunk chunk;
	__u32 ifindex;
	__u8 direction;   /* RC_DIR_RECV ingress, RC_DIR_SEND egress */
	__u8 _pad[3];
};

/*
 * Packet filter (-m pcap --pcap-filter), a load-time global array of tests
 * in disjunctive normal form: the tests of one conjunction follow each
 * other, the last one has `last` set; a packet passes if every test of some
 * conjunction passes (no test at all: every packet passes). A test's result
 * is inverted when `negate` is set.
 */
#define RC_PKT_TESTS_MAX 32

/* rc_pkt_test.op */
#define RC_PT_PROTO 1   /* IP protocol (IPv4 protocol / IPv6 next header) == value */
#define RC_PT_FAMILY 2  /* IPv4 (value 2) or IPv6 (value 10) */
#define RC_PT_PORT 3    /* TCP/UDP source or destination port == value */
#define RC_PT_SPORT 4
#define RC_PT_DPORT 5
#define RC_PT_HOST 6    /* source or destination address == addr (family in value) */
#define RC_PT_SHOST 7
#define RC_PT_DHOST 8

/* 24 bytes. */
struct rc_pkt_test {
	__u8 op;        /* RC_PT_* */
	__u8 negate;
	__u8 last;      /* last test of its conjunction */
	__u8 _pad;
	__u32 value;    /* protocol, family or port (host order) */
	__u8 addr[16];  /* IPv4: first 4 bytes */
};

/* Live filter, one entry in the array map "rc_filter": 0 = any.
 * `stopped` set: no new call is captured (set at shutdown, before the
 * rings are drained for the last time and the probes detached). */
struct rc_filter {
	__u32 pid;
	__u32 uid;
	__u32 stopped;
	__u32 _pad;
};

/* Per-CPU counters (array map "rc_counters", per-CPU values). */
struct rc_counters {
	__u64 emitted;     /* records written to the ring buffer */
	__u64 lost;        /* records that could not be written: ring full, unreadable user memory, or a call with no slot to track it */
	__u64 lost_bytes;  /* payload bytes of those records */
	__u64 filtered;    /* calls skipped by the live filter */
};

/*
 * rc_master_secret.hs_form: what its two handshake fields hold. BoringSSL
 * sends its secrets also when its handshake ends (its handshake state, with
 * the handshake traffic secrets, is freed then).
 */
#define RC_MS_HS_DERIVE 0  /* OpenSSL: the handshake secret and transcript hash to derive from */
#define RC_MS_HS_TRAFFIC 1 /* BoringSSL: the client and server handshake traffic secrets */

#endif /* RCAPTURE_RECORDS_H */
