/*
 * ossl_peer.c — a TLS client and server for the OpenSSL version matrix
 * (tests/e2e/openssl_matrix.rs), built against each OpenSSL under test
 * (1.1.1 – 4.0: only API common to all of them), and for BoringSSL
 * (tests/e2e/boringssl.rs: OPENSSL_IS_BORINGSSL, which has no
 * SSL_read_ex/SSL_write_ex: SSL_read/SSL_write instead).
 *
 *   ossl_peer server CERT KEY TLSVER MARKER   prints its port, serves one
 *       connection: reads "REQUEST MARKER\n" with SSL_read_ex, answers
 *       "RESPONSE MARKER\n" with SSL_write_ex, prints the protocol version
 *   ossl_peer server CERT KEY TLSVER MARKER ex2   the same, answering with
 *       SSL_write_ex2 (3.3+; exits with 3 before that)
 *   ossl_peer client PORT TLSVER MARKER       sends "REQUEST MARKER\n" with
 *       SSL_write, reads the answer with SSL_read, prints it
 *   ossl_peer quic MARKER                     (3.2+) SSL_write and
 *       SSL_write_ex of MARKER on a QUIC connection object that has no
 *       network BIO (the calls fail at once): prints `quic 2`
 *
 * TLSVER is 1.2 or 1.3 (both the minimum and the maximum version). The
 * client also prints its own key log (SSL_CTX_set_keylog_callback) to
 * stderr, the reference the test compares rcapture's secrets with.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static void die(const char *what)
{
	fprintf(stderr, "ossl_peer: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void keylog(const SSL *ssl, const char *line)
{
	(void)ssl;
	fprintf(stderr, "KEYLOG %s\n", line);
}

static SSL_CTX *context(const SSL_METHOD *method, const char *tlsver)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	int v = strcmp(tlsver, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;

	if (!ctx)
		die("SSL_CTX_new");
	if (!SSL_CTX_set_min_proto_version(ctx, v) || !SSL_CTX_set_max_proto_version(ctx, v))
		die("protocol version");
	return ctx;
}

/* Reads one line (up to '\n') with SSL_read_ex or SSL_read. */
static size_t read_line(SSL *ssl, char *buf, size_t cap, int ex)
{
	size_t got = 0;

	while (got < cap - 1 && (got == 0 || buf[got - 1] != '\n')) {
		size_t n = 0;

		if (ex) {
#ifdef OPENSSL_IS_BORINGSSL
			int r = SSL_read(ssl, buf + got, (int)(cap - 1 - got));

			if (r <= 0)
				die("SSL_read");
			n = (size_t)r;
#else
			if (SSL_read_ex(ssl, buf + got, cap - 1 - got, &n) != 1)
				die("SSL_read_ex");
#endif
		} else {
			int r = SSL_read(ssl, buf + got, (int)(cap - 1 - got));

			if (r <= 0)
				die("SSL_read");
			n = (size_t)r;
		}
		got += n;
	}
	buf[got] = 0;
	return got;
}

/* The answer: with SSL_write_ex2 (flags 0) if ex2, else SSL_write_ex
 * (BoringSSL: SSL_write). */
static int write_answer(SSL *ssl, const char *buf, size_t n, size_t *written, int ex2)
{
#if OPENSSL_VERSION_NUMBER >= 0x30300000L
	if (ex2)
		return SSL_write_ex2(ssl, buf, n, 0, written);
#else
	if (ex2)
		die("SSL_write_ex2 needs OpenSSL 3.3+");
#endif
#ifdef OPENSSL_IS_BORINGSSL
	{
		int r = SSL_write(ssl, buf, (int)n);

		*written = r > 0 ? (size_t)r : 0;
		return r > 0;
	}
#else
	return SSL_write_ex(ssl, buf, n, written);
#endif
}

static int server(const char *cert, const char *key, const char *tlsver, const char *marker,
		  int ex2)
{
	SSL_CTX *ctx = context(TLS_server_method(), tlsver);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	char buf[512], want[256];
	size_t written = 0;
	int ls, fd;
	SSL *ssl;

	if (SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		die("certificate or key");
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&sa, &len))
		die("listen");
	printf("%d\n", ntohs(sa.sin_port));
	fflush(stdout);
	fd = accept(ls, NULL, NULL);
	if (fd < 0)
		die("accept");
	ssl = SSL_new(ctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1)
		die("SSL_accept");
	read_line(ssl, buf, sizeof(buf), 1);
	snprintf(want, sizeof(want), "REQUEST %s\n", marker);
	if (strcmp(buf, want) != 0)
		die("unexpected request");
	snprintf(buf, sizeof(buf), "RESPONSE %s\n", marker);
	if (write_answer(ssl, buf, strlen(buf), &written, ex2) != 1 || written != strlen(buf))
		die(ex2 ? "SSL_write_ex2" : "SSL_write_ex");
	printf("%s\n", SSL_get_version(ssl));
	fflush(stdout);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	close(fd);
	close(ls);
	SSL_CTX_free(ctx);
	return 0;
}

static int client(int port, const char *tlsver, const char *marker)
{
	SSL_CTX *ctx = context(TLS_client_method(), tlsver);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((unsigned short)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char buf[512];
	int fd, n;
	SSL *ssl;

	SSL_CTX_set_keylog_callback(ctx, keylog);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect");
	ssl = SSL_new(ctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
		die("SSL_connect");
	n = snprintf(buf, sizeof(buf), "REQUEST %s\n", marker);
	if (SSL_write(ssl, buf, n) != n)
		die("SSL_write");
	read_line(ssl, buf, sizeof(buf), 0);
	printf("%s", buf);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	return 0;
}

#if OPENSSL_VERSION_NUMBER >= 0x30200000L && !defined(OPENSSL_NO_QUIC)
#include <openssl/quic.h>

/* An SSL * that is a QUIC connection (not an SSL_CONNECTION): the probes
 * must skip it, and count it. */
static int quic(const char *marker)
{
	SSL_CTX *ctx = SSL_CTX_new(OSSL_QUIC_client_method());
	size_t written = 0;
	SSL *ssl;
	int calls = 0;

	if (!ctx || !(ssl = SSL_new(ctx)))
		die("QUIC SSL_new");
	if (SSL_write(ssl, marker, (int)strlen(marker)) <= 0)
		calls++;
	if (SSL_write_ex(ssl, marker, strlen(marker), &written) != 1)
		calls++;
	printf("quic %d\n", calls);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return 0;
}
#else
static int quic(const char *marker)
{
	(void)marker;
	fprintf(stderr, "ossl_peer: no QUIC in this OpenSSL\n");
	return 3;
}
#endif

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "server") == 0)
		return server(argv[2], argv[3], argv[4], argv[5], 0);
	if (argc == 7 && strcmp(argv[1], "server") == 0 && strcmp(argv[6], "ex2") == 0) {
#if OPENSSL_VERSION_NUMBER < 0x30300000L
		fprintf(stderr, "ossl_peer: no SSL_write_ex2 in this OpenSSL\n");
		return 3;
#endif
		return server(argv[2], argv[3], argv[4], argv[5], 1);
	}
	if (argc == 5 && strcmp(argv[1], "client") == 0)
		return client(atoi(argv[2]), argv[3], argv[4]);
	if (argc == 3 && strcmp(argv[1], "quic") == 0)
		return quic(argv[2]);
	fprintf(stderr, "usage: ossl_peer server CERT KEY TLSVER MARKER [ex2] | client PORT TLSVER MARKER | quic MARKER\n");
	return 2;
}
