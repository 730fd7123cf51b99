package main

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/kit"
)

// swaggerFile is the document protoc-gen-openapiv2 writes for the
// example's service (buf.gen.yaml).
const swaggerFile = "../../gen/example/v1/profile_service.swagger.json"

// swaggerDoc is the part of a Swagger 2.0 document the tests read.
type swaggerDoc struct {
	Paths       map[string]map[string]swaggerOp `json:"paths"`
	Definitions map[string]*swaggerSchema       `json:"definitions"`
}

type swaggerOp struct {
	Parameters []swaggerParam `json:"parameters"`
	Responses  map[string]struct {
		Schema *swaggerSchema `json:"schema"`
	} `json:"responses"`
}

type swaggerParam struct {
	Name     string         `json:"name"`
	In       string         `json:"in"`
	Required bool           `json:"required"`
	Type     string         `json:"type"`
	Schema   *swaggerSchema `json:"schema"`
}

type swaggerSchema struct {
	Ref                  string                    `json:"$ref"`
	Type                 string                    `json:"type"`
	Format               string                    `json:"format"`
	Properties           map[string]*swaggerSchema `json:"properties"`
	Items                *swaggerSchema            `json:"items"`
	Enum                 []string                  `json:"enum"`
	AdditionalProperties bool                      `json:"additionalProperties"`
}

func readSwagger(tb testing.TB) *swaggerDoc {
	tb.Helper()
	data, err := os.ReadFile(swaggerFile)
	if err != nil {
		tb.Fatal(err)
	}
	var doc swaggerDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		tb.Fatalf("%s: %v", swaggerFile, err)
	}
	return &doc
}

// resolve follows s's $ref into doc's definitions.
func (doc *swaggerDoc) resolve(tb testing.TB, s *swaggerSchema) *swaggerSchema {
	tb.Helper()
	for s.Ref != "" {
		name, ok := strings.CutPrefix(s.Ref, "#/definitions/")
		if !ok || doc.Definitions[name] == nil {
			tb.Fatalf("unresolved $ref %q", s.Ref)
		}
		s = doc.Definitions[name]
	}
	return s
}

// conform fails tb unless v, decoded from JSON, has the shape s documents:
// every property of an object is one the schema names (protojson's
// lowerCamelCase), each value of the documented type and format.
func (doc *swaggerDoc) conform(tb testing.TB, at string, s *swaggerSchema, v any) {
	tb.Helper()
	s = doc.resolve(tb, s)
	switch s.Type {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			tb.Errorf("%s: %T %v, documented as an object", at, v, v)
			return
		}
		for k, fv := range obj {
			ps, ok := s.Properties[k]
			if !ok {
				if !s.AdditionalProperties {
					tb.Errorf("%s: property %q is not documented (documented: %v)", at, k, slices.Sorted(maps.Keys(s.Properties)))
				}
				continue
			}
			doc.conform(tb, at+"."+k, ps, fv)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			tb.Errorf("%s: %T %v, documented as an array", at, v, v)
			return
		}
		for i, e := range arr {
			doc.conform(tb, at+"["+strconv.Itoa(i)+"]", s.Items, e)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			tb.Errorf("%s: %T %v, documented as a string", at, v, v)
			return
		}
		switch s.Format {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				tb.Errorf("%s: %v", at, err)
			}
		case "int64", "uint64":
			if _, err := strconv.ParseInt(str, 10, 64); err != nil {
				tb.Errorf("%s: %v", at, err)
			}
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			tb.Errorf("%s: %q is not one of %v", at, str, s.Enum)
		}
	case "integer":
		n, ok := v.(float64)
		if !ok || n != float64(int64(n)) {
			tb.Errorf("%s: %T %v, documented as an integer", at, v, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			tb.Errorf("%s: %T %v, documented as a boolean", at, v, v)
		}
	default:
		tb.Errorf("%s: the test does not know the schema type %q", at, s.Type)
	}
}

// exampleValues are the values the test gives the document's path and
// query parameters and body properties, by name; id is filled with the
// UUID of a profile that exists.
var exampleValues = map[string]any{
	"pageSize":  1,
	"pageToken": "",
	"name":      "Grace Hopper",
	"email":     "grace@example.com",
}

