"""XEP-0198 stream management (not built yet: registers nothing)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from chatgate.modules.base import Registration, Spec


class StreamManagement:
    name: ClassVar[str] = "stream_management"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = ()

    def setup(self, ctx: Any) -> Iterable[Registration]:
        return ()
