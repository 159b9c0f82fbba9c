// A tiny reverse proxy for berth's compose test project (no nginx image can be pulled in
// the test environment). It resolves UPSTREAM's host name on every request with Go's own
// resolver (build with CGO_ENABLED=0) and sends requests round-robin to every address, so
// each replica of a scaled service gets traffic.
//
//	UPSTREAM=app:80 LISTEN=:8080 /proxy
//
// GET /healthz answers 200 without touching the upstream.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sort"
	"sync/atomic"
)

func main() {
	upstream := os.Getenv("UPSTREAM")
	listen := os.Getenv("LISTEN")
	if listen == "" {
		listen = ":8080"
	}
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		log.Fatalf("UPSTREAM must be host:port: %v", err)
	}
	var next uint64
	proxy := &httputil.ReverseProxy{
		Director: func(r *http.Request) {
			addrs, err := net.LookupHost(host)
			target := host
			if err == nil && len(addrs) > 0 {
				sort.Strings(addrs)
				target = addrs[atomic.AddUint64(&next, 1)%uint64(len(addrs))]
			}
			r.URL.Scheme = "http"
			r.URL.Host = net.JoinHostPort(target, port)
		},
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	http.Handle("/", proxy)
	log.Printf("proxy %s -> %s", listen, upstream)
	log.Fatal(http.ListenAndServe(listen, nil))
}
