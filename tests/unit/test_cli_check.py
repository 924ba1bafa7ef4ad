"""`chatgate check` (issue 10, items 10 and 15): it shows every security switch, per
host, and it fails where `serve` would fail, loading what `serve` loads without
starting anything or touching the data directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.cli import app
from chatgate.tls import generate_self_signed

BASE = """
[server]
domain = "localhost"
data_dir = "var"
[[listeners]]
port = 5222
tls = "starttls"
"""

#: every switch flipped away from its default somewhere
EVERYTHING = """
[server]
domain = "localhost"
data_dir = "var"
[[listeners]]
port = 5222
tls = "starttls"
[tls]
client_certificates = "wanted"
trust_files = ["ca.pem"]
revoked_fingerprints = ["{fingerprint}"]
identity_sources = ["xmpp-addr", "email"]
auto_provision = true
[auth]
mechanisms = ["SCRAM-SHA-256", "DIGEST-MD5", "PLAIN"]
allow_plain_without_tls = true
[auth.throttle]
exempt_loopback = true
exempt_networks = ["10.1.2.0/24"]
[hosts."guest.localhost"]
anonymous = true
[hosts."ext.localhost".provider]
name = "http"
http = {{ url = "http://127.0.0.1:9/check" }}
[modules.register]
enabled = true
approval = true
invites = "required"
[modules.legacy_auth]
enabled = true
digest = true
zero_knowledge = true
digest_md5 = true
"""

#: the LDAP provider as docs/authentication.md shows it
LDAP = """
[server]
domain = "localhost"
data_dir = "var"
[auth.provider]
name = "ldap"

[auth.provider.ldap]
uri = "ldaps://ldap.example.org"
bind_dn_template = "uid={user},ou=people,dc=example,dc=org"
"""


def check(tmp_path: Path, text: str) -> Result:
    config = tmp_path / "chatgate.toml"
    config.write_text(text, encoding="utf-8")
    return CliRunner().invoke(app, ["check", "--config", str(config)])


def section(out: str, title: str) -> list[str]:
    """The indented lines under `title` in check's output."""
    lines = out.splitlines()
    start = lines.index(title) + 1
    found = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        found.append(line.strip())
    return found


# ---------------------------------------------------------------- item 10


def test_defaults_show_every_switch_off(tmp_path: Path) -> None:
    result = check(tmp_path, BASE)
    assert result.exit_code == 0, result.output
    assert section(result.stdout, "security (all hosts)") == [
        "client certificates: disabled (never asked for; EXTERNAL never offered)",
        "plaintext mechanisms before TLS: refused",
        "brute-force throttle: on  exempt: none",
    ]
    assert section(result.stdout, "security of localhost") == [
        "anonymous: off",
        "registration: off",
        "legacy auth: off",
        "DIGEST-MD5: off",
    ]


def test_every_switch_that_is_on_is_shown_per_host(tmp_path: Path) -> None:
    generate_self_signed("Test CA", tmp_path / "ca.pem", tmp_path / "ca.key")
    fingerprint = "ab" * 32
    result = check(tmp_path, EVERYTHING.format(fingerprint=fingerprint))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert section(out, "security (all hosts)") == [
        f"client certificates: wanted  trust files: {tmp_path / 'ca.pem'}  trust dirs: -"
        "  self-signed: refused  revoked: 1  identities from: xmpp-addr, email"
        "  auto-provision: on",
        "plaintext mechanisms before TLS: ALLOWED",
        "brute-force throttle: on  exempt: loopback, 10.1.2.0/24",
    ]
    assert section(out, "security of localhost") == [
        "anonymous: off",
        "registration: on (approval, invites required, TLS only)",
        "legacy auth: on (plaintext (TLS only), digest on, zero-knowledge on)",
        "DIGEST-MD5: on (its plaintext-equivalent secret is stored)",
    ]
    assert section(out, "security of ext.localhost") == [
        "anonymous: off",
        "registration: off here (the http provider keeps the accounts)",
        "legacy auth: on (plaintext (TLS only), digest and zero-knowledge off here"
        " (the http provider))",
        "DIGEST-MD5: listed but never offered (the http provider)",
    ]
    assert section(out, "security of guest.localhost") == [
        "anonymous: on (SASL ANONYMOUS only, nothing kept; 10 logins per address and"
        " 300 in all per 60 s)",
    ]
    assert out.rstrip().endswith("configuration OK")


