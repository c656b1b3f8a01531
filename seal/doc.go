// Package seal keeps secret env values sealed at rest.
//
// A Key is 32 random bytes in a file beside the database (DATA-DIR/secrets.key,
// mode 0600). It is never written into the database or a snapshot: a copy of
// hodei.db without the key file holds only sealed values, which nobody can
// open. Losing the key file loses every secret of every stored job; jobs can
// be submitted again, the secrets cannot be recovered.
//
// A sealed value is a self-describing string,
//
//	hodei-sealed:v1:<base64 of nonce ‖ ciphertext ‖ tag>
//
// made with XChaCha20-Poly1305 (random 24-byte nonces, so there is no counter
// to keep). The job id and the env key are its associated data: a sealed value
// copied to another job or another key fails to open.
//
// The database keeps a check value (Key.Check: an HMAC of a fixed string under
// a key derived from the file key, not the key) so that starting with a
// different or missing key file fails with an error naming the file instead of
// silently creating a new key (see LoadOrCreate).
//
// The package is pure apart from LoadOrCreate, which reads or creates the key
// file; it does not log.
package seal
