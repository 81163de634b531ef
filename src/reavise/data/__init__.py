"""Corpora: the synthetic AV corpus, real-corpus preparation, noise and mixtures."""
