"""prefer_small_pages turns numpy's huge-page request off for the process, unless the user set the variable."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_airway.evaluation.memory_pages import prefer_small_pages

SETTER = np._core.multiarray._set_madvise_hugepage


def test_the_request_is_turned_off_and_a_users_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    before = SETTER(True)
    try:
        monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
        assert prefer_small_pages()
        assert SETTER(True) is False  # the setter returns the setting it replaces: off
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        assert not prefer_small_pages()
        assert SETTER(True) is True  # left as it was
    finally:
        SETTER(before)
