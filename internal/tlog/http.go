package tlog

import (
	"errors"
	"net/http"
	"strings"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/store"
)

// Handler serves the C2SP tlog-tiles read API under prefix (for example
// "/audit/"): the latest checkpoint, hash tiles and, when entries is
// non-nil and allows the request, entry bundles. Hash tiles and checkpoints
// reveal nothing about the events; entry bundles hold them, so the caller
// decides who may read them.
func (l *Log) Handler(prefix string, entries func(r *http.Request) error) http.Handler {
	return http.StripPrefix(strings.TrimSuffix(prefix, "/"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := strings.TrimPrefix(r.URL.Path, "/")
		if p == "checkpoint" {
			l.serveCheckpoint(w, r)
			return
		}
		info, err := auditlog.ParseTilePath(p)
		if err != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if info.Entries {
			if entries == nil {
				http.Error(w, "entry bundles are not served here", http.StatusForbidden)
				return
			}
			if err := entries(r); err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
			l.serveEntries(w, r, info)
			return
		}
		l.serveTile(w, r, info)
	}))
}

func (l *Log) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	signed, cp := l.Checkpoint()
	// The stored note gains the witnesses' cosignatures as they arrive.
	if st, err := l.st.LogState(r.Context()); err == nil && st.Checkpoint != nil && st.Integrated >= cp.Size {
		signed = st.Checkpoint
	}
	if signed == nil {
		http.Error(w, "the log has no checkpoint yet", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(signed)
}

// available returns how many nodes the tile at (level, index) holds in the
// latest checkpoint's tree: 0 if none, tileWidth if full.
func (l *Log) available(level uint8, index uint64) int {
	_, cp := l.Checkpoint()
	n := cp.Size >> (tileHeight * uint(level))
	switch {
	case index < n/tileWidth:
		return tileWidth
	case index == n/tileWidth:
		return int(n % tileWidth)
	}
	return 0
}

func immutable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
}

func (l *Log) serveTile(w http.ResponseWriter, r *http.Request, info auditlog.TilePathInfo) {
	if l.available(info.Level, info.Index) < info.Width {
		http.Error(w, "no such tile", http.StatusNotFound)
		return
	}
	rec, err := store.ReadTile(r.Context(), l.st, info.Level, info.Index)
	if errors.Is(err, store.ErrNotFound) || (err == nil && rec.Width < info.Width) {
		http.Error(w, "no such tile", http.StatusNotFound)
		return
	}
	if err != nil {
		l.cfg.Logger.Error("audit log: read tile", "level", info.Level, "index", info.Index, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	immutable(w)
	w.Write(rec.Data[:info.Width*len(auditlog.Hash{})])
}

func (l *Log) serveEntries(w http.ResponseWriter, r *http.Request, info auditlog.TilePathInfo) {
	if l.available(0, info.Index) < info.Width {
		http.Error(w, "no such entry bundle", http.StatusNotFound)
		return
	}
	first := info.Index * tileWidth
	var data []byte
	err := ReadEntries(r.Context(), l.st, first, first+uint64(info.Width), func(_ uint64, e []byte) error {
		var err error
		data, err = auditlog.AppendEntryBundle(data, e)
		return err
	})
	if _, ok := errors.AsType[*MissingError](err); ok {
		http.Error(w, "no such entry bundle (pruned)", http.StatusNotFound)
		return
	}
	if err != nil {
		l.cfg.Logger.Error("audit log: read entry bundle", "index", info.Index, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	immutable(w)
	w.Write(data)
}
