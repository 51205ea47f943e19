"""Fixtures for the model tests: tiny float64 tensors, a fixed seed, and independent reference formulas."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _randomise(module: torch.nn.Module, scale: float = 0.5) -> torch.nn.Module:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return module


@pytest.fixture
def randomise():
    """Moves every parameter away from its initial value so that tests see every term of a formula."""
    return _randomise
