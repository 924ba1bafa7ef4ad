"""slixmpp's own integration tests against chatgate and against Prosody (issue 15).

The itests come from slixmpp 1.17.0's sdist on PyPI (``fetch_slixmpp_itests``: downloaded by
``make test`` into ``.cache/interop/``, checked against a pinned sha256, never committed). Both
servers are set up as slixmpp's CI sets up its Prosody (``itest_servers``) and the itests run as
its CI runs them, each test in its own process, in a private network namespace where ``prosody``
is the server (``itest_runner``). Both servers run at the same time, four itests at a time each.

The contract of issue 15: every itest that passes on Prosody passes on chatgate, except the
ones listed in ``CHATGATE_MISSING``, each with the feature that will make it pass. Those are
``xfail(strict=True)``: when the feature lands, the test XPASSes, the run fails, and the entry
is removed. ``PROSODY_FAILS`` lists the itests Prosody fails here, and why; they are strict
xfails on Prosody's side, so a change there shows too. The full table of outcomes goes to
``test-artifacts/slixmpp-itests/`` (``table.md`` and both JSON reports) and is the table of
docs/interop.md.

Needs root (``unshare --mount --net``); Prosody's side needs Debian's ``prosody`` (and
``prosody-modules`` for ``mod_muc_moderation``); without them those tests are skipped with the
reason.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop import fetch_slixmpp_itests, itest_runner

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "slixmpp-itests"


@dataclass(frozen=True)
class Missing:
    """A chatgate feature an itest needs and chatgate does not have yet."""

    feature: str
    why: str

    def mark(self) -> pytest.MarkDecorator:
        return pytest.mark.xfail(strict=True, reason=f"needs {self.feature}: {self.why}")


#: itests that pass on Prosody and fail on chatgate today, with the feature that fixes them.
#: Landed since this list was first written (their marks removed when they XPASSed): MAM
#: (2 itests), MUC (5), PEP (2), XEP-0084 avatars, XEP-0410 self-ping, XEP-0363 upload.
CHATGATE_MISSING: dict[str, Missing] = {}

#: itests that fail on both servers here: on chatgate they are strict xfails for the same reason.
#: test_moderate left this list when chatgate's announcement gained XEP-0425 0.2's
#: <apply-to xmlns='urn:xmpp:fasten:0'> beside 0.3's <retract/> (it stays in PROSODY_FAILS);
#: test_sos when chatgate learnt XEP-0455's external status addresses.
FAIL_ON_BOTH: dict[str, Missing] = {}

#: itests Prosody fails in this setup, and why (strict xfails on Prosody's side)
PROSODY_FAILS: dict[str, str] = {
    "test_moderate.TestModerate.test_moderate_msg": (
        "Debian's prosody-modules (2023) mod_muc_moderation speaks urn:xmpp:message-moderate:0 "
        "and answers slixmpp 1.17's :1 request with service-unavailable (slixmpp's CI installs "
        "the current module from the Prosody community repository, which Debian does not ship)"
    ),
    "test_sos.TestSos.test_sos": (
        "XEP-0455: mod_service_outage_status, which slixmpp's CI installs from the Prosody "
        "community repository, is in no Debian package"
    ),
}

#: every itest of slixmpp 1.17.0's sdist, as unittest names them under itests.
ALL_ITESTS = (
    "test_basic_connect_and_message.TestConnect.test_send_message",
    "test_blocking.TestBlocking.test_blocking",
    "test_bob.TestBOB.test_bob",
    "test_chatmarkers.TestMarkers.test_send_marker",
    "test_component.SlixComponentIntegration.test_ping",
    "test_disco.TestDisco.test_features",
    "test_httpupload.TestHTTPUpload.test_httpupload",
    "test_ibb.TestIBB.test_ibb",
    "test_last_activity.TestLastActivity.test_activity",
    "test_mam.TestMAM.test_mam_iterate",
    "test_mam.TestMAM.test_mam_retrieve",
    "test_moderate.TestModerate.test_moderate_msg",
    "test_muc.TestMUC.test_initial_join",
    "test_muc.TestMUC.test_join_after_config",
    "test_muc.TestMUC.test_kick",
    "test_muc.TestMUC.test_nick_change_leave",
    "test_muc.TestMUC.test_setup_muc",
    "test_pep.TestPEP.test_pep_private",
    "test_pep.TestPEP.test_pep_public",
    "test_ping.TestPing.test_ping",
    "test_privatestorage.TestPrivateStorage.test_privatestorage",
    "test_quickresponse.TestQuickResponse.test_quickresponse",
    "test_reactions.TestReactions.test_send_reaction",
    "test_reconnect.TestReconnect.test_disconnect_connect",
    "test_reconnect.TestReconnect.test_reconnect",
    "test_retract.TestRetract.test_retract_msg",
    "test_selfping.TestSelfPing.test_presence_monitor",
    "test_slow_filters.TestSlowFilter.test_filters",
    "test_sos.TestSos.test_sos",
    "test_tls_check.TestTLS.test_connect_custom",
    "test_tls_check.TestTLS.test_connect_custom_fail",
    "test_tls_check.TestTLS.test_connect_custom_fail2",
    "test_tls_check.TestTLS.test_connect_direct_tls",
    "test_tls_check.TestTLS.test_connect_starttls",
    "test_tls_check.TestTLS.test_validate_cert_custom",
    "test_user_avatar.TestUserAvatar.test_set_avatar",
    "test_vcard.TestVcardTemp.test_vcard",
    "test_vcard_avatar.TestVcardAvatar.test_set_avatar",
    "test_version.TestVersion.test_version",
)

#: tracebacks chatgate's log may show today, each a known bug reported to the lead
#: tracebacks chatgate's log may show without failing the run (none: the write to a
#: TLS connection already shut down, the one listed here, is dropped since 2ed4726+)
KNOWN_SERVER_TRACEBACKS: dict[str, str] = {}


@dataclass
class Reports:
    chatgate: dict[str, Any]
    prosody: dict[str, Any] | None
    #: why Prosody's column is empty: not installed (its tests skip) ...
    prosody_skip: str = ""
    #: ... or its run broke (its tests fail with this)
    prosody_error: str = ""

    def need_prosody(self) -> dict[str, Any]:
        if self.prosody_error:
            pytest.fail(self.prosody_error)
        if self.prosody is None:
            pytest.skip(self.prosody_skip)
        return self.prosody


def _run_both(itests: Path, work: Path) -> tuple[dict[str, Any], dict[str, Any] | BaseException]:
    """Both servers at once, each in its own namespace; chatgate's failure is raised."""
    results: dict[str, dict[str, Any] | BaseException] = {}

    def one(name: str) -> None:
        try:
            results[name] = itest_runner.run(name, itests, work / name)
        except BaseException as exc:  # reported below, per server
            results[name] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in ("chatgate", "prosody")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chatgate = results["chatgate"]
    if isinstance(chatgate, BaseException):
        raise chatgate
    return chatgate, results["prosody"]


