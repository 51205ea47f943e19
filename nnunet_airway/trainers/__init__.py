"""nnU-Net v2 glue (the only place that imports nnU-Net): the airway trainers and their lookup folder.

- ``declarations``: every airway trainer declared once (name, settings, label; no torch, no nnU-Net);
- ``variants``: the classes a user names with ``-tr`` (nnUNetTrainerAirwayFRAD and the Table 2 ablations), made
  from the declarations; ``budget``: their ``_Budget`` twins for the demo and the benchmarks;
- ``base``: the one shared trainer they configure (its loss is ``model.losses``' Dice + focal + weighted
  attention distillation); ``network``: plans -> FRADUNet; ``progress``: the per-epoch ``progress.json``;
- ``shims``: the folder ``nnunet-airway trainer-path`` prints for ``nnUNet_extTrainer``; ``cli``: that command;
  ``compat``: the nnunetv2 >= 2.8 check.
Importing this package itself loads nothing (no torch, no nnU-Net).
"""
