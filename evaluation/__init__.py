"""nnunet_airway.evaluation"""
