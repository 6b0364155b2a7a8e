"""The networks (torch): batched layers, the registry's tower builders, the comparison network, losses and
checkpoint files. Every layer holds ``members`` independent copies of its parameters, so that the rounds of a
variant train as one computation while computing exactly what separate models would (docs/models.md)."""
