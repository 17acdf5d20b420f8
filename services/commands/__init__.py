"""Commands of `switchboard` that talk to a running mesh over its public REST API (`jobs`,
`chat`), kept out of `switchboard.cli`, which only registers them."""
