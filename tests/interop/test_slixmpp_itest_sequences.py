"""slixmpp itests in an order the parallel run only meets by chance: one after the
other on one account, so what the first leaves behind is what the second starts from.

``test_user_avatar`` (XEP-0084) leaves the account's PEP avatar disabled; then
``test_vcard_avatar`` sets a vCard photo with no image type, which chatgate cannot
publish on PEP.  chatgate used to replace the client's XEP-0153 hash in its presence
with the empty one it knew of, the client never saw its new hash come back, and the
itest timed out (in one CI run of four, whenever the two landed on one worker).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import itest_runner
from tests.interop.test_slixmpp_itests import itests_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

AVATARS_IN_TURN = ("test_user_avatar", "test_vcard_avatar")


def test_xep_0084_then_xep_0153_avatars_on_one_account(tmp_path: Path) -> None:
    itests = itests_or_skip()
    report = itest_runner.run(
        "chatgate", itests, tmp_path / "chatgate", workers=1, only=AVATARS_IN_TURN
    )
    outcomes = {test_id: v["outcome"] for test_id, v in report["results"].items()}
    assert outcomes == {
        "test_user_avatar.TestUserAvatar.test_set_avatar": "pass",
        "test_vcard_avatar.TestVcardAvatar.test_set_avatar": "pass",
    }, report["results"]
    assert report["server_tracebacks"] == []
