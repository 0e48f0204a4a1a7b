"""Pretrained networks: a safe reader of PyTorch state_dict files (torchfile.py), the networks
cnncli knows (catalog.py, each with its architecture YAML beside it) and the conversion of their
weights into a cnncli checkpoint (convert.py)."""
