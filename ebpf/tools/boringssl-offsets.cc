// boringssl-offsets.cc — prints the struct offsets rcapture's BoringSSL
// probes read, with offsetof against BoringSSL's internal headers
// (ssl/internal.h, crypto/bio/internal.h) of the source it is compiled in
// (see gen-boringssl-offsets.sh): `name value` lines. Two things offsetof
// cannot give are measured on objects instead: the `server` bit-field of
// SSLImpl, and where an InplaceVector<uint8_t, 48> keeps its length.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "crypto/bio/internal.h"
#include "ssl/internal.h"

using namespace bssl;

#define MEMBER_SIZE(type, member) sizeof(((type *)0)->member)
#define P(name, value) std::printf("%s %#lx\n", name, (unsigned long)(value))

using Secret = InplaceVector<uint8_t, SSL_MAX_MD_SIZE>;

// The one byte of `bytes` that is not zero, and its value.
static size_t only_set_byte(const unsigned char *bytes, size_t n, unsigned *value)
{
	size_t at = n;

	for (size_t i = 0; i < n; i++) {
		if (bytes[i] == 0)
			continue;
		if (at != n) {
			std::fprintf(stderr, "boringssl-offsets: more than one byte set\n");
			std::exit(1);
		}
		at = i;
		*value = bytes[i];
	}
	if (at == n) {
		std::fprintf(stderr, "boringssl-offsets: no byte set\n");
		std::exit(1);
	}
	return at;
}

int main()
{
	static_assert(SSL_MAX_MD_SIZE == 48, "48-byte secrets");
	static_assert(SSL_MAX_MASTER_KEY_LENGTH == 48, "48-byte master secret");
	static_assert(MEMBER_SIZE(SSLImpl, s3) == 8, "s3 is a pointer");
	static_assert(MEMBER_SIZE(SSL3_STATE, version) == 2, "uint16_t version");
	static_assert(MEMBER_SIZE(SSL3_STATE, client_random) == 32, "client_random[32]");
	static_assert(MEMBER_SIZE(SSLSession, secret) == sizeof(Secret), "secret is an InplaceVector<u8, 48>");
	static_assert(MEMBER_SIZE(ssl_cipher_st, protocol_id) == 2, "uint16_t protocol_id");
	static_assert(MEMBER_SIZE(Bio, num) == 4, "int num");
	static_assert(MEMBER_SIZE(BIO_METHOD, type) == 4, "int type");
	// An opaque SSL * is the SSLImpl * (the empty public base at offset 0).
	static_assert(std::is_empty_v<ssl_st>, "ssl_st is an empty base");
	static_assert(MEMBER_SIZE(SSL3_STATE, hs) == 8 && MEMBER_SIZE(SSL3_STATE, established_session) == 8,
		      "UniquePtr members are plain pointers");
	static_assert(MEMBER_SIZE(SSLImpl, rbio) == 8 && MEMBER_SIZE(SSL_HANDSHAKE, ssl) == 8, "pointers");

	// InplaceVector<uint8_t, 48>: where the length lies (after the data).
	alignas(Secret) unsigned char v[sizeof(Secret)] = {};
	static const uint8_t zeros[33] = {};
	Secret *sv = new (v) Secret();
	if (!sv->TryCopyFrom(Span<const uint8_t>(zeros, sizeof(zeros)))) {
		std::fprintf(stderr, "boringssl-offsets: InplaceVector copy failed\n");
		return 1;
	}
	unsigned len_value = 0;
	size_t len_at = only_set_byte(v, sizeof(v), &len_value);
	if (len_value != 33 || len_at < SSL_MAX_MD_SIZE) {
		std::fprintf(stderr, "boringssl-offsets: InplaceVector length not a byte after the data\n");
		return 1;
	}

	// SSLImpl::server, a bit-field: the byte and the bit it sets.
	alignas(SSLImpl) static unsigned char s[sizeof(SSLImpl)];
	std::memset(s, 0, sizeof(s));
	reinterpret_cast<SSLImpl *>(s)->server = true;
	unsigned server_mask = 0;
	size_t server_at = only_set_byte(s, sizeof(s), &server_mask);

	P("rbio", offsetof(SSLImpl, rbio));
	P("wbio", offsetof(SSLImpl, wbio));
	P("s3", offsetof(SSLImpl, s3));
	P("server_byte", server_at);
	P("server_mask", server_mask);
	P("s3_client_random", offsetof(SSL3_STATE, client_random));
	P("s3_version", offsetof(SSL3_STATE, version));
	P("s3_hs", offsetof(SSL3_STATE, hs));
	P("s3_write_secret", offsetof(SSL3_STATE, write_traffic_secret));
	P("s3_read_secret", offsetof(SSL3_STATE, read_traffic_secret));
	P("s3_exporter_secret", offsetof(SSL3_STATE, exporter_secret));
	P("s3_established_session", offsetof(SSL3_STATE, established_session));
	P("secret_len", len_at);
	P("hs_ssl", offsetof(SSL_HANDSHAKE, ssl));
	P("hs_client_hs_secret", offsetof(SSL_HANDSHAKE, client_handshake_secret));
	P("hs_server_hs_secret", offsetof(SSL_HANDSHAKE, server_handshake_secret));
	P("session_secret", offsetof(SSLSession, secret));
	P("session_cipher", offsetof(SSLSession, cipher));
	P("cipher_protocol_id", offsetof(ssl_cipher_st, protocol_id));
	P("bio_method", offsetof(Bio, method));
	P("bio_num", offsetof(Bio, num));
	P("bio_method_type", offsetof(BIO_METHOD, type));
	P("api_version", BORINGSSL_API_VERSION);
	return 0;
}