def test_throttle_off_and_self_signed_client_certificates_are_loud(tmp_path: Path) -> None:
    text = BASE + (
        '[tls]\nclient_certificates = "needed"\naccept_self_signed = true\n'
        "[auth.throttle]\nenabled = false\n"
    )
    result = check(tmp_path, text)
    assert result.exit_code == 0, result.output
    lines = section(result.stdout, "security (all hosts)")
    assert "self-signed: ACCEPTED" in lines[0] and lines[0].startswith(
        "client certificates: needed"
    )
    assert lines[2] == "brute-force throttle: OFF (registration limits still apply)"


# ---------------------------------------------------------------- item 15


@pytest.fixture
def without_ldap3(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a server installed without the `ldap` extra: `import ldap3` fails."""
    monkeypatch.setitem(sys.modules, "ldap3", None)
    monkeypatch.delitem(sys.modules, "chatgate.auth.ldap", raising=False)


def test_the_documented_ldap_provider_without_ldap3_fails_check(
    tmp_path: Path, without_ldap3: None
) -> None:
    result = check(tmp_path, LDAP)
    assert result.exit_code == 2, result.output
    assert "the ldap credential provider needs the ldap3 package" in result.stderr
    assert "configuration OK" not in result.stdout


def test_the_documented_ldap_provider_passes_where_ldap3_is_installed(tmp_path: Path) -> None:
    result = check(tmp_path, LDAP)
    assert result.exit_code == 0, result.output


def test_a_host_provider_is_loaded_too(tmp_path: Path, without_ldap3: None) -> None:
    text = BASE + (
        '[hosts."staff.example.org".provider]\nname = "ldap"\n'
        'ldap = { uri = "ldaps://ldap.example.org", bind_dn_template = "uid={user},dc=x" }\n'
    )
    result = check(tmp_path, text)
    assert result.exit_code == 2
    assert "ldap3" in result.stderr


def test_client_certificates_with_nothing_to_trust_fail_check_as_serve(tmp_path: Path) -> None:
    result = check(tmp_path, BASE + '[tls]\nclient_certificates = "wanted"\n')
    assert result.exit_code == 2, result.output
    assert "needs trust_files, trust_dirs or accept_self_signed" in " ".join(result.stderr.split())


def test_an_unreadable_trust_file_fails_check(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    text = BASE + '[tls]\nclient_certificates = "wanted"\ntrust_files = ["ca.pem"]\n'
    result = check(tmp_path, text)
    assert result.exit_code == 2
    assert "tls.trust_files: cannot load" in " ".join(result.stderr.split())


def test_a_configured_certificate_that_does_not_exist_fails_check(tmp_path: Path) -> None:
    text = BASE + '[tls]\ncertificate = "cert.pem"\nprivate_key = "key.pem"\n'
    result = check(tmp_path, text)
    assert result.exit_code == 2
    # The error is wrapped at the terminal's width, a long temporary path anywhere.
    unwrapped = "".join(result.stderr.split())
    assert f"tls.certificate:{tmp_path / 'cert.pem'}doesnotexist" in unwrapped


def test_check_writes_nothing(tmp_path: Path) -> None:
    generate_self_signed("Test CA", tmp_path / "ca.pem", tmp_path / "ca.key")
    result = check(tmp_path, EVERYTHING.format(fingerprint="cd" * 32))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem", "chatgate.toml"]


def test_check_shows_the_web_listener(tmp_path: Path) -> None:
    default = check(tmp_path, BASE)
    assert default.exit_code == 0, default.output
    out = " ".join(default.output.split())
    assert "web http 127.0.0.1:5280; https 127.0.0.1:5281 (client certificates: disabled)" in out
    assert "websocket /xmpp-websocket, bosh /http-bind, chat /chat/" in out
    assert "cors: same origin only; trusted proxies: none (X-Forwarded-For ignored)" in out
    proxied = check(
        tmp_path,
        BASE
        + '[http]\ntls_port = false\ncors_origins = ["https://chat.example.org"]\n'
        + 'trusted_proxies = ["10.0.0.1"]\n[http.bosh]\nenabled = false\n',
    )
    out = " ".join(proxied.output.split())
    assert "web http 127.0.0.1:5280 websocket /xmpp-websocket, chat /chat/" in out
    assert "cors: https://chat.example.org; trusted proxies: 10.0.0.1" in out
    off = check(tmp_path, BASE + "[http]\nenabled = false\n")
    assert "web off ([http] enabled = false)" in " ".join(off.output.split())


def test_an_unknown_module_and_an_unknown_option_fail_check_naming_both(tmp_path: Path) -> None:
    # Issue 13: both used to pass as "configuration OK".
    result = check(tmp_path, BASE + "[modules.regster]\n[modules.register]\nenabeld = true\n")
    assert result.exit_code == 2
    assert "modules.regster: no such module" in result.stderr
    assert "modules.register.enabeld: unknown option" in result.stderr
    assert "configuration OK" not in result.stdout


def test_the_storage_line_hides_the_database_password(tmp_path: Path) -> None:
    """`check` shows where the data lives, never the PostgreSQL password (neither in
    the userinfo, even with a `/` in it, nor as a `password=` query parameter)."""
    for url, shown in (
        (
            "postgresql+asyncpg://chat:hun/ter2@db.example:5432/chatgate",
            "postgresql+asyncpg://chat:***@db.example:5432/chatgate",
        ),
        (
            "postgresql+asyncpg://chat@db.example/chatgate?password=hunter2",
            "postgresql+asyncpg://chat@db.example/chatgate?password=***",
        ),
    ):
        result = check(tmp_path, BASE + f'[storage]\nurl = "{url}"\n')
        assert result.exit_code == 0, result.output
        assert "hunter2" not in result.output and "hun/ter2" not in result.output
        assert [line for line in result.output.splitlines() if line.startswith("storage")] == [
            f"storage   {shown}"
        ]


def test_check_lists_each_module_that_can_be_off_and_whether_it_is_on(tmp_path: Path) -> None:
    off = section(check(tmp_path, BASE).stdout, "features:")
    assert "register: off (XEP-0077, XEP-0445)" in off
    assert "legacy_auth: off (XEP-0078)" in off
    on = check(tmp_path, BASE + "[modules.register]\nenabled = true\n")
    assert on.exit_code == 0, on.output
    assert "register: on (XEP-0077, XEP-0445)" in section(on.stdout, "features:")
    # Every module listed is one whose `[modules.NAME] enabled` exists.
    for line in off:
        name = line.split(":", 1)[0]
        switched = check(tmp_path, BASE + f"[modules.{name}]\nenabled = false\n")
        assert switched.exit_code == 0, switched.output
        assert any(
            entry.startswith(f"{name}: off") for entry in section(switched.stdout, "features:")
        )


def test_check_says_when_an_enabled_module_cannot_work(tmp_path: Path) -> None:
    without_http = check(tmp_path, BASE + "[http]\nenabled = false\n")
    assert "upload: on (XEP-0363), but inactive: needs [http] enabled" in section(
        without_http.stdout, "features:"
    )
    with_http = check(tmp_path, BASE + "[http]\nenabled = true\n")
    assert with_http.exit_code == 0, with_http.output
    assert "upload: on (XEP-0363)" in section(with_http.stdout, "features:")
