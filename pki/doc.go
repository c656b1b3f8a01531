// Package pki makes and checks the certificates that put TLS on every
// Hodei connection: the cluster CA the server keeps in its data dir, the
// server's own certificate, the client certificates agents receive when
// they join, and the tls.Configs each side dials or listens with.
//
// # Trust model
//
// The server makes its own CA (EnsureCA) on first start unless the operator
// gives it a certificate (LoadServerCert). Clients and agents learn the CA
// one of two ways: from a file (ClientConfig), or on first contact from its
// sha256 fingerprint alone (PinnedConfig, FetchCA), as kubeadm's discovery
// hash does. A pinned handshake succeeds only when the server presents a CA
// certificate whose fingerprint equals the pin and its leaf verifies against
// that CA for the name dialled; nothing else is trusted, and there is no
// skip-verify mode.
//
// An agent joins by sending a certificate request for a key it made itself
// (NewKeyAndCSR); the server signs it for the worker id it has authorised
// (CA.SignAgent), ignoring every name the request asks for. The worker id
// travels only in the certificate's URI SAN, hodei://worker/<id>, and
// WorkerID reads it from there and nowhere else. The server accepts client
// certificates but does not require them (ServerConfig): people and scripts
// authenticate with tokens, agents with certificates.
//
// # Files
//
// In the server's dir: ca.pem (0644), ca-key.pem (0600), server.pem (0644),
// server-key.pem (0600). In the agent's dir: agent.pem, agent-key.pem
// (0600), ca.pem. Every file is written to a temporary name and renamed
// into place, so a crash leaves the old file or the new one, never half of
// one. Keys are ECDSA P-256 in PKCS #8 PEM.
//
// # Caveats
//
// Nothing here revokes: a revoked worker's certificate still verifies, so
// the server must check WorkerID against its own list on every connection.
// Agent certificates last a year and are not renewed automatically. The CA
// key sits unencrypted beside the database; whoever can read the data dir
// can mint certificates.
//
// Time comes in as a value (now) wherever a certificate is made or judged
// fresh; handshakes use the clock of crypto/tls. Every function is safe for
// concurrent use and a *CA is immutable once made, but EnsureCA and
// EnsureServerCert assume one process owns their dir (the server's data dir
// lock): two first starts at once could each make a CA.
package pki
