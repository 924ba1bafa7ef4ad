"""A throwaway OpenLDAP server (Debian's slapd) for the ldap provider's tests.

`start_slapd(folder)` writes a cn=config tree with `slapadd -n0` into
``folder/slapd.d`` (no system configuration is read or touched), starts
``slapd`` in the foreground on a free 127.0.0.1 port, and loads `PEOPLE` with
`ldapadd`.  `Slapd.stop()` ends exactly that process.

The server is configured to *allow* unauthenticated binds (``olcAllows:
bind_anon_dn``): a DN with an empty password then binds successfully as
anonymous, which is what the provider must refuse to call a success.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port as _free_port

BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"
READER_DN = f"cn=reader,{BASE_DN}"
READER_PASSWORD = "reader-secret"
PEOPLE_DN = f"ou=people,{BASE_DN}"

#: (uid, password) of the entries under ou=people; "twin" also exists under ou=staff.
USERS = {"alice": "correct horse", "bob": "battery staple", "colon": "pa:ss:word", "twin": "twin"}

_TOOLS = ("slapd", "slapadd", "ldapadd", "ldapwhoami")
_SCHEMA_DIR = Path("/etc/ldap/schema")
_MODULE_DIR = Path("/usr/lib/ldap")


def missing_reason() -> str | None:
    """Why slapd cannot run here (None when it can)."""
    missing = [
        tool
        for tool in _TOOLS
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        return (
            f"slapd tests need {', '.join(missing)}: "
            "apt-get install slapd ldap-utils (Debian packages)"
        )
    if not (_SCHEMA_DIR / "inetorgperson.ldif").exists():
        return f"slapd schema files missing under {_SCHEMA_DIR}"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def ssha(password: str) -> str:
    """An OpenLDAP ``{SSHA}`` userPassword value."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _config_ldif(folder: Path) -> str:
    module_path = f"olcModulePath: {_MODULE_DIR}\nolcModuleLoad: back_mdb\n"
    schemas = "".join(
        f"include: file://{_SCHEMA_DIR / name}.ldif\n"
        for name in ("core", "cosine", "nis", "inetorgperson")
    )
    return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {folder}/slapd.pid
olcArgsFile: {folder}/slapd.args
olcAllows: bind_anon_dn

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
{module_path}
dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {BASE_DN}
olcRootDN: {ADMIN_DN}
olcRootPW: {ssha(ADMIN_PASSWORD)}
olcDbDirectory: {folder}/db
olcDbMaxSize: 16777216
olcAccess: {{0}}to attrs=userPassword by anonymous auth by self read by * none
olcAccess: {{1}}to * by * read
"""


def _person(uid: str, ou: str, password: str) -> str:
    return f"""\
dn: uid={uid},ou={ou},{BASE_DN}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
userPassword: {ssha(password)}
"""


def _data_ldif() -> str:
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n",
        f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=staff,{BASE_DN}\nobjectClass: organizationalUnit\nou: staff\n",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {ssha(READER_PASSWORD)}\n",
        *(_person(uid, "people", password) for uid, password in USERS.items()),
        _person("twin", "staff", "twin"),
    ]
    return "\n".join(entries)


@dataclass
class Slapd:
    process: subprocess.Popen[bytes]
    uri: str
    folder: Path

    def whoami(self, dn: str, password: str) -> subprocess.CompletedProcess[str]:
        """``ldapwhoami -x -D dn -w password``: what the server itself says about a bind."""
        return subprocess.run(
            [_tool("ldapwhoami"), "-x", "-H", self.uri, "-D", dn, "-w", password],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_slapd(folder: Path) -> Slapd:
    """Configure, start and populate a slapd under `folder`; raises RuntimeError on failure."""
    config_dir = folder / "slapd.d"
    config_dir.mkdir(parents=True)
    (folder / "db").mkdir()
    config = folder / "config.ldif"
    config.write_text(_config_ldif(folder))
    result = subprocess.run(
        [_tool("slapadd"), "-n0", "-F", str(config_dir), "-l", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"slapadd failed:\n{result.stdout}{result.stderr}")
    port = _free_port()
    uri = f"ldap://127.0.0.1:{port}"
    with (folder / "slapd.log").open("wb") as log:
        process = subprocess.Popen(
            [_tool("slapd"), "-d", "0", "-h", f"{uri}/", "-F", str(config_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    slapd = Slapd(process, uri, folder)
    data = folder / "data.ldif"
    data.write_text(_data_ldif())
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited:\n{(folder / 'slapd.log').read_text()}")
        added = subprocess.run(
            [
                _tool("ldapadd"),
                "-x",
                "-H",
                uri,
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-f",
                str(data),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if added.returncode == 0:
            return slapd
        if time.monotonic() > deadline or "Can't contact" not in added.stderr:
            slapd.stop()
            raise RuntimeError(f"ldapadd failed:\n{added.stdout}{added.stderr}")
        time.sleep(0.1)
