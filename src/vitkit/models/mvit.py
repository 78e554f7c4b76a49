"""The mvit family (registered variants appear here as the family lands)."""
