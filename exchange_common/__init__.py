"""What the node, the department client and the PKI share: the error hierarchy and its reason
codes, limits, masking of personal data, atomic file writes and CLI plumbing.

Nothing here knows about the node's state or the sealed bundle format; everything may import it.
"""
