"""XEP-0163 personal eventing on a XEP-0060 core (see `module.py`)."""

from chatgate.modules.pep.module import PersonalEventing

__all__ = ["PersonalEventing"]
