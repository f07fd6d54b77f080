"""Distillation and training: objectives selected by name, TIRT timestep weights, small models for the oracle tier."""
