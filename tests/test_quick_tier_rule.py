"""The quick tier's rule (tests/conftest.py): an unmarked test over the time limit fails, a slow-marked one not."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"


def test_an_unmarked_test_over_the_limit_fails_and_a_slow_one_passes(pytester: pytest.Pytester) -> None:
    conftest = CONFTEST.read_text()
    assert "\nQUICK_TEST_LIMIT_S = 5.0\n" in conftest
    pytester.makeconftest(conftest.replace("\nQUICK_TEST_LIMIT_S = 5.0\n", "\nQUICK_TEST_LIMIT_S = 0.2\n"))
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    pytester.makepyfile(test_timing="""
        import time
        import pytest

        def test_quick():
            pass

        def test_too_slow_unmarked():
            time.sleep(0.4)

        @pytest.mark.slow
        def test_too_slow_but_marked():
            time.sleep(0.4)
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_too_slow_unmarked took 0.* without the slow mark*"])
