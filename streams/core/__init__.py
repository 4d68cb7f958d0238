"""The processing core: the transactional stage, its state store, and ticks."""
