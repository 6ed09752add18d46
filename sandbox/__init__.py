"""The ground floor: candidate contract and vocabulary, reference optimizers, validation,
isolated workers, proxy tasks, scoring and executors. Imports nothing else of this project."""
