"""The event log: events, their canonical encoding, the hash chain and the stores that keep them."""
