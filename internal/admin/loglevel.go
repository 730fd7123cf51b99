package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// maxLevelBody bounds a PUT /debug/loglevel body: a level is a short word.
const maxLevelBody = 1 << 10

// levelHandler serves /debug/loglevel (documented on NewHandler).
type levelHandler struct {
	level  *slog.LevelVar
	logger *slog.Logger
}

type levelJSON struct {
	Level    string `json:"level"`
	Previous string `json:"previous,omitempty"`
}

func (h *levelHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, levelJSON{Level: h.level.Level().String()})
	case http.MethodPut:
		h.put(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		http.Error(w, "method not allowed: GET the log level or PUT a new one", http.StatusMethodNotAllowed)
	}
}

func (h *levelHandler) put(w http.ResponseWriter, r *http.Request) {
	level, err := readLevel(http.MaxBytesReader(w, r.Body, maxLevelBody))
	if err != nil {
		http.Error(w, "bad log level: "+err.Error(), http.StatusBadRequest)
		return
	}
	old := h.level.Level()
	h.level.Set(level)
	// Logged at INFO, or at the new level if higher, so that the record
	// passes the level it sets.
	h.logger.Log(r.Context(), max(level, slog.LevelInfo), "log level set",
		"from", old.String(), "to", level.String(), "remote_addr", r.RemoteAddr)
	writeJSON(w, http.StatusOK, levelJSON{Level: level.String(), Previous: old.String()})
}

// readLevel reads a level sent as a bare word or as {"level": "..."}.
func readLevel(body io.Reader) (slog.Level, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return 0, fmt.Errorf("body over %d bytes", tooBig.Limit)
		}
		return 0, fmt.Errorf("reading body: %w", err)
	}
	b = bytes.TrimSpace(b)
	text := string(b)
	if bytes.HasPrefix(b, []byte("{")) {
		var v struct {
			Level *string `json:"level"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			return 0, fmt.Errorf(`want {"level": "debug"}: %w`, err)
		}
		if v.Level == nil {
			return 0, errors.New(`no "level" in the JSON body`)
		}
		text = *v.Level
	}
	if text == "" {
		return 0, errors.New("empty: send debug, info, warn or error")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(text)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error, optionally with an offset such as debug-2", text)
	}
	return level, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
