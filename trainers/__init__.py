"""nnunet_airway.trainers"""
