/*
 * gnutls_paths.c — a GnuTLS client that uses the entry points gnutls-cli
 * does not: gnutls_record_cork/uncork, gnutls_record_recv_seq and
 * gnutls_record_send_range, with the transport either an fd
 * (gnutls_transport_set_int) or the application's own object with custom
 * push/pull functions (as libcurl-gnutls does).
 *
 *   gnutls_paths PORT MARKER fd|push
 *
 * Against `gnutls-serv --echo` on 127.0.0.1:PORT: sends "A-MARKER\n" and
 * "B-MARKER\n" while corked (one record at uncork), reads the echo with
 * gnutls_record_recv_seq, sends "R-MARKER\n" with gnutls_record_send_range
 * and reads its echo with gnutls_record_recv. Prints `fd=N` (the socket)
 * and exits 0, or prints the failing step and exits 1.
 *
 * The prototypes are declared here (GnuTLS's stable ABI) so that only the
 * runtime library is needed: cc gnutls_paths.c -l:libgnutls.so.30
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct gnutls_session_int *gnutls_session_t;
typedef void *gnutls_certificate_credentials_t;
typedef void *gnutls_transport_ptr_t;
typedef struct {
	size_t low;
	size_t high;
} gnutls_range_st;

#define GNUTLS_CLIENT (1 << 1)
#define GNUTLS_CRD_CERTIFICATE 1
#define GNUTLS_SHUT_RDWR 0
#define GNUTLS_RECORD_WAIT 1
#define GNUTLS_E_AGAIN (-28)
#define GNUTLS_E_INTERRUPTED (-52)

int gnutls_global_init(void);
int gnutls_init(gnutls_session_t *session, unsigned int flags);
int gnutls_set_default_priority(gnutls_session_t session);
int gnutls_certificate_allocate_credentials(gnutls_certificate_credentials_t *res);
int gnutls_credentials_set(gnutls_session_t session, int type, void *cred);
void gnutls_transport_set_int2(gnutls_session_t session, int recv_fd, int send_fd);
void gnutls_transport_set_ptr(gnutls_session_t session, gnutls_transport_ptr_t ptr);
void gnutls_transport_set_push_function(gnutls_session_t session,
					ssize_t (*push)(gnutls_transport_ptr_t, const void *, size_t));
void gnutls_transport_set_pull_function(gnutls_session_t session,
					ssize_t (*pull)(gnutls_transport_ptr_t, void *, size_t));
void gnutls_transport_set_pull_timeout_function(gnutls_session_t session,
						int (*f)(gnutls_transport_ptr_t, unsigned int));
int gnutls_handshake(gnutls_session_t session);
void gnutls_record_cork(gnutls_session_t session);
int gnutls_record_uncork(gnutls_session_t session, unsigned int flags);
ssize_t gnutls_record_send(gnutls_session_t session, const void *data, size_t size);
ssize_t gnutls_record_send_range(gnutls_session_t session, const void *data, size_t size,
				 const gnutls_range_st *range);
ssize_t gnutls_record_recv(gnutls_session_t session, void *data, size_t size);
ssize_t gnutls_record_recv_seq(gnutls_session_t session, void *data, size_t size,
			       unsigned char *seq);
int gnutls_bye(gnutls_session_t session, int how);
const char *gnutls_strerror(int error);

/* The application's transport object: not an fd. */
struct conn {
	char tag[64];
	int fd;
};

static ssize_t push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
	return send(((struct conn *)p)->fd, data, len, 0);
}

static ssize_t pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
	return recv(((struct conn *)p)->fd, data, len, 0);
}

static int pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
	struct pollfd pfd = { .fd = ((struct conn *)p)->fd, .events = POLLIN };

	return poll(&pfd, 1, (int)ms);
}

static void fail(const char *what, long ret)
{
	printf("%s failed: %ld %s\n", what, ret, ret < 0 ? gnutls_strerror((int)ret) : "");
	exit(1);
}

/* Reads until `want` bytes arrived; with_seq: gnutls_record_recv_seq. */
static void read_all(gnutls_session_t s, char *buf, size_t want, int with_seq)
{
	unsigned char seq[8];
	size_t got = 0;
	ssize_t n;

	while (got < want) {
		n = with_seq ? gnutls_record_recv_seq(s, buf + got, want - got, seq)
			     : gnutls_record_recv(s, buf + got, want - got);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n <= 0)
			fail(with_seq ? "gnutls_record_recv_seq" : "gnutls_record_recv", n);
		got += (size_t)n;
	}
	buf[got] = 0;
}

int main(int argc, char **argv)
{
	static struct conn conn = { .tag = "an application object, not an fd" };
	gnutls_certificate_credentials_t cred;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	gnutls_session_t s;
	char a[128], b[128], r[128], echo[512];
	gnutls_range_st range;
	int ret, fd;

	if (argc != 4 || (strcmp(argv[3], "fd") && strcmp(argv[3], "push"))) {
		fprintf(stderr, "usage: %s PORT MARKER fd|push\n", argv[0]);
		return 2;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		fail("connect", -1);
	conn.fd = fd;

	if ((ret = gnutls_global_init()) < 0)
		fail("gnutls_global_init", ret);
	if ((ret = gnutls_certificate_allocate_credentials(&cred)) < 0)
		fail("gnutls_certificate_allocate_credentials", ret);
	if ((ret = gnutls_init(&s, GNUTLS_CLIENT)) < 0)
		fail("gnutls_init", ret);
	if ((ret = gnutls_set_default_priority(s)) < 0)
		fail("gnutls_set_default_priority", ret);
	if ((ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred)) < 0)
		fail("gnutls_credentials_set", ret);
	if (!strcmp(argv[3], "fd")) {
		gnutls_transport_set_int2(s, fd, fd);
	} else {
		gnutls_transport_set_ptr(s, &conn);
		gnutls_transport_set_push_function(s, push);
		gnutls_transport_set_pull_function(s, pull);
		gnutls_transport_set_pull_timeout_function(s, pull_timeout);
	}
	do
		ret = gnutls_handshake(s);
	while (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED);
	if (ret < 0)
		fail("gnutls_handshake", ret);

	snprintf(a, sizeof(a), "A-%s\n", argv[2]);
	snprintf(b, sizeof(b), "B-%s\n", argv[2]);
	snprintf(r, sizeof(r), "R-%s\n", argv[2]);
	gnutls_record_cork(s);
	if ((ret = (int)gnutls_record_send(s, a, strlen(a))) != (int)strlen(a))
		fail("gnutls_record_send (corked)", ret);
	if ((ret = (int)gnutls_record_send(s, b, strlen(b))) != (int)strlen(b))
		fail("gnutls_record_send (corked)", ret);
	if ((ret = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT)) < 0)
		fail("gnutls_record_uncork", ret);
	read_all(s, echo, strlen(a) + strlen(b), 1);

	range.low = strlen(r);
	range.high = strlen(r) + 32;
	if ((ret = (int)gnutls_record_send_range(s, r, strlen(r), &range)) != (int)strlen(r))
		fail("gnutls_record_send_range", ret);
	read_all(s, echo, strlen(r), 0);

	gnutls_bye(s, GNUTLS_SHUT_RDWR);
	printf("fd=%d\n", fd);
	return 0;
}
