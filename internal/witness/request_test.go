package witness_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/custos-dev/custos/auditlog"
	"github.com/custos-dev/custos/internal/witness"
)

// specExample is the example request body of c2sp.org/tlog-witness.
const specExample = `old 20852014
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=

example.com/behind-the-sofa
20852163
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=
`

func TestParseRequestSpecExample(t *testing.T) {
	r, err := witness.ParseRequest([]byte(specExample))
	if err != nil {
		t.Fatal(err)
	}
	if r.OldSize != 20852014 || len(r.Proof) != 4 || r.Proof[0].String() != "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=" {
		t.Fatalf("parsed %+v", r)
	}
	if !strings.HasPrefix(string(r.Checkpoint), "example.com/behind-the-sofa\n20852163\n") {
		t.Fatalf("checkpoint %q", r.Checkpoint)
	}
	if got := r.Marshal(); string(got) != specExample {
		t.Fatalf("Marshal =\n%s\nwant\n%s", got, specExample)
	}
}

func TestParseRequest(t *testing.T) {
	h := auditlog.LeafHash([]byte("x")).String()
	const cp = "log.example/a\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— log.example/a AAAA\n"
	tests := []struct {
		name  string
		body  string
		old   uint64
		proof int
	}{
		{"old zero", "old 0\n\n" + cp, 0, 0},
		{"one proof line", "old 3\n" + h + "\n\n" + cp, 3, 1},
		{"63 proof lines", "old 3\n" + strings.Repeat(h+"\n", 63) + "\n" + cp, 3, 63},
		{"largest size", "old 18446744073709551615\n\n" + cp, 1<<64 - 1, 0},
		{"checkpoint is not parsed here", "old 1\n\nanything", 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := witness.ParseRequest([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if r.OldSize != tc.old || len(r.Proof) != tc.proof {
				t.Fatalf("old %d, %d proof lines; want %d, %d", r.OldSize, len(r.Proof), tc.old, tc.proof)
			}
			if got := r.Marshal(); string(got) != tc.body {
				t.Fatalf("Marshal = %q, want %q", got, tc.body)
			}
		})
	}
	bad := []struct{ name, body string }{
		{"empty", ""},
		{"no newline", "old 1"},
		{"not old", "new 1\n\n" + cp},
		{"OLD", "OLD 1\n\n" + cp},
		{"no space", "old1\n\n" + cp},
		{"two spaces", "old  1\n\n" + cp},
		{"tab", "old\t1\n\n" + cp},
		{"leading zero", "old 01\n\n" + cp},
		{"sign", "old +1\n\n" + cp},
		{"negative", "old -1\n\n" + cp},
		{"overflow", "old 18446744073709551616\n\n" + cp},
		{"trailing space", "old 1 \n\n" + cp},
		{"CRLF", "old 1\r\n\r\n" + cp},
		{"no empty line", "old 1\n" + h + "\n"},
		{"no checkpoint", "old 1\n" + h + "\n\n"},
		{"hash unpadded", "old 1\n" + strings.TrimSuffix(h, "=") + "\n\n" + cp},
		{"hash URL base64", "old 1\n" + strings.NewReplacer("+", "-", "/", "_").Replace(auditlog.LeafHash([]byte("y?")).String()) + "\n\n" + cp},
		{"hash with a space", "old 1\n " + h + "\n\n" + cp},
		{"hash too long", "old 1\n" + h + "AAAA\n\n" + cp},
		{"64 proof lines", "old 3\n" + strings.Repeat(h+"\n", 64) + "\n" + cp},
		{"too large", "old 1\n\n" + strings.Repeat("x", witness.MaxRequestSize)},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			if r, err := witness.ParseRequest([]byte(tc.body)); !errors.Is(err, witness.ErrMalformed) {
				t.Fatalf("ParseRequest = %+v, %v; want ErrMalformed", r, err)
			}
		})
	}
}

// Any body ParseRequest accepts is exactly what Marshal makes of it, and
// holds at most MaxProofLines proof lines.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(specExample))
	f.Add([]byte("old 0\n\nlog.example/a\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— log.example/a AAAA\n"))
	f.Add([]byte("old 1\n\n"))
	f.Add([]byte("old 01\n\nx"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := witness.ParseRequest(body)
		if err != nil {
			if !errors.Is(err, witness.ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			return
		}
		if len(r.Proof) > witness.MaxProofLines || len(r.Checkpoint) == 0 {
			t.Fatalf("accepted %d proof lines, checkpoint %q", len(r.Proof), r.Checkpoint)
		}
		if got := r.Marshal(); !bytes.Equal(got, body) {
			t.Fatalf("Marshal(ParseRequest(%q)) = %q", body, got)
		}
	})
}
