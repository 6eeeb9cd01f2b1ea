"""Architecture configs of the networks, one module per network, importable without torch.

Model cards store these as plain dicts (``to_dict``/``from_dict``); training configs and the numpy/onnxruntime
engines read them from here, so neither needs torch to parse them."""
