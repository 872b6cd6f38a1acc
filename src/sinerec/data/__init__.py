"""Data pipeline: readers -> Interactions -> preprocessing -> SequenceData -> protocol splits -> batches."""
