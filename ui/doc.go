// Package ui is Hodei's web page: plain HTML, CSS and JavaScript modules
// embedded in the binary (no build step, nothing fetched from another
// origin, so it works on an air-gapped network) and served on the
// server's HTTP listener at / and /ui/.
//
// The page holds no rule of its own: it is a client of the REST/JSON API
// under /v1/ and its Server-Sent Events (/v1/events, /v1/jobs/{id}/logs),
// authenticated with the token the user pastes, which it keeps in the
// browser's sessionStorage only. It hides the actions the token's role
// may not take, but the server decides: a refused call shows the server's
// 403.
//
// Handler serves the files with a Content-Security-Policy that allows
// scripts, styles and connections from the page's own origin only (no
// inline script), and with an ETag that is the sha256 of each file, so
// that a browser revalidates each asset and downloads it again only when
// a new binary changed it.
package ui
