/*
 * openssl-offsets.c — prints the struct offsets rcapture's OpenSSL probes
 * read, with offsetof against the internal headers of the OpenSSL release
 * it is compiled in (see gen-openssl-offsets.sh): `name value` lines.
 */
#include <stddef.h>
#include <stdio.h>
#if __has_include("ssl_local.h")
#include "ssl_local.h"
#else
#include "ssl_locl.h" /* 1.1.1a, 1.1.1b */
#endif

#if OPENSSL_VERSION_NUMBER >= 0x30200000L
/* 3.2+: an SSL * of a TLS connection is an SSL_CONNECTION, its first member
 * the common header struct ssl_st (whose int type tells QUIC objects apart). */
typedef SSL_CONNECTION CONN;
#else
typedef SSL CONN;
#endif

#define MEMBER_SIZE(type, member) sizeof(((type *)0)->member)
#define P(name, value) printf("%s %#lx\n", name, (unsigned long)(value))

void bio_offsets(void); /* openssl-offsets-bio.c */

int main(void)
{
	_Static_assert(MEMBER_SIZE(CONN, version) == 4, "int version");
	_Static_assert(MEMBER_SIZE(CONN, statem.hand_state) == 4, "enum hand_state");
	_Static_assert(MEMBER_SIZE(CONN, handshake_secret) == 64, "EVP_MAX_MD_SIZE arrays");
	_Static_assert(MEMBER_SIZE(SSL_SESSION, master_key) >= 48, "master_key[>= 48]");
	_Static_assert(MEMBER_SIZE(SSL_SESSION, master_key_length) == 8, "size_t master_key_length");
	_Static_assert(MEMBER_SIZE(SSL_CIPHER, id) == 4, "uint32_t id");

#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	_Static_assert(offsetof(CONN, ssl) == 0, "the base header first");
	_Static_assert(MEMBER_SIZE(struct ssl_st, type) == 4, "int type");
	P("type_check", 1);
	P("conn_type", SSL_TYPE_SSL_CONNECTION);
#else
	P("type_check", 0);
	P("conn_type", 0);
#endif
	P("version", offsetof(CONN, version));
	P("rbio", offsetof(CONN, rbio));
	P("wbio", offsetof(CONN, wbio));
	P("hand_state", offsetof(CONN, statem.hand_state));
#if OPENSSL_VERSION_NUMBER < 0x30000000L
	/* 1.1.1: s3 is a pointer to a struct ssl3_state_st */
	P("s3_ptr", 1);
	P("s3", offsetof(CONN, s3));
	P("client_random", offsetof(SSL3_STATE, client_random));
#else
	/* 3.x: s3 is embedded */
	P("s3_ptr", 0);
	P("s3", offsetof(CONN, s3));
	P("client_random", offsetof(CONN, s3.client_random) - offsetof(CONN, s3));
#endif
	P("handshake_secret", offsetof(CONN, handshake_secret));
	P("handshake_traffic_hash", offsetof(CONN, handshake_traffic_hash));
	P("client_app_traffic_secret", offsetof(CONN, client_app_traffic_secret));
	P("server_app_traffic_secret", offsetof(CONN, server_app_traffic_secret));
	P("exporter_master_secret", offsetof(CONN, exporter_master_secret));
	P("session", offsetof(CONN, session));
	P("session_master_key_length", offsetof(SSL_SESSION, master_key_length));
	P("session_master_key", offsetof(SSL_SESSION, master_key));
	P("session_cipher", offsetof(SSL_SESSION, cipher));
	P("cipher_id", offsetof(SSL_CIPHER, id));
	bio_offsets();
	return 0;
}
