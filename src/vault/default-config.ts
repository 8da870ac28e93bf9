/**
 * The configuration a new vault starts from (custos.toml, written by `custos init`): every
 * section with its defaults and what each setting does, and the same with `[store] url` for a
 * node on a PostgreSQL database.
 */
export const DEFAULT_CONFIG_TOML = `# Custos configuration. Flags given to \`custos serve\` override these values.

[api]
# Plain HTTP binds to loopback only. For another address, give a certificate and its key
# (PEM; relative paths are under the data directory): \`custos tls init\` makes a first pair.
host = "127.0.0.1"
port = 8200
# tls_cert = "tls/server-chain.pem"
# tls_key = "tls/server.key"

[[ssh_agent]]
# An ssh-agent socket whose keys live in the vault (export SSH_AUTH_SOCK=<data dir>/<socket>).
# Repeat the [[ssh_agent]] table for more sockets: each is its own principal with its own keys.
enabled = false
name = "default"              # the principal is ssh-agent:<name>
socket = "agent/agent.sock"   # relative to the data directory
keys = []                     # vault key labels (or patterns like "ssh-*") the agent offers
allow_sha1 = true             # legacy ssh-rsa signatures, asked for by OpenSSH 9.2's ssh-add -T
allow_confirm = false         # accept ssh-add -c keys: each use then waits for \`custos approve\`

# CometBFT validators: Custos dials each node's priv_validator_laddr. Uncomment and repeat.
# [[privval]]
# name = "cosmoshub"
# chain_id = "cosmoshub-4"
# address = "tcp://127.0.0.1:26659"      # or unix:///path/to/privval.sock
# key = "cosmos-val"                      # consensus key (custos keys import --format cometbft)
# identity_key = "cosmos-val-identity"    # ed25519 key for SecretConnection (tcp:// only)
# dialect = "v0.38"                       # v0.38 (also v0.39/v0.40) or v1
# allow_sign_bytes = false                # v1 SignBytes: arbitrary bytes with the consensus key

[approvals]
timeout_seconds = 60          # how long a request waits for approval before it is refused

[audit]
# A signed checkpoint of the audit chain is written after this many entries (and at shutdown).
checkpoint_every = 1000
# How often custos.anchor (the signed head, beside the database) follows the log; 0: only at
# start and clean stop. A database shorter or older than its anchor is refused.
anchor_interval_seconds = 1

[unseal]
# Refused unseal shares: more than max_failures within window_seconds are answered 429.
max_failures = 10
window_seconds = 60

[accounts]
# End users' logins (README "Accounts"): max_failures within window_seconds lock a user name
# for lock_seconds (0: until an operator unlocks it); waits double up to max_delay_seconds; an
# address may fail address_max_failures times per window. Sessions idle out and end.
max_failures = 5
window_seconds = 900
lock_seconds = 900
max_delay_seconds = 60
address_max_failures = 50
session_idle_seconds = 900
session_max_seconds = 43200

[log]
# trace | debug | info | warn | error
level = "info"

# [lightning]
# Where Lightning state records are streamed before they commit (README "Lightning"): a
# directory (relative to this one), an https:// endpoint taking PUT, or a postgresql:// URL.
# backup = "lightning-backup"
# backup_authorization_file = "lightning-backup-auth"
`;

/** The default config with `[store] url` set: what a node on a PostgreSQL database starts from. */
export function storeConfigToml(url: string): string {
  return DEFAULT_CONFIG_TOML.replace(/^\[api\]$/m, `[store]\n# The shared PostgreSQL database (several hosts: host1:5432,host2:5432 with\n# target_session_attrs=read-write). A password may instead come from PGPASSWORD.\nurl = ${JSON.stringify(url)}\n\n[api]`);
}
