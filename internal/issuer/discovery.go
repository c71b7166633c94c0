package issuer

import (
	"fmt"
	"net/http"
)

type discoveryDoc struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	AuthorizationResponseIssParameter bool     `json:"authorization_response_iss_parameter_supported"`
}

// Standard scopes custos understands; clients may also be registered with
// scopes of their own for their resource servers.
var standardScopes = []string{"openid", "profile", "email", "phone"}

func (is *Issuer) discovery(w http.ResponseWriter, r *http.Request) {
	iss := is.cfg.Issuer
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	doc := discoveryDoc{
		Issuer:                            iss,
		AuthorizationEndpoint:             iss + PathAuthorize,
		TokenEndpoint:                     iss + PathToken,
		UserinfoEndpoint:                  iss + PathUserinfo,
		JWKSURI:                           iss + PathJWKS,
		IntrospectionEndpoint:             iss + PathIntrospect,
		RevocationEndpoint:                iss + PathRevoke,
		EndSessionEndpoint:                iss + PathLogout,
		ScopesSupported:                   standardScopes,
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               []string{"authorization_code", "refresh_token", "client_credentials"},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{"EdDSA", "ES256"},
		TokenEndpointAuthMethodsSupported: append(authMethods, "none"),
		IntrospectionAuthMethodsSupported: authMethods,
		RevocationAuthMethodsSupported:    append(authMethods, "none"),
		CodeChallengeMethodsSupported:     []string{"S256"},
		ClaimsSupported:                   []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "name", "email", "phone_number"},
		AuthorizationResponseIssParameter: true,
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	writeJSONCached(w, doc)
}

func (is *Issuer) jwks(w http.ResponseWriter, r *http.Request) {
	set, err := is.custody.JWKS(r.Context())
	if err != nil {
		is.log.Error("building JWKS", "err", err)
		writeOAuthError(w, errUnavailable)
		return
	}
	// Custody publishes a key at least JWKSMaxAge before it signs, so a
	// verifier honouring this max-age always knows the signing key.
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(is.custody.JWKSMaxAge().Seconds())))
	writeJSONCached(w, set)
}
