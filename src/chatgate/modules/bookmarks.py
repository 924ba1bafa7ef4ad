"""XEP-0402 bookmarks, XEP-0411 conversion (not built yet: registers nothing)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from chatgate.modules.base import Registration, Spec


class Bookmarks:
    name: ClassVar[str] = "bookmarks"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()

    def setup(self, ctx: Any) -> Iterable[Registration]:
        return ()
