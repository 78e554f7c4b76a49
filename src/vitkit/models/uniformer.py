"""The uniformer family (registered variants appear here as the family lands)."""
