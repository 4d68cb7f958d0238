"""One module per stage: a thin loop over pure rules."""
