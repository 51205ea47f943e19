"""nnunet_airway.dataset_conversion"""
