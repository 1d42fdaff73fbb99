"""Runtime drivers: desired state in, observed state out."""
