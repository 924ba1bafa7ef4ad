"""What `chatgate check` does besides validating the file: load what `serve` would load,
and describe every switch that decides who gets in.

`load_like_serve` builds every configured credential provider (importing its
optional packages, e.g. ``ldap3``, and loading provider entry points) and the TLS
context (certificate, versions, client-certificate trust store), as `serve` does
at start, so that `check` fails where `serve` would (exit 2, with the message
`serve` would give).  It starts nothing: no listener, no provider session or
program, and it never opens the database (the internal provider, which needs
it, is built-in and has no options or dependencies to check).  A self-signed
certificate that `serve` would generate is generated in a temporary folder and
thrown away.

`security_lines` lists, per served domain, the switches an operator checking a
configuration asks about: the provider, registration (and how it is limited),
legacy authentication and its methods, DIGEST-MD5, anonymous hosts; and, for the
whole server, client certificates and their trust store, plaintext before TLS
and brute-force protection.  Pure: it reads the configuration only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from chatgate.config import Config, TlsMode
from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.modules.register import RegisterOptions
from chatgate.vocabulary.errors import ConfigError

__all__ = ["load_like_serve", "security_lines"]

DIGEST_MD5 = "DIGEST-MD5"


# ---------------------------------------------------------------- loading


def load_like_serve(cfg: Config) -> None:
    """Build the providers and the TLS context `serve` would build; raise `ConfigError`
    with `serve`'s message where it would refuse to start."""
    _load_providers(cfg)
    _load_tls(cfg)


def _load_providers(cfg: Config) -> None:
    from chatgate.auth.registry import (
        ProviderContext,
        build_provider,
        builtin_providers,
        check_provider_config,
    )

    registry = builtin_providers()  # loads the provider entry points, as serve does
    context = ProviderContext(
        base_dir=cfg.base_dir,
        data_dir=cfg.data_dir,
        credential_cache_size=cfg.auth.credential_cache_size,
    )
    tables = [("auth.provider", cfg.auth.provider)]
    tables += [(f'hosts."{d}".provider', h.provider) for d, h in cfg.hosts.items() if h.provider]
    for where, table in tables:
        if table.name == "internal":
            check_provider_config(table, registry)
            continue
        try:
            build_provider(table, context, registry)  # no I/O: a factory only builds
        except ConfigError:
            raise
        except Exception as exc:  # a plugin's factory failing is a configuration problem
            raise ConfigError(f"{where}: the {table.name} provider cannot be built: {exc}") from exc


def _load_tls(cfg: Config) -> None:
    from chatgate.tls import build_server_tls, certificate_paths, generate_self_signed

    if all(listener.tls is TlsMode.NONE for listener in cfg.listeners):
        return
    trust_files = [cfg.path(p) for p in cfg.tls.trust_files]
    trust_dirs = [cfg.path(p) for p in cfg.tls.trust_dirs]
    cert, key = certificate_paths(cfg)
    if cfg.tls.certificate is not None:
        for what, path in (("tls.certificate", cert), ("tls.private_key", key)):
            if not path.is_file():
                raise ConfigError(f"{what}: {path} does not exist")
    elif not (cert.is_file() and key.is_file()):
        # What serve would generate at its first start: made and checked here, then dropped.
        with tempfile.TemporaryDirectory() as scratch:
            cert, key = Path(scratch, "check.crt"), Path(scratch, "check.key")
            domains = cfg.served_domains
            generate_self_signed(
                domains[0], cert, key, key_type=cfg.tls.key_type, more_names=domains[1:]
            )
            build_server_tls(cfg.tls, cert, key, trust_files=trust_files, trust_dirs=trust_dirs)
        return
    build_server_tls(cfg.tls, cert, key, trust_files=trust_files, trust_dirs=trust_dirs)


# ---------------------------------------------------------------- describing


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def client_certificate_line(cfg: Config) -> str:
    """The client-certificate policy (EXTERNAL, XEP-0178) and what it trusts."""
    tls = cfg.tls
    if tls.client_certificates == "disabled":
        return "client certificates: disabled (never asked for; EXTERNAL never offered)"
    files = ", ".join(str(cfg.path(p)) for p in tls.trust_files) or "-"
    dirs = ", ".join(str(cfg.path(p)) for p in tls.trust_dirs) or "-"
    return (
        f"client certificates: {tls.client_certificates}"
        f"  trust files: {files}  trust dirs: {dirs}"
        f"  self-signed: {'ACCEPTED' if tls.accept_self_signed else 'refused'}"
        f"  revoked: {len(tls.revoked_fingerprints)}"
        f"  identities from: {', '.join(tls.identity_sources)}"
        f"  auto-provision: {_on(tls.auto_provision)}"
    )


def _mechanisms_of(cfg: Config, domain: str) -> list[str]:
    from chatgate.vhost import host_mechanisms

    names: list[str] = []
    for listener in cfg.listeners:
        names += [n for n in host_mechanisms(cfg, domain, listener) if n not in names]
    return names


