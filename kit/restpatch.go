package kit

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file fills the FieldMask of a PATCH's request from its body's
// fields when the client sent none, as grpc-gateway's generated handlers
// do (its patch feature, allow_patch_feature, on by default; runtime's
// FieldMaskFromRequestBody), so that `PATCH /v1/things/7 {"text":"x"}`
// updates text alone where the handler saw an empty mask and replaced
// everything. Vanguard has no such feature. It is written by hand: the
// paths come from the JSON that vanguard decodes, which kit does not see
// whole, and grpc-gateway's runtime is a module of its own.
//
// As in grpc-gateway, a method's PATCH route qualifies when its body is a
// field of the request (not "*") and the request has exactly one
// google.protobuf.FieldMask field; kit also asks that the method be unary
// and that all its PATCH routes name the same body (vanguard does not say
// which route a call took).

// patchMask is the FieldMask that a unary method's PATCH routes fill: the
// request's field mask, the body's fields body, a path of singular
// message fields from the request.
type patchMask struct {
	mask protoreflect.FieldDescriptor
	body []protoreflect.FieldDescriptor
}

// patchMaskOf returns the patchMask of md, or nil if it has none.
func patchMaskOf(md protoreflect.MethodDescriptor) *patchMask {
	if md.IsStreamingClient() || md.IsStreamingServer() {
		return nil
	}
	var body string
	for _, r := range httpRules(md) {
		if _, ok := r.GetPattern().(*annotations.HttpRule_Patch); !ok {
			continue
		}
		if r.GetBody() == "" || r.GetBody() == "*" || body != "" && r.GetBody() != body {
			return nil
		}
		body = r.GetBody()
	}
	if body == "" {
		return nil
	}
	in := md.Input()
	p := &patchMask{}
	fields := in.Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.Message() != nil && fd.Message().FullName() == "google.protobuf.FieldMask" && !fd.IsList() {
			if p.mask != nil {
				return nil // two: grpc-gateway fills neither
			}
			p.mask = fd
		}
	}
	if p.mask == nil {
		return nil
	}
	parent := in
	for name := range strings.SplitSeq(body, ".") {
		fd := parent.Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return nil
		}
		p.body = append(p.body, fd)
		parent = fd.Message()
	}
	return p
}

// patchBody is the body of a PATCH, as the client sent it, kept while
// vanguard reads it (see [keepPatchBody]) until the mask is made of it or
// the call's route is known to need none.
type patchBody struct {
	io.ReadCloser
	sent     bytes.Buffer
	dropped  bool   // the copy was let go: reads are no longer kept
	gzipped  bool   // sent with Content-Encoding: gzip
	query    string // the call's query, escaped
	maxBytes int64  // the most the body inflates to: vanguard's limit
}

func (b *patchBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if !b.dropped {
		b.sent.Write(p[:n])
	}
	return n, err
}

// drop lets the copy go, to be collected while the call runs on, and
// keeps no more of what is read. Its reads and drop are the handler's
// goroutine's: vanguard calls the handler, which reads the body.
func (b *patchBody) drop() {
	b.dropped = true
	b.sent = bytes.Buffer{}
}

type patchBodyKey struct{}