// TestOpenAPIDocumentMatchesTheServer calls every operation of the
// committed Swagger document on the example's server, with the parameters
// and body the document names, and checks that each is served (200, not a
// 404 or 405 of a route that is not there) and that its response has the
// documented schema; and that an error is the documented google.rpc.Status.
func TestOpenAPIDocumentMatchesTheServer(t *testing.T) {
	t.Parallel()
	doc := readSwagger(t)
	srv := newExample(t, kit.Config{})
	client := srv.HTTP1Client()
	call := func(t *testing.T, method, path string, body any) (*http.Response, any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s %s = %d %q: not JSON: %v", method, path, res.StatusCode, data, err)
		}
		return res, v
	}
	newProfile := func(t *testing.T) string {
		t.Helper()
		res, v := call(t, http.MethodPost, "/v1/profiles", map[string]any{"name": "Ada", "email": "ada@example.com"})
		if res.StatusCode != http.StatusOK {
			t.Fatalf("POST /v1/profiles = %d %v", res.StatusCode, v)
		}
		return v.(map[string]any)["profile"].(map[string]any)["id"].(string)
	}
	newProfile(t) // so that a list has two profiles once an operation's own is made

	ops := 0
	for path, item := range doc.Paths {
		for method, op := range item {
			ops++
			t.Run(strings.ToUpper(method)+" "+path, func(t *testing.T) {
				t.Parallel()
				values := map[string]any{"id": newProfile(t)}
				for k, v := range exampleValues {
					values[k] = v
				}
				target, query, body := path, url.Values{}, any(nil)
				for _, p := range op.Parameters {
					var v any
					if p.In != "body" {
						var ok bool
						if v, ok = values[p.Name]; !ok {
							t.Fatalf("%s parameter %q: give it a value in exampleValues", p.In, p.Name)
						}
					}
					switch p.In {
					case "path":
						target = strings.ReplaceAll(target, "{"+p.Name+"}", url.PathEscape(v.(string)))
					case "query":
						query.Set(p.Name, strings.Trim(string(mustJSON(t, v)), `"`))
					case "body":
						props := map[string]any{}
						for name := range doc.resolve(t, p.Schema).Properties {
							v, ok := values[name]
							if !ok {
								t.Fatalf("body property %q: give it a value in exampleValues", name)
							}
							props[name] = v
						}
						body = props
					default:
						t.Fatalf("parameter %q in %q: the test knows path, query and body", p.Name, p.In)
					}
				}
				if len(query) > 0 {
					target += "?" + query.Encode()
				}
				res, v := call(t, strings.ToUpper(method), target, body)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("%s %s = %d %v", strings.ToUpper(method), target, res.StatusCode, v)
				}
				ok, found := op.Responses["200"]
				if !found || ok.Schema == nil {
					t.Fatalf("no 200 response schema documented")
				}
				doc.conform(t, "response", ok.Schema, v)
				if query.Has("pageSize") {
					if n := len(v.(map[string]any)["profiles"].([]any)); n != 1 {
						t.Errorf("pageSize=1 answered %d profiles", n)
					}
				}
			})
		}
	}
	if ops == 0 {
		t.Fatalf("%s documents no operation", swaggerFile)
	}

	t.Run("error", func(t *testing.T) {
		t.Parallel()
		res, v := call(t, http.MethodGet, "/v1/profiles/01a20139-0000-7000-8000-000000000000", nil)
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("GET of a missing profile = %d %v", res.StatusCode, v)
		}
		errSchema := doc.Paths["/v1/profiles/{id}"]["get"].Responses["default"].Schema
		if errSchema == nil {
			t.Fatal("GET /v1/profiles/{id} documents no default (error) response")
		}
		doc.conform(t, "error", errSchema, v)
		if code := v.(map[string]any)["code"]; code != float64(5) {
			t.Errorf("code = %v, want 5 (NotFound)", code)
		}
	})
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestOpenAPIDocumentHasEveryRoute checks that the committed Swagger
// document has an operation for each google.api.http route of the
// service kit serves, additional bindings included.
func TestOpenAPIDocumentHasEveryRoute(t *testing.T) {
	t.Parallel()
	doc := readSwagger(t)
	methods := examplev1.File_example_v1_profile_service_proto.Services().ByName("ProfileService").Methods()
	routes := 0
	for i := range methods.Len() {
		m := methods.Get(i)
		rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule == nil {
			continue
		}
		for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			verb, path := httpRule(r)
			routes++
			if _, ok := doc.Paths[path][verb]; !ok {
				t.Errorf("%s: route %s %s is not in %s", m.FullName(), strings.ToUpper(verb), path, swaggerFile)
			}
		}
	}
	if routes == 0 {
		t.Fatal("ProfileService has no google.api.http route")
	}
}

// httpRule returns r's method, in lower case as Swagger writes it, and
// its path template.
func httpRule(r *annotations.HttpRule) (verb, path string) {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return "get", p.Get
	case *annotations.HttpRule_Post:
		return "post", p.Post
	case *annotations.HttpRule_Put:
		return "put", p.Put
	case *annotations.HttpRule_Patch:
		return "patch", p.Patch
	case *annotations.HttpRule_Delete:
		return "delete", p.Delete
	case *annotations.HttpRule_Custom:
		return strings.ToLower(p.Custom.GetKind()), p.Custom.GetPath()
	}
	return "", ""
}
