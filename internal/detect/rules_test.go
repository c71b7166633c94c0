package detect

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestDefaultRulesParse(t *testing.T) {
	rs := DefaultRules()
	if len(rs.Rules) < 14 {
		t.Fatalf("%d default rules", len(rs.Rules))
	}
	for _, r := range rs.Rules {
		if _, err := newEvaluator(r); err != nil {
			t.Errorf("rule %s: %v", r.Name, err)
		}
	}
}

func TestParseRulesErrors(t *testing.T) {
	head := "custos-rules v1\n"
	full := "    title T\n    severity high\n    reference R\n"
	tests := []struct{ name, file, want string }{
		{"empty", "", "the file is empty"},
		{"no version", "rule a\n", `the first directive must be "custos-rules v1"`},
		{"directive outside a rule", head + "    match type=x\n", "belongs to a rule"},
		{"unindented directive", head + "rule a\nmatch type=x\n", `unknown directive "match"`},
		{"bad name", head + "rule A-b\n", "rule takes one name"},
		{"duplicate rule", head + "rule a\n" + full + "    match type=x\nrule a\n" + full + "    match type=y\n", "rule a is already defined on line 2"},
		{"no severity", head + "rule a\n    title T\n    reference R\n    match type=x\n", "rule a: needs a severity"},
		{"no reference", head + "rule a\n    title T\n    severity low\n    match type=x\n", "needs a reference"},
		{"bad severity", head + "rule a\n" + "    severity urgent\n", "severity takes one of"},
		{"no match", head + "rule a\n" + full, "needs match, or use"},
		{"bad condition", head + "rule a\n" + full + "    match type\n", `condition "type"`},
		{"bad key", head + "rule a\n" + full + "    match Type=x\n", `condition "Type=x"`},
		{"empty value", head + "rule a\n" + full + "    match type=x,\n", "empty value"},
		{"negated equality", head + "rule a\n" + full + "    match !type=x\n", "! only negates"},
		{"count without window", head + "rule a\n" + full + "    match type=x\n    count 3\n", "need a window"},
		{"window without threshold", head + "rule a\n" + full + "    match type=x\n    window 5m\n", "needs count, distinct or ratio"},
		{"window too long", head + "rule a\n" + full + "    match type=x\n    window 2h\n    count 2\n", "from 1s to 1h0m0s"},
		{"window by without keys", head + "rule a\n" + full + "    match type=x\n    window 5m by\n    count 2\n", "window takes a duration"},
		{"group on aggregated", head + "rule a\n" + full + "    match type=x\n    window 5m\n    count 2\n    group ip\n", "not group"},
		{"count twice", head + "rule a\n" + full + "    match type=x\n    window 5m\n    count 2\n    count 3\n", "count is already set"},
		{"count zero", head + "rule a\n" + full + "    match type=x\n    window 5m\n    count 0\n", "want a number from 1"},
		{"ratio without percent", head + "rule a\n" + full + "    match type=x\n    window 5m\n    ratio status>=400 40\n", "ratio takes"},
		{"ratio over 100", head + "rule a\n" + full + "    match type=x\n    window 5m\n    ratio status>=400 140%\n", "from 1% to 100%"},
		{"distinct twice", head + "rule a\n" + full + "    match type=x\n    window 5m\n    distinct ip 2\n    distinct ip 3\n", "distinct ip is already set"},
		{"unknown code rule", head + "rule a\n" + full + "    use nope\n", `use "nope": no such rule`},
		{"code rule with match", head + "rule a\n" + full + "    use key_state\n    match type=x\n", "takes only title"},
		{"unknown param", head + "rule a\n" + full + "    use key_state\n    param nope 1\n", `unknown param "nope"`},
		{"bad param", head + "rule a\n" + full + "    use key_state\n    param retired_grace soon\n", "param retired_grace: want a duration"},
		{"param on data rule", head + "rule a\n" + full + "    match type=x\n    param x 1\n", "param is only for rules written in Go"},
		{"unknown directive", head + "rule a\n" + full + "    match type=x\n    when now\n", `unknown rule directive "when"`},
		{"second version", head + "custos-rules v1\n", "may appear only once"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules("t.rules", strings.NewReader(tc.file))
			if err == nil || !errors.Is(err, ErrRules) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "t.rules:") {
				t.Errorf("error does not name the file and line: %v", err)
			}
		})
	}
}

func TestParseRulesConditions(t *testing.T) {
	rs, err := ParseRules("t.rules", strings.NewReader(`custos-rules v1
rule a  # a comment
    title Many things
    severity low
    reference somewhere
    match type=x,y reason!=z data~entrance_code status>=400 size<10 purpose? !sid?
    match subject|login_id_hash?
    window 90s by ip client
    count 2
    distinct subject|login_id_hash 3
    ratio status>=400 40%
`))
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Rules[0]
	var conds []string
	for _, alt := range r.Match {
		var s []string
		for _, c := range alt {
			s = append(s, c.String())
		}
		conds = append(conds, strings.Join(s, " "))
	}
	want := "type=x,y reason!=z data~entrance_code status>=400 size<10 purpose? !sid? | subject|login_id_hash?"
	if got := strings.Join(conds, " | "); got != want {
		t.Errorf("conditions %q, want %q", got, want)
	}
	if r.Window.Seconds() != 90 || len(r.By) != 2 || r.Count != 2 || len(r.Distinct) != 1 || r.Distinct[0].N != 3 || r.Ratio.Percent != 40 {
		t.Errorf("parsed %+v", r)
	}
	if len(rs.Digest) != 64 {
		t.Errorf("digest %q", rs.Digest)
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add(defaultRules)
	f.Add("custos-rules v1\nrule a\n    match x=1\n")
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseRules("f", strings.NewReader(s))
		if err != nil {
			return
		}
		for _, r := range rs.Rules {
			if r.Severity == "" || r.Title == "" || r.Reference == "" || r.Use == "" && len(r.Match) == 0 {
				t.Fatalf("accepted an incomplete rule: %+v", r)
			}
			if _, err := newEvaluator(r); err != nil {
				t.Fatalf("accepted rule %s cannot run: %v", r.Name, err)
			}
		}
	})
}

// docs/detection.md lists every built-in rule with its severity.
func TestDefaultRulesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/detection.md")
	if err != nil {
		t.Fatal(err)
	}
	// The table in the section "The built-in rules".
	_, section, _ := strings.Cut(string(doc), "\n## The built-in rules\n")
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]string{}
	for line := range strings.SplitSeq(section, "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 3 && strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[2])
		}
	}
	for _, r := range DefaultRules().Rules {
		sev, ok := rows[r.Name]
		switch {
		case !ok:
			t.Errorf("rule %s is not in docs/detection.md", r.Name)
		case sev != string(r.Severity):
			t.Errorf("docs/detection.md gives rule %s severity %q; the rules say %s", r.Name, sev, r.Severity)
		}
		delete(rows, r.Name)
	}
	for name := range rows {
		t.Errorf("docs/detection.md lists rule %s, which is not built in", name)
	}
}
