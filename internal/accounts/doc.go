// Package accounts manages custos's customers: registration, sign-in with a
// login ID (e-mail address or E.164 phone number) and password, password
// changes, and disabling.
//
// Passwords are hashed with Argon2id at or above OWASP's minimum (m=19 MiB,
// t=2, p=1) and stored as PHC strings,
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// with salt and key in standard base64 without padding, the same format as
// the reference implementation. The parameters live in the string, so they
// can be raised at any time: a hash made with other parameters is replaced on
// the customer's next successful sign-in. At most Config.MaxConcurrentHashes
// hashes run at once, which also bounds the memory hashing uses.
//
// Sign-in reveals nothing about which accounts exist: an unknown login ID
// costs one Argon2id verification against a dummy hash, exactly like a wrong
// password, and a disabled account's password is verified too; all three fail
// with ErrInvalidCredentials. The reason goes only into the login_failed
// event for the operator.
//
// Throttling is in memory, per node, in bounded tables: a token bucket per
// source IP, and per login ID an exponential lockout after
// Config.FailuresBeforeLockout consecutive failures (unknown login IDs lock
// the same way). So that an attacker cannot use the lockout to keep a
// customer out, a browser that signed in before carries a device token
// (Service.IssueDeviceToken, an HMAC over account, random device ID and
// expiry): it is exempt from the login ID's lockout and subject only to its
// own, per-device one (OWASP's "device cookies"). Shared throttling state
// across nodes arrives with the PostgreSQL store.
//
// Changing or setting a password and disabling an account revoke every
// refresh token and access-token receipt of the account (Store.RevokeSubject),
// so its sessions end and its access tokens fail introspection.
//
// Password hashes never leave the package: accounts returned by Service have
// an empty PasswordHash.
package accounts
