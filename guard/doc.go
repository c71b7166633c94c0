// Package guard stands in front of the services that hold personal data. It
// lets a response out only for an access token custos really issued, only
// for the customer that token belongs to (or a staff purpose that was
// declared), and only as the service's policy allows.
//
// A policy (ParsePolicy; the format is docs/spec/guard-policy.md) names the
// routes the guard serves: whose data each returns, which categories of
// personal data, the scopes a reader needs, rate limits and the mode.
package guard
