"""Shim for nnU-Net's trainer lookup (nnUNet_extTrainer) in the GPU suite: re-exports its trainer."""

from airway_suite_trainers import nnUNetTrainerAirwayFRAD_Suite  # noqa: F401
