"""chatgate: an XMPP server whose strength is authentication."""

__version__ = "0.1.0"
