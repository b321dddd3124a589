"""What the node places in a department's outbox: signed receipts and node-signed bundles
(results, comparison lists), each written exactly once."""
