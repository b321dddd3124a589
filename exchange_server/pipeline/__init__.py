"""The pipeline: from an upload handed over by the front to its final state, its signed receipt
and its routing (formal review, dataset ingest, query answers)."""
