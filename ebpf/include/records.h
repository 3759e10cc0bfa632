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
};
#define RC_KIND_MAX 11

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

/* OpenSSL 3.0 secrets read at SSL_read/SSL_write entry: 456 bytes. */
struct rc_master_secret {
	struct rc_hdr hdr;
	__u32 version;                       /* ssl.version: 0x0303, 0x0304 */
	__u32 cipher_id;                     /* cipher.id, e.g. 0x03001302 */
	__u8 client_random[32];
	__u32 master_key_len;                /* session.master_key_length */
	__u8 master_key[48];                 /* session.master_key (TLS 1.2) */
	__u8 handshake_secret[64];           /* TLS 1.3 */
	__u8 handshake_traffic_hash[64];
	__u8 client_app_traffic_secret[64];
	__u8 server_app_traffic_secret[64];
	__u8 exporter_master_secret[64];
	__u8 _pad[4];
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

/* bash: 64 bytes, then chunk.len bytes of command line. */
struct rc_bash {
	struct rc_hdr hdr;
	struct rc_chunk chunk;
	__u32 bash_type;  /* 0 readline, 1 retval, 2 exit/exec */
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
#define RC_CONN_CONNECT 0
#define RC_CONN_ACCEPT 1
#define RC_CONN_CLOSE 2

/* A connection opened or closed: 96 bytes. */
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

#endif /* RCAPTURE_RECORDS_H */
