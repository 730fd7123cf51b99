package logline_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// errorKey is the one key under which every log line of the module carries
// an error (README, "Log fields").
const errorKey = "error"

// otherErrorKeys are keys an error is commonly logged under elsewhere: a
// line of the module must not use them, whatever the value.
var otherErrorKeys = map[string]bool{
	"err": true, "errs": true, "errors": true, "err_msg": true, "errmsg": true,
	"error_message": true, "exception": true, "failure": true,
}

// errorTextKeys carry the text of an error value that is not the line's
// error: the reason a shutdown was requested (the signal).
var errorTextKeys = map[string]bool{"reason": true}

// logMethods are the logging methods of *slog.Logger, with the index of
// their first key-value argument.
var logMethods = map[string]int{
	"Debug": 1, "Info": 1, "Warn": 1, "Error": 1,
	"DebugContext": 2, "InfoContext": 2, "WarnContext": 2, "ErrorContext": 2,
	"Log": 3, "LogAttrs": 3, "With": 0,
}

// notLoggers are receivers whose Error method is no logger's.
var notLoggers = map[string]bool{"t": true, "b": true, "tb": true, "f": true, "http": true}

// errorish matches the names of variables and fields that hold an error.
var errorish = regexp.MustCompile(`^(err|[A-Za-z]*Err|cause|why)$`)

// TestErrorsAreLoggedUnderOneKey walks the module's non-test Go files and
// fails on a log call, slog attribute or list of log arguments that puts an
// error under a key other than errorKey, so that one query finds every
// failure the module logs. It reads the syntax, not the types: a value is
// an error when it is a variable or field named like one (err, lastErr,
// cause) or an Error() call.
func TestErrorsAreLoggedUnderOneKey(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "gen" || name == "node_modules" || fileExists(filepath.Join(path, "go.mod"))) {
				return filepath.SkipDir // hidden, generated, or another module
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		for _, bad := range badErrorKeys(f) {
			rel, _ := filepath.Rel(root, fset.Position(bad.pos).Filename)
			t.Errorf("%s:%d: error logged under %q: use %q", rel, fset.Position(bad.pos).Line, bad.key, errorKey)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("walked %d Go files under %s: not the module", files, root)
	}
}

func TestBadErrorKeysFindsEveryForm(t *testing.T) {
	t.Parallel()
	const src = `package p
func f() {
	logger.Warn("a", "err", err)                       // other key
	logger.Error("b", "cause", lastErr)                // error value
	logger.LogAttrs(ctx, l, "c", slog.String("failure", x)) // other key in an attribute
	logger.Info("d", "text", err.Error())              // error text
	attrs = append(attrs, "why", c.res.err)             // argument list
	args := []any{"e", s.Err}                          // argument list
	_ = slog.Any("problem", cause)                     // attribute
	logger.With("err", x).Info("f")                    // With
	logger.Warn("g", "detail", clip(err.Error()))      // error text, cut
	logger.Warn("h", "detail", fmt.Sprint(lastErr))    // error text, formatted
	logger.Warn("i", "gone", ctx.Err())                // an Err method's error
	logger.Warn("j", "why", context.Cause(ctx))        // a context's cause
	_ = slog.Group("k", "problem", err)                // in a group
	_ = slog.Attr{Key: "problem", Value: slog.AnyValue(err)} // an Attr literal
	logger.Warn("ok", "error", err, "n", 1)
	logger.Info("ok", "reason", ctx.Err().Error())
	logger.Info("ok", "code", connect.CodeOf(err), "timeout", errors.Is(err, context.DeadlineExceeded))
	t.Error("x", err)
	http.Error(w, msg, code)
	_ = fmt.Errorf("wrap: %w", err)
}`
	f, err := parser.ParseFile(token.NewFileSet(), "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, bad := range badErrorKeys(f) {
		got = append(got, bad.key)
	}
	want := []string{"err", "cause", "failure", "text", "why", "e", "problem", "err",
		"detail", "detail", "gone", "why", "problem", "problem"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("badErrorKeys = %q, want %q", got, want)
	}
}

type badKey struct {
	pos token.Pos
	key string
}

