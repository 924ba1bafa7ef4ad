"""The words every layer shares: XML namespaces (`ns`), error conditions and who is
at fault (`errors`), and what a transport knows about a connection (`facts`).

A leaf: it imports nothing of chatgate's, so the parser (`xml/`), SASL, the
credential providers (`auth/`), the configuration and the session layer
(`xmpp/`) may all import it without an arrow running up.
"""
