package kit

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bufbuild/httplb/resolver"
)

// WithClientAddresses makes [Server.HTTPClient] send the calls to the
// URLs of host to the addresses given, in turn, instead of to those DNS
// has for host: go-kit's sd.FixedInstancer under lb.NewRoundRobin, for
// instances that share no DNS name (a fixed list from a flag, several
// ports of one machine). host is the URL's host as the clients write it,
// its port included when the URL has one ("inventory:8080" for
// "http://inventory:8080"), in any case; each address is a host:port to dial, an IP
// address or a host name and a port number ("10.0.0.7:8080", "[::1]:8080",
// "localhost:8181": a name is resolved at each dial). TLS still verifies the
// certificate against host, the breaker and the retry budget are still
// one for host, and an address that fails is left out as a resolved one
// would be (see [Server.HTTPClient]). The list is fixed for the life of
// the server. Other hosts resolve by DNS as ever; a later option for the
// same host replaces the earlier. [New] refuses a host or an address
// that is not host:port, and a host given no address.
func WithClientAddresses(host string, addrs ...string) Option {
	return optionFunc(func(o *options) {
		if o.clientAddrs == nil {
			o.clientAddrs = map[string][]resolver.Address{}
		}
		o.clientAddrs[strings.ToLower(host)] = nil
		if len(addrs) == 0 {
			o.clientAddrsErr = fmt.Errorf("kit: WithClientAddresses(%q): no address given", host)
			return
		}
		if u, err := url.Parse("http://" + host); err != nil || u.Host != host || u.Hostname() == "" || strings.HasSuffix(host, ":") {
			o.clientAddrsErr = fmt.Errorf("kit: WithClientAddresses(%q, …): the host is not a URL's host (want \"inventory:8080\" or \"inventory\")", host)
			return
		}
		list := make([]resolver.Address, len(addrs))
		for i, a := range addrs {
			if !dialable(a) {
				o.clientAddrsErr = fmt.Errorf("kit: WithClientAddresses(%q, …): address %q is not host:port (want \"10.0.0.7:8080\")", host, a)
				return
			}
			list[i].HostPort = a
		}
		o.clientAddrs[strings.ToLower(host)] = list
	})
}

// dialable reports whether addr is a host:port to dial: an IP address or
// a host name (ASCII letters, digits, '.', '-', '_'), and a port number.
// net.SplitHostPort alone takes " 10.0.0.7:8080" (a list split on ","
// from "a, b") or "10.0.0.7:8080/v1", which fail only when dialled: the
// instance would get no call, and no error would say why.
func dialable(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return strings.IndexFunc(host, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-' || r == '_')
	}) < 0
}

// fixedAddrs resolves the hosts given to WithClientAddresses to their
// lists, and any other host with next.
type fixedAddrs struct {
	hosts map[string][]resolver.Address
	next  resolver.Resolver
}

// newResolver returns the resolver of HTTPClient: res (DNS when nil),
// with the fixed lists of hosts first, if any.
func newResolver(res resolver.Resolver, hosts map[string][]resolver.Address, interval time.Duration) resolver.Resolver {
	if res == nil {
		res = resolver.NewDNSResolver(net.DefaultResolver, resolver.PreferIPv4, interval)
	}
	if len(hosts) == 0 {
		return res
	}
	return fixedAddrs{hosts: hosts, next: res}
}

// New reports host's list now, and again each time the balancer asks to
// resolve afresh (when most addresses fail), until the balancer closes it.
func (f fixedAddrs) New(ctx context.Context, scheme, hostPort string, rcv resolver.Receiver, refresh <-chan struct{}) io.Closer {
	list, ok := f.hosts[strings.ToLower(hostPort)] // a URL's host is case-insensitive
	if !ok {
		return f.next.New(ctx, scheme, hostPort, rcv, refresh)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			rcv.OnResolve(list)
			select {
			case <-ctx.Done():
				return
			case <-refresh:
			}
		}
	}()
	return closerFunc(func() error { cancel(); <-done; return nil })
}