// badErrorKeys returns the keys in f's log calls, slog attributes and
// argument lists ([]any literals, append to a slice named like attrs or
// args) that hold an error and are not errorKey.
func badErrorKeys(f *ast.File) []badKey {
	var bad []badKey
	pairs := func(args []ast.Expr) {
		for i := 0; i+1 < len(args); i++ {
			key, ok := stringLit(args[i])
			if !ok {
				continue
			}
			if key != errorKey && (otherErrorKeys[key] || !errorTextKeys[key] && isError(args[i+1])) {
				bad = append(bad, badKey{args[i].Pos(), key})
			}
			i++ // a key and its value
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			switch fun := n.Fun.(type) {
			case *ast.SelectorExpr:
				recv, _ := fun.X.(*ast.Ident)
				if recv != nil && recv.Name == "slog" {
					if fun.Sel.Name == "Group" && len(n.Args) > 0 {
						pairs(n.Args[1:]) // the group's name, then its attributes
					} else {
						pairs(n.Args) // slog.String, slog.Any, …: a key and its value
					}
					return true
				}
				first, ok := logMethods[fun.Sel.Name]
				if ok && (recv == nil || !notLoggers[recv.Name]) && len(n.Args) > first {
					pairs(n.Args[first:])
				}
			case *ast.Ident:
				if fun.Name == "append" && len(n.Args) > 1 && argsSlice(n.Args[0]) {
					pairs(n.Args[1:])
				}
			}
		case *ast.CompositeLit:
			if attrLiteral(n.Type) {
				// slog.Attr{Key: "k", Value: slog.AnyValue(err)}
				var key, value ast.Expr
				for _, e := range n.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						switch id, _ := kv.Key.(*ast.Ident); {
						case id == nil:
						case id.Name == "Key":
							key = kv.Value
						case id.Name == "Value":
							value = kv.Value
						}
					}
				}
				if key != nil && value != nil {
					pairs([]ast.Expr{key, value})
				}
			}
			if arr, ok := n.Type.(*ast.ArrayType); ok && arr.Len == nil {
				if iface, ok := arr.Elt.(*ast.InterfaceType); ok && len(iface.Methods.List) == 0 {
					pairs(n.Elts)
				} else if id, ok := arr.Elt.(*ast.Ident); ok && id.Name == "any" {
					pairs(n.Elts)
				}
			}
		}
		return true
	})
	return bad
}

// argsSlice reports whether e names a slice of log arguments or attributes.
func argsSlice(e ast.Expr) bool {
	var name string
	switch e := e.(type) {
	case *ast.Ident:
		name = e.Name
	case *ast.SelectorExpr:
		name = e.Sel.Name
	}
	name = strings.ToLower(name)
	return strings.Contains(name, "attr") || strings.Contains(name, "args")
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// isError reports whether e reads like an error value or its text: a
// variable or field named like one, its dereference, a call of an Error
// or Err method (ctx.Err()) or of context.Cause, a call given an error's
// text (clip(err.Error())), or a formatting of an error (fmt.Sprint(err),
// slog.AnyValue(err)). Other calls given an error (connect.CodeOf(err),
// errors.Is(err, target)) say something else of it.
func isError(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return errorish.MatchString(e.Name)
	case *ast.SelectorExpr:
		return errorish.MatchString(e.Sel.Name)
	case *ast.StarExpr:
		return isError(e.X)
	case *ast.CallExpr:
		sel, ok := e.Fun.(*ast.SelectorExpr)
		if !ok {
			return slices.ContainsFunc(e.Args, errorText)
		}
		switch sel.Sel.Name {
		case "Error", "Err":
			return len(e.Args) == 0 || slices.ContainsFunc(e.Args, errorText)
		case "Cause":
			return true
		}
		if pkg, ok := sel.X.(*ast.Ident); ok && formatters[pkg.Name+"."+sel.Sel.Name] {
			return slices.ContainsFunc(e.Args, isError)
		}
		return slices.ContainsFunc(e.Args, errorText)
	}
	return false
}

// formatters are the functions whose result holds their arguments' text.
var formatters = map[string]bool{
	"fmt.Sprint": true, "fmt.Sprintf": true, "fmt.Sprintln": true,
	"slog.AnyValue": true, "slog.StringValue": true,
}

// errorText reports whether e is a call of an Error method: an error's
// text.
func errorText(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 0 {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Error"
}

// attrLiteral reports whether t, a composite literal's type, is slog.Attr.
func attrLiteral(t ast.Expr) bool {
	sel, ok := t.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Attr" {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "slog"
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
