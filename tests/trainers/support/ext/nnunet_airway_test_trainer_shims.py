"""Shim for nnU-Net's lookup in the tests (nnUNet_extTrainer): re-exports the test-only trainer."""

from airway_test_trainers import nnUNetTrainerAirwayFRAD_TestTiny  # noqa: F401
