"""The operations the REST API and the web console share.

Each module here is one resource (sessions, accounts, rosters, messages,
registration, invitations, streams, configuration): plain async functions and
small classes over the `ServerContext`, with no HTTP in them, so the API
(`http/api/`) and the console (`http/console/`) apply the same rules and say the
same things.  They raise `OperationError` subclasses (`errors.py`) that each
front end maps to its own answer (a status code and the API's error shape, a
flash message).
"""
