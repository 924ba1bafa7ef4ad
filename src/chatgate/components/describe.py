"""What `chatgate check` prints about XEP-0114 components (pure: reads the configuration,
and each `secret_file`, as `serve` does, so an unreadable one fails the check too)."""

from __future__ import annotations

from chatgate.config import Config


def component_lines(cfg: Config) -> list[str]:
    """The component listener and one line per component (never the secret).
    Raises ConfigError where `serve` would refuse a `secret_file`."""
    if not cfg.components:
        return ["  components  none"]
    listener = cfg.component_listener
    lines = [f"  components  XEP-0114 on {listener.host}:{listener.port} (plain TCP)"]
    for component in cfg.components:
        cfg.component_secret(component)  # readable and long enough, or ConfigError
        where = f"secret_file {component.secret_file}" if component.secret_file else "secret"
        name = f' "{component.name}"' if component.name else ""
        parent = cfg.component_parent(component)
        lines.append(f"    {component.domain}{name}  listed by {parent}  auth: {where}")
    return lines
