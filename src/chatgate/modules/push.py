"""XEP-0357 push notifications (not built yet: registers nothing)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from chatgate.modules.base import Registration, Spec


class PushNotifications:
    name: ClassVar[str] = "push"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()

    def setup(self, ctx: Any) -> Iterable[Registration]:
        return ()
