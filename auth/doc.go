// Package auth is who may do what: signed API tokens (Ed25519 JWTs), the
// five roles and what each may do, and the caller's identity carried in a
// context.
//
// It has no I/O besides reading and writing the signing key file, no
// gRPC and no store: the server authenticates each call with an Authority,
// looks the token up in its own records (revocation, last use) and asks the
// caller's Role whether it holds the Permission the method needs. Tenant
// scope is data on the Identity; handlers that list or fetch tenant objects
// ask Identity.Sees, so that objects outside the scope are not found rather
// than forbidden, and ids do not leak.
package auth
