package verify_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

const (
	introClientID     = "shop-api"
	introClientSecret = "s3cr3t-introspection-password"
)

// issuerServer is a fake custos issuer: discovery, JWKS and introspection,
// counting requests.
type issuerServer struct {
	*httptest.Server
	mu         sync.Mutex
	keys       []jose.JSONWebKey
	jwksBody   []byte // when set, served instead of keys
	jwksStatus int    // when set, served instead of 200
	maxAge     int
	discIssuer string // when set, discovery names this issuer
	// introspect answers an introspection request for token.
	introspect func(token string) map[string]any
	hits       map[string]int
}

func newIssuerServer(t testing.TB, keys ...jose.JSONWebKey) *issuerServer {
	t.Helper()
	s := &issuerServer{keys: keys, maxAge: 60, hits: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		s.count(r)
		s.mu.Lock()
		iss := s.discIssuer
		s.mu.Unlock()
		if iss == "" {
			iss = s.URL
		}
		writeJSON(w, map[string]any{
			"issuer":                 iss,
			"jwks_uri":               s.URL + "/jwks",
			"introspection_endpoint": s.URL + "/introspect",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		s.count(r)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(s.maxAge))
		if s.jwksStatus != 0 {
			w.WriteHeader(s.jwksStatus)
			return
		}
		if s.jwksBody != nil {
			w.Write(s.jwksBody)
			return
		}
		writeJSON(w, jose.JSONWebKeySet{Keys: s.keys})
	})
	mux.HandleFunc("GET /redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to")+"/jwks", http.StatusFound)
	})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		s.count(r)
		id, secret, ok := r.BasicAuth()
		if !ok || id != introClientID || secret != introClientSecret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		f := s.introspect
		s.mu.Unlock()
		writeJSON(w, f(r.PostFormValue("token")))
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *issuerServer) count(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits[r.URL.Path]++
}

func (s *issuerServer) hitCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *issuerServer) set(f func(s *issuerServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
