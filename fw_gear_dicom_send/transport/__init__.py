"""Getting instances to the receiver: associations, C-STORE, workers, STOW-RS, TLS."""