def _write_artifacts(reports: Reports, work: Path) -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    # the logs of every itest that did not pass, and each server's log (its last MiB)
    for report in (reports.chatgate, reports.prosody):
        if report is None:
            continue
        logs = ARTIFACTS / "logs" / report["server"]
        logs.mkdir(parents=True)
        for test_id, got in report["results"].items():
            source = work / report["server"] / "itests" / f"itests.{test_id}.log"
            if got["outcome"] != "pass" and source.exists():
                shutil.copyfile(source, logs / source.name)
        server_log = Path(report["server_log"])
        if server_log.exists():
            with server_log.open("rb") as fh:
                fh.seek(max(0, server_log.stat().st_size - 1024 * 1024))
                (logs / server_log.name).write_bytes(fh.read())
    (ARTIFACTS / "chatgate.json").write_text(json.dumps(reports.chatgate, indent=1))
    done = [reports.chatgate]
    if reports.prosody is not None:
        (ARTIFACTS / "prosody.json").write_text(json.dumps(reports.prosody, indent=1))
        done.append(reports.prosody)
    (ARTIFACTS / "table.md").write_text(markdown_table(reports))
    (ARTIFACTS / "table.txt").write_text(itest_runner.format_table(done) + "\n")


def markdown_table(reports: Reports) -> str:
    """The docs/interop.md table: itest, Prosody, chatgate, why."""
    prosody = reports.prosody["results"] if reports.prosody else {}
    rows = [
        f"Servers: {reports.chatgate.get('version', 'chatgate')}; "
        + (
            reports.prosody.get("version", "Prosody")
            if reports.prosody
            else reports.prosody_skip or reports.prosody_error
        ),
        "",
        "| itest | Prosody | chatgate | why |",
        "| --- | --- | --- | --- |",
    ]
    for test_id in ALL_ITESTS:
        p = prosody.get(test_id, {}).get("outcome", "-")
        c = reports.chatgate["results"].get(test_id, {}).get("outcome", "-")
        why = []
        if test_id in PROSODY_FAILS:
            why.append(f"Prosody: {PROSODY_FAILS[test_id]}")
        missing = CHATGATE_MISSING.get(test_id) or FAIL_ON_BOTH.get(test_id)
        if missing is not None:
            why.append(f"chatgate needs {missing.feature}: {missing.why}")
        rows.append(f"| `{test_id}` | {p} | {c} | {'; '.join(why)} |")
    for name, report in (("Prosody", reports.prosody), ("chatgate", reports.chatgate)):
        if report:
            n = sum(v["outcome"] == "pass" for v in report["results"].values())
            rows.append(f"\n{name}: {n} of {len(report['results'])} passed.")
    return "\n".join(rows) + "\n"


