package kit_test

import (
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// WithClientAddresses sends the calls to a host that DNS does not know to
// the fixed list of its instances, in turn (go-kit's sd.FixedInstancer and
// lb.NewRoundRobin), and leaves every other host to DNS.
func TestWithClientAddressesBalancesOverTheList(t *testing.T) {
	t.Parallel()
	var tl tally
	backends := pingBackends(t, 2, &tl)
	caller := kittest.NewServer(t, kit.Config{}, nil,
		kit.WithClientAddresses("inventory.invalid:8080", addrsOf(backends)...))
	client := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://inventory.invalid:8080", caller.ClientOptions()...)
	for i := range 10 {
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: int64(i)})); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	calls, _ := tl.take()
	for _, b := range backends {
		if calls[b.Addr().String()] < 3 {
			t.Errorf("calls by backend %v; want each of %v to get some of 10", calls, addrsOf(backends))
		}
	}

	// Another host of the same .invalid domain goes to DNS, which knows
	// none (RFC 6761): the call fails, sent nowhere.
	other := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://orders.invalid:8080", caller.ClientOptions()...)
	_, err := other.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
	if !errors.Is(err, interceptors.ErrNotSent) {
		t.Errorf("call to a host not listed: %v; want one caused by ErrNotSent (DNS: no such host)", err)
	}
	if calls, _ := tl.take(); len(calls) != 0 {
		t.Errorf("a host not listed reached the backends: %v", calls)
	}
}

func TestWithClientAddressesRefusesBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		host  string
		addrs []string
		want  string
	}{
		{name: "no address", host: "inventory:8080", want: `WithClientAddresses("inventory:8080"): no address given`},
		{name: "address without port", host: "inventory:8080", addrs: []string{"10.0.0.7:8080", "10.0.0.8"}, want: `address "10.0.0.8" is not host:port`},
		{name: "a URL for host", host: "http://inventory:8080", addrs: []string{"10.0.0.7:8080"}, want: `WithClientAddresses("http://inventory:8080", …): the host is not a URL's host`},
		{name: "empty port", host: "inventory:", addrs: []string{"10.0.0.7:8080"}, want: "the host is not a URL's host"},
		// A list split on "," from "a, b" keeps the space: dialled, " 10.0.0.8"
		// is a name DNS does not know, and the instance would get no call.
		{name: "address with a space", host: "inventory:8080", addrs: []string{"10.0.0.7:8080", " 10.0.0.8:8080"}, want: `address " 10.0.0.8:8080" is not host:port`},
		{name: "address with a path", host: "inventory:8080", addrs: []string{"10.0.0.8:8080/v1"}, want: `address "10.0.0.8:8080/v1" is not host:port`},
		{name: "port out of range", host: "inventory:8080", addrs: []string{"10.0.0.8:80800"}, want: `address "10.0.0.8:80800" is not host:port`},
		{name: "port zero", host: "inventory:8080", addrs: []string{"10.0.0.8:0"}, want: `address "10.0.0.8:0" is not host:port`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithClientAddresses(tc.host, tc.addrs...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}

// New takes every form of address a dial takes: IPv4 and IPv6 literals
// (with a zone), and host names, which each dial resolves.
func TestWithClientAddressesTakesAddressForms(t *testing.T) {
	t.Parallel()
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff}, kit.WithClientAddresses("[::1]:8080",
		"10.0.0.7:8080", "[::1]:8181", "[fe80::1%eth0]:8080", "localhost:8181", "inventory-1.shop_v2.svc.cluster.local:65535"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A URL's host is case-insensitive (RFC 3986, 3.2.2), as DNS is: the list
// of "Inventory.invalid:8080" is that of "http://INVENTORY.invalid:8080".
func TestWithClientAddressesHostIgnoresCase(t *testing.T) {
	t.Parallel()
	var tl tally
	backends := pingBackends(t, 1, &tl)
	caller := kittest.NewServer(t, kit.Config{}, nil,
		kit.WithClientAddresses("Inventory.invalid:8080", addrsOf(backends)...))
	for _, url := range []string{"http://inventory.invalid:8080", "http://INVENTORY.invalid:8080"} {
		client := pingv1connect.NewPingServiceClient(caller.HTTPClient(), url, caller.ClientOptions()...)
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
			t.Errorf("call to %s: %v; want it sent to the list of Inventory.invalid:8080", url, err)
		}
	}
}
