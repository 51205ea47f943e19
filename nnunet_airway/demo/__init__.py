"""``nnunet-airway demo``: the whole pipeline on synthetic phantoms, resumable stage by stage."""
