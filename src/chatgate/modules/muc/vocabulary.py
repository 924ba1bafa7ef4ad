"""The namespaces and status codes of XEP-0045 and the extensions rooms use.

COMPAT: they belong in `vocabulary/ns.py`; they live here until the lead moves
them (the MUC helper owns only this package).
"""

from __future__ import annotations

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
MUC_OWNER = "http://jabber.org/protocol/muc#owner"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
MUC_REQUEST = "http://jabber.org/protocol/muc#request"
CONFERENCE = "jabber:x:conference"  # XEP-0249 direct invitations
STANZA_ID = "urn:xmpp:sid:0"  # XEP-0359
OCCUPANT_ID = "urn:xmpp:occupant-id:0"  # XEP-0421
MODERATE = "urn:xmpp:message-moderate:1"  # XEP-0425 0.3
RETRACT = "urn:xmpp:message-retract:1"  # XEP-0424 1.0
# XEP-0425 0.2 (over XEP-0422 fastening): what deployed clients and slixmpp's itest still
# read, and what current Prosody's mod_muc_moderation still sends beside the 0.3 form
MODERATE_0 = "urn:xmpp:message-moderate:0"
RETRACT_0 = "urn:xmpp:message-retract:0"
FASTEN = "urn:xmpp:fasten:0"
MAM = "urn:xmpp:mam:2"
SELF_PING = "https://xmpp.org/extensions/xep-0410.html#feature"

# XEP-0045 §15.6.2 status codes
SELF = "110"
NON_ANONYMOUS = "100"
LOGGED = "170"
CREATED = "201"
NICK_CHANGED = "303"
KICKED = "307"
BANNED = "301"
AFFILIATION_CHANGED = "321"
MEMBERS_ONLY_NOW = "322"
SHUTDOWN = "332"
CONFIG_CHANGED = "104"