// keepPatchBody gives c, vanguard's copy of r, a PATCH with a body, a body
// that keeps what vanguard reads of it, for [patchMask.held]: the body is
// bounded by MaxRequestBytes already (see [restRoutes.bound]). Which route
// the call takes is vanguard's to find, and it says so only when it calls
// the method's handler, with the procedure as the path: that is before it
// reads the body (it decodes it as the handler reads), so
// [transcodedBody] drops the copy there, before anything was kept, for a
// method whose PATCH fills no mask, and [patchMask.held] once the mask is
// made. A gzipped body inflates to at most maxBytes,
// vanguard's message limit, which it decoded within: bounded at
// MaxRequestBytes here, a body that vanguard took (whitespace, long JSON
// names) was refused as "unexpected EOF", 400.
func keepPatchBody(c, r *http.Request, maxBytes int64) *http.Request {
	b := &patchBody{ReadCloser: c.Body, gzipped: strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip"), query: r.URL.RawQuery, maxBytes: maxBytes}
	c = c.WithContext(context.WithValue(c.Context(), patchBodyKey{}, b))
	c.Body = b
	return c
}

// patchBodyOf returns the body [keepPatchBody] kept in ctx, or nil.
func patchBodyOf(ctx context.Context) *patchBody {
	b, _ := ctx.Value(patchBodyKey{}).(*patchBody)
	return b
}

// held returns the held query parameter (see [heldQuery.apply]) that sets
// p's mask from b, a PATCH's body, or false, having let b's copy go, when
// p is nil (the call's method fills no mask) or the call's query names
// the mask (?update_mask=…, even empty: the client's mask is the
// client's). The parameter lets the copy go once it made the mask.
func (p *patchMask) held(b *patchBody) (heldParam, bool) {
	if p == nil {
		b.drop()
		return heldParam{}, false
	}
	for pair := range strings.SplitSeq(b.query, "&") {
		name, _, _ := strings.Cut(pair, "=")
		name, _ = url.QueryUnescape(name)
		name, _, _ = strings.Cut(name, ".")
		if name != "" && (name == string(p.mask.Name()) || name == p.mask.JSONName()) {
			b.drop()
			return heldParam{}, false
		}
	}
	return heldParam{name: string(p.mask.Name()), mask: func() ([]string, error) {
		defer b.drop()
		var body io.Reader = &b.sent
		if b.gzipped {
			z, err := gzip.NewReader(body)
			if err != nil {
				return nil, err
			}
			body = io.LimitReader(z, b.maxBytes)
		}
		return bodyMaskPaths(body, p.body[len(p.body)-1].Message())
	}}, true
}

// bodyMaskPaths returns the field paths of the JSON in body, a message of
// md, sorted, as grpc-gateway's FieldMaskFromRequestBody makes them: each
// field the JSON sets, by its proto name, a message's fields under its
// name ("inner.text"), a message given as {} or null, a list, a map, an
// Any and a scalar or well-known type as themselves; a Struct's or Value's
// by their JSON's keys. A name that no field has is left out (vanguard's
// decoding, and so kit's, ignores it, where grpc-gateway's mask refuses
// it, 400). An empty body, or one that is no JSON object, has none.
func bodyMaskPaths(body io.Reader, md protoreflect.MessageDescriptor) ([]string, error) {
	var root any
	if err := json.NewDecoder(body).Decode(&root); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, fmt.Errorf("the body's fields, for the update mask: %w", err)
	}
	var paths []string
	var walk func(prefix string, obj map[string]any, md protoreflect.MessageDescriptor)
	walk = func(prefix string, obj map[string]any, md protoreflect.MessageDescriptor) {
		for k, v := range obj {
			fd := md.Fields().ByName(protoreflect.Name(k))
			if fd == nil {
				fd = md.Fields().ByJSONName(k)
			}
			if fd == nil {
				continue
			}
			path := prefix + string(fd.Name())
			child, isObj := v.(map[string]any)
			switch {
			case fd.IsList() || fd.IsMap() || fd.Message() == nil || !isObj || len(child) == 0 ||
				fd.Message().FullName() == "google.protobuf.Any":
				paths = append(paths, path)
			case fd.Message().FullName() == "google.protobuf.Struct" || fd.Message().FullName() == "google.protobuf.Value":
				blindPaths(path, child, &paths)
			default:
				walk(path+".", child, fd.Message())
			}
		}
	}
	if obj, ok := root.(map[string]any); ok {
		walk("", obj, md)
	}
	sort.Strings(paths)
	return paths, nil
}

// blindPaths appends to paths those of obj, a Struct's JSON at prefix: a
// key's path, or its object's keys' under it, as grpc-gateway names them
// without fields to resolve.
func blindPaths(prefix string, obj map[string]any, paths *[]string) {
	for k, v := range obj {
		if child, ok := v.(map[string]any); ok {
			blindPaths(prefix+"."+k, child, paths)
			continue
		}
		*paths = append(*paths, prefix+"."+k)
	}
}

// setMask sets the FieldMask field p names in msg to the paths p.mask
// returns, if any.
func setMask(msg protoreflect.Message, p heldParam) error {
	paths, err := p.mask()
	if err != nil || len(paths) == 0 {
		return err
	}
	fd := msg.Descriptor().Fields().ByName(protoreflect.Name(p.name))
	mask := msg.NewField(fd).Message()
	list := mask.Mutable(mask.Descriptor().Fields().ByName("paths")).List()
	for _, path := range paths {
		list.Append(protoreflect.ValueOfString(path))
	}
	msg.Set(fd, protoreflect.ValueOfMessage(mask))
	return nil
}