def host_lines(
    cfg: Config, domain: str, register: RegisterOptions, legacy: LegacyAuthOptions
) -> list[str]:
    """Registration, legacy authentication and DIGEST-MD5 on one served domain."""
    host = cfg.host(domain)
    if host.anonymous:
        limits = host.anonymous_limits
        return [
            f"anonymous: on (SASL ANONYMOUS only, nothing kept; {limits.per_address} logins"
            f" per address and {limits.total} in all per {limits.period:g} s)"
        ]
    provider = (host.provider or cfg.auth.provider).name
    internal = provider == "internal"
    lines = ["anonymous: off"]
    if not register.enabled:
        lines.append("registration: off")
    elif not internal:
        lines.append(f"registration: off here (the {provider} provider keeps the accounts)")
    else:
        how = [
            "approval" if register.approval else "no approval",
            f"invites {register.invites}",
            "TLS only" if register.require_tls else "ALSO WITHOUT TLS",
        ]
        if register.min_seconds_between_inquiry_and_attempt:
            how.append(f"delay {register.min_seconds_between_inquiry_and_attempt:g} s")
        lines.append(f"registration: on ({', '.join(how)})")
    if not legacy.enabled:
        lines.append("legacy auth: off")
    else:
        plain = "plaintext" + (
            " (ALSO WITHOUT TLS)" if legacy.allow_plaintext_without_tls else " (TLS only)"
        )
        methods = [plain]
        if internal:
            methods += [
                f"digest {_on(legacy.digest)}",
                f"zero-knowledge {_on(legacy.zero_knowledge)}",
            ]
        else:
            methods.append(f"digest and zero-knowledge off here (the {provider} provider)")
        lines.append(f"legacy auth: on ({', '.join(methods)})")
    listed = DIGEST_MD5 in _mechanisms_of(cfg, domain)
    if not listed:
        lines.append("DIGEST-MD5: off")
    elif internal and legacy.digest_md5:
        lines.append("DIGEST-MD5: on (its plaintext-equivalent secret is stored)")
    else:
        why = "digest_md5 storage is off" if internal else f"the {provider} provider"
        lines.append(f"DIGEST-MD5: listed but never offered ({why})")
    return lines


def security_lines(cfg: Config) -> list[str]:
    """Every security-relevant switch: those of the whole server, then those of each
    served domain.  Raises `ConfigError` for invalid module options."""
    from chatgate.config import section

    register = section(cfg, "register", RegisterOptions)
    legacy = section(cfg, "legacy_auth", LegacyAuthOptions)
    plain = "ALLOWED" if cfg.auth.allow_plain_without_tls else "refused"
    throttle = cfg.auth.throttle
    if throttle.enabled:
        exempt = [str(n) for n in throttle.exempt_networks]
        if throttle.exempt_loopback:
            exempt.insert(0, "loopback")
        brute_force = f"on  exempt: {', '.join(exempt) if exempt else 'none'}"
    else:
        brute_force = "OFF (registration limits still apply)"
    lines = [
        "security (all hosts)",
        f"  {client_certificate_line(cfg)}",
        f"  plaintext mechanisms before TLS: {plain}",
        f"  brute-force throttle: {brute_force}",
    ]
    for domain in cfg.served_domains:
        lines.append(f"security of {domain}")
        lines += [f"  {line}" for line in host_lines(cfg, domain, register, legacy)]
    return lines


def web_lines(cfg: Config) -> list[str]:
    """The HTTP(S) listener as `chatgate check` shows it: ports, routes, web policy."""
    web = cfg.http
    if not web.enabled:
        return ["  web       off ([http] enabled = false)"]
    ports = []
    if web.port is not False:
        ports.append(f"http {web.host}:{web.port}")
    if web.tls_port is not False:
        certs = web.client_certificates or cfg.tls.client_certificates
        ports.append(f"https {web.host}:{web.tls_port} (client certificates: {certs})")
    routes = [
        name
        for name, on in (
            ("websocket /xmpp-websocket", web.websocket.enabled),
            ("bosh /http-bind", web.bosh.enabled),
            ("chat /chat/", web.chat.enabled),
        )
        if on
    ]
    sasl = ", ".join(web.mechanisms or cfg.auth.mechanisms)
    lines = [f"  web       {'; '.join(ports) or 'no port'}", f"            {', '.join(routes)}"]
    lines.append(f"            sasl: {sasl}")
    origins = ", ".join(web.cors_origins) or "same origin only"
    proxies = ", ".join(web.trusted_proxies) or "none (X-Forwarded-For ignored)"
    lines.append(f"            cors: {origins}; trusted proxies: {proxies}")
    lines.append(f"  admin     {admin_line(cfg)}")
    return lines


def admin_line(cfg: Config) -> str:
    """The API, console and metrics as `chatgate check` shows them."""
    admin = cfg.admin
    if not admin.enabled:
        return "off ([admin] enabled = false)"
    sets = {name: ", ".join(admin.methods_for(name)) for name in ("api", "console", "metrics")}
    if len(set(sets.values())) == 1:
        methods = f"auth: {sets['api']}"
    else:
        methods = "; ".join(f"{name} auth: {value}" for name, value in sets.items())
    if admin.metrics_open_on_loopback:
        methods += "; /metrics open to loopback"
    return f"api /api/v1, console /admin/, /metrics; {methods}"


def module_lines(cfg: Config) -> list[str]:
    """One line per module that can be switched off (`[modules.NAME] enabled`):
    whether it is on, and the protocols it implements, so an operator sees at a
    glance which of the features modern clients expect this server offers."""
    from chatgate.modules.registry import builtin_modules, validate_module_options

    registry = builtin_modules()
    options = validate_module_options(cfg, registry)
    lines = ["features:"]
    for name in registry.names():
        enabled = getattr(options.get(name), "enabled", None)
        if not isinstance(enabled, bool):
            continue
        module = registry.get(name)
        specs = ", ".join(spec.name for spec in module.implements)
        line = f"  {name}: {_on(enabled)}" + (f" ({specs})" if specs else "")
        inactive = getattr(module, "inactive_because", None)
        why = inactive(cfg) if enabled and inactive is not None else None
        lines.append(line + (f", but inactive: {why}" if why else ""))
    return lines
