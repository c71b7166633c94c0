// Package verify checks custos access tokens (RFC 9068 JWTs) strictly, for
// resource servers written in Go.
package verify
