"""The cluster layer (issue 14): several chatgate processes and machines serving the
same domains over one PostgreSQL database and one Redis.

Each piece of shared state has an interface elsewhere (the session directory in
`xmpp/directory.py`, the throttles in `auth/throttle/`, the credential notifier in
`accounts/notify.py`, ...) with a local implementation; the Redis implementations
live here, next to what they share: the connection, the node's identity and its
heartbeat.  Nothing here is imported when `[cluster] enabled` is false.
"""
