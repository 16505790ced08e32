package cli

import "github.com/sluicehq/sluice/security"

// EnvSASLPassword names the environment variable holding the SASL password
// (or OAUTHBEARER token) when no -sasl-password-file is given.
const EnvSASLPassword = security.EnvSASLPassword

// Security holds the parsed TLS and SASL flags (security.Flags, which the
// sluice command takes too): Flags.Register registers them; a binary with
// flags of its own (tosql) calls Register directly.
type Security = security.Flags
