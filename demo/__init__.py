"""`uvd demo`: writes small inputs in real formats, builds them, validates, inspects, then tokenizes
and trains a few steps. Nothing in the project's packages imports this package."""
