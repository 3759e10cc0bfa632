// gotls_test_prog: an HTTPS server and its client in one process, Go
// standard library only, for rcapture's gotls tests.
//
//	gotls_test_prog -addr 127.0.0.1:PORT -marker M [-n N] [-tls 1.2|1.3] [-wait]
//
// The server answers `POST /echo/I` (header X-Marker: M-I, body BODY M-I)
// with `pong M-I` and the body it read. The client makes N requests one
// after the other on one keep-alive connection (HTTP/1.1: HTTP/2 is off on
// both sides so the plaintext is readable) and checks every answer. At the
// end it prints one JSON line: the requests that succeeded, both sockets'
// fds and addresses, and the requests per second. Exit status 0 only if
// all N succeeded. With -wait it prints `ready` once the server listens and
// waits for a line on stdin before the first request.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

type report struct {
	Pid         int     `json:"pid"`
	Ok          int     `json:"ok"`
	Requests    int     `json:"requests"`
	TLS         string  `json:"tls"`
	ClientFd    int     `json:"client_fd"`
	ClientLocal string  `json:"client_local"`
	ServerFd    int     `json:"server_fd"`
	ServerLocal string  `json:"server_local"`
	Conns       int     `json:"conns"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"requests_per_second"`
}

// fdOf returns the descriptor of a TCP connection without duplicating it.
func fdOf(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1
	}
	return fd
}

// listener records the fd and address of the connections it accepts.
type listener struct {
	net.Listener
	mu    sync.Mutex
	fd    int
	local string
	n     int
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.fd, l.local, l.n = fdOf(c), c.LocalAddr().String(), l.n+1
		l.mu.Unlock()
	}
	return c, err
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	marker := flag.String("marker", "gotls", "marker put in every request")
	n := flag.Int("n", 1, "requests")
	version := flag.String("tls", "1.3", "highest TLS version of the client: 1.2 or 1.3")
	wait := flag.Bool("wait", false, "print `ready` and wait for a line on stdin before the requests")
	flag.Parse()
	if err := run(*addr, *marker, *n, *version, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "gotls_test_prog:", err)
		os.Exit(1)
	}
}

func run(addr, marker string, n int, version string, wait bool) error {
	maxVersion := map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}[version]
	if maxVersion == 0 {
		return fmt.Errorf("-tls %q: 1.2 or 1.3", version)
	}
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	inner, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ln := &listener{Listener: inner, fd: -1}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "pong %s %s\n", r.Header.Get("X-Marker"), body)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		// A non-nil empty map: no HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()

	var mu sync.Mutex
	clientFd, clientLocal := -1, ""
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, a)
			if err == nil {
				mu.Lock()
				clientFd, clientLocal = fdOf(c), c.LocalAddr().String()
				mu.Unlock()
			}
			return c, err
		},
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := "https://" + inner.Addr().String()
	if wait {
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return fmt.Errorf("waiting for stdin: %w", err)
		}
	}

	rep := report{Pid: os.Getpid(), Requests: n}
	start := time.Now()
	for i := 0; i < n; i++ {
		m := marker
		if n > 1 {
			m = fmt.Sprintf("%s-%d", marker, i)
		}
		req, err := http.NewRequest("POST", fmt.Sprintf("%s/echo/%d", url, i),
			bytes.NewBufferString("BODY "+m))
		if err != nil {
			return err
		}
		req.Header.Set("X-Marker", m)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("response %d: %w", i, err)
		}
		if want := "pong " + m + " BODY " + m + "\n"; string(got) != want {
			return fmt.Errorf("response %d: %q, want %q", i, got, want)
		}
		if i == 0 && resp.TLS != nil {
			rep.TLS = map[uint16]string{tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3"}[resp.TLS.Version]
		}
		rep.Ok++
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.PerSecond = float64(rep.Ok) / rep.Seconds
	tr.CloseIdleConnections()
	mu.Lock()
	rep.ClientFd, rep.ClientLocal = clientFd, clientLocal
	mu.Unlock()
	ln.mu.Lock()
	rep.ServerFd, rep.ServerLocal, rep.Conns = ln.fd, ln.local, ln.n
	ln.mu.Unlock()
	if err := srv.Close(); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %v", err)
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}