def itests_or_skip() -> Path:
    """The fetched itests folder; the test is skipped (with why) when they cannot
    run here: no private network namespace, or nothing fetched."""
    problem = itest_runner.namespace_problem()
    if problem is not None:
        pytest.skip(problem)
    try:
        return fetch_slixmpp_itests.ensure() / "itests"
    except fetch_slixmpp_itests.FetchError as exc:
        pytest.skip(f"slixmpp's itests could not be fetched (make test fetches them): {exc}")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reports]:
    itests = itests_or_skip()
    work = tmp_path_factory.mktemp("slixmpp-itests")
    chatgate, prosody = _run_both(itests, work)
    if isinstance(prosody, BaseException):
        result = Reports(chatgate, None, prosody_error=f"Prosody's run failed: {prosody}")
    elif "unavailable" in prosody:
        result = Reports(chatgate, None, prosody_skip=prosody["unavailable"])
    else:
        result = Reports(chatgate, prosody)
    _write_artifacts(result, work)
    yield result


def _mark_chatgate(test_id: str) -> Any:
    missing = CHATGATE_MISSING.get(test_id) or FAIL_ON_BOTH.get(test_id)
    return pytest.param(test_id, marks=missing.mark()) if missing else test_id


def _mark_prosody(test_id: str) -> Any:
    if test_id in PROSODY_FAILS:
        mark = pytest.mark.xfail(strict=True, reason=PROSODY_FAILS[test_id])
        return pytest.param(test_id, marks=mark)
    return test_id


def _describe(report: dict[str, Any], test_id: str) -> str:
    got = report["results"].get(test_id)
    if got is None:
        return f"{test_id} did not run on {report['server']}"
    return f"{report['server']}: {test_id}: {got['outcome']} ({got['seconds']} s): {got['detail']}"


def test_the_sdist_has_the_itests_listed_here(reports: Reports) -> None:
    """A new slixmpp version brings other itests: the lists here must be reviewed for it."""
    assert sorted(reports.chatgate["results"]) == sorted(ALL_ITESTS)
    listed = set(CHATGATE_MISSING) | set(FAIL_ON_BOTH) | set(PROSODY_FAILS)
    assert listed <= set(ALL_ITESTS), listed - set(ALL_ITESTS)
    assert not set(CHATGATE_MISSING) & set(FAIL_ON_BOTH)


@pytest.mark.parametrize("test_id", [_mark_chatgate(t) for t in ALL_ITESTS])
def test_on_chatgate(reports: Reports, test_id: str) -> None:
    got = reports.chatgate["results"].get(test_id, {}).get("outcome")
    assert got == "pass", _describe(reports.chatgate, test_id)


@pytest.mark.parametrize("test_id", [_mark_prosody(t) for t in ALL_ITESTS])
def test_on_prosody(reports: Reports, test_id: str) -> None:
    prosody = reports.need_prosody()
    got = prosody["results"].get(test_id, {}).get("outcome")
    assert got == "pass", _describe(prosody, test_id)


def test_every_itest_passing_on_prosody_passes_on_chatgate(reports: Reports) -> None:
    """Issue 15's contract: the only differences are the documented missing features."""
    prosody = reports.need_prosody()

    def passed(report: dict[str, Any]) -> set[str]:
        return {t for t, v in report["results"].items() if v["outcome"] == "pass"}

    undocumented = passed(prosody) - passed(reports.chatgate) - set(CHATGATE_MISSING)
    assert not undocumented, "\n".join(_describe(reports.chatgate, t) for t in sorted(undocumented))


def test_chatgate_stayed_up_without_unknown_errors(reports: Reports) -> None:
    """The server survived the run and logged no traceback but the known, reported ones."""
    assert reports.chatgate["server_running_at_end"], reports.chatgate["server_log_tail"]
    unknown = [
        line
        for line in reports.chatgate["server_tracebacks"]
        if not any(re.search(pattern, line) for pattern in KNOWN_SERVER_TRACEBACKS)
    ]
    assert not unknown, f"{unknown} in {reports.chatgate['server_log']}"
