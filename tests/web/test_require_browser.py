"""Without Chromium the browser tests are skipped, saying why, unless a browser is required."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.browser import require_chromium


def test_a_missing_chromium_skips_the_browser_tests_saying_why(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match=r"no Chromium at .*apt-get install -y chromium"):
        require_chromium(tmp_path / "chromium", required=False)


def test_a_missing_chromium_fails_them_where_a_browser_is_required(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="VOTE_LEDGER_REQUIRE_BROWSER=1"):
        require_chromium(tmp_path / "chromium", required=True)


def test_a_file_that_is_not_executable_is_no_browser(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    with pytest.raises(pytest.skip.Exception):
        require_chromium(fake, required=False)
