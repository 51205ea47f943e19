"""The FR/AD U-Net, its building blocks and losses (torch only, never nnU-Net)."""
