package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultHTTPTimeout bounds each request to the issuer (discovery, JWKS,
// introspection) when the configuration sets no timeout.
const DefaultHTTPTimeout = 10 * time.Second

// maxDiscoverySize bounds the discovery document.
const maxDiscoverySize = 256 << 10

// FetchError reports a failed request to the issuer. It carries no token and
// no credential.
type FetchError struct {
	URL        string // the URL requested, without query
	StatusCode int    // the HTTP status, or 0 when no response arrived
	Err        error  // the cause, if any
}

func (e *FetchError) Error() string {
	switch {
	case e.StatusCode != 0 && e.Err != nil:
		return fmt.Sprintf("verify: fetch %s: status %d: %v", e.URL, e.StatusCode, e.Err)
	case e.StatusCode != 0:
		return fmt.Sprintf("verify: fetch %s: status %d", e.URL, e.StatusCode)
	default:
		return fmt.Sprintf("verify: fetch %s: %v", e.URL, e.Err)
	}
}

func (e *FetchError) Unwrap() error { return e.Err }

var errResponseSize = errors.New("response larger than the size cap")

// defaultHTTPClient does not follow redirects: every URL custos publishes
// is final, and a redirect could take the verifier somewhere else.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: DefaultHTTPTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// do sends req with a timeout and returns the body of a 200 response, read
// up to max bytes.
func do(client *http.Client, req *http.Request, timeout time.Duration, max int64) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(req.Context(), timeout)
	defer cancel()
	req = req.WithContext(ctx)
	where := req.URL.Scheme + "://" + req.URL.Host + req.URL.Path
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL
		}
		return nil, nil, &FetchError{URL: where, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, nil, &FetchError{URL: where, StatusCode: resp.StatusCode, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, &FetchError{URL: where, StatusCode: resp.StatusCode}
	}
	if int64(len(body)) > max {
		return nil, nil, &FetchError{URL: where, StatusCode: resp.StatusCode, Err: errResponseSize}
	}
	return bytes.TrimSpace(body), resp.Header, nil
}

// discovery is the part of the OpenID Provider metadata verify uses.
type discovery struct {
	JWKSURI               string
	IntrospectionEndpoint string
}

// discover fetches issuer's /.well-known/openid-configuration and checks
// that it names issuer exactly.
func discover(ctx context.Context, client *http.Client, issuer string, timeout time.Duration) (discovery, error) {
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return discovery{}, fmt.Errorf("verify: discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	body, _, err := do(client, req, timeout, maxDiscoverySize)
	if err != nil {
		return discovery{}, err
	}
	members, err := strictObject(body)
	if err != nil {
		return discovery{}, fmt.Errorf("verify: discovery document: %w", err)
	}
	if got, _ := jsonString(members["issuer"]); got != issuer {
		return discovery{}, fmt.Errorf("verify: discovery document names issuer %.100q, want %q", got, issuer)
	}
	var d discovery
	d.JWKSURI, _ = jsonString(members["jwks_uri"])
	d.IntrospectionEndpoint, _ = jsonString(members["introspection_endpoint"])
	return d, nil
}

// checkEndpoint checks that endpoint is an absolute http(s) URL, and https
// when the issuer is.
func checkEndpoint(issuer, endpoint string) error {
	iu, err := url.Parse(issuer)
	if err != nil {
		return err
	}
	eu, err := url.Parse(endpoint)
	if err != nil || !eu.IsAbs() || eu.Host == "" || (eu.Scheme != "https" && eu.Scheme != "http") {
		return fmt.Errorf("endpoint %.100q is not an absolute http(s) URL", endpoint)
	}
	if iu.Scheme == "https" && eu.Scheme != "https" {
		return fmt.Errorf("endpoint %.100q is not https", endpoint)
	}
	return nil
}
