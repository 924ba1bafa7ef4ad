"""XEP-0050 ad-hoc commands, XEP-0133 administration (not built yet: registers nothing)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from chatgate.modules.base import Registration, Spec


class AdHocCommands:
    name: ClassVar[str] = "adhoc"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()

    def setup(self, ctx: Any) -> Iterable[Registration]:
        return ()
