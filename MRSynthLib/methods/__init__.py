"""The method families: the classical regression baseline (features, tree ensembles), the generative translator
kinds (``translators``), and the table that picks a card's engine and predictor."""
